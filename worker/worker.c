/* The worker daemon's core: holds the broker connection (cel_conn), asks for tasks with credits
 * (concurrency + prefetch), hands them to the pool, keeps their leases alive with touch, and
 * reports each outcome until the broker has answered it: outcomes that could not be delivered
 * are kept and sent again after a reconnect, where the broker's fencing decides. Signals: drain
 * (SIGTERM/SIGINT), stop now (SIGQUIT or a second SIGTERM), reopen the log (SIGHUP). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <celeriac/conn.h>

#include "clock.h"
#include "worker.h"

/* The runner's error text (1 KiB) plus the pool's own wording around it. */
#define OUTCOME_ERROR_MAX 1100
/* Outcomes the broker could not store yet (UNAVAILABLE, BUSY: Redis down or too much in flight)
 * are sent again after this, doubling up to the maximum. */
#define RESEND_MIN_MS 200
#define RESEND_MAX_MS 5000

/* A task leased to this worker, from its push until its outcome is handed over. */
typedef struct held {
    char id[CEL_ID_MAX + 1];
    uint64_t token, lease_ms, hard_ms;
    long long next_touch_ms;
    unsigned epoch; /* the connection it was leased on (see worker.epoch) */
    bool running;
    bool lost;     /* the broker refused a touch: its lease is gone, its outcome will be refused */
    cel_buf frame; /* the task frame for the runner while it waits for a slot */
} held;

/* An outcome waiting for the broker's answer. */
typedef struct outcome {
    TAILQ_ENTRY(outcome) link;
    struct worker *w;
    cel_op op;
    char id[CEL_ID_MAX + 1];
    uint64_t token;
    cel_buf result;
    bool has_result, retry, inflight, lost;
    char error[OUTCOME_ERROR_MAX];
    char reason[32];
} outcome;

TAILQ_HEAD(outcome_list, outcome);

typedef struct worker {
    struct event_base *base;
    const cel_worker_config *cfg;
    cel_conn *conn;
    cel_pool *pool;
    /* In arrival order, so tasks start in the order the broker sent them (priority first).
     * Entries past nheld keep their frame buffers for the next tasks. */
    held *held;
    size_t nheld, cap;
    struct outcome_list outcomes, spare; /* spare: recycled, so no allocation per task */
    struct event *tick, *heartbeat, *drain_timer, *resend, *sigs[4];
    int resend_ms;        /* the next resend delay; 0: none pending */
    long long tick_at_ms; /* when tick fires; 0: not armed */
    unsigned epoch;       /* bumped on every (re)connect */
    size_t stale; /* running tasks leased on an earlier connection: they still use credits */
    bool draining, stopping;
    unsigned long long done;
    long long unreachable_logged_ms; /* when "broker not reachable" was last logged; 0: not yet */
} worker;

static void start_waiting(worker *w);
static void check_drained(worker *w);

static void arm_ms(struct event *ev, long long ms) {
    struct timeval tv = {ms > 0 ? ms / 1000 : 0, ms > 0 ? (ms % 1000) * 1000 : 0};
    evtimer_add(ev, &tv);
}

/* ---- held tasks ------------------------------------------------------------------------- */

static held *held_find(worker *w, cel_str id, uint64_t token) {
    for (size_t i = 0; i < w->nheld; i++) {
        held *h = &w->held[i];
        if (h->token == token && strncmp(h->id, id.ptr, id.len) == 0 && h->id[id.len] == 0)
            return h;
    }
    return NULL;
}

static void held_remove(worker *w, held *h) {
    size_t i = (size_t)(h - w->held);
    held gone = *h;
    memmove(&w->held[i], &w->held[i + 1], (w->nheld - i - 1) * sizeof *h);
    w->held[--w->nheld] = gone;
    cel_buf_reset(&w->held[w->nheld].frame);
}

static held *held_add(worker *w) {
    if (w->nheld == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 16;
        held *n = realloc(w->held, cap * sizeof *n);
        if (!n) return NULL;
        for (size_t i = w->cap; i < cap; i++) cel_buf_init(&n[i].frame);
        w->held = n, w->cap = cap;
    }
    held *h = &w->held[w->nheld++];
    cel_buf frame = h->frame;
    memset(h, 0, sizeof *h);
    h->frame = frame;
    return h;
}

/* ---- consume ---------------------------------------------------------------------------- */

/* Tasks still running from before a reconnect hold slots the new connection knows nothing of,
 * so they are taken off its credits until they finish. */
static uint64_t credits(const worker *w) {
    size_t all = (size_t)(w->cfg->concurrency + w->cfg->prefetch);
    return w->draining || w->stale >= all ? 0 : all - w->stale;
}

static void consume_reply(cel_conn *c, const cel_msg *r, const cel_error *err, void *arg) {
    (void)c, (void)arg;
    if (r && r->op != CEL_OP_ERROR) return;
    if (!r && err->code == CEL_E_UNAVAILABLE) return; /* sent again on reconnect */
    log_error("consume refused: %s: %s", cel_err_name(err->code), err->msg);
}

static void send_consume(worker *w) {
    if (!cel_conn_is_up(w->conn)) return; /* on_state sends it on the next connect */
    cel_msg m;
    memset(&m, 0, sizeof m);
    m.op = CEL_OP_CONSUME;
    m.queues.strs = w->cfg->queues, m.queues.n = (uint32_t)w->cfg->nqueues;
    m.credits = credits(w);
    cel_msg_set(&m, CEL_F_QUEUES), cel_msg_set(&m, CEL_F_CREDITS);
    cel_error err;
    if (cel_conn_send(w->conn, &m, consume_reply, w, &err) != CEL_OK)
        log_error("cannot send consume: %s", err.msg);
}

/* ---- outcomes --------------------------------------------------------------------------- */

static void outcome_recycle(worker *w, outcome *o) {
    TAILQ_REMOVE(&w->outcomes, o, link);
    cel_buf_reset(&o->result);
    TAILQ_INSERT_HEAD(&w->spare, o, link);
}

static void outcome_send(outcome *o);

static void resend_later(worker *w) {
    if (w->resend_ms) return; /* one timer for all of them */
    w->resend_ms = RESEND_MIN_MS;
    arm_ms(w->resend, w->resend_ms);
}

static void on_resend(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    worker *w = arg;
    outcome *o;
    bool waiting = false;
    TAILQ_FOREACH(o, &w->outcomes, link) {
        waiting = waiting || !o->inflight;
        outcome_send(o);
    }
    if (!waiting) return (void)(w->resend_ms = 0);
    w->resend_ms = w->resend_ms * 2 > RESEND_MAX_MS ? RESEND_MAX_MS : w->resend_ms * 2;
    arm_ms(w->resend, w->resend_ms);
}

static void outcome_reply(cel_conn *c, const cel_msg *r, const cel_error *err, void *arg) {
    (void)c;
    outcome *o = arg;
    worker *w = o->w;
    o->inflight = false;
    if (!r && err->code == CEL_E_UNAVAILABLE) return; /* kept: sent again after a reconnect */
    if (r && r->op == CEL_OP_ERROR && (err->code == CEL_E_UNAVAILABLE || err->code == CEL_E_BUSY)) {
        log_warn("task %s: %s not stored yet (%s: %s); will resend", o->id, cel_op_name(o->op),
                 cel_err_name(err->code), err->msg);
        return resend_later(w);
    }
    if (r && r->op == CEL_OP_ERROR) {
        if (o->lost)
            log_debug("task %s: %s after the lease was lost refused as expected (%s)", o->id,
                      cel_op_name(o->op), cel_err_name(err->code));
        else
            log_info("task %s: %s refused: %s: %s", o->id, cel_op_name(o->op),
                     cel_err_name(err->code), err->msg);
    } else if (!r) {
        log_error("task %s: %s failed: %s", o->id, cel_op_name(o->op), err->msg);
    }
    outcome_recycle(w, o);
    check_drained(w);
}

/* A result the broker cannot take (larger than its frame limit) fails the task instead. */
static void outcome_make_unsendable_fail(outcome *o, const cel_error *err) {
    log_warn("task %s: cannot send its %s (%s); reporting a failure instead", o->id,
             cel_op_name(o->op), err->msg);
    o->op = CEL_OP_FAIL, o->has_result = false, o->retry = false;
    snprintf(o->error, sizeof o->error, "result not deliverable: %s", err->msg);
    snprintf(o->reason, sizeof o->reason, "error");
}

static cel_err outcome_try_send(outcome *o, cel_error *err) {
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
    return cel_conn_send(o->w->conn, &m, outcome_reply, o, err);
}

static void outcome_send(outcome *o) {
    if (o->inflight || !cel_conn_is_up(o->w->conn)) return;
    cel_error err;
    o->inflight = true;
    if (outcome_try_send(o, &err) == CEL_OK) return;
    outcome_make_unsendable_fail(o, &err);
    if (outcome_try_send(o, &err) == CEL_OK) return;
    log_error("task %s: cannot send fail: %s; its lease will run out", o->id, err.msg);
    o->inflight = false;
    outcome_recycle(o->w, o);
}

static outcome *outcome_new(worker *w, cel_op op, cel_str id, uint64_t token) {
    outcome *o = TAILQ_FIRST(&w->spare);
    if (o) {
        TAILQ_REMOVE(&w->spare, o, link);
    } else {
        o = calloc(1, sizeof *o);
        if (!o) return NULL;
        cel_buf_init(&o->result);
    }
    o->w = w, o->op = op, o->token = token;
    o->has_result = o->retry = o->inflight = o->lost = false;
    o->error[0] = o->reason[0] = 0;
    snprintf(o->id, sizeof o->id, "%.*s", (int)id.len, id.ptr);
    TAILQ_INSERT_TAIL(&w->outcomes, o, link);
    return o;
}

static void outcome_copy_result(outcome *o, const cel_msg *m) {
    if (!cel_msg_has(m, CEL_F_RESULT)) return;
    msgpack_packer pk;
    msgpack_packer_init(&pk, &o->result, cel_buf_msgpack_write);
    if (m->result.obj)
        msgpack_pack_object(&pk, *m->result.obj);
    else
        cel_buf_append(&o->result, m->result.bytes, m->result.len);
    o->has_result = true;
}

/* A failure the daemon reports itself (retry false): the task never reached the pool. lost: the
 * broker is expected to refuse it. */
static void outcome_fail(worker *w, cel_str id, uint64_t token, const char *reason,
                         const char *error, bool lost) {
    outcome *o = outcome_new(w, CEL_OP_FAIL, id, token);
    if (!o) return;
    snprintf(o->error, sizeof o->error, "%s", error);
    snprintf(o->reason, sizeof o->reason, "%s", reason);
    o->lost = lost;
    outcome_send(o);
}

/* The pool's report for one task. */
static void on_outcome(const cel_msg *m, void *arg) {
    worker *w = arg;
    held *h = held_find(w, m->id, m->token);
    bool lost = h && h->lost, stale = h && h->epoch != w->epoch && w->stale > 0;
    if (h) held_remove(w, h);
    w->done++;
    outcome *o = outcome_new(w, m->op, m->id, m->token);
    if (o) {
        o->lost = lost;
        outcome_copy_result(o, m);
        snprintf(o->error, sizeof o->error, "%.*s", (int)m->error.len,
                 m->error.ptr ? m->error.ptr : "");
        snprintf(o->reason, sizeof o->reason, "%.*s", (int)m->reason.len,
                 m->reason.ptr ? m->reason.ptr : "error");
        o->retry = m->retry;
        if (m->op == CEL_OP_FAIL) log_info("task %s failed (%s): %s", o->id, o->reason, o->error);
        outcome_send(o);
    }
    /* A task from before a reconnect is done: its slot counts as a credit again (asked for after
     * the outcome, so the broker settles it first). */
    if (stale) {
        w->stale--;
        if (!w->draining) send_consume(w);
    }
    start_waiting(w);
    check_drained(w);
}

/* ---- tasks ------------------------------------------------------------------------------ */

static void start_waiting(worker *w) {
    for (size_t i = 0; i < w->nheld && !w->draining && pool_idle(w->pool) > 0; i++) {
        held *h = &w->held[i];
        if (h->running || h->lost) continue;
        if (!pool_run_frame(w->pool, h->frame.data, h->frame.len, cel_str_c(h->id), h->token,
                            h->hard_ms))
            return;
        h->running = true;
        cel_buf_reset(&h->frame);
    }
}

static void schedule_tick(worker *w, long long at_ms) {
    if (w->tick_at_ms && w->tick_at_ms <= at_ms) return;
    w->tick_at_ms = at_ms;
    arm_ms(w->tick, at_ms - cel_now_ms());
}

static void on_task(worker *w, const cel_msg *t) {
    held *h = held_add(w);
    if (!h) {
        log_error("task %.*s: out of memory; its lease will run out", (int)t->id.len, t->id.ptr);
        return;
    }
    snprintf(h->id, sizeof h->id, "%.*s", (int)t->id.len, t->id.ptr);
    h->token = t->token, h->epoch = w->epoch;
    /* A lease is touched at a third of its length: two touches may be lost or late before the
     * broker's reaper takes the task back. */
    h->lease_ms = t->lease_ms ? t->lease_ms : 30000; /* the broker's default, should it omit it */
    h->next_touch_ms = cel_now_ms() + (long long)h->lease_ms / 3;
    cel_msg copy = *t;
    copy.soft_ms = t->soft_ms ? t->soft_ms : w->cfg->soft_limit_ms;
    copy.hard_ms = h->hard_ms = t->hard_ms ? t->hard_ms : w->cfg->hard_limit_ms;
    if (copy.soft_ms) cel_msg_set(&copy, CEL_F_SOFT_MS);
    if (copy.hard_ms) cel_msg_set(&copy, CEL_F_HARD_MS);
    cel_error err;
    if (cel_msg_encode(&h->frame, &copy, UINT32_MAX, &err) != CEL_OK) {
        log_error("task %s: cannot hand it to the pool: %s", h->id, err.msg);
        outcome_fail(w, t->id, t->token, "error", err.msg, false);
        held_remove(w, h);
        return;
    }
    log_debug("task %s (%.*s) attempt %llu received", h->id, (int)t->task.len, t->task.ptr,
              (unsigned long long)t->attempt);
    schedule_tick(w, h->next_touch_ms);
    start_waiting(w);
}

/* abort {id, token}: the task was cancelled. A running task is told, then killed after the
 * grace period; a waiting one is dropped. Either way the contract wants fail {cancelled}. */
static void on_abort(worker *w, const cel_msg *m) {
    held *h = held_find(w, m->id, m->token);
    if (!h) return; /* finished already: its outcome is on its way and will be refused */
    log_info("task %s: cancelled by the broker", h->id);
    /* The broker settled it already: no more touches, and the fail below will be refused. */
    h->lost = true;
    if (h->running) return pool_abort(w->pool, m->id, m->token, w->cfg->abort_grace_ms);
    held_remove(w, h);
    outcome_fail(w, m->id, m->token, "cancelled", "cancelled before it started", true);
}

static void on_push(cel_conn *c, const cel_msg *m, void *arg) {
    (void)c;
    worker *w = arg;
    if (m->op == CEL_OP_TASK) return on_task(w, m);
    if (m->op == CEL_OP_ABORT) return on_abort(w, m);
}

/* ---- leases ----------------------------------------------------------------------------- */

typedef struct touch_call {
    worker *w;
    char id[CEL_ID_MAX + 1];
    uint64_t token;
} touch_call;

/* LEASE_EXPIRED or NOT_FOUND: the task was redelivered elsewhere, cancelled or finished. Stop
 * working on it. Its outcome is still sent once it is known — it will be refused — because the
 * broker frees the task's credit on this connection only when an ack or fail arrives. */
static void lease_lost(worker *w, held *h, const cel_error *err) {
    log_warn("task %s: lease lost (%s); abandoning it", h->id, cel_err_name(err->code));
    h->lost = true;
    if (h->running) return pool_abort(w->pool, cel_str_c(h->id), h->token, w->cfg->abort_grace_ms);
    char id[sizeof h->id];
    memcpy(id, h->id, sizeof id);
    uint64_t token = h->token;
    held_remove(w, h);
    outcome_fail(w, cel_str_c(id), token, "cancelled", "lease lost before it started", true);
}

static void touch_reply(cel_conn *c, const cel_msg *r, const cel_error *err, void *arg) {
    (void)c;
    touch_call *t = arg;
    worker *w = t->w;
    held *h = held_find(w, cel_str_c(t->id), t->token);
    if (h && r && r->op == CEL_OP_ERROR && !h->lost &&
        (err->code == CEL_E_LEASE_EXPIRED || err->code == CEL_E_NOT_FOUND))
        lease_lost(w, h, err);
    free(t);
    check_drained(w);
}

static void touch(worker *w, held *h) {
    cel_msg m;
    memset(&m, 0, sizeof m);
    m.op = CEL_OP_TOUCH, m.id = cel_str_c(h->id), m.token = h->token;
    cel_msg_set(&m, CEL_F_ID), cel_msg_set(&m, CEL_F_TOKEN);
    touch_call *t = malloc(sizeof *t);
    if (!t) return;
    t->w = w, t->token = h->token;
    memcpy(t->id, h->id, sizeof t->id);
    cel_error err;
    if (cel_conn_send(w->conn, &m, touch_reply, t, &err) != CEL_OK) free(t);
}

static void on_tick(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    worker *w = arg;
    long long now = cel_now_ms(), next = 0;
    w->tick_at_ms = 0;
    bool up = cel_conn_is_up(w->conn);
    for (size_t i = 0; i < w->nheld; i++) {
        held *h = &w->held[i];
        if (h->lost) continue;
        if (h->next_touch_ms <= now) {
            if (up) touch(w, h); /* while down, on_state touches everything on reconnect */
            h->next_touch_ms = now + (long long)h->lease_ms / 3;
        }
        if (!next || h->next_touch_ms < next) next = h->next_touch_ms;
    }
    if (next) schedule_tick(w, next);
}

/* ---- heartbeat, connection state -------------------------------------------------------- */

static void ping_reply(cel_conn *c, const cel_msg *r, const cel_error *err, void *arg) {
    (void)c, (void)arg;
    if (r && r->op == CEL_OP_ERROR) log_warn("heartbeat refused: %s", err->msg);
}

/* While no broker answers, say so at the first heartbeat and then every 30 s: a worker started
 * before its broker (or cut off from it) must not look idle and healthy in its log. */
static void report_unreachable(worker *w) {
    long long now = cel_now_ms();
    if (cel_conn_failed_attempts(w->conn) == 0) return; /* not tried since the loss yet */
    if (w->unreachable_logged_ms && now - w->unreachable_logged_ms < 30000) return;
    w->unreachable_logged_ms = now;
    log_warn("broker not reachable (%s; %u failed attempts); still retrying",
             cel_conn_last_error(w->conn), cel_conn_failed_attempts(w->conn));
}

static void on_heartbeat(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    worker *w = arg;
    if (!cel_conn_is_up(w->conn)) {
        report_unreachable(w);
        return;
    }
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
        /* The broker takes back what it leased on that connection; tasks not started yet are no
         * longer ours. Running ones go on: their outcomes are resent after the reconnect. */
        size_t dropped = 0;
        for (size_t i = w->nheld; i-- > 0;)
            if (!w->held[i].running) held_remove(w, &w->held[i]), dropped++;
        log_warn("broker connection lost (%s); %zu running tasks kept, %zu waiting dropped",
                 cel_conn_last_error(w->conn), w->nheld, dropped);
        return;
    }
    w->epoch++;
    w->stale = w->nheld;
    w->unreachable_logged_ms = 0;
    size_t resend = 0;
    outcome *o;
    TAILQ_FOREACH(o, &w->outcomes, link) resend++;
    log_info("connected to a broker; %zu tasks still running, %zu outcomes to resend", w->nheld,
             resend);
    /* Leases may be close to running out after the time spent reconnecting. */
    long long now = cel_now_ms();
    for (size_t i = 0; i < w->nheld; i++) w->held[i].next_touch_ms = now;
    if (w->nheld) schedule_tick(w, now);
    TAILQ_FOREACH(o, &w->outcomes, link) outcome_send(o);
    send_consume(w);
}

/* ---- drain and stop --------------------------------------------------------------------- */

static void stop_now(worker *w, const char *why) {
    if (w->stopping) return;
    w->stopping = true;
    if (pool_busy(w->pool) || w->nheld)
        log_info("%s: stopping; %d running and %zu waiting tasks go back to the broker", why,
                 pool_busy(w->pool), w->nheld - (size_t)pool_busy(w->pool));
    else
        log_info("%s: stopping", why);
    event_base_loopexit(w->base, NULL);
}

/* Done when nothing runs and every outcome has been answered. Tasks that were prefetched but not
 * started go back to the broker when the connection closes (the broker requeues a closed
 * connection's leases at once). */
static void check_drained(worker *w) {
    if (!w->draining || w->stopping) return;
    if (pool_busy(w->pool) == 0 && TAILQ_EMPTY(&w->outcomes)) stop_now(w, "drained");
}

static void on_drain_timeout(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    stop_now(arg, "drain timeout");
}

static void on_signal(evutil_socket_t sig, short what, void *arg) {
    (void)what;
    worker *w = arg;
    if (sig == SIGHUP) {
        cel_log_reopen();
        pool_signal(w->pool, SIGHUP);
        return log_info("SIGHUP: log reopened");
    }
    if (sig == SIGQUIT) return stop_now(w, "SIGQUIT");
    if (w->draining) return stop_now(w, "second SIGTERM/SIGINT");
    w->draining = true;
    pool_withdraw_queued(w->pool);
    log_info("draining: no new tasks; up to %d ms for %d running ones", w->cfg->drain_timeout_ms,
             pool_busy(w->pool));
    send_consume(w);
    arm_ms(w->drain_timer, w->cfg->drain_timeout_ms);
    check_drained(w);
}

/* ---- run -------------------------------------------------------------------------------- */

static bool worker_events(worker *w) {
    w->tick = evtimer_new(w->base, on_tick, w);
    w->drain_timer = evtimer_new(w->base, on_drain_timeout, w);
    w->resend = evtimer_new(w->base, on_resend, w);
    w->heartbeat = event_new(w->base, -1, EV_PERSIST, on_heartbeat, w);
    const int sigs[4] = {SIGTERM, SIGINT, SIGQUIT, SIGHUP};
    bool ok = w->tick && w->drain_timer && w->resend && w->heartbeat;
    for (int i = 0; i < 4; i++) {
        w->sigs[i] = evsignal_new(w->base, sigs[i], on_signal, w);
        ok = ok && w->sigs[i] && event_add(w->sigs[i], NULL) == 0;
    }
    if (ok) arm_ms(w->heartbeat, w->cfg->heartbeat_ms);
    return ok;
}

static void worker_free(worker *w) {
    /* The pool first: no runner outlives the daemon, and none reports into freed memory. */
    pool_free(w->pool);
    if (w->conn) cel_conn_free(w->conn);
    struct event *evs[] = {w->tick,    w->drain_timer, w->resend,  w->heartbeat,
                           w->sigs[0], w->sigs[1],     w->sigs[2], w->sigs[3]};
    for (size_t i = 0; i < sizeof evs / sizeof *evs; i++)
        if (evs[i]) event_free(evs[i]);
    struct outcome_list *lists[] = {&w->outcomes, &w->spare};
    for (int i = 0; i < 2; i++) {
        outcome *o;
        while ((o = TAILQ_FIRST(lists[i]))) {
            TAILQ_REMOVE(lists[i], o, link);
            cel_buf_free(&o->result);
            free(o);
        }
    }
    for (size_t i = 0; i < w->cap; i++) cel_buf_free(&w->held[i].frame);
    free(w->held);
    event_base_free(w->base);
}

int worker_run(const cel_worker_config *cfg, const celeriac_registry *reg) {
    worker w;
    memset(&w, 0, sizeof w);
    w.cfg = cfg;
    TAILQ_INIT(&w.outcomes);
    TAILQ_INIT(&w.spare);
    signal(SIGPIPE, SIG_IGN);
    w.base = event_base_new();
    if (!w.base) return 1;
    /* The pool forks before the broker connection exists, so the first children never see its
     * socket (replacements close it, see pool_prefork.c). */
    w.pool = pool_new(w.base, cfg->pool, cfg->concurrency, reg, on_outcome, &w);
    /* Only a prefork pool pipelines (main.c refuses the flag otherwise): fails like a pool
     * that could not start, through the same clean-up. */
    if (w.pool && !pool_set_pipeline(w.pool, cfg->pipeline)) pool_free(w.pool), w.pool = NULL;
    cel_conn_opts o = {.brokers = cfg->brokers,
                       .nbrokers = cfg->nbrokers,
                       .role = "worker",
                       .client_name = cfg->name,
                       .on_push = on_push,
                       .on_state = on_state,
                       .arg = &w};
    if (w.pool) w.conn = cel_conn_new(w.base, &o);
    if (!w.pool || !w.conn || !worker_events(&w)) {
        log_error("worker: cannot start (%s)", !w.pool   ? "pool"
                                               : !w.conn ? "broker list"
                                                         : "events");
        worker_free(&w);
        return 1;
    }
    log_info("worker %s: %s pool of %d%s, prefetch %d, %zu queues, %zu brokers", cfg->name,
             cel_pool_kind_name(cfg->pool), cfg->concurrency, cfg->pipeline ? " (pipelined)" : "",
             cfg->prefetch, cfg->nqueues, cfg->nbrokers);
    event_base_dispatch(w.base);
    log_info("stopped after %llu tasks", w.done);
    worker_free(&w);
    return 0;
}
