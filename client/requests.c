/* Building requests and reading replies, shared by the sync and async faces. */
#include "requests.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "json.h"

const char *celeriac_strerror(int code) {
    if (code == CELERIAC_E_ARGS) return "ARGS";
    if (code >= 0 && code < CEL_E__COUNT) return cel_err_name((cel_err)code);
    return "UNKNOWN";
}

void req_new_id(char out[CELERIAC_ID_SIZE]) {
    uint8_t raw[16];
    if (getrandom(raw, sizeof raw, 0) != sizeof raw)
        for (size_t i = 0; i < sizeof raw; i++) raw[i] = (uint8_t)random();
    for (size_t i = 0; i < sizeof raw; i++) sprintf(out + 2 * i, "%02x", raw[i]);
}

void req_enqueue(cel_msg *m, const char *queue, const char *task, const cel_raw *args,
                 const celeriac_opts *o, const char *id) {
    memset(m, 0, sizeof *m);
    m->op = CEL_OP_ENQUEUE;
    m->queue = cel_str_c(queue), m->task = cel_str_c(task), m->id = cel_str_c(id);
    cel_msg_set(m, CEL_F_QUEUE), cel_msg_set(m, CEL_F_TASK), cel_msg_set(m, CEL_F_ID);
    if (args && (args->bytes || args->obj)) m->args = *args, cel_msg_set(m, CEL_F_ARGS);
    if (!o) return;
    if (o->priority) m->priority = o->priority, cel_msg_set(m, CEL_F_PRIORITY);
    if (o->delay_ms) m->delay_ms = o->delay_ms, cel_msg_set(m, CEL_F_DELAY_MS);
    if (o->eta_ms) m->eta_ms = o->eta_ms, cel_msg_set(m, CEL_F_ETA_MS);
    if (o->max_retries) m->max_retries = o->max_retries, cel_msg_set(m, CEL_F_MAX_RETRIES);
    if (o->soft_ms) m->soft_ms = o->soft_ms, cel_msg_set(m, CEL_F_SOFT_MS);
    if (o->hard_ms) m->hard_ms = o->hard_ms, cel_msg_set(m, CEL_F_HARD_MS);
    if (o->result_ttl_s) m->result_ttl_s = o->result_ttl_s, cel_msg_set(m, CEL_F_RESULT_TTL_S);
    if (o->unique_key) m->unique_key = cel_str_c(o->unique_key), cel_msg_set(m, CEL_F_UNIQUE_KEY);
    if (o->expires_ms) m->expires_ms = o->expires_ms, cel_msg_set(m, CEL_F_EXPIRES_MS);
}

int req_check_names(const char *queue, const char *task, const celeriac_opts *o) {
    if (!queue || !cel_name_valid(queue, strlen(queue))) return CELERIAC_E_ARGS;
    if (!task || !cel_name_valid(task, strlen(task))) return CELERIAC_E_ARGS;
    if (o && o->id && !cel_id_valid(o->id, strlen(o->id))) return CELERIAC_E_ARGS;
    if (o && (o->priority < 0 || o->priority > CEL_PRIORITY_MAX)) return CELERIAC_E_ARGS;
    return CELERIAC_OK;
}

static void copy(char *dst, size_t cap, cel_str s) {
    snprintf(dst, cap, "%.*s", (int)s.len, s.ptr ? s.ptr : "");
}

void req_task_info(const cel_msg *r, celeriac_task_info *t) {
    memset(t, 0, sizeof *t);
    copy(t->id, sizeof t->id, r->id);
    copy(t->state, sizeof t->state, r->state);
    copy(t->queue, sizeof t->queue, r->queue);
    copy(t->task, sizeof t->task, r->task);
    copy(t->reason, sizeof t->reason, r->reason);
    t->attempt = (unsigned)r->attempt;
    t->created_ms = r->created_ms, t->started_ms = r->started_ms, t->finished_ms = r->finished_ms;
    if (cel_msg_has(r, CEL_F_ERROR)) t->error = strndup(r->error.ptr, r->error.len);
    if (cel_msg_has(r, CEL_F_RESULT) && r->result.obj) {
        json_t *j = cel_json_from_msgpack(r->result.obj);
        t->result_json = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
        json_decref(j);
    }
}

void celeriac_task_info_free(celeriac_task_info *t) {
    if (!t) return;
    free(t->error);
    free(t->result_json);
    t->error = t->result_json = NULL;
}

int req_code(const cel_msg *r, const cel_error *err) {
    if (r && r->op != CEL_OP_ERROR) return CELERIAC_OK;
    return err ? (int)err->code : CELERIAC_E_INTERNAL;
}

char **req_split_brokers(const char *list, size_t *n) {
    const char *src = list && *list ? list : getenv("CELERIAC_BROKER");
    if (!src || !*src) src = "127.0.0.1:7878";
    char *copy_ = strdup(src);
    char **out = calloc(33, sizeof *out);
    *n = 0;
    for (char *save = NULL, *tok = strtok_r(copy_, ",", &save); tok && *n < 32;
         tok = strtok_r(NULL, ",", &save))
        out[(*n)++] = strdup(tok);
    free(copy_);
    return out;
}

void req_free_brokers(char **b, size_t n) {
    for (size_t i = 0; i < n; i++) free(b[i]);
    free(b);
}

/* JSON text → msgpack bytes in out; false when it is not JSON or nests too deeply. */
bool req_json_args(const char *text, cel_buf *out, char *why, size_t cap) {
    json_error_t jerr;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &jerr);
    if (!j) {
        snprintf(why, cap, "args are not JSON: %s (at %d)", jerr.text, jerr.position);
        return false;
    }
    bool ok = cel_json_to_msgpack(j, out);
    json_decref(j);
    if (!ok) snprintf(why, cap, "args nest too deeply");
    return ok;
}

int req_bulk_entries(const celeriac_bulk_item *items, size_t n, cel_msg *entries, cel_buf *args,
                     char (*ids)[CELERIAC_ID_SIZE]) {
    for (size_t i = 0; i < n; i++) {
        const celeriac_bulk_item *it = &items[i];
        char why[256];
        if (req_check_names(it->queue, it->task, &it->opts) != CELERIAC_OK) return CELERIAC_E_ARGS;
        if (it->args_json && !req_json_args(it->args_json, &args[i], why, sizeof why))
            return CELERIAC_E_ARGS;
        if (it->opts.id)
            snprintf(ids[i], CELERIAC_ID_SIZE, "%s", it->opts.id);
        else
            req_new_id(ids[i]);
        cel_raw raw = {NULL, args[i].data, (uint32_t)args[i].len};
        req_enqueue(&entries[i], it->queue, it->task, it->args_json ? &raw : NULL, &it->opts,
                    ids[i]);
        entries[i].op = CEL_OP_NONE;
    }
    return CELERIAC_OK;
}
