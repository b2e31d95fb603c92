/* Reading the broker's replies for both faces, and what error codes mean to a caller. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "json.h"

const char *celeriac_errname(int code) {
    if (code == CELERIAC_E_ARGS) return "ARGS";
    if (code >= 0 && code < CEL_E__COUNT) return cel_err_name((cel_err)code);
    return "UNKNOWN";
}

const char *celeriac_strerror(int code) {
    static const char *const text[] = {
        [CELERIAC_OK] = "success",
        [CELERIAC_E_PROTOCOL] = "protocol error between client and broker",
        [CELERIAC_E_TOO_BIG] = "request larger than the broker accepts",
        [CELERIAC_E_TOO_DEEP] = "args nest too deeply",
        [CELERIAC_E_BAD_FIELD] = "the broker refused a field of the request",
        [CELERIAC_E_UNKNOWN_OP] = "the broker does not know this operation",
        [CELERIAC_E_UNAVAILABLE] = "broker or its Redis unavailable; try again",
        [CELERIAC_E_BUSY] = "broker busy; try again",
        [CELERIAC_E_NOT_FOUND] = "no such task, or its result expired",
        [CELERIAC_E_LEASE_EXPIRED] = "lease expired",
        [CELERIAC_E_TIMEOUT] = "timed out",
        [CELERIAC_E_STATE] = "not possible in the task's current state",
        [CELERIAC_E_INTERNAL] = "internal error",
    };
    if (code == CELERIAC_E_ARGS) return "bad arguments";
    if (code >= 0 && code < (int)(sizeof text / sizeof *text)) return text[code];
    return "unknown error";
}

int cel_reply_code(const cel_msg *r, const cel_error *err) {
    if (r && r->op != CEL_OP_ERROR) return CELERIAC_OK;
    return err && err->code != CEL_OK ? (int)err->code : CELERIAC_E_INTERNAL;
}

bool cel_code_retryable(int code) {
    return code == CELERIAC_E_UNAVAILABLE || code == CELERIAC_E_BUSY;
}

bool cel_id_ok(const char *id) {
    return id && cel_id_valid(id, strlen(id));
}

static void copy(char *dst, size_t cap, cel_str s) {
    snprintf(dst, cap, "%.*s", (int)s.len, s.ptr ? s.ptr : "");
}

/* The result both as msgpack (for programs) and as JSON text (for people and the CLI). */
static void copy_result(const msgpack_object *o, celeriac_task_info *t) {
    cel_buf b;
    cel_buf_init(&b);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, cel_buf_msgpack_write);
    if (msgpack_pack_object(&pk, *o) == 0 && b.len) {
        t->result = b.data, t->result_len = b.len;
    } else {
        cel_buf_free(&b);
    }
    json_t *j = cel_json_from_msgpack(o);
    if (j) t->result_json = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(j);
}

void cel_reply_task_info(const cel_msg *r, celeriac_task_info *t) {
    memset(t, 0, sizeof *t);
    copy(t->id, sizeof t->id, r->id);
    copy(t->state, sizeof t->state, r->state);
    copy(t->queue, sizeof t->queue, r->queue);
    copy(t->task, sizeof t->task, r->task);
    copy(t->reason, sizeof t->reason, r->reason);
    copy(t->worker, sizeof t->worker, r->worker);
    t->attempt = (unsigned)r->attempt;
    t->created_ms = r->created_ms, t->started_ms = r->started_ms, t->finished_ms = r->finished_ms;
    if (cel_msg_has(r, CEL_F_ERROR)) t->error = strndup(r->error.ptr, r->error.len);
    if (cel_msg_has(r, CEL_F_RESULT) && r->result.obj) copy_result(r->result.obj, t);
}

void celeriac_task_info_free(celeriac_task_info *t) {
    if (!t) return;
    free(t->error);
    free(t->result_json);
    free(t->result);
    t->error = t->result_json = NULL;
    t->result = NULL, t->result_len = 0;
}

char *cel_reply_stats_json(const cel_msg *r) {
    if (r->op != CEL_OP_STATS_INFO || !r->stats.obj) return NULL;
    json_t *j = cel_json_from_msgpack(r->stats.obj);
    char *s = j ? json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_decref(j);
    return s;
}

bool cel_reply_id(const cel_msg *r, uint32_t i, char out[CELERIAC_ID_SIZE]) {
    cel_str s = cel_list_str(&r->ids, i);
    if (!s.ptr || s.len >= CELERIAC_ID_SIZE) return false;
    copy(out, CELERIAC_ID_SIZE, s);
    return true;
}
