/* Dispatch: which worker gets which task. A worker's credits bound the tasks it holds; each
 * queue hands its ready tasks round-robin to the workers that consume it and have credit left,
 * one lease script call per batch, one call in flight per queue. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"

cel_queue *queue_find(cel_server *s, const char *name, size_t len) {
    if (!s->qbuckets) return NULL;
    cel_queue *q = s->qindex[cel_hash(name, len) & (s->qbuckets - 1)];
    while (q && (q->len != len || memcmp(q->name, name, len) != 0)) q = q->hnext;
    return q;
}

/* Doubles the index once it averages two queues a bucket (starting at 16); false only
 * without memory, when there is no index yet. */
static bool index_grow(cel_server *s) {
    if (s->qbuckets && s->nqueues < 2 * s->qbuckets) return true;
    size_t n = s->qbuckets ? 2 * s->qbuckets : 16;
    cel_queue **b = calloc(n, sizeof *b);
    if (!b) return s->qbuckets > 0;
    for (cel_queue *q = s->queues; q; q = q->next) {
        cel_queue **slot = &b[cel_hash(q->name, q->len) & (n - 1)];
        q->hnext = *slot, *slot = q;
    }
    free(s->qindex);
    s->qindex = b, s->qbuckets = n;
    return true;
}

cel_queue *queue_get(cel_server *s, const char *name, size_t len) {
    cel_queue *q = queue_find(s, name, len);
    if (q || len > CEL_NAME_MAX || !index_grow(s)) return q;
    if (!(q = calloc(1, sizeof *q))) return NULL;
    memcpy(q->name, name, len);
    q->len = len;
    q->maybe_ready = true;
    q->next = s->queues;
    s->queues = q;
    cel_queue **slot = &s->qindex[cel_hash(name, len) & (s->qbuckets - 1)];
    q->hnext = *slot, *slot = q;
    s->nqueues++;
    return q;
}

static void queue_remove_worker(cel_queue *q, cel_client *c) {
    for (size_t i = 0; i < q->nworkers; i++) {
        if (q->workers[i] != c) continue;
        memmove(&q->workers[i], &q->workers[i + 1], (q->nworkers - i - 1) * sizeof *q->workers);
        q->nworkers--;
        return;
    }
}

static bool queue_add_worker(cel_queue *q, cel_client *c) {
    if (q->nworkers == q->cap_workers) {
        size_t cap = q->cap_workers ? q->cap_workers * 2 : 4;
        cel_client **w = realloc(q->workers, cap * sizeof *w);
        if (!w) return false;
        q->workers = w, q->cap_workers = cap;
    }
    q->workers[q->nworkers++] = c;
    return true;
}

static void detach_queues(cel_client *c) {
    for (size_t i = 0; i < c->nqueues; i++) queue_remove_worker(c->queues[i], c);
    free(c->queues);
    c->queues = NULL;
    c->nqueues = 0;
}

void dispatch_set_consumer(cel_client *c, const cel_msg *m) {
    detach_queues(c);
    c->worker = true;
    c->credits = (uint32_t)m->credits;
    c->queues = calloc(m->queues.n, sizeof *c->queues);
    if (!c->queues) return;
    for (uint32_t i = 0; i < m->queues.n; i++) {
        cel_str name = cel_list_str(&m->queues, i);
        cel_queue *q = queue_get(c->srv, name.ptr, name.len);
        if (q && queue_add_worker(q, c)) c->queues[c->nqueues++] = q;
    }
}

static uint32_t free_credits(const cel_client *c) {
    uint64_t used = (uint64_t)c->nleases + c->reserved;
    return c->credits > used ? c->credits - (uint32_t)used : 0;
}

static bool lease_add(cel_client *c, cel_queue *q, const char *id, size_t len, uint64_t token) {
    if (c->nleases == c->cap_leases) {
        size_t cap = c->cap_leases ? c->cap_leases * 2 : 8;
        cel_lease *l = realloc(c->leases, cap * sizeof *l);
        if (!l) return false;
        c->leases = l, c->cap_leases = cap;
    }
    cel_lease *l = &c->leases[c->nleases++];
    l->queue = q, l->token = token;
    memcpy(l->id, id, len);
    l->id[len] = 0;
    return true;
}

bool dispatch_lease_done(cel_client *c, const char *id, size_t len) {
    for (size_t i = 0; i < c->nleases; i++) {
        if (strncmp(c->leases[i].id, id, len) != 0 || c->leases[i].id[len] != 0) continue;
        c->leases[i] = c->leases[--c->nleases];
        return true;
    }
    return false;
}

struct lease_call {
    cel_queue *q;
    cel_client *c;
    uint32_t asked;
    bool holds_slot;                   /* a dispatch call: the queue's one dispatch in flight */
    char n[16], lease[24], worker[64]; /* the script's arguments */
};

/* The body of a leased task: the reply's string, or, for a task of the enqueue call that leased
 * it, the body argument the broker sent (the reply gives its index in the call: echoing it back
 * cost Redis and the broker a copy of every body, which for large args is most of the call).
 * {NULL, 0} when an index does not name a task of from. */
static cel_str leased_body(const redisReply *f, const batch *from) {
    if (f->type == REDIS_REPLY_STRING) return (cel_str){f->str, (uint32_t)f->len};
    if (!from || f->integer < 0 || (unsigned long long)f->integer >= from->nentries)
        return (cel_str){NULL, 0};
    size_t len;
    const char *p =
        batch_arg_get(from, ENQUEUE_HEAD + ENQUEUE_FIELDS * (size_t)f->integer + 2, &len);
    return (cel_str){p, (uint32_t)len};
}

/* A leased task as the script returns it: id, body, attempt, token, lease_ms. */
static void push_task(cel_client *c, const redisReply *const *f, cel_str raw) {
    cel_msg t;
    task_body body;
    memset(&t, 0, sizeof t);
    t.op = CEL_OP_TASK;
    t.id = (cel_str){f[0]->str, (uint32_t)f[0]->len};
    t.queue = cel_str_c(c->leases[c->nleases - 1].queue->name);
    if (task_body_unpack(raw.ptr, raw.len, &body)) {
        t.task = body.name;
        t.args.bytes = body.args, t.args.len = body.args_len;
        t.soft_ms = body.soft_ms, t.hard_ms = body.hard_ms;
    } else {
        /* Only a record written by something else looks like this; the worker fails it as an
         * unknown task instead of the lease going round for ever. */
        log_error("task %.*s: its stored body is unreadable", (int)t.id.len, t.id.ptr);
        t.task = cel_str_c("celeriac.unreadable-task-record");
        t.args.bytes = (const uint8_t *)"\x90", t.args.len = 1;
    }
    t.attempt = (uint64_t)f[2]->integer;
    t.token = (uint64_t)f[3]->integer;
    t.lease_ms = (uint64_t)f[4]->integer;
    t.present = 1u << CEL_F_ID | 1u << CEL_F_QUEUE | 1u << CEL_F_TASK | 1u << CEL_F_ARGS |
                1u << CEL_F_ATTEMPT | 1u << CEL_F_TOKEN | 1u << CEL_F_LEASE_MS;
    if (t.soft_ms) cel_msg_set(&t, CEL_F_SOFT_MS);
    if (t.hard_ms) cel_msg_set(&t, CEL_F_HARD_MS);
    conn_send(c, &t);
}

/* Gives back what a lease call held: the queue's dispatch slot and the worker's reserved
 * credits (leased tasks count in its leases from here on). */
static void lease_unreserve(lease_call *lc) {
    if (lc->holds_slot) lc->q->dispatching = false;
    lc->c->reserved -= lc->asked;
}

/* Leased tasks reach the worker; if it went away meanwhile they go straight back. Returns true
 * when the queue may hold more ready tasks. */
static bool lease_finish(lease_call *lc, redisReply *const *elems, size_t n, bool ok,
                         const cel_error *err, const batch *from) {
    cel_queue *q = lc->q;
    cel_client *c = lc->c;
    cel_server *s = c->srv;
    lease_unreserve(lc);
    if (ok && !lease_reply_valid(elems, n)) {
        /* Not what the scripts send (a script from another version, a reply mangled on the
         * way): nothing is pushed, and the tasks come back when their leases run out. */
        log_error("dispatch from %s: unreadable lease reply from Redis (%zu tasks)", q->name, n);
        n = 0;
    }
    cel_lease orphans[64];
    size_t norphans = 0;
    for (size_t i = 0; i < n; i++) {
        const redisReply *const *f = (const redisReply *const *)&elems[LEASE_FIELDS * i];
        uint64_t token = (uint64_t)f[3]->integer;
        if (client_alive(c) && lease_add(c, q, f[0]->str, f[0]->len, token)) {
            push_task(c, f, leased_body(f[1], from));
            s->counters.dispatched++;
            if (text_monitoring(s)) {
                char detail[128];
                snprintf(detail, sizeof detail, "attempt=%lld worker=%s", f[2]->integer, c->addr);
                text_monitor_event(s, "started", q->name, strlen(q->name), f[0]->str, f[0]->len,
                                   detail);
            }
            continue;
        }
        cel_lease *o = &orphans[norphans++];
        o->queue = q, o->token = token;
        snprintf(o->id, sizeof o->id, "%.*s", (int)f[0]->len, f[0]->str);
        if (norphans == 64) ops_requeue_leases(s, orphans, norphans), norphans = 0;
    }
    ops_requeue_leases(s, orphans, norphans);
    if (!ok) {
        if (err) log_debug("dispatch from %s failed: %s", q->name, err->msg);
    } else if (n < lc->asked) {
        q->maybe_ready = false;
    }
    bool more = !ok || n >= lc->asked;
    /* Credits this call held and did not use are free again: the worker's other queues, passed
     * over while it was in flight, may take them now. Left to the poll, they waited behind
     * the same first queues every time (a worker on 256 queues got 12 of 256 tasks in 3 s). */
    if (ok && n < lc->asked && client_alive(c)) dispatch_kick_client(c);
    client_unref(c);
    free(lc);
    return more;
}

static void lease_done(const redisReply *rep, const cel_error *err, void *arg) {
    lease_call *lc = arg;
    cel_queue *q = lc->q;
    cel_server *s = lc->c->srv;
    bool ok = rep && rep->type == REDIS_REPLY_ARRAY;
    lease_finish(lc, ok ? rep->element : NULL, ok ? rep->elements / LEASE_FIELDS : 0, ok, err,
                 NULL);
    if (rep) dispatch_kick(s, q);
}

bool dispatch_leased(lease_call *lc, redisReply *const *elems, size_t n, bool ok,
                     const batch *from) {
    return lease_finish(lc, elems, n, ok, NULL, from);
}

static cel_client *next_worker(cel_queue *q) {
    for (size_t k = 0; k < q->nworkers; k++) {
        cel_client *c = q->workers[(q->rr + k) % q->nworkers];
        if (free_credits(c) > 0 && !c->closing) {
            q->rr = (q->rr + k + 1) % q->nworkers;
            return c;
        }
    }
    return NULL;
}

/* Picks the next worker of q with credit and reserves them; a dispatch call (slot) also holds
 * q's one dispatch slot. */
static lease_call *lease_reserve(cel_server *s, cel_queue *q, bool slot, uint32_t want) {
    if ((slot && q->dispatching) || s->stopping || !cel_redis_ready(s->redis)) return NULL;
    cel_client *c = next_worker(q);
    if (!c) return NULL;
    uint32_t n = free_credits(c);
    if (n > (uint32_t)s->cfg->dispatch_batch) n = (uint32_t)s->cfg->dispatch_batch;
    if (n > want) n = want;
    lease_call *lc = malloc(sizeof *lc);
    if (!lc) return NULL;
    lc->q = q, lc->c = c, lc->asked = n, lc->holds_slot = slot;
    c->reserved += n;
    client_ref(c);
    snprintf(lc->n, sizeof lc->n, "%u", n);
    snprintf(lc->lease, sizeof lc->lease, "%d", s->cfg->lease_ms);
    snprintf(lc->worker, sizeof lc->worker, "%s/%llu", s->broker_id, (unsigned long long)c->id);
    if (slot) q->dispatching = true;
    return lc;
}

lease_call *dispatch_reserve(cel_server *s, const char *queue, size_t len, uint32_t want,
                             const char *argv[4]) {
    cel_queue *q = queue_find(s, queue, len);
    lease_call *lc = q && q->nworkers ? lease_reserve(s, q, false, want) : NULL;
    if (lc) argv[0] = q->name, argv[1] = lc->n, argv[2] = lc->lease, argv[3] = lc->worker;
    return lc;
}

static void dispatch_one(cel_server *s, cel_queue *q) {
    if (!q->maybe_ready) return;
    lease_call *lc = lease_reserve(s, q, true, UINT32_MAX);
    if (!lc) return;
    const char *argv[] = {s->cfg->prefix, q->name, lc->n, lc->lease, lc->worker};
    cel_error err;
    if (cel_redis_script(s->redis, s->script[SCRIPT_DISPATCH], 5, argv, NULL, lease_done, lc,
                         &err) != CEL_OK) {
        lease_unreserve(lc);
        client_unref(lc->c);
        free(lc);
    }
}

void dispatch_kick(cel_server *s, cel_queue *q) {
    if (q) return dispatch_one(s, q);
    for (cel_queue *it = s->queues; it; it = it->next) dispatch_one(s, it);
}

/* Each kick starts one queue further on: with the credits going to the first queue that asks,
 * a busy first queue would otherwise take them all and drain before the next got any. */
void dispatch_kick_client(cel_client *c) {
    size_t n = c->nqueues, start = n ? c->next_queue++ % n : 0;
    for (size_t i = 0; i < n; i++) dispatch_one(c->srv, c->queues[(start + i) % n]);
}

void dispatch_mark_ready(cel_server *s, const char *name, size_t len) {
    cel_queue *q = queue_find(s, name, len);
    if (!q) return;
    q->maybe_ready = true;
    dispatch_one(s, q);
}

void dispatch_client_gone(cel_client *c) {
    detach_queues(c);
    /* Beanstalkd-style: a worker that vanished gives its tasks back at once. */
    ops_requeue_leases(c->srv, c->leases, c->nleases);
    c->nleases = 0;
}

void dispatch_abort(cel_server *s, const char *worker, const char *id, uint64_t token) {
    size_t blen = strlen(s->broker_id);
    if (strncmp(worker, s->broker_id, blen) != 0 || worker[blen] != '/') return;
    unsigned long long cid = strtoull(worker + blen + 1, NULL, 10);
    cel_client *c;
    TAILQ_FOREACH(c, &s->clients, link) {
        if (c->id != cid) continue;
        dispatch_lease_done(c, id, strlen(id));
        cel_msg a;
        memset(&a, 0, sizeof a);
        a.op = CEL_OP_ABORT, a.id = cel_str_c(id), a.token = token,
        a.reason = cel_str_c("cancelled");
        a.present = 1u << CEL_F_ID | 1u << CEL_F_TOKEN | 1u << CEL_F_REASON;
        conn_send(c, &a);
        dispatch_kick_client(c);
        return;
    }
}

/* Queues with idle workers are re-checked now and then: tasks may arrive through another
 * broker, or come due in Redis, without passing through this process. */
void dispatch_poll(cel_server *s) {
    for (cel_queue *q = s->queues; q; q = q->next) {
        if (q->nworkers == 0) continue;
        q->maybe_ready = true;
        dispatch_one(s, q);
    }
}
