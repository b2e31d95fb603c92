/* The async face of libceleriac: requests on the caller's event_base, pipelined on one
 * connection, each answered through its callback exactly once. A request lost with its
 * connection is resent after the reconnect (an enqueue with the same id), until the handle's
 * timeout; answers from the broker, errors included, go straight to the callback. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "internal.h"

struct celeriac_async {
    cel_conn *conn;
    cel_brokers brokers;
    int timeout_ms;
    bool closing; /* being freed: lost requests are reported, not resent */
};

/* One request in flight, kept whole so that it can be sent again. */
typedef struct acall {
    celeriac_async *a;
    cel_op op;
    celeriac_cb cb;
    celeriac_stats_cb stats_cb;
    void *arg;
    long long deadline, wait_end;
    int sends;
    bool confirming; /* a resent cancel found the task ended: asking whether it was cancelled */
    char id[CELERIAC_ID_SIZE];
    cel_enq *enq; /* enqueue: 1, bulk: n, owned */
    size_t nenq;
} acall;

static void on_reply(cel_conn *conn, const cel_msg *r, const cel_error *err, void *arg);

celeriac_async *celeriac_async_new(struct event_base *base, const char *brokers) {
    celeriac_async *a = calloc(1, sizeof *a);
    char why[300];
    if (!a || !base) return free(a), NULL;
    a->timeout_ms = CEL_ASYNC_TIMEOUT_MS;
    if (!cel_brokers_parse(brokers, &a->brokers, why, sizeof why)) return free(a), NULL;
    cel_conn_opts o = cel_brokers_conn_opts(&a->brokers, "libceleriac-async");
    a->conn = cel_conn_new(base, &o);
    if (!a->conn) {
        cel_brokers_free(&a->brokers);
        free(a);
        return NULL;
    }
    return a;
}

void celeriac_async_free(celeriac_async *a) {
    if (!a || a->closing) return;
    a->closing = true;
    cel_conn_free(a->conn); /* runs the callbacks of what is still in flight */
    cel_brokers_free(&a->brokers);
    free(a);
}

void celeriac_async_set_timeout(celeriac_async *a, int timeout_ms) {
    a->timeout_ms = timeout_ms > 0 ? timeout_ms : CEL_ASYNC_TIMEOUT_MS;
}

/* ---- sending and resending ------------------------------------------------------------------ */

static void acall_free(acall *k) {
    cel_enq_free_all(k->enq, k->nenq);
    free(k->enq);
    free(k);
}

static void build_bulk(acall *k, cel_msg *m, cel_msg *entries) {
    for (size_t i = 0; i < k->nenq; i++) {
        cel_enq_msg(&k->enq[i], &entries[i]);
        entries[i].op = CEL_OP_NONE;
    }
    memset(m, 0, sizeof *m);
    m->op = CEL_OP_ENQUEUE_BULK;
    m->tasks.msgs = entries, m->tasks.n = (uint32_t)k->nenq;
    cel_msg_set(m, CEL_F_TASKS);
}

static void build_simple(acall *k, cel_msg *m, long long now) {
    memset(m, 0, sizeof *m);
    m->op = k->op;
    if (k->op == CEL_OP_STATS) return;
    m->id = cel_str_c(k->id), cel_msg_set(m, CEL_F_ID);
    if (k->op == CEL_OP_WAIT) {
        m->timeout_ms = k->wait_end > now ? (uint64_t)(k->wait_end - now) : 0;
        cel_msg_set(m, CEL_F_TIMEOUT_MS);
    }
}

/* (Re)sends k as it stands; the message is encoded at once, so it may live on the stack. */
static int acall_send(acall *k) {
    long long now = cel_now_ms();
    long long left = k->deadline - now;
    cel_msg m;
    cel_msg *entries = NULL;
    if (k->op == CEL_OP_ENQUEUE) {
        cel_enq_msg(k->enq, &m);
    } else if (k->op == CEL_OP_ENQUEUE_BULK) {
        if (!(entries = calloc(k->nenq, sizeof *entries))) return CELERIAC_E_INTERNAL;
        build_bulk(k, &m, entries);
    } else {
        build_simple(k, &m, now);
    }
    cel_error err;
    int timeout = left < 1 ? 1 : left > INT32_MAX ? INT32_MAX : (int)left;
    cel_err rc = cel_conn_send_timeout(k->a->conn, &m, timeout, on_reply, k, &err);
    free(entries);
    if (rc == CEL_OK) k->sends++;
    return (int)rc;
}

/* ---- delivering the outcome ------------------------------------------------------------------ */

static void finish_bulk(acall *k, int code, const cel_msg *r) {
    for (size_t i = 0; i < k->nenq; i++) {
        char id[CELERIAC_ID_SIZE];
        if (!r || !cel_reply_id(r, (uint32_t)i, id)) snprintf(id, sizeof id, "%s", k->enq[i].id);
        k->cb(code, id, NULL, k->arg);
    }
}

/* Calls the user back once and frees k. The callback may free the handle, so nothing here
 * touches k->a after it. */
static void finish(acall *k, int code, const cel_msg *r) {
    if (k->op == CEL_OP_STATS) {
        char *json = code == CELERIAC_OK ? cel_reply_stats_json(r) : NULL;
        if (code == CELERIAC_OK && !json) code = CELERIAC_E_INTERNAL;
        k->stats_cb(code, json, k->arg);
        free(json);
    } else if (k->op == CEL_OP_ENQUEUE_BULK) {
        finish_bulk(k, code, r);
    } else if (code == CELERIAC_OK && r && r->op == CEL_OP_TASK_INFO) {
        celeriac_task_info info;
        cel_reply_task_info(r, &info);
        k->cb(code, k->id, &info, k->arg);
        celeriac_task_info_free(&info);
    } else {
        if (code == CELERIAC_OK && r && cel_msg_has(r, CEL_F_ID) && r->id.len < CELERIAC_ID_SIZE)
            snprintf(k->id, sizeof k->id, "%.*s", (int)r->id.len, r->id.ptr); /* unique key */
        k->cb(code, k->id, NULL, k->arg);
    }
    acall_free(k);
}

/* A resent cancel found the task ended: the first send may have cancelled it before its reply
 * was lost. Ask, and report success when it was indeed cancelled. */
static void confirm_cancel(acall *k, int code, const cel_msg *r) {
    if (!k->confirming) {
        k->confirming = true, k->op = CEL_OP_STATUS;
        if (acall_send(k) == CELERIAC_OK) return;
        k->op = CEL_OP_CANCEL;
        finish(k, CELERIAC_E_STATE, NULL);
        return;
    }
    bool cancelled =
        code == CELERIAC_OK && r->op == CEL_OP_TASK_INFO && cel_str_eq(r->state, "cancelled");
    k->op = CEL_OP_CANCEL;
    finish(k, cancelled ? CELERIAC_OK : CELERIAC_E_STATE, NULL);
}

static void on_reply(cel_conn *conn, const cel_msg *r, const cel_error *err, void *arg) {
    (void)conn;
    acall *k = arg;
    int code = cel_reply_code(r, err);
    bool lost = !r && code == CELERIAC_E_UNAVAILABLE;
    if (lost && !k->a->closing && cel_now_ms() < k->deadline && acall_send(k) == CELERIAC_OK)
        return;
    if (k->confirming || (k->op == CEL_OP_CANCEL && code == CELERIAC_E_STATE && k->sends > 1))
        confirm_cancel(k, code, r);
    else
        finish(k, code, r);
}

/* ---- the operations -------------------------------------------------------------------------- */

static acall *acall_new(celeriac_async *a, cel_op op, celeriac_cb cb, void *arg) {
    acall *k = calloc(1, sizeof *k);
    if (!k) return NULL;
    k->a = a, k->op = op, k->cb = cb, k->arg = arg;
    k->deadline = cel_now_ms() + a->timeout_ms;
    return k;
}

/* Sends a new call; on failure frees it, and the callback never runs. */
static int acall_start(acall *k) {
    int rc = k->a->closing ? CELERIAC_E_UNAVAILABLE : acall_send(k);
    if (rc != CELERIAC_OK) acall_free(k);
    return rc;
}

static int enqueue_any(celeriac_async *a, const char *queue, const char *task, const void *args,
                       size_t len, const char *args_json, const celeriac_opts *o, celeriac_cb cb,
                       void *arg) {
    if (!a || !cb) return CELERIAC_E_ARGS;
    acall *k = acall_new(a, CEL_OP_ENQUEUE, cb, arg);
    cel_enq *e = calloc(1, sizeof *e);
    if (!k || !e) return free(k), free(e), CELERIAC_E_INTERNAL;
    k->enq = e, k->nenq = 1;
    char why[256];
    int rc = cel_enq_prepare(e, queue, task, args, len, args_json, o, why, sizeof why);
    if (rc == CELERIAC_OK && !cel_enq_own(e)) rc = CELERIAC_E_INTERNAL;
    if (rc != CELERIAC_OK) return acall_free(k), rc;
    snprintf(k->id, sizeof k->id, "%s", e->id);
    return acall_start(k);
}

int celeriac_async_enqueue(celeriac_async *a, const char *queue, const char *task, const void *args,
                           size_t len, const celeriac_opts *o, celeriac_cb cb, void *arg) {
    return enqueue_any(a, queue, task, args, len, NULL, o, cb, arg);
}

int celeriac_async_enqueue_json(celeriac_async *a, const char *queue, const char *task,
                                const char *args_json, const celeriac_opts *o, celeriac_cb cb,
                                void *arg) {
    return enqueue_any(a, queue, task, NULL, 0, args_json, o, cb, arg);
}

int celeriac_async_enqueue_bulk(celeriac_async *a, const celeriac_bulk_item *items, size_t n,
                                celeriac_cb cb, void *arg) {
    if (!a || !cb || !items || n == 0 || n > CEL_BULK_MAX) return CELERIAC_E_ARGS;
    acall *k = acall_new(a, CEL_OP_ENQUEUE_BULK, cb, arg);
    cel_enq *es = calloc(n, sizeof *es);
    if (!k || !es) return free(k), free(es), CELERIAC_E_INTERNAL;
    k->enq = es, k->nenq = n;
    char why[300];
    int rc = cel_enq_prepare_bulk(es, items, n, why, sizeof why);
    for (size_t i = 0; rc == CELERIAC_OK && i < n; i++)
        if (!cel_enq_own(&es[i])) rc = CELERIAC_E_INTERNAL;
    if (rc != CELERIAC_OK) return acall_free(k), rc;
    return acall_start(k);
}

static int id_call(celeriac_async *a, cel_op op, const char *id, int timeout_ms, celeriac_cb cb,
                   void *arg) {
    if (!a || !cb || !cel_id_ok(id)) return CELERIAC_E_ARGS;
    acall *k = acall_new(a, op, cb, arg);
    if (!k) return CELERIAC_E_INTERNAL;
    snprintf(k->id, sizeof k->id, "%s", id);
    if (op == CEL_OP_WAIT) {
        long long ms = timeout_ms > 0 ? timeout_ms : 0;
        k->wait_end = cel_now_ms() + ms;
        k->deadline += ms;
    }
    return acall_start(k);
}

int celeriac_async_status(celeriac_async *a, const char *id, celeriac_cb cb, void *arg) {
    return id_call(a, CEL_OP_STATUS, id, 0, cb, arg);
}

int celeriac_async_wait(celeriac_async *a, const char *id, int timeout_ms, celeriac_cb cb,
                        void *arg) {
    return id_call(a, CEL_OP_WAIT, id, timeout_ms, cb, arg);
}

int celeriac_async_cancel(celeriac_async *a, const char *id, celeriac_cb cb, void *arg) {
    return id_call(a, CEL_OP_CANCEL, id, 0, cb, arg);
}

int celeriac_async_stats(celeriac_async *a, celeriac_stats_cb cb, void *arg) {
    if (!a || !cb) return CELERIAC_E_ARGS;
    acall *k = acall_new(a, CEL_OP_STATS, NULL, arg);
    if (!k) return CELERIAC_E_INTERNAL;
    k->stats_cb = cb;
    return acall_start(k);
}
