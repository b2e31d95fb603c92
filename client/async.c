/* The async face of libceleriac: requests on the caller's event_base, pipelined on one
 * connection, each answered through its callback exactly once. */
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "requests.h"

struct celeriac_async {
    cel_conn *conn;
    char **brokers;
    size_t nbrokers;
};

typedef struct acall {
    celeriac_cb cb;
    void *arg;
    char id[CELERIAC_ID_SIZE];
} acall;

static void on_reply(cel_conn *c, const cel_msg *r, const cel_error *err, void *arg) {
    (void)c;
    acall *k = arg;
    int code = req_code(r, err);
    celeriac_task_info info;
    bool has_info = code == CELERIAC_OK && r->op == CEL_OP_TASK_INFO;
    if (has_info) req_task_info(r, &info);
    k->cb(code, k->id, has_info ? &info : NULL, k->arg);
    if (has_info) celeriac_task_info_free(&info);
    free(k);
}

celeriac_async *celeriac_async_new(struct event_base *base, const char *brokers) {
    celeriac_async *a = calloc(1, sizeof *a);
    if (!a) return NULL;
    a->brokers = req_split_brokers(brokers, &a->nbrokers);
    cel_conn_opts o = {.brokers = (const char *const *)a->brokers,
                       .nbrokers = a->nbrokers,
                       .role = "producer",
                       .client_name = "libceleriac-async"};
    a->conn = cel_conn_new(base, &o);
    if (!a->conn) return celeriac_async_free(a), NULL;
    return a;
}

void celeriac_async_free(celeriac_async *a) {
    if (!a) return;
    cel_conn_free(a->conn);
    req_free_brokers(a->brokers, a->nbrokers);
    free(a);
}

static int send_call(celeriac_async *a, cel_msg *m, const char *id, celeriac_cb cb, void *arg) {
    acall *k = calloc(1, sizeof *k);
    if (!k || !cb) return free(k), CELERIAC_E_ARGS;
    k->cb = cb, k->arg = arg;
    snprintf(k->id, sizeof k->id, "%s", id);
    cel_error err;
    if (cel_conn_send(a->conn, m, on_reply, k, &err) != CEL_OK) {
        free(k);
        return err.code;
    }
    return CELERIAC_OK;
}

int celeriac_async_enqueue(celeriac_async *a, const char *queue, const char *task, const void *args,
                           size_t len, const celeriac_opts *o, celeriac_cb cb, void *arg) {
    if (req_check_names(queue, task, o) != CELERIAC_OK) return CELERIAC_E_ARGS;
    if (args && cel_mp_check(args, len, CEL_DEFAULT_MAX_DEPTH, NULL) != CEL_OK)
        return CELERIAC_E_ARGS;
    char id[CELERIAC_ID_SIZE];
    if (o && o->id)
        snprintf(id, sizeof id, "%s", o->id);
    else
        req_new_id(id);
    cel_raw raw = {NULL, args, (uint32_t)len};
    cel_msg m;
    req_enqueue(&m, queue, task, args ? &raw : NULL, o, id);
    return send_call(a, &m, id, cb, arg);
}

static int id_call(celeriac_async *a, cel_op op, const char *id, int timeout_ms, celeriac_cb cb,
                   void *arg) {
    if (!id || !cel_id_valid(id, strlen(id))) return CELERIAC_E_ARGS;
    cel_msg m;
    memset(&m, 0, sizeof m);
    m.op = op, m.id = cel_str_c(id);
    cel_msg_set(&m, CEL_F_ID);
    if (op == CEL_OP_WAIT)
        m.timeout_ms = (uint64_t)(timeout_ms > 0 ? timeout_ms : 0),
        cel_msg_set(&m, CEL_F_TIMEOUT_MS);
    return send_call(a, &m, id, cb, arg);
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

typedef struct bulk_call {
    celeriac_cb cb;
    void *arg;
    size_t n;
    char (*ids)[CELERIAC_ID_SIZE];
} bulk_call;

static void on_bulk_reply(cel_conn *c, const cel_msg *r, const cel_error *err, void *arg) {
    (void)c;
    bulk_call *k = arg;
    int code = req_code(r, err);
    for (size_t i = 0; i < k->n; i++) k->cb(code, k->ids[i], NULL, k->arg);
    free(k->ids);
    free(k);
}

int celeriac_async_enqueue_bulk(celeriac_async *a, const celeriac_bulk_item *items, size_t n,
                                celeriac_cb cb, void *arg) {
    if (!cb || n == 0 || n > 100000) return CELERIAC_E_ARGS;
    cel_msg *entries = calloc(n, sizeof *entries);
    cel_buf *args = calloc(n, sizeof *args);
    bulk_call *k = calloc(1, sizeof *k);
    char(*ids)[CELERIAC_ID_SIZE] = calloc(n, sizeof *ids);
    int rc = entries && args && k && ids ? req_bulk_entries(items, n, entries, args, ids)
                                         : CELERIAC_E_INTERNAL;
    if (rc == CELERIAC_OK) {
        cel_msg m;
        memset(&m, 0, sizeof m);
        m.op = CEL_OP_ENQUEUE_BULK, m.tasks.msgs = entries, m.tasks.n = (uint32_t)n;
        cel_msg_set(&m, CEL_F_TASKS);
        *k = (bulk_call){cb, arg, n, ids};
        cel_error err;
        rc = cel_conn_send(a->conn, &m, on_bulk_reply, k, &err) == CEL_OK ? CELERIAC_OK
                                                                          : (int)err.code;
    }
    for (size_t i = 0; args && i < n; i++) cel_buf_free(&args[i]);
    free(entries), free(args);
    if (rc != CELERIAC_OK) free(k), free(ids);
    return rc;
}

typedef struct stats_call {
    celeriac_stats_cb cb;
    void *arg;
} stats_call;

static void on_stats_reply(cel_conn *c, const cel_msg *r, const cel_error *err, void *arg) {
    (void)c;
    stats_call *k = arg;
    int code = req_code(r, err);
    char *json = NULL;
    if (code == CELERIAC_OK && r->stats.obj) {
        json_t *j = cel_json_from_msgpack(r->stats.obj);
        json = json_dumps(j, JSON_COMPACT);
        json_decref(j);
    }
    k->cb(code, json, k->arg);
    free(json);
    free(k);
}

int celeriac_async_stats(celeriac_async *a, celeriac_stats_cb cb, void *arg) {
    stats_call *k = calloc(1, sizeof *k);
    if (!k || !cb) return free(k), CELERIAC_E_ARGS;
    k->cb = cb, k->arg = arg;
    cel_msg m;
    memset(&m, 0, sizeof m);
    m.op = CEL_OP_STATS;
    cel_error err;
    if (cel_conn_send(a->conn, &m, on_stats_reply, k, &err) != CEL_OK)
        return free(k), (int)err.code;
    return CELERIAC_OK;
}
