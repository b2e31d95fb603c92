/* The sync face of libceleriac: each call runs a private event loop until its reply arrives.
 * An enqueue that loses its connection before the reply is resent, with the same id, until the
 * call's time runs out. */
#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "json.h"
#include "requests.h"

#define CALL_TIMEOUT_MS 10000

struct celeriac {
    struct event_base *base;
    cel_conn *conn;
    char **brokers;
    size_t nbrokers;
    char error[512];
};

typedef struct call {
    bool done;
    uint64_t count;
    char ***list;
    size_t *nlist;
    int code;
    cel_error err;
    celeriac_task_info *info;
    char **json;
    char (*ids)[CELERIAC_ID_SIZE];
    size_t nids;
} call;

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

static void on_reply(cel_conn *conn, const cel_msg *r, const cel_error *err, void *arg) {
    (void)conn;
    call *k = arg;
    k->done = true;
    k->code = req_code(r, err);
    if (err) k->err = *err;
    if (k->code != CELERIAC_OK) return;
    if (k->info && r->op == CEL_OP_TASK_INFO) req_task_info(r, k->info);
    if (k->json && r->op == CEL_OP_STATS_INFO && r->stats.obj) {
        json_t *j = cel_json_from_msgpack(r->stats.obj);
        *k->json = json_dumps(j, JSON_COMPACT);
        json_decref(j);
    }
    k->count = r->count;
    if (k->list) {
        *k->list = calloc(r->ids.n + 1, sizeof **k->list);
        for (uint32_t i = 0; *k->list && i < r->ids.n; i++) {
            cel_str s = cel_list_str(&r->ids, i);
            (*k->list)[i] = strndup(s.ptr, s.len);
        }
        *k->nlist = *k->list ? r->ids.n : 0;
    }
    for (size_t i = 0; k->ids && i < k->nids && i < r->ids.n; i++) {
        cel_str s = cel_list_str(&r->ids, i);
        snprintf(k->ids[i], CELERIAC_ID_SIZE, "%.*s", (int)s.len, s.ptr);
    }
}

/* Sends m and runs the loop until its reply or the deadline. */
static int run_call(celeriac *c, cel_msg *m, call *k, long long deadline_ms) {
    cel_error err;
    k->done = false;
    if (cel_conn_send(c->conn, m, on_reply, k, &err) != CEL_OK)
        return fail(c, err.code, "%s", err.msg);
    while (!k->done) {
        long long left = deadline_ms - cel_now_ms();
        if (left <= 0) {
            /* Reset the connection: the reply to this request must not land on a later one. */
            cel_conn_free(c->conn);
            cel_conn_opts o = {.brokers = (const char *const *)c->brokers,
                               .nbrokers = c->nbrokers,
                               .role = "producer",
                               .client_name = "libceleriac"};
            c->conn = cel_conn_new(c->base, &o);
            return fail(c, CELERIAC_E_TIMEOUT, "no reply from the broker in time");
        }
        struct timeval tv = {left / 1000, (left % 1000) * 1000};
        event_base_loopexit(c->base, &tv);
        event_base_loop(c->base, EVLOOP_ONCE);
    }
    if (k->code != CELERIAC_OK) return fail(c, k->code, "%s", k->err.msg);
    c->error[0] = 0;
    return CELERIAC_OK;
}

celeriac *celeriac_connect(const char *brokers, int timeout_ms, char *err, size_t errlen) {
    celeriac *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->base = event_base_new();
    c->brokers = req_split_brokers(brokers, &c->nbrokers);
    cel_conn_opts o = {.brokers = (const char *const *)c->brokers,
                       .nbrokers = c->nbrokers,
                       .role = "producer",
                       .client_name = "libceleriac",
                       .connect_timeout_ms = timeout_ms > 0 ? timeout_ms : 5000};
    c->conn = cel_conn_new(c->base, &o);
    long long deadline = cel_now_ms() + (timeout_ms > 0 ? timeout_ms : 5000);
    while (c->conn && !cel_conn_is_up(c->conn) && cel_now_ms() < deadline) {
        struct timeval tv = {0, 20000};
        event_base_loopexit(c->base, &tv);
        event_base_loop(c->base, EVLOOP_ONCE);
    }
    if (!c->conn || !cel_conn_is_up(c->conn)) {
        if (err) snprintf(err, errlen, "cannot reach a broker at %s", c->brokers[0]);
        celeriac_close(c);
        return NULL;
    }
    return c;
}

void celeriac_close(celeriac *c) {
    if (!c) return;
    cel_conn_free(c->conn);
    event_base_free(c->base);
    req_free_brokers(c->brokers, c->nbrokers);
    free(c);
}

static int enqueue_raw(celeriac *c, const char *queue, const char *task, const cel_raw *args,
                       const celeriac_opts *o, char id_out[CELERIAC_ID_SIZE]) {
    if (req_check_names(queue, task, o) != CELERIAC_OK)
        return fail(c, CELERIAC_E_ARGS,
                    "queue/task/id must be 1..128 bytes of [A-Za-z0-9_.:-], "
                    "priority 0..255");
    char id[CELERIAC_ID_SIZE];
    if (o && o->id)
        snprintf(id, sizeof id, "%s", o->id);
    else
        req_new_id(id);
    long long deadline = cel_now_ms() + CALL_TIMEOUT_MS;
    call k;
    int rc;
    do {
        cel_msg m;
        req_enqueue(&m, queue, task, args, o, id);
        memset(&k, 0, sizeof k);
        rc = run_call(c, &m, &k, deadline);
        /* Lost before the reply: same id again, the broker deduplicates. */
    } while (rc == CELERIAC_E_UNAVAILABLE && cel_now_ms() < deadline);
    if (rc == CELERIAC_OK && id_out) snprintf(id_out, CELERIAC_ID_SIZE, "%s", id);
    return rc;
}

int celeriac_enqueue(celeriac *c, const char *queue, const char *task, const void *args, size_t len,
                     const celeriac_opts *o, char id_out[CELERIAC_ID_SIZE]) {
    cel_raw raw = {NULL, args, (uint32_t)len};
    if (args && cel_mp_check(args, len, CEL_DEFAULT_MAX_DEPTH, NULL) != CEL_OK)
        return fail(c, CELERIAC_E_ARGS, "args are not one valid msgpack object");
    return enqueue_raw(c, queue, task, args ? &raw : NULL, o, id_out);
}

static int json_args(celeriac *c, const char *text, cel_buf *out) {
    char why[256];
    return req_json_args(text, out, why, sizeof why) ? CELERIAC_OK
                                                     : fail(c, CELERIAC_E_ARGS, "%s", why);
}

int celeriac_enqueue_json(celeriac *c, const char *queue, const char *task, const char *args_json,
                          const celeriac_opts *o, char id_out[CELERIAC_ID_SIZE]) {
    cel_buf b;
    cel_buf_init(&b);
    int rc = args_json ? json_args(c, args_json, &b) : CELERIAC_OK;
    if (rc == CELERIAC_OK)
        rc = celeriac_enqueue(c, queue, task, args_json ? b.data : NULL, b.len, o, id_out);
    cel_buf_free(&b);
    return rc;
}

int celeriac_enqueue_bulk(celeriac *c, const celeriac_bulk_item *items, size_t n,
                          char (*ids_out)[CELERIAC_ID_SIZE]) {
    if (n == 0 || n > 100000) return fail(c, CELERIAC_E_ARGS, "bulk wants 1..100000 items");
    cel_msg *entries = calloc(n, sizeof *entries);
    cel_buf *args = calloc(n, sizeof *args);
    char(*ids)[CELERIAC_ID_SIZE] = calloc(n, sizeof *ids);
    int rc = entries && args && ids ? req_bulk_entries(items, n, entries, args, ids)
                                    : fail(c, CELERIAC_E_INTERNAL, "out of memory");
    if (rc == CELERIAC_E_ARGS)
        fail(c, rc, "an item has a bad queue, task, id, priority or JSON args");
    if (rc == CELERIAC_OK) {
        cel_msg m;
        memset(&m, 0, sizeof m);
        m.op = CEL_OP_ENQUEUE_BULK;
        m.tasks.msgs = entries, m.tasks.n = (uint32_t)n;
        cel_msg_set(&m, CEL_F_TASKS);
        call k = {.ids = ids_out, .nids = ids_out ? n : 0};
        long long deadline = cel_now_ms() + CALL_TIMEOUT_MS;
        do rc = run_call(c, &m, &k, deadline);
        while (rc == CELERIAC_E_UNAVAILABLE && cel_now_ms() < deadline);
    }
    for (size_t i = 0; args && i < n; i++) cel_buf_free(&args[i]);
    free(entries), free(args), free(ids);
    return rc;
}

static int id_call(celeriac *c, cel_op op, const char *id, uint64_t timeout_ms,
                   celeriac_task_info *out) {
    if (!id || !cel_id_valid(id, strlen(id))) return fail(c, CELERIAC_E_ARGS, "bad task id");
    cel_msg m;
    memset(&m, 0, sizeof m);
    m.op = op, m.id = cel_str_c(id);
    cel_msg_set(&m, CEL_F_ID);
    if (op == CEL_OP_WAIT) m.timeout_ms = timeout_ms, cel_msg_set(&m, CEL_F_TIMEOUT_MS);
    call k = {.info = out};
    if (out) memset(out, 0, sizeof *out);
    return run_call(c, &m, &k, cel_now_ms() + (long long)timeout_ms + CALL_TIMEOUT_MS);
}

int celeriac_status(celeriac *c, const char *id, celeriac_task_info *out) {
    return id_call(c, CEL_OP_STATUS, id, 0, out);
}

int celeriac_wait(celeriac *c, const char *id, int timeout_ms, celeriac_task_info *out) {
    return id_call(c, CEL_OP_WAIT, id, timeout_ms > 0 ? (uint64_t)timeout_ms : 0, out);
}

int celeriac_cancel(celeriac *c, const char *id) {
    return id_call(c, CEL_OP_CANCEL, id, 0, NULL);
}

int celeriac_stats(celeriac *c, char **json_out) {
    cel_msg m;
    memset(&m, 0, sizeof m);
    m.op = CEL_OP_STATS;
    call k = {.json = json_out};
    *json_out = NULL;
    return run_call(c, &m, &k, cel_now_ms() + CALL_TIMEOUT_MS);
}

static const struct {
    const char *name;
    cel_op op;
} admin_ops[] = {{"pause", CEL_OP_PAUSE},
                 {"resume", CEL_OP_RESUME},
                 {"purge", CEL_OP_PURGE},
                 {"dead_requeue", CEL_OP_DEAD_REQUEUE},
                 {"dead_purge", CEL_OP_DEAD_PURGE}};

int celeriac_queue_admin(celeriac *c, const char *action, const char *queue, const char *id,
                         uint64_t *count_out) {
    cel_msg m;
    memset(&m, 0, sizeof m);
    for (size_t i = 0; action && i < sizeof admin_ops / sizeof *admin_ops; i++)
        if (!strcmp(action, admin_ops[i].name)) m.op = admin_ops[i].op;
    if (m.op == CEL_OP_NONE) return fail(c, CELERIAC_E_ARGS, "unknown queue action");
    if (!queue || !cel_name_valid(queue, strlen(queue)))
        return fail(c, CELERIAC_E_ARGS, "bad queue name");
    m.queue = cel_str_c(queue), cel_msg_set(&m, CEL_F_QUEUE);
    if (id && m.op == CEL_OP_DEAD_REQUEUE) {
        if (!cel_id_valid(id, strlen(id))) return fail(c, CELERIAC_E_ARGS, "bad task id");
        m.id = cel_str_c(id), cel_msg_set(&m, CEL_F_ID);
    }
    call k = {0};
    int rc = run_call(c, &m, &k, cel_now_ms() + CALL_TIMEOUT_MS);
    if (rc == CELERIAC_OK && count_out) *count_out = k.count;
    return rc;
}

int celeriac_dead_list(celeriac *c, const char *queue, size_t max, char ***ids_out, size_t *n_out) {
    *ids_out = NULL, *n_out = 0;
    if (!queue || !cel_name_valid(queue, strlen(queue)))
        return fail(c, CELERIAC_E_ARGS, "bad queue name");
    cel_msg m;
    memset(&m, 0, sizeof m);
    m.op = CEL_OP_DEAD_LIST, m.queue = cel_str_c(queue), m.count = max ? max : 100;
    cel_msg_set(&m, CEL_F_QUEUE), cel_msg_set(&m, CEL_F_COUNT);
    call k = {.list = ids_out, .nlist = n_out};
    return run_call(c, &m, &k, cel_now_ms() + CALL_TIMEOUT_MS);
}

void celeriac_ids_free(char **ids, size_t n) {
    for (size_t i = 0; ids && i < n; i++) free(ids[i]);
    free(ids);
}
