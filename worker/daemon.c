/* The worker daemon: holds the broker connection (cel_conn), asks for tasks with credits
 * (concurrency + prefetch), hands them to the pool, keeps their leases alive with touch, and
 * reports each outcome until the broker has answered it — outcomes that could not be delivered
 * are kept and sent again after a reconnect, where the broker's fencing decides. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include "clock.h"
#include "daemon.h"

typedef struct held {
    char id[CEL_ID_MAX + 1];
    uint64_t token, lease_ms;
    long long last_touch_ms;
    bool running;
    bool lost;     /* the lease is gone: the outcome is not reported */
    cel_buf frame; /* the task, while it waits for a free slot */
} held;

typedef struct outcome {
    TAILQ_ENTRY(outcome) link;
    struct worker *w;
    cel_op op;
    char id[CEL_ID_MAX + 1];
    uint64_t token;
    cel_buf result;
    bool has_result, retry, inflight;
    char error[CEL_TEXT_MAX + 1];
    char reason[CEL_NAME_MAX + 1];
} outcome;

typedef struct worker {
    struct event_base *base;
    const cel_worker_config *cfg;
    cel_conn *conn;
    cel_pool *pool;
    held *held;
    size_t nheld, cap;
    TAILQ_HEAD(, outcome) outcomes;
    struct event *tick, *heartbeat, *sig_term, *sig_int, *sig_quit, *sig_hup;
    bool draining;
    long long drain_deadline_ms;
    msgpack_zone zone;
    unsigned long long done;
} worker;

static held *held_find(worker *w, const char *id, size_t len) {
    for (size_t i = 0; i < w->nheld; i++)
        if (strlen(w->held[i].id) == len && memcmp(w->held[i].id, id, len) == 0) return &w->held[i];
    return NULL;
}

static void held_remove(worker *w, held *h) {
    cel_buf_free(&h->frame);
    *h = w->held[--w->nheld];
}

/* ---- consume ---------------------------------------------------------------------------- */

static void consume_reply(cel_conn *c, const cel_msg *r, const cel_error *err, void *arg) {
    (void)c, (void)arg;
    if (!r || r->op == CEL_OP_ERROR) log_warn("consume refused: %s", err ? err->msg : "?");
}

static void send_consume(worker *w) {
    cel_msg m;
    memset(&m, 0, sizeof m);
    m.op = CEL_OP_CONSUME;
    m.queues.strs = w->cfg->queues, m.queues.n = (uint32_t)w->cfg->nqueues;
    m.credits = w->draining ? 0 : (uint64_t)(w->cfg->concurrency + w->cfg->prefetch);
    cel_msg_set(&m, CEL_F_QUEUES), cel_msg_set(&m, CEL_F_CREDITS);
    cel_error err;
    cel_conn_send(w->conn, &m, consume_reply, w, &err);
}

/* ---- outcomes --------------------------------------------------------------------------- */

static void outcome_send(outcome *o);

static void outcome_reply(cel_conn *c, const cel_msg *r, const cel_error *err, void *arg) {
    (void)c;
    outcome *o = arg;
    worker *w = o->w;
    o->inflight = false;
    if (!r && err && err->code == CEL_E_UNAVAILABLE) return; /* resent after reconnect */
    if (r && r->op == CEL_OP_ERROR)
        log_info("task %s: %s refused (%s): %s", o->id, cel_op_name(o->op), cel_err_name(err->code),
                 err->msg);
    TAILQ_REMOVE(&w->outcomes, o, link);
    cel_buf_free(&o->result);
    free(o);
}

static void outcome_send(outcome *o) {
    cel_msg m;
    memset(&m, 0, sizeof m);
    m.op = o->op;
    m.id = cel_str_c(o->id), m.token = o->token;
    cel_msg_set(&m, CEL_F_ID), cel_msg_set(&m, CEL_F_TOKEN);
    if (o->has_result) {
        m.result.bytes = o->result.data, m.result.len = (uint32_t)o->result.len;
        cel_msg_set(&m, CEL_F_RESULT);
    }
    if (o->op == CEL_OP_FAIL) {
        m.error = cel_str_c(o->error), m.retry = o->retry, m.reason = cel_str_c(o->reason);
        cel_msg_set(&m, CEL_F_ERROR), cel_msg_set(&m, CEL_F_RETRY), cel_msg_set(&m, CEL_F_REASON);
    }
    cel_error err;
    o->inflight = true;
    if (cel_conn_send(o->w->conn, &m, outcome_reply, o, &err) != CEL_OK) {
        log_error("task %s: cannot send %s: %s", o->id, cel_op_name(o->op), err.msg);
        o->inflight = false;
    }
}

static void start_waiting(worker *w);

static void on_outcome(const cel_msg *m, void *arg) {
    worker *w = arg;
    held *h = held_find(w, m->id.ptr, m->id.len);
    bool lost = h && h->lost;
    if (h) held_remove(w, h);
    if (lost) return start_waiting(w);
    outcome *o = calloc(1, sizeof *o);
    if (!o) return;
    o->w = w, o->op = m->op, o->token = m->token;
    snprintf(o->id, sizeof o->id, "%.*s", (int)m->id.len, m->id.ptr);
    cel_buf_init(&o->result);
    if (cel_msg_has(m, CEL_F_RESULT)) {
        msgpack_packer pk;
        msgpack_packer_init(&pk, &o->result, cel_buf_msgpack_write);
        if (m->result.obj)
            msgpack_pack_object(&pk, *m->result.obj);
        else
            cel_buf_append(&o->result, m->result.bytes, m->result.len);
        o->has_result = true;
    }
    snprintf(o->error, sizeof o->error, "%.*s", (int)m->error.len,
             m->error.ptr ? m->error.ptr : "");
    snprintf(o->reason, sizeof o->reason, "%.*s", (int)m->reason.len,
             m->reason.ptr ? m->reason.ptr : "error");
    o->retry = m->retry;
    TAILQ_INSERT_TAIL(&w->outcomes, o, link);
    w->done++;
    if (cel_conn_is_up(w->conn)) outcome_send(o);
    start_waiting(w);
}

/* ---- tasks ------------------------------------------------------------------------------ */

static void start_waiting(worker *w) {
    for (size_t i = 0; i < w->nheld && !w->draining && pool_idle(w->pool) > 0; i++) {
        held *h = &w->held[i];
        if (h->running || !h->frame.len) continue;
        cel_msg t;
        msgpack_zone_clear(&w->zone);
        if (cel_msg_decode(h->frame.data, h->frame.len, &w->zone, 0, &t, NULL) != CEL_OK) continue;
        uint64_t soft = t.soft_ms ? t.soft_ms : w->cfg->soft_limit_ms;
        uint64_t hard = t.hard_ms ? t.hard_ms : w->cfg->hard_limit_ms;
        if (pool_run(w->pool, &t, soft, hard)) {
            h->running = true;
            cel_buf_free(&h->frame);
        }
    }
}

static void on_task(worker *w, const cel_msg *t) {
    if (w->nheld == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 16;
        held *n = realloc(w->held, cap * sizeof *n);
        if (!n) return;
        w->held = n, w->cap = cap;
    }
    held *h = &w->held[w->nheld++];
    memset(h, 0, sizeof *h);
    snprintf(h->id, sizeof h->id, "%.*s", (int)t->id.len, t->id.ptr);
    h->token = t->token, h->lease_ms = t->lease_ms, h->last_touch_ms = cel_now_ms();
    cel_buf_init(&h->frame);
    cel_msg copy = *t;
    cel_msg_encode(&h->frame, &copy, UINT32_MAX, NULL);
    /* Keep only the body: start_waiting decodes it. */
    cel_buf_consume(&h->frame, CEL_FRAME_HEADER);
    start_waiting(w);
}

static void on_push(cel_conn *c, const cel_msg *m, void *arg) {
    (void)c;
    worker *w = arg;
    if (m->op == CEL_OP_TASK) return on_task(w, m);
    held *h = held_find(w, m->id.ptr, m->id.len);
    if (!h) return;
    log_info("task %s: cancelled by the broker", h->id);
    if (h->running)
        pool_abort(w->pool, m->id.ptr, m->id.len, w->cfg->abort_grace_ms);
    else
        held_remove(w, h);
}

/* ---- leases ----------------------------------------------------------------------------- */

typedef struct touch_call {
    worker *w;
    char id[CEL_ID_MAX + 1];
    uint64_t token;
} touch_call;

/* LEASE_EXPIRED: the task was redelivered elsewhere or cancelled. Stop working on it and
 * report nothing for it: its outcome now belongs to another delivery. */
static void touch_reply(cel_conn *c, const cel_msg *r, const cel_error *err, void *arg) {
    (void)c;
    touch_call *t = arg;
    worker *w = t->w;
    held *h = held_find(w, t->id, strlen(t->id));
    bool lost = r && r->op == CEL_OP_ERROR && err &&
                (err->code == CEL_E_LEASE_EXPIRED || err->code == CEL_E_NOT_FOUND);
    if (lost && h && h->token == t->token) {
        log_warn("task %s: lease lost (%s); abandoning it", t->id, cel_err_name(err->code));
        if (h->running) {
            h->lost = true;
            pool_abort(w->pool, t->id, strlen(t->id), w->cfg->abort_grace_ms);
        } else {
            held_remove(w, h);
        }
    }
    free(t);
}

static void touch_leases(worker *w) {
    long long now = cel_now_ms();
    for (size_t i = 0; i < w->nheld; i++) {
        held *h = &w->held[i];
        if (now - h->last_touch_ms < (long long)h->lease_ms / 3) continue;
        h->last_touch_ms = now;
        cel_msg m;
        memset(&m, 0, sizeof m);
        m.op = CEL_OP_TOUCH, m.id = cel_str_c(h->id), m.token = h->token;
        cel_msg_set(&m, CEL_F_ID), cel_msg_set(&m, CEL_F_TOKEN);
        touch_call *t = malloc(sizeof *t);
        if (!t) continue;
        t->w = w, t->token = h->token;
        snprintf(t->id, sizeof t->id, "%s", h->id);
        cel_error err;
        if (cel_conn_send(w->conn, &m, touch_reply, t, &err) != CEL_OK) free(t);
    }
}

static void on_tick(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    worker *w = arg;
    if (cel_conn_is_up(w->conn)) touch_leases(w);
    if (!w->draining) return;
    bool idle = pool_busy(w->pool) == 0 && TAILQ_EMPTY(&w->outcomes);
    if (idle || cel_now_ms() > w->drain_deadline_ms) {
        if (!idle)
            log_warn("drain timeout: %d tasks still running are left to the broker",
                     pool_busy(w->pool));
        event_base_loopexit(w->base, NULL);
    }
}

static void ping_reply(cel_conn *c, const cel_msg *r, const cel_error *err, void *arg) {
    (void)c, (void)r, (void)err, (void)arg;
}

static void on_heartbeat(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    worker *w = arg;
    if (!cel_conn_is_up(w->conn)) return;
    cel_msg m;
    memset(&m, 0, sizeof m);
    m.op = CEL_OP_PING;
    cel_error err;
    cel_conn_send(w->conn, &m, ping_reply, w, &err);
}

static void on_state(cel_conn *c, bool up, void *arg) {
    (void)c;
    worker *w = arg;
    if (!up) {
        /* The broker requeued what it leased us; tasks not started yet are no longer ours. */
        for (size_t i = 0; i < w->nheld;)
            if (!w->held[i].running)
                held_remove(w, &w->held[i]);
            else
                i++;
        log_warn("broker connection lost; reconnecting");
        return;
    }
    log_info("connected to broker");
    send_consume(w);
    outcome *o;
    TAILQ_FOREACH(o, &w->outcomes, link) if (!o->inflight) outcome_send(o);
}

static void on_signal(evutil_socket_t sig, short what, void *arg) {
    (void)what;
    worker *w = arg;
    if (sig == SIGHUP) return cel_log_reopen();
    if (sig == SIGQUIT) {
        log_info("SIGQUIT: stopping now");
        return (void)event_base_loopexit(w->base, NULL);
    }
    if (w->draining) return;
    log_info("draining: no new tasks, up to %d ms for %d running", w->cfg->drain_timeout_ms,
             pool_busy(w->pool));
    w->draining = true;
    w->drain_deadline_ms = cel_now_ms() + w->cfg->drain_timeout_ms;
    if (cel_conn_is_up(w->conn)) send_consume(w);
}

static struct event *every(worker *w, int ms, event_callback_fn fn) {
    struct event *ev = event_new(w->base, -1, EV_PERSIST, fn, w);
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    event_add(ev, &tv);
    return ev;
}

int worker_run(const cel_worker_config *cfg, const celeriac_registry *reg) {
    worker w;
    memset(&w, 0, sizeof w);
    w.cfg = cfg;
    TAILQ_INIT(&w.outcomes);
    msgpack_zone_init(&w.zone, 4096);
    signal(SIGPIPE, SIG_IGN);
    w.base = event_base_new();
    /* The pool forks before the broker connection exists, so children hold no broker socket. */
    w.pool = pool_new(w.base, cfg->pool, cfg->concurrency, reg, on_outcome, &w);
    if (!w.pool) return 1;
    cel_conn_opts o = {.brokers = (const char *const *)cfg->brokers,
                       .nbrokers = cfg->nbrokers,
                       .role = "worker",
                       .client_name = cfg->name,
                       .on_push = on_push,
                       .on_state = on_state,
                       .arg = &w};
    w.conn = cel_conn_new(w.base, &o);
    w.tick = every(&w, 100, on_tick);
    w.heartbeat = every(&w, cfg->heartbeat_ms, on_heartbeat);
    w.sig_term = evsignal_new(w.base, SIGTERM, on_signal, &w);
    w.sig_int = evsignal_new(w.base, SIGINT, on_signal, &w);
    w.sig_quit = evsignal_new(w.base, SIGQUIT, on_signal, &w);
    w.sig_hup = evsignal_new(w.base, SIGHUP, on_signal, &w);
    struct event *sigs[] = {w.sig_term, w.sig_int, w.sig_quit, w.sig_hup};
    for (int i = 0; i < 4; i++) event_add(sigs[i], NULL);
    log_info("worker %s: %s pool of %d, prefetch %d, %zu queues", cfg->name,
             cfg->pool == POOL_PREFORK ? "prefork" : "threads", cfg->concurrency, cfg->prefetch,
             cfg->nqueues);
    event_base_dispatch(w.base);
    log_info("stopped after %llu tasks", w.done);
    cel_conn_free(w.conn);
    pool_free(w.pool);
    while (!TAILQ_EMPTY(&w.outcomes)) {
        outcome *oc = TAILQ_FIRST(&w.outcomes);
        TAILQ_REMOVE(&w.outcomes, oc, link);
        cel_buf_free(&oc->result);
        free(oc);
    }
    while (w.nheld) held_remove(&w, &w.held[0]);
    free(w.held);
    struct event *evs[] = {w.tick, w.heartbeat, w.sig_term, w.sig_int, w.sig_quit, w.sig_hup};
    for (int i = 0; i < 6; i++) event_free(evs[i]);
    msgpack_zone_destroy(&w.zone);
    event_base_free(w.base);
    return 0;
}
