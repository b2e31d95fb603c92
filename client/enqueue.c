/* Enqueue requests checked and built once for both faces: names, options and args are refused
 * here with a reason before anything is sent, and the id is chosen here so that every resend of
 * the request names the same task. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "json.h"

/* Containers the broker allows around the args: the message map for one enqueue; the message
 * map, the tasks array and the entry map for a bulk one (cel_mp_check counts them all). */
#define ARGS_DEPTH_SINGLE (CEL_DEFAULT_MAX_DEPTH - 1)
#define ARGS_DEPTH_BULK (CEL_DEFAULT_MAX_DEPTH - 3)

static int refuse(char *why, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int refuse(char *why, size_t cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, cap, fmt, ap);
    va_end(ap);
    return CELERIAC_E_ARGS;
}

static int bad_name(char *why, size_t cap, const char *what, const char *value) {
    return refuse(why, cap, "bad %s '%.64s': want 1..128 bytes of [A-Za-z0-9_.:-]", what,
                  value ? value : "(none)");
}

static int check_names(const char *queue, const char *task, const celeriac_opts *o, char *why,
                       size_t cap) {
    if (!queue || !cel_name_valid(queue, strlen(queue))) return bad_name(why, cap, "queue", queue);
    if (!task || !cel_name_valid(task, strlen(task))) return bad_name(why, cap, "task name", task);
    if (o->id && !cel_id_valid(o->id, strlen(o->id))) return bad_name(why, cap, "task id", o->id);
    if (o->unique_key && !cel_id_valid(o->unique_key, strlen(o->unique_key)))
        return bad_name(why, cap, "unique key", o->unique_key);
    return CELERIAC_OK;
}

static int check_numbers(const celeriac_opts *o, char *why, size_t cap) {
    const uint64_t max = CEL_CLIENT_MAX_DURATION_MS;
    if (o->priority < 0 || o->priority > CEL_PRIORITY_MAX)
        return refuse(why, cap, "priority %d is not in 0..%d", o->priority, CEL_PRIORITY_MAX);
    if (o->delay_ms > max || o->soft_ms > max || o->hard_ms > max ||
        (uint64_t)o->result_ttl_s * 1000 > max)
        return refuse(why, cap, "delay, time limits and result TTL are at most 30 days");
    if (o->max_retries > 1000000) return refuse(why, cap, "max retries is at most 1000000");
    if (o->eta_ms < 0 || o->expires_ms < 0 || o->eta_ms > INT64_MAX / 2 ||
        o->expires_ms > INT64_MAX / 2)
        return refuse(why, cap, "eta and expiry are Unix times in ms");
    return CELERIAC_OK;
}

int cel_json_args(const char *text, cel_buf *out, char *why, size_t cap) {
    json_error_t jerr;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &jerr);
    if (!j) {
        snprintf(why, cap, "args are not JSON: %s (line %d, column %d)", jerr.text, jerr.line,
                 jerr.column);
        return CELERIAC_E_ARGS;
    }
    bool ok = cel_json_to_msgpack(j, out);
    json_decref(j);
    if (!ok) snprintf(why, cap, "args nest deeper than %u levels", ARGS_DEPTH_SINGLE);
    return ok ? CELERIAC_OK : CELERIAC_E_TOO_DEEP;
}

static int pack_args(cel_enq *e, const void *args, size_t len, const char *args_json,
                     unsigned depth, char *why, size_t cap) {
    int rc = CELERIAC_OK;
    if (args) {
        cel_error err;
        if (len > UINT32_MAX || cel_mp_check(args, len, CEL_HARD_MAX_DEPTH, &err) != CEL_OK)
            return refuse(why, cap, "args are not one msgpack object: %s",
                          len > UINT32_MAX ? "too big" : err.msg);
        if (!cel_buf_append(&e->args, args, len)) {
            snprintf(why, cap, "out of memory");
            return CELERIAC_E_INTERNAL;
        }
    } else if (args_json) {
        rc = cel_json_args(args_json, &e->args, why, cap);
    } else {
        return CELERIAC_OK;
    }
    e->has_args = rc == CELERIAC_OK;
    if (rc == CELERIAC_OK && cel_mp_check(e->args.data, e->args.len, depth, NULL) != CEL_OK) {
        snprintf(why, cap, "args nest deeper than %u levels", depth);
        rc = CELERIAC_E_TOO_DEEP;
    }
    return rc;
}

static int enq_prepare(cel_enq *e, const char *queue, const char *task, const void *args,
                       size_t len, const char *args_json, const celeriac_opts *o, unsigned depth,
                       char *why, size_t cap) {
    static const celeriac_opts none;
    memset(e, 0, sizeof *e);
    cel_buf_init(&e->args);
    e->opts = o ? *o : none;
    int rc = check_names(queue, task, &e->opts, why, cap);
    if (rc == CELERIAC_OK) rc = check_numbers(&e->opts, why, cap);
    if (rc == CELERIAC_OK) rc = pack_args(e, args, len, args_json, depth, why, cap);
    if (rc != CELERIAC_OK) return rc;
    e->queue = queue, e->task = task;
    if (e->opts.id)
        snprintf(e->id, sizeof e->id, "%s", e->opts.id);
    else
        cel_id_new(e->id);
    e->opts.id = e->id;
    return CELERIAC_OK;
}

int cel_enq_prepare(cel_enq *e, const char *queue, const char *task, const void *args, size_t len,
                    const char *args_json, const celeriac_opts *o, char *why, size_t cap) {
    return enq_prepare(e, queue, task, args, len, args_json, o, ARGS_DEPTH_SINGLE, why, cap);
}

int cel_enq_prepare_bulk(cel_enq *es, const celeriac_bulk_item *items, size_t n, char *why,
                         size_t cap) {
    for (size_t i = 0; i < n; i++) {
        const celeriac_bulk_item *it = &items[i];
        char item_why[256];
        int rc = enq_prepare(&es[i], it->queue, it->task, NULL, 0, it->args_json, &it->opts,
                             ARGS_DEPTH_BULK, item_why, sizeof item_why);
        if (rc != CELERIAC_OK) {
            snprintf(why, cap, "bulk item %zu: %s", i, item_why);
            return rc;
        }
    }
    return CELERIAC_OK;
}

bool cel_enq_own(cel_enq *e) {
    const char *uk = e->opts.unique_key ? e->opts.unique_key : "";
    size_t lq = strlen(e->queue) + 1, lt = strlen(e->task) + 1, lu = strlen(uk) + 1;
    char *mem = malloc(lq + lt + lu);
    if (!mem) return false;
    memcpy(mem, e->queue, lq);
    memcpy(mem + lq, e->task, lt);
    memcpy(mem + lq + lt, uk, lu);
    free(e->owned);
    e->owned = mem;
    e->queue = mem, e->task = mem + lq;
    if (e->opts.unique_key) e->opts.unique_key = mem + lq + lt;
    return true;
}

void cel_enq_free(cel_enq *e) {
    cel_buf_free(&e->args);
    free(e->owned);
    e->owned = NULL;
}

void cel_enq_free_all(cel_enq *es, size_t n) {
    for (size_t i = 0; es && i < n; i++) cel_enq_free(&es[i]);
}

void cel_enq_msg(const cel_enq *e, cel_msg *m) {
    const celeriac_opts *o = &e->opts;
    memset(m, 0, sizeof *m);
    m->op = CEL_OP_ENQUEUE;
    m->queue = cel_str_c(e->queue), m->task = cel_str_c(e->task), m->id = cel_str_c(e->id);
    cel_msg_set(m, CEL_F_QUEUE), cel_msg_set(m, CEL_F_TASK), cel_msg_set(m, CEL_F_ID);
    if (e->has_args) {
        m->args.bytes = e->args.data, m->args.len = (uint32_t)e->args.len;
        cel_msg_set(m, CEL_F_ARGS);
    }
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
