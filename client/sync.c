/* The sync face of libceleriac: each call sends its request on a private event loop and runs
 * that loop until the reply arrives. A request lost with its connection is resent once a broker
 * answers again (an enqueue with the same id, a wait with what remains of its timeout), and an
 * UNAVAILABLE or BUSY answer is retried after a pause, all within the handle's timeout. */
#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "internal.h"

/* Pauses between retries of an UNAVAILABLE or BUSY answer: quick at first (a Redis hiccup),
 * then no more than once a second so an outage is not hammered. */
#define RETRY_PAUSE_MIN_MS 50
#define RETRY_PAUSE_MAX_MS 1000

struct celeriac {
    struct event_base *base;
    cel_conn *conn;
    cel_brokers brokers;
    struct event *timer; /* ends a pause or the wait for a connection */
    bool timer_fired;
    int timeout_ms;
    char error[512];
};

typedef void (*take_fn)(const cel_msg *reply, void *out);

/* One request as the sync face runs it, resends included. */
typedef struct call {
    cel_msg m;
    take_fn take; /* copies what the caller wants out of a successful reply */
    void *out;
    long long deadline; /* for the whole call */
    long long wait_end; /* a wait: when its own timeout runs out */
    int sends;
    bool done, lost; /* lost: no reply came (connection lost or timed out) */
    int code;
    char msg[256];
} call;

static int fail(celeriac *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(celeriac *c, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->error, sizeof c->error, fmt, ap);
    va_end(ap);
    return code;
}

const char *celeriac_last_error(const celeriac *c) {
    return c->error;
}

void celeriac_set_timeout(celeriac *c, int timeout_ms) {
    c->timeout_ms = timeout_ms > 0 ? timeout_ms : CEL_SYNC_TIMEOUT_MS;
}

/* ---- running the private loop ------------------------------------------------------------- */

static void on_timer(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    ((celeriac *)arg)->timer_fired = true;
}

static void timer_start(celeriac *c, long long ms) {
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    c->timer_fired = false;
    evtimer_add(c->timer, &tv);
}

/* Runs the loop until the timer fires (the connection keeps reconnecting meanwhile). */
static void pause_for(celeriac *c, long long ms) {
    timer_start(c, ms > 0 ? ms : 0);
    while (!c->timer_fired) event_base_loop(c->base, EVLOOP_ONCE);
}

/* Until a broker answers, every broker has failed once (refused, unknown, timed out: there is
 * nothing to wait for, as with connect(2)), or the deadline. Reconnecting after a loss is
 * another matter: the connection then keeps trying for as long as calls allow. */
static bool wait_up(celeriac *c, long long deadline) {
    timer_start(c, deadline - cel_now_ms());
    while (!cel_conn_is_up(c->conn) && !c->timer_fired &&
           cel_conn_failed_attempts(c->conn) < c->brokers.n)
        event_base_loop(c->base, EVLOOP_ONCE);
    evtimer_del(c->timer);
    return cel_conn_is_up(c->conn);
}

/* ---- one call ------------------------------------------------------------------------------ */

static void on_reply(cel_conn *conn, const cel_msg *r, const cel_error *err, void *arg) {
    (void)conn;
    call *k = arg;
    k->done = true;
    k->lost = r == NULL;
    k->code = cel_reply_code(r, err);
    if (k->code != CELERIAC_OK)
        snprintf(k->msg, sizeof k->msg, "%s", err && err->msg[0] ? err->msg : "no detail");
    else if (k->take)
        k->take(r, k->out);
}

/* Sends k->m once and runs the loop until its callback: the connection calls it by the
 * deadline at the latest, with CEL_E_TIMEOUT or CEL_E_UNAVAILABLE if nothing came. */
static void call_send(celeriac *c, call *k) {
    long long now = cel_now_ms();
    if (k->m.op == CEL_OP_WAIT)
        k->m.timeout_ms = k->wait_end > now ? (uint64_t)(k->wait_end - now) : 0;
    long long left = k->deadline - now;
    int timeout = left < 1 ? 1 : left > INT32_MAX ? INT32_MAX : (int)left;
    cel_error err;
    k->done = false;
    k->sends++;
    if (cel_conn_send_timeout(c->conn, &k->m, timeout, on_reply, k, &err) != CEL_OK) {
        k->done = true, k->lost = false, k->code = (int)err.code;
        snprintf(k->msg, sizeof k->msg, "%s", err.msg);
        return;
    }
    cel_conn_flush(c->conn); /* now, rather than in the loop's first turn */
    while (!k->done) event_base_loop(c->base, EVLOOP_ONCE);
}

static int call_run(celeriac *c, call *k) {
    long long pause = 0;
    for (;;) {
        call_send(c, k);
        if (k->code == CELERIAC_OK || !cel_code_retryable(k->code)) break;
        long long left = k->deadline - cel_now_ms();
        if (left <= 0) break;
        /* A lost request goes straight back into the connection's queue, which holds it until
         * a broker answers; a refusal from a live broker is retried after a pause. */
        if (!k->lost) {
            pause = pause ? pause * 2 : RETRY_PAUSE_MIN_MS;
            if (pause > RETRY_PAUSE_MAX_MS) pause = RETRY_PAUSE_MAX_MS;
            pause_for(c, pause < left ? pause : left);
        }
    }
    if (k->code != CELERIAC_OK) return fail(c, k->code, "%s", k->msg);
    c->error[0] = 0;
    return CELERIAC_OK;
}

static void call_init(celeriac *c, call *k, cel_op op, take_fn take, void *out) {
    memset(k, 0, sizeof *k);
    k->m.op = op;
    k->take = take, k->out = out;
    k->deadline = cel_now_ms() + c->timeout_ms;
}

/* ---- connect and close --------------------------------------------------------------------- */

static void report(char *err, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void report(char *err, size_t cap, const char *fmt, ...) {
    if (!err || !cap) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
}

static bool open_conn(celeriac *c, int timeout_ms) {
    c->base = event_base_new();
    c->timer = c->base ? evtimer_new(c->base, on_timer, c) : NULL;
    if (!c->timer) return false;
    cel_conn_opts o = cel_brokers_conn_opts(&c->brokers, "libceleriac");
    /* Share the time among the brokers, so that one that swallows packets cannot use it all
     * before the next is tried. */
    int per = c->brokers.n > 1 ? timeout_ms / (int)c->brokers.n : timeout_ms;
    o.connect_timeout_ms = per < 250 ? 250 : per;
    c->conn = cel_conn_new(c->base, &o);
    return c->conn != NULL;
}

celeriac *celeriac_connect(const char *brokers, int timeout_ms, char *err, size_t errlen) {
    if (timeout_ms <= 0) timeout_ms = 5000;
    celeriac *c = calloc(1, sizeof *c);
    char why[300];
    if (!c) return report(err, errlen, "out of memory"), NULL;
    c->timeout_ms = CEL_SYNC_TIMEOUT_MS;
    if (!cel_brokers_parse(brokers, &c->brokers, why, sizeof why)) {
        report(err, errlen, "%s", why);
        free(c);
        return NULL;
    }
    if (!open_conn(c, timeout_ms)) {
        report(err, errlen, "out of memory");
        celeriac_close(c);
        return NULL;
    }
    if (!wait_up(c, cel_now_ms() + timeout_ms)) {
        const char *last = cel_conn_last_error(c->conn);
        report(err, errlen, "cannot reach a broker: %s", *last ? last : "no answer in time");
        celeriac_close(c);
        return NULL;
    }
    return c;
}

void celeriac_close(celeriac *c) {
    if (!c) return;
    cel_conn_free(c->conn);
    if (c->timer) event_free(c->timer);
    if (c->base) event_base_free(c->base);
    cel_brokers_free(&c->brokers);
    free(c);
}

/* ---- enqueue ------------------------------------------------------------------------------ */

/* The reply's id: ours, or that of the task already holding the unique key. */
static void take_enqueued_id(const cel_msg *r, void *out) {
    if (cel_msg_has(r, CEL_F_ID) && r->id.len < CELERIAC_ID_SIZE)
        snprintf(out, CELERIAC_ID_SIZE, "%.*s", (int)r->id.len, r->id.ptr);
}

static int enqueue_prepared(celeriac *c, const cel_enq *e, char id_out[CELERIAC_ID_SIZE]) {
    char id[CELERIAC_ID_SIZE];
    snprintf(id, sizeof id, "%s", e->id);
    call k;
    call_init(c, &k, CEL_OP_ENQUEUE, take_enqueued_id, id);
    cel_enq_msg(e, &k.m);
    int rc = call_run(c, &k);
    if (rc == CELERIAC_OK && id_out) snprintf(id_out, CELERIAC_ID_SIZE, "%s", id);
    return rc;
}

static int enqueue_any(celeriac *c, const char *queue, const char *task, const void *args,
                       size_t len, const char *args_json, const celeriac_opts *o,
                       char id_out[CELERIAC_ID_SIZE]) {
    cel_enq e;
    char why[256];
    int rc = cel_enq_prepare(&e, queue, task, args, len, args_json, o, why, sizeof why);
    rc = rc == CELERIAC_OK ? enqueue_prepared(c, &e, id_out) : fail(c, rc, "%s", why);
    cel_enq_free(&e);
    return rc;
}

int celeriac_enqueue(celeriac *c, const char *queue, const char *task, const void *args, size_t len,
                     const celeriac_opts *o, char id_out[CELERIAC_ID_SIZE]) {
    return enqueue_any(c, queue, task, args, len, NULL, o, id_out);
}

int celeriac_enqueue_json(celeriac *c, const char *queue, const char *task, const char *args_json,
                          const celeriac_opts *o, char id_out[CELERIAC_ID_SIZE]) {
    return enqueue_any(c, queue, task, NULL, 0, args_json, o, id_out);
}

typedef struct bulk_ids {
    char (*ids)[CELERIAC_ID_SIZE];
    size_t n;
} bulk_ids;

static void take_bulk_ids(const cel_msg *r, void *out) {
    bulk_ids *b = out;
    for (size_t i = 0; b->ids && i < b->n; i++) cel_reply_id(r, (uint32_t)i, b->ids[i]);
}

static int bulk_send(celeriac *c, const cel_enq *es, cel_msg *entries, size_t n,
                     char (*ids_out)[CELERIAC_ID_SIZE]) {
    for (size_t i = 0; i < n; i++) {
        cel_enq_msg(&es[i], &entries[i]);
        entries[i].op = CEL_OP_NONE;
    }
    char(*ids)[CELERIAC_ID_SIZE] = ids_out ? calloc(n, CELERIAC_ID_SIZE) : NULL;
    if (ids_out && !ids) return fail(c, CELERIAC_E_INTERNAL, "out of memory");
    for (size_t i = 0; ids && i < n; i++) memcpy(ids[i], es[i].id, CELERIAC_ID_SIZE);
    bulk_ids out = {ids, n};
    call k;
    call_init(c, &k, CEL_OP_ENQUEUE_BULK, take_bulk_ids, &out);
    k.m.tasks.msgs = entries, k.m.tasks.n = (uint32_t)n;
    cel_msg_set(&k.m, CEL_F_TASKS);
    int rc = call_run(c, &k);
    if (rc == CELERIAC_OK && ids) memcpy(ids_out, ids, n * CELERIAC_ID_SIZE);
    free(ids);
    return rc;
}

int celeriac_enqueue_bulk(celeriac *c, const celeriac_bulk_item *items, size_t n,
                          char (*ids_out)[CELERIAC_ID_SIZE]) {
    if (!items || n == 0 || n > CEL_BULK_MAX)
        return fail(c, CELERIAC_E_ARGS, "a bulk enqueue takes 1..%u items", CEL_BULK_MAX);
    cel_enq *es = calloc(n, sizeof *es);
    cel_msg *entries = calloc(n, sizeof *entries);
    char why[300];
    int rc = es && entries ? cel_enq_prepare_bulk(es, items, n, why, sizeof why)
                           : (snprintf(why, sizeof why, "out of memory"), CELERIAC_E_INTERNAL);
    rc = rc == CELERIAC_OK ? bulk_send(c, es, entries, n, ids_out) : fail(c, rc, "%s", why);
    cel_enq_free_all(es, n);
    free(es), free(entries);
    return rc;
}

/* ---- by id -------------------------------------------------------------------------------- */

static void take_info(const cel_msg *r, void *out) {
    if (r->op == CEL_OP_TASK_INFO) cel_reply_task_info(r, out);
}

static int bad_id(celeriac *c, const char *id) {
    return fail(c, CELERIAC_E_ARGS, "bad task id '%.64s': want 1..128 bytes of [A-Za-z0-9_.:-]",
                id ? id : "(none)");
}

static int id_call(celeriac *c, cel_op op, const char *id, int timeout_ms, celeriac_task_info *out,
                   int *sends) {
    if (out) memset(out, 0, sizeof *out);
    if (!cel_id_ok(id)) return bad_id(c, id);
    call k;
    call_init(c, &k, op, out ? take_info : NULL, out);
    k.m.id = cel_str_c(id);
    cel_msg_set(&k.m, CEL_F_ID);
    if (op == CEL_OP_WAIT) {
        k.wait_end = cel_now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
        k.deadline += timeout_ms > 0 ? timeout_ms : 0;
        cel_msg_set(&k.m, CEL_F_TIMEOUT_MS);
    }
    int rc = call_run(c, &k);
    if (sends) *sends = k.sends;
    return rc;
}

int celeriac_status(celeriac *c, const char *id, celeriac_task_info *out) {
    return id_call(c, CEL_OP_STATUS, id, 0, out, NULL);
}

int celeriac_wait(celeriac *c, const char *id, int timeout_ms, celeriac_task_info *out) {
    return id_call(c, CEL_OP_WAIT, id, timeout_ms, out, NULL);
}

int celeriac_cancel(celeriac *c, const char *id) {
    int sends = 0;
    int rc = id_call(c, CEL_OP_CANCEL, id, 0, NULL, &sends);
    if (rc != CELERIAC_E_STATE || sends < 2) return rc;
    /* A resend found the task ended: the first send may have cancelled it before its reply
     * was lost. Then the caller's cancel did happen. */
    char first[sizeof c->error];
    snprintf(first, sizeof first, "%s", c->error);
    celeriac_task_info t;
    bool cancelled = celeriac_status(c, id, &t) == CELERIAC_OK && !strcmp(t.state, "cancelled");
    celeriac_task_info_free(&t);
    if (cancelled) return c->error[0] = 0, CELERIAC_OK;
    return fail(c, rc, "%s", first);
}

/* ---- stats and operator commands ------------------------------------------------------------ */

static void take_stats(const cel_msg *r, void *out) {
    *(char **)out = cel_reply_stats_json(r);
}

int celeriac_stats(celeriac *c, char **json_out) {
    *json_out = NULL;
    call k;
    call_init(c, &k, CEL_OP_STATS, take_stats, json_out);
    int rc = call_run(c, &k);
    if (rc == CELERIAC_OK && !*json_out)
        return fail(c, CELERIAC_E_INTERNAL, "the broker's stats could not be read");
    return rc;
}

static const struct {
    const char *name;
    cel_op op;
} admin_ops[] = {{"pause", CEL_OP_PAUSE},
                 {"resume", CEL_OP_RESUME},
                 {"purge", CEL_OP_PURGE},
                 {"dead_requeue", CEL_OP_DEAD_REQUEUE},
                 {"dead_purge", CEL_OP_DEAD_PURGE}};

static void take_count(const cel_msg *r, void *out) {
    *(uint64_t *)out = r->count;
}

static int bad_queue(celeriac *c, const char *queue) {
    return fail(c, CELERIAC_E_ARGS, "bad queue '%.64s': want 1..128 bytes of [A-Za-z0-9_.:-]",
                queue ? queue : "(none)");
}

int celeriac_queue_admin(celeriac *c, const char *action, const char *queue, const char *id,
                         uint64_t *count_out) {
    cel_op op = CEL_OP_NONE;
    for (size_t i = 0; action && i < sizeof admin_ops / sizeof *admin_ops; i++)
        if (!strcmp(action, admin_ops[i].name)) op = admin_ops[i].op;
    if (op == CEL_OP_NONE)
        return fail(c, CELERIAC_E_ARGS, "unknown queue action '%.32s'", action ? action : "");
    if (!queue || !cel_name_valid(queue, strlen(queue))) return bad_queue(c, queue);
    uint64_t count = 0;
    call k;
    call_init(c, &k, op, take_count, &count);
    k.m.queue = cel_str_c(queue), cel_msg_set(&k.m, CEL_F_QUEUE);
    if (id && op == CEL_OP_DEAD_REQUEUE) {
        if (!cel_id_ok(id)) return bad_id(c, id);
        k.m.id = cel_str_c(id), cel_msg_set(&k.m, CEL_F_ID);
    }
    int rc = call_run(c, &k);
    if (rc == CELERIAC_OK && count_out) *count_out = count;
    return rc;
}

typedef struct id_list {
    char **ids;
    size_t n;
} id_list;

static void take_list(const cel_msg *r, void *out) {
    id_list *l = out;
    l->ids = calloc(r->ids.n + 1, sizeof *l->ids);
    for (uint32_t i = 0; l->ids && i < r->ids.n; i++) {
        cel_str s = cel_list_str(&r->ids, i);
        if ((l->ids[l->n] = strndup(s.ptr, s.len))) l->n++;
    }
}

int celeriac_dead_list(celeriac *c, const char *queue, size_t max, char ***ids_out, size_t *n_out) {
    *ids_out = NULL, *n_out = 0;
    if (!queue || !cel_name_valid(queue, strlen(queue))) return bad_queue(c, queue);
    id_list l = {NULL, 0};
    call k;
    call_init(c, &k, CEL_OP_DEAD_LIST, take_list, &l);
    k.m.queue = cel_str_c(queue), k.m.count = max ? max : 100;
    cel_msg_set(&k.m, CEL_F_QUEUE), cel_msg_set(&k.m, CEL_F_COUNT);
    int rc = call_run(c, &k);
    if (rc == CELERIAC_OK && !l.ids) return fail(c, CELERIAC_E_INTERNAL, "out of memory");
    *ids_out = l.ids, *n_out = l.n;
    return rc;
}

void celeriac_ids_free(char **ids, size_t n) {
    for (size_t i = 0; ids && i < n; i++) free(ids[i]);
    free(ids);
}
