/* The async face of libceleriac: requests on the caller's event_base, pipelined on one
 * connection, each answered through its callback exactly once. */
#include <stdlib.h>
#include <string.h>

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
