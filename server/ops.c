/* What each binary request does. Enqueues and worker outcomes are gathered into batches (script
 * calls per read, see batch.h); everything else runs at once, after flushing the
 * batches so that a client's requests reach Redis in the order it sent them. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "batch.h"

/* Open batches of the client whose frames are being processed (one read at a time). */
static batch *open_enqueue;

static void reply_ok(cel_client *c, uint64_t seq, cel_str id, const char *state, int existed) {
    cel_msg r;
    memset(&r, 0, sizeof r);
    r.op = CEL_OP_OK;
    r.seq = seq;
    cel_msg_set(&r, CEL_F_SEQ);
    if (id.len) r.id = id, cel_msg_set(&r, CEL_F_ID);
    if (state) r.state = cel_str_c(state), cel_msg_set(&r, CEL_F_STATE);
    if (existed >= 0) r.existed = existed, cel_msg_set(&r, CEL_F_EXISTED);
    conn_send(c, &r);
}

static void reply_element_str(const redisReply *e, cel_str *out) {
    out->ptr = e && e->str ? e->str : "";
    out->len = e && e->str ? (uint32_t)e->len : 0;
}

/* ---- enqueue ----------------------------------------------------------------------------- */

/* The task id was among the tasks leased by the enqueue call itself (after nres results). */
static bool leased_by(const redisReply *rep, size_t nres, const redisReply *id) {
    for (size_t j = nres; j + LEASE_FIELDS <= rep->elements; j += LEASE_FIELDS) {
        const redisReply *l = rep->element[j];
        if (l->str && id->str && l->len == id->len && !memcmp(l->str, id->str, id->len))
            return true;
    }
    return false;
}

static void enqueue_done(const redisReply *rep, const cel_error *err, void *arg) {
    batch *b = arg;
    cel_client *c = b->client;
    cel_server *s = b->srv;
    size_t nres = 3 * b->nentries;
    bool ok = rep && rep->type == REDIS_REPLY_ARRAY && rep->elements >= nres &&
              (rep->elements - nres) % LEASE_FIELDS == 0;
    const batch_entry *e = (const batch_entry *)b->entries.data;
    cel_str *ids = b->bulk && ok ? calloc(b->nentries, sizeof *ids) : NULL;
    for (size_t i = 0; i < b->nentries; i++) {
        if (!ok) continue;
        cel_str id, st;
        reply_element_str(rep->element[3 * i], &id);
        reply_element_str(rep->element[3 * i + 1], &st);
        if (ids) ids[i] = id;
        size_t qlen;
        const char *qn = batch_arg_get(b, ENQUEUE_HEAD + ENQUEUE_FIELDS * i + 1, &qlen);
        text_monitor_event(s, rep->element[3 * i + 2]->integer ? "exists" : "enqueued", qn, qlen,
                           id.ptr, id.len, st.ptr);
        if (!b->bulk && client_alive(c))
            reply_ok(c, e[i].seq, id, st.ptr, (int)rep->element[3 * i + 2]->integer);
        s->counters.enqueued += rep->element[3 * i + 2]->integer == 0;
    }
    if (ok && b->bulk && client_alive(c)) {
        cel_msg r;
        memset(&r, 0, sizeof r);
        r.op = CEL_OP_OK, r.seq = b->bulk_seq;
        r.ids.strs = ids, r.ids.n = (uint32_t)b->nentries;
        cel_msg_set(&r, CEL_F_SEQ), cel_msg_set(&r, CEL_F_IDS);
        conn_send(c, &r);
    }
    free(ids);
    if (!ok && client_alive(c)) {
        const char *why = err                                     ? err->msg
                          : rep && rep->type == REDIS_REPLY_ERROR ? rep->str
                                                                  : "bad reply";
        cel_err code = err ? err->code : CEL_E_INTERNAL;
        if (b->bulk) conn_send_error(c, b->bulk_seq, code, why);
        for (size_t i = 0; !b->bulk && i < b->nentries; i++)
            conn_send_error(c, e[i].seq, code, why);
    }
    /* The tasks leased by the same call go to their worker right after the producer's reply. */
    size_t lqlen = 0;
    const char *lq = b->lease ? batch_arg_get(b, ENQUEUE_HEAD + 1, &lqlen) : NULL;
    bool lq_more = true;
    if (b->lease)
        lq_more = dispatch_leased(b->lease, ok ? rep->element + nres : NULL,
                                  ok ? (rep->elements - nres) / LEASE_FIELDS : 0, ok, b);
    b->lease = NULL;
    if (ok) {
        /* Wake workers of every queue that got a task (but not for tasks the lease took). */
        for (size_t i = 0; i < b->nentries; i++) {
            const redisReply *st = rep->element[3 * i + 1];
            if (st->str && strcmp(st->str, "scheduled") == 0) reaper_kick(s);
            if (st->str && strcmp(st->str, "queued") == 0) {
                size_t qlen;
                const char *q = batch_arg_get(b, ENQUEUE_HEAD + ENQUEUE_FIELDS * i + 1, &qlen);
                /* Tasks of the lease's queue need no dispatch when the lease drained it, or
                 * took them itself. */
                if (lq && qlen == lqlen && !memcmp(q, lq, qlen) &&
                    (!lq_more || leased_by(rep, nres, rep->element[3 * i])))
                    continue;
                dispatch_mark_ready(s, q, qlen);
            }
        }
    }
    batch_free(b);
}

static void new_task_id(cel_server *s, char *out, size_t cap) {
    static uint64_t counter;
    snprintf(out, cap, "%s-%" PRIx64, s->broker_id, ++counter);
}

static long long wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The task's body (see task_body in broker.h) as one argument, packed straight into the batch:
 * the head, then the args. */
static void enqueue_body_arg(batch *b, const cel_msg *m) {
    size_t start = b->arena.len;
    task_body head = {.name = m->task,
                      .priority = m->priority,
                      .soft_ms = m->soft_ms,
                      .hard_ms = m->hard_ms,
                      .created_ms = wall_ms()};
    task_body_pack_head(&b->arena, &head);
    if (m->args.obj) {
        msgpack_packer pk;
        msgpack_packer_init(&pk, &b->arena, cel_buf_msgpack_write);
        msgpack_pack_object(&pk, *m->args.obj);
    } else if (m->args.bytes) {
        cel_buf_append(&b->arena, m->args.bytes, m->args.len);
    } else {
        cel_buf_append(&b->arena, "\x90", 1); /* no args: an empty array */
    }
    batch_arg_since(b, start);
}

/* Appends the ENQUEUE_FIELDS arguments of one task to an enqueue batch (see
 * scripts/enqueue.lua). */
static void enqueue_args(batch *b, const cel_msg *m) {
    cel_server *s = b->srv;
    batch_entry *e = batch_add_entry(b, m->seq, CEL_OP_ENQUEUE);
    char idbuf[64];
    cel_str id = m->id;
    if (!cel_msg_has(m, CEL_F_ID)) {
        new_task_id(s, idbuf, sizeof idbuf);
        id = cel_str_c(idbuf);
    }
    if (e) e->id_off = (uint32_t)b->arena.len, e->id_len = id.len;
    batch_arg_str(b, id);
    batch_arg_str(b, m->queue);
    enqueue_body_arg(b, m);
    batch_arg_i64(b, m->priority);
    batch_arg_u64(b, m->max_retries);
    batch_arg_u64(b, m->result_ttl_s);
    batch_arg_u64(b, m->delay_ms);
    batch_arg_i64(b, m->eta_ms);
    batch_arg_i64(b, m->expires_ms);
    batch_arg_str(b, m->unique_key);
}

static batch *enqueue_batch_new(cel_client *c) {
    batch *b = batch_new(c->srv, c, SCRIPT_ENQUEUE);
    if (!b) return NULL;
    batch_arg_u64(b, (uint64_t)c->srv->cfg->result_ttl_s);
    batch_arg_count(b);
    return b;
}

static void send_or_fail(batch *b, cel_redis_cb cb) {
    cel_error err;
    if (batch_send(b, cb, &err) == CEL_OK) return;
    cb(NULL, &err, b);
}

/* Sends an enqueue call; when a worker waits on the first task's queue, the same call leases
 * ready tasks to it (one Redis round trip less before the task starts). */
static void enqueue_send(batch *b) {
    const char *argv[4];
    if (b->nentries) {
        size_t qlen, len;
        const char *qn = batch_arg_get(b, ENQUEUE_HEAD + 1, &qlen);
        uint32_t same = 0;
        for (size_t i = 0; i < b->nentries; i++) {
            const char *q = batch_arg_get(b, ENQUEUE_HEAD + ENQUEUE_FIELDS * i + 1, &len);
            same += len == qlen && memcmp(q, qn, len) == 0;
        }
        b->lease = dispatch_reserve(b->srv, qn, qlen, same, argv);
    }
    for (int i = 0; b->lease && i < 4; i++) batch_arg(b, argv[i], strlen(argv[i]));
    send_or_fail(b, enqueue_done);
}

static void op_enqueue(cel_client *c, const cel_msg *m) {
    if (!open_enqueue) open_enqueue = enqueue_batch_new(c);
    if (!open_enqueue) return conn_send_error(c, m->seq, CEL_E_INTERNAL, "out of memory");
    enqueue_args(open_enqueue, m);
    if (open_enqueue->nentries >= (size_t)c->srv->cfg->dispatch_batch) ops_flush(c);
}

static void op_enqueue_bulk(cel_client *c, const cel_msg *m) {
    ops_flush(c);
    batch *b = enqueue_batch_new(c);
    if (!b) return conn_send_error(c, m->seq, CEL_E_INTERNAL, "out of memory");
    b->bulk = true, b->bulk_seq = m->seq;
    for (uint32_t i = 0; i < m->tasks.n; i++) {
        cel_msg entry;
        cel_error err;
        if (cel_msg_bulk_entry(m, i, &entry, &err) != CEL_OK) {
            batch_free(b);
            return conn_send_error(c, m->seq, err.code, err.msg);
        }
        enqueue_args(b, &entry);
    }
    enqueue_send(b);
}

/* ---- worker outcomes --------------------------------------------------------------------- */

static void settle_send(batch *b);

static void settle_done(const redisReply *rep, const cel_error *err, void *arg) {
    batch *b = arg;
    cel_client *c = b->client;
    cel_server *s = b->srv;
    if (c && --c->settle_inflight == 0 && c->settle_open) {
        batch *next = c->settle_open;
        c->settle_open = NULL;
        settle_send(next);
    }
    bool ok = rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == b->nentries;
    const batch_entry *e = (const batch_entry *)b->entries.data;
    for (size_t i = 0; i < b->nentries; i++) {
        const char *st = ok ? rep->element[i]->str : NULL;
        bool reply = c && client_alive(c) && e[i].op != CEL_OP_NONE;
        if (!st) {
            if (reply)
                conn_send_error(c, e[i].seq, err ? err->code : CEL_E_INTERNAL,
                                err ? err->msg : "bad settle reply");
            continue;
        }
        cel_err code = cel_err_from_name(st, strlen(st));
        if (code != CEL_E__COUNT) {
            if (reply)
                conn_send_error(c, e[i].seq, code,
                                code == CEL_E_LEASE_EXPIRED
                                    ? "stale token: the task was redelivered, cancelled or finished"
                                    : "no such task");
            continue;
        }
        if (e[i].op == CEL_OP_ACK) s->counters.acked++;
        if (e[i].op == CEL_OP_FAIL) s->counters.failed++;
        if (e[i].op == CEL_OP_NONE) s->counters.requeued++;
        if (reply) reply_ok(c, e[i].seq, (cel_str){0}, st, -1);
        size_t qlen;
        const char *qn = batch_arg_get(b, SETTLE_HEAD + SETTLE_FIELDS * i + 1, &qlen);
        if (e[i].op != CEL_OP_TOUCH)
            text_monitor_event(s, st, qn, qlen, batch_entry_id(b, &e[i]), e[i].id_len,
                               e[i].op == CEL_OP_NONE ? "worker gone" : NULL);
        if (state_is_terminal(st, strlen(st)))
            waiters_notify(s, batch_entry_id(b, &e[i]), e[i].id_len);
        if (!strcmp(st, "queued")) dispatch_mark_ready(s, qn, qlen);
        if (!strcmp(st, "retrying")) reaper_kick(s);
    }
    batch_free(b);
}

static void settle_send(batch *b) {
    if (b->client) b->client->settle_inflight++;
    send_or_fail(b, settle_done);
}

static batch *settle_batch_new(cel_server *s, cel_client *c) {
    batch *b = batch_new(s, c, SCRIPT_SETTLE);
    if (!b) return NULL;
    batch_arg_u64(b, (uint64_t)s->cfg->retry_base_ms);
    batch_arg_u64(b, (uint64_t)s->cfg->retry_cap_ms);
    batch_arg_u64(b, (uint64_t)s->cfg->poison_limit);
    batch_arg_u64(b, (uint64_t)s->cfg->dead_max);
    batch_arg_count(b);
    return b;
}

/* Appends one outcome (SETTLE_FIELDS arguments, see scripts/settle.lua). */
static void settle_args(batch *b, uint64_t seq, cel_op op, const char *opname, cel_str queue,
                        cel_str id, uint64_t token) {
    batch_entry *e = batch_add_entry(b, seq, op);
    batch_arg(b, opname, strlen(opname));
    batch_arg_str(b, queue);
    if (e) e->id_off = (uint32_t)b->arena.len, e->id_len = id.len;
    batch_arg_str(b, id);
    batch_arg_u64(b, token);
}

static cel_str lease_queue(cel_client *c, cel_str id) {
    for (size_t i = 0; i < c->nleases; i++)
        if (strlen(c->leases[i].id) == id.len && !memcmp(c->leases[i].id, id.ptr, id.len))
            return cel_str_c(c->leases[i].queue->name);
    return (cel_str){"", 0};
}

static void op_settle(cel_client *c, const cel_msg *m) {
    if (!c->settle_open) c->settle_open = settle_batch_new(c->srv, c);
    if (!c->settle_open) return conn_send_error(c, m->seq, CEL_E_INTERNAL, "out of memory");
    batch *b = c->settle_open;
    static const char *const names[] = {
        [CEL_OP_ACK] = "ack", [CEL_OP_FAIL] = "fail", [CEL_OP_TOUCH] = "touch"};
    /* The queue is known from the lease; after a reconnect the script finds it by id. */
    settle_args(b, m->seq, m->op, names[m->op], lease_queue(c, m->id), m->id, m->token);
    if (m->op == CEL_OP_ACK) {
        if (m->result.obj) {
            batch_arg_object(b, m->result.obj);
        } else {
            batch_arg(b, "", 0);
        }
        batch_arg(b, "0", 1), batch_arg(b, "", 0), batch_arg(b, "0", 1);
    } else if (m->op == CEL_OP_FAIL) {
        batch_arg_str(b, m->error);
        batch_arg(b, !cel_msg_has(m, CEL_F_RETRY) || m->retry ? "1" : "0", 1);
        batch_arg_str(b, cel_msg_has(m, CEL_F_REASON) ? m->reason : cel_str_c("error"));
        char jitter[16];
        snprintf(jitter, sizeof jitter, "%.4f", (double)random() / RAND_MAX);
        batch_arg(b, jitter, strlen(jitter));
    } else {
        batch_arg_u64(b, cel_msg_has(m, CEL_F_LEASE_MS) ? m->lease_ms
                                                        : (uint64_t)c->srv->cfg->lease_ms);
        batch_arg(b, "0", 1), batch_arg(b, "", 0), batch_arg(b, "0", 1);
    }
    /* The worker is done with an acked or failed task: its credit is free again now. */
    if (m->op != CEL_OP_TOUCH && dispatch_lease_done(c, m->id.ptr, m->id.len))
        dispatch_kick_client(c);
    if (b->nentries >= 512) ops_flush(c);
}

void ops_requeue_leases(cel_server *s, const cel_lease *leases, size_t n) {
    if (n == 0) return;
    batch *b = settle_batch_new(s, NULL);
    if (!b) return;
    for (size_t i = 0; i < n; i++) {
        settle_args(b, 0, CEL_OP_NONE, "requeue", cel_str_c(leases[i].queue->name),
                    cel_str_c(leases[i].id), leases[i].token);
        batch_arg(b, "", 0), batch_arg(b, "0", 1), batch_arg(b, "", 0), batch_arg(b, "0", 1);
    }
    /* If Redis is down now, the lease reaper requeues these once their leases expire. */
    send_or_fail(b, settle_done);
}

static void flush(cel_client *c, bool wait_for_settle) {
    batch *e = open_enqueue, *st = c->settle_open;
    open_enqueue = NULL;
    if (e) enqueue_send(e);
    if (!st || (wait_for_settle && c->settle_inflight > 0)) return;
    c->settle_open = NULL;
    settle_send(st);
}

void ops_flush(cel_client *c) {
    flush(c, false);
}

void ops_flush_read(cel_client *c) {
    flush(c, true);
}

/* ---- session, consume, queries ----------------------------------------------------------- */

static void op_hello(cel_client *c, const cel_msg *m) {
    if (c->state != CS_HELLO)
        return conn_send_error(c, m->seq, CEL_E_STATE, "hello was already done");
    if (m->version != CEL_PROTO_VERSION) {
        conn_send_error(c, m->seq, CEL_E_PROTOCOL, "unsupported protocol version");
        return conn_close_after_write(c);
    }
    if (!cel_str_eq(m->role, "producer") && !cel_str_eq(m->role, "worker") &&
        !cel_str_eq(m->role, "admin")) {
        conn_send_error(c, m->seq, CEL_E_BAD_FIELD, "role must be producer, worker or admin");
        return conn_close_after_write(c);
    }
    snprintf(c->name, sizeof c->name, "%.*s", (int)m->client.len,
             m->client.ptr ? m->client.ptr : "");
    c->state = CS_BINARY;
    conn_session_started(c);
    cel_msg r;
    memset(&r, 0, sizeof r);
    r.op = CEL_OP_WELCOME, r.seq = m->seq;
    r.server = cel_str_c(c->srv->cfg->server_name);
    r.version = CEL_PROTO_VERSION;
    r.max_frame = c->srv->cfg->max_frame;
    r.present = 1u << CEL_F_SEQ | 1u << CEL_F_SERVER | 1u << CEL_F_VERSION | 1u << CEL_F_MAX_FRAME;
    conn_send(c, &r);
}

static void op_consume(cel_client *c, const cel_msg *m) {
    /* Outcomes sent before this consume reach Redis before the leases its credits bring: a
     * worker that frees a slot and then asks for work sees its outcome settled first. */
    ops_flush(c);
    dispatch_set_consumer(c, m);
    reply_ok(c, m->seq, (cel_str){0}, NULL, -1);
    dispatch_kick_client(c);
}

/* A query that needs one script call and a reply built from it. */
typedef struct query {
    cel_client *c;
    uint64_t seq;
    char id[CEL_ID_MAX + 1];
    size_t idlen;
} query;

static query *query_new(cel_client *c, const cel_msg *m) {
    query *q = calloc(1, sizeof *q);
    if (!q) return NULL;
    q->c = c, q->seq = m->seq;
    client_ref(c);
    if (cel_msg_has(m, CEL_F_ID)) {
        memcpy(q->id, m->id.ptr, m->id.len);
        q->idlen = m->id.len;
    }
    return q;
}

static bool query_end(query *q) {
    bool alive = client_unref(q->c);
    free(q);
    return alive;
}

static bool query_failed(query *q, const redisReply *rep, const cel_error *err) {
    if (rep && rep->type != REDIS_REPLY_ERROR) return false;
    if (client_alive(q->c))
        conn_send_error(q->c, q->seq, err ? err->code : CEL_E_INTERNAL, err ? err->msg : rep->str);
    query_end(q);
    return true;
}

static void run_query(cel_client *c, const cel_msg *m, int script, cel_redis_cb cb) {
    ops_flush(c);
    query *q = query_new(c, m);
    if (!q) return conn_send_error(c, m->seq, CEL_E_INTERNAL, "out of memory");
    const char *argv[] = {c->srv->cfg->prefix, q->id};
    size_t lens[] = {strlen(c->srv->cfg->prefix), q->idlen};
    cel_error err;
    if (cel_redis_script(c->srv->redis, c->srv->script[script], q->idlen ? 2 : 1, argv, lens, cb, q,
                         &err) != CEL_OK)
        cb(NULL, &err, q);
}

static void status_done(const redisReply *rep, const cel_error *err, void *arg) {
    query *q = arg;
    if (query_failed(q, rep, err)) return;
    if (client_alive(q->c)) status_reply(q->c, q->seq, q->id, q->idlen, rep);
    query_end(q);
}

static void cancel_done(const redisReply *rep, const cel_error *err, void *arg) {
    query *q = arg;
    if (query_failed(q, rep, err)) return;
    cel_server *s = q->c->srv;
    const char *st = rep->element[0]->str;
    if (!strcmp(st, "NOT_FOUND")) {
        if (client_alive(q->c)) conn_send_error(q->c, q->seq, CEL_E_NOT_FOUND, "no such task");
    } else if (!strcmp(st, "ENDED")) {
        char why[64];
        snprintf(why, sizeof why, "the task has already ended (%s)",
                 rep->elements >= 3 && rep->element[2]->str ? rep->element[2]->str : "?");
        if (client_alive(q->c)) conn_send_error(q->c, q->seq, CEL_E_STATE, why);
    } else {
        if (rep->elements >= 4 && rep->element[3]->str)
            dispatch_abort(s, rep->element[3]->str, q->id,
                           strtoull(rep->element[2]->str, NULL, 10));
        if (client_alive(q->c))
            reply_ok(q->c, q->seq, (cel_str){q->id, (uint32_t)q->idlen}, st, -1);
        const char *qn = rep->element[1]->str;
        text_monitor_event(s, "cancelled", qn, strlen(qn), q->id, q->idlen, NULL);
        waiters_notify(s, q->id, q->idlen);
    }
    query_end(q);
}

static void pack_kv_u64(msgpack_packer *pk, const char *k, unsigned long long v) {
    msgpack_pack_str_with_body(pk, k, strlen(k));
    msgpack_pack_uint64(pk, v);
}

static void pack_kv_double(msgpack_packer *pk, const char *k, double v) {
    msgpack_pack_str_with_body(pk, k, strlen(k));
    msgpack_pack_double(pk, v);
}

/* Resident memory of this process, for the operator's STATS. */
static long rss_kb(void) {
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f && fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    if (f) fclose(f);
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static void stats_pack(cel_server *s, msgpack_packer *pk, const redisReply *rep) {
    cel_redis_stats rs;
    cel_redis_get_stats(s->redis, &rs);
    msgpack_pack_map(pk, 19);
    pack_kv_u64(pk, "rss_kb", (unsigned long long)rss_kb());
    pack_kv_double(pk, "enqueued_per_s", s->rates.enqueued);
    pack_kv_double(pk, "dispatched_per_s", s->rates.dispatched);
    pack_kv_double(pk, "acked_per_s", s->rates.acked);
    pack_kv_double(pk, "failed_per_s", s->rates.failed);
    pack_kv_u64(pk, "uptime_ms", (unsigned long long)(cel_now_ms() - s->started_ms));
    pack_kv_u64(pk, "connections", (unsigned long long)s->nclients);
    pack_kv_u64(pk, "connections_total", s->counters.connections_total);
    pack_kv_u64(pk, "enqueued", s->counters.enqueued);
    pack_kv_u64(pk, "dispatched", s->counters.dispatched);
    pack_kv_u64(pk, "acked", s->counters.acked);
    pack_kv_u64(pk, "failed", s->counters.failed);
    pack_kv_u64(pk, "requeued", s->counters.requeued);
    pack_kv_u64(pk, "protocol_errors", s->counters.protocol_errors);
    pack_kv_u64(pk, "waits", (unsigned long long)waiters_pending(s));
    pack_kv_u64(pk, "redis_inflight", cel_redis_inflight(s->redis));
    pack_kv_u64(pk, "redis_latency_us", (unsigned long long)rs.last_latency_us);
    pack_kv_u64(pk, "redis_timeouts", rs.timeouts);
    msgpack_pack_str_with_body(pk, "queues", 6);
    size_t nq = rep->elements / 6;
    msgpack_pack_map(pk, nq);
    static const char *const cols[] = {"ready", "active", "delayed", "dead", "paused"};
    for (size_t i = 0; i < nq; i++) {
        const redisReply *qn = rep->element[6 * i];
        msgpack_pack_str_with_body(pk, qn->str, qn->len);
        msgpack_pack_map(pk, 5);
        for (int k = 0; k < 5; k++)
            pack_kv_u64(pk, cols[k], (unsigned long long)rep->element[6 * i + 1 + k]->integer);
    }
}

static void stats_done(const redisReply *rep, const cel_error *err, void *arg) {
    query *q = arg;
    if (query_failed(q, rep, err)) return;
    if (client_alive(q->c)) {
        cel_buf body;
        cel_buf_init(&body);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &body, cel_buf_msgpack_write);
        stats_pack(q->c->srv, &pk, rep);
        cel_msg r;
        memset(&r, 0, sizeof r);
        r.op = CEL_OP_STATS_INFO, r.seq = q->seq;
        r.stats.bytes = body.data, r.stats.len = (uint32_t)body.len;
        cel_msg_set(&r, CEL_F_SEQ), cel_msg_set(&r, CEL_F_STATS);
        conn_send(q->c, &r);
        cel_buf_free(&body);
    }
    query_end(q);
}

static void admin_done(const redisReply *rep, const cel_error *err, void *arg) {
    query *q = arg;
    if (query_failed(q, rep, err)) return;
    cel_client *c = q->c;
    cel_msg r;
    memset(&r, 0, sizeof r);
    r.op = CEL_OP_OK, r.seq = q->seq;
    cel_msg_set(&r, CEL_F_SEQ);
    cel_str *ids = NULL;
    if (rep->type == REDIS_REPLY_INTEGER) {
        r.count = (uint64_t)rep->integer, cel_msg_set(&r, CEL_F_COUNT);
    } else if (rep->type == REDIS_REPLY_ARRAY) {
        /* peek replies lead with the next cursor; dead_list replies are ids only. */
        size_t skip = rep->elements && rep->element[0]->type == REDIS_REPLY_INTEGER;
        if (skip) r.cursor = (uint64_t)rep->element[0]->integer, cel_msg_set(&r, CEL_F_CURSOR);
        ids = calloc(rep->elements + 1, sizeof *ids);
        for (size_t i = skip; ids && i < rep->elements; i++)
            ids[i - skip] = (cel_str){rep->element[i]->str, (uint32_t)rep->element[i]->len};
        r.ids.strs = ids, r.ids.n = (uint32_t)(rep->elements - skip);
        r.count = r.ids.n, cel_msg_set(&r, CEL_F_COUNT);
        if (r.ids.n) cel_msg_set(&r, CEL_F_IDS);
    }
    if (client_alive(c)) conn_send(c, &r);
    /* A resumed queue or requeued dead tasks may have work for idle workers. */
    if (q->idlen) dispatch_mark_ready(c->srv, q->id, q->idlen);
    free(ids);
    query_end(q);
}

/* peek: the Redis set behind a state, and the page to read. */
static bool peek_args(const cel_msg *m, char *set, size_t cap, char *cursor, char *count) {
    static const char *const sets[][2] = {{"queued", "ready"},
                                          {"scheduled", "delayed"},
                                          {"retrying", "delayed"},
                                          {"active", "leased"},
                                          {"dead", "dead"}};
    for (size_t i = 0; i < sizeof sets / sizeof *sets; i++)
        if (cel_str_eq(m->state, sets[i][0])) snprintf(set, cap, "%s", sets[i][1]);
    snprintf(cursor, 24, "%llu", (unsigned long long)m->cursor);
    snprintf(count, 24, "%llu",
             (unsigned long long)(m->count && m->count <= 1000 ? m->count : 100));
    return set[0] != 0;
}

static void op_admin(cel_client *c, const cel_msg *m) {
    ops_flush(c);
    query *q = query_new(c, m);
    if (!q) return conn_send_error(c, m->seq, CEL_E_INTERNAL, "out of memory");
    bool wakes = m->op == CEL_OP_RESUME || m->op == CEL_OP_DEAD_REQUEUE;
    q->idlen = wakes ? m->queue.len : 0; /* the queue to wake when done */
    memcpy(q->id, m->queue.ptr, m->queue.len);
    char arg[CEL_ID_MAX + 24] = "";
    if (m->op == CEL_OP_DEAD_LIST)
        snprintf(arg, sizeof arg, "%llu",
                 (unsigned long long)(cel_msg_has(m, CEL_F_COUNT) && m->count <= 10000 ? m->count
                                                                                       : 100));
    if (m->op == CEL_OP_DEAD_REQUEUE && cel_msg_has(m, CEL_F_ID))
        snprintf(arg, sizeof arg, "%.*s", (int)m->id.len, m->id.ptr);
    char cursor[24] = "0", count[24] = "100";
    if (m->op == CEL_OP_PEEK && !peek_args(m, arg, sizeof arg, cursor, count)) {
        query_end(q);
        return conn_send_error(c, m->seq, CEL_E_BAD_FIELD,
                               "state must be queued, scheduled, retrying, active or dead");
    }
    const char *argv[] = {c->srv->cfg->prefix, cel_op_name(m->op), q->id, arg, cursor, count};
    size_t lens[] = {strlen(argv[0]), strlen(argv[1]), m->queue.len,
                     strlen(arg),     strlen(cursor),  strlen(count)};
    cel_error err;
    if (cel_redis_script(c->srv->redis, c->srv->script[SCRIPT_ADMIN], 6, argv, lens, admin_done, q,
                         &err) != CEL_OK)
        admin_done(NULL, &err, q);
}

void ops_handle(cel_client *c, const cel_msg *m) {
    switch (m->op) {
    case CEL_OP_HELLO:
        return op_hello(c, m);
    case CEL_OP_ENQUEUE:
        return op_enqueue(c, m);
    case CEL_OP_ENQUEUE_BULK:
        return op_enqueue_bulk(c, m);
    case CEL_OP_CONSUME:
        return op_consume(c, m);
    case CEL_OP_ACK:
    case CEL_OP_FAIL:
    case CEL_OP_TOUCH:
        return op_settle(c, m);
    case CEL_OP_STATUS:
        return run_query(c, m, SCRIPT_STATUS, status_done);
    case CEL_OP_WAIT:
        ops_flush(c);
        return waiters_add(c->srv, c, m->seq, m->id.ptr, m->id.len, m->timeout_ms);
    case CEL_OP_CANCEL:
        return run_query(c, m, SCRIPT_CANCEL, cancel_done);
    case CEL_OP_STATS:
        return run_query(c, m, SCRIPT_STATS, stats_done);
    case CEL_OP_PAUSE:
    case CEL_OP_RESUME:
    case CEL_OP_DEAD_LIST:
    case CEL_OP_DEAD_REQUEUE:
    case CEL_OP_DEAD_PURGE:
    case CEL_OP_PURGE:
    case CEL_OP_PEEK:
        return op_admin(c, m);
    case CEL_OP_PING:
        return reply_ok(c, m->seq, (cel_str){0}, NULL, -1);
    default:
        return conn_send_error(c, m->seq, CEL_E_UNKNOWN_OP, "not a request a client may send");
    }
}
