/* task_info replies: a task's Redis hash (see docs/delivery.md) turned into the wire view. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"

/* ---- the task body ------------------------------------------------------------------------ */

void task_body_pack_head(cel_buf *out, const task_body *b) {
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, cel_buf_msgpack_write);
    msgpack_pack_array(&pk, 5);
    msgpack_pack_str_with_body(&pk, b->name.ptr ? b->name.ptr : "", b->name.len);
    msgpack_pack_int64(&pk, b->priority);
    msgpack_pack_uint64(&pk, b->soft_ms);
    msgpack_pack_uint64(&pk, b->hard_ms);
    msgpack_pack_int64(&pk, b->created_ms);
}

/* A big-endian unsigned integer of n bytes at *p, when they are there. */
static bool be_uint(const uint8_t **p, const uint8_t *end, int n, uint64_t *v) {
    if (end - *p < n) return false;
    *v = 0;
    for (int i = 0; i < n; i++) *v = *v << 8 | *(*p)++;
    return true;
}

/* One msgpack integer, in any of its encodings. */
static bool mp_int(const uint8_t **p, const uint8_t *end, int64_t *out) {
    if (*p >= end) return false;
    uint8_t t = *(*p)++;
    uint64_t v;
    if (t <= 0x7f || t >= 0xe0) return *out = (int8_t)t, true;
    if (t >= 0xcc && t <= 0xcf) {
        if (!be_uint(p, end, 1 << (t - 0xcc), &v) || v > INT64_MAX) return false;
        return *out = (int64_t)v, true;
    }
    if (t >= 0xd0 && t <= 0xd3) {
        int n = 1 << (t - 0xd0);
        if (!be_uint(p, end, n, &v)) return false;
        /* sign-extend from n bytes */
        int shift = 64 - 8 * n;
        return *out = (int64_t)(v << shift) >> shift, true;
    }
    return false;
}

/* One msgpack str: fixstr, str8, str16 or str32. */
static bool mp_str(const uint8_t **p, const uint8_t *end, cel_str *out) {
    if (*p >= end) return false;
    uint8_t t = *(*p)++;
    uint64_t n;
    if (t >= 0xa0 && t <= 0xbf)
        n = t & 0x1f;
    else if (t < 0xd9 || t > 0xdb || !be_uint(p, end, 1 << (t - 0xd9), &n))
        return false;
    if ((uint64_t)(end - *p) < n) return false;
    out->ptr = (const char *)*p, out->len = (uint32_t)n;
    *p += n;
    return true;
}

bool task_body_unpack(const char *data, size_t len, task_body *b) {
    const uint8_t *p = (const uint8_t *)data, *end = p + len;
    int64_t soft, hard;
    memset(b, 0, sizeof *b);
    if (!data || len < 1 || *p++ != 0x95 || !mp_str(&p, end, &b->name) ||
        !mp_int(&p, end, &b->priority) || !mp_int(&p, end, &soft) || !mp_int(&p, end, &hard) ||
        !mp_int(&p, end, &b->created_ms) || soft < 0 || hard < 0)
        return false;
    b->soft_ms = (uint64_t)soft, b->hard_ms = (uint64_t)hard;
    b->args = p, b->args_len = (uint32_t)(end - p);
    return cel_mp_check(b->args, b->args_len, CEL_HARD_MAX_DEPTH, NULL) == CEL_OK;
}

/* ---- task_info ----------------------------------------------------------------------------- */

static const char *const terminal[] = {"succeeded", "failed", "dead", "cancelled", "expired"};

bool state_is_terminal(const char *st, size_t len) {
    for (size_t i = 0; i < sizeof terminal / sizeof *terminal; i++)
        if (strlen(terminal[i]) == len && memcmp(terminal[i], st, len) == 0) return true;
    return false;
}

/* ---- lease replies -------------------------------------------------------------------------- */

bool lease_reply_valid(redisReply *const *elems, size_t n) {
    for (size_t i = 0; i < n; i++) {
        redisReply *const *f = &elems[LEASE_FIELDS * i];
        if (f[0]->type != REDIS_REPLY_STRING || f[0]->len == 0 || f[0]->len > CEL_ID_MAX ||
            (f[1]->type != REDIS_REPLY_STRING && f[1]->type != REDIS_REPLY_INTEGER) ||
            (f[1]->type == REDIS_REPLY_INTEGER && f[1]->integer < 0) ||
            f[2]->type != REDIS_REPLY_INTEGER || f[3]->type != REDIS_REPLY_INTEGER ||
            f[4]->type != REDIS_REPLY_INTEGER || f[2]->integer < 0 || f[3]->integer < 0 ||
            f[4]->integer < 0)
            return false;
    }
    return true;
}

/* ---- task_info ---------------------------------------------------------------------------- */

static void set_field(cel_msg *r, const redisReply *k, const redisReply *v) {
    cel_str s = {v->str, (uint32_t)v->len};
    long long n = v->str ? strtoll(v->str, NULL, 10) : 0;
    if (!k->str || !v->str) return;
    task_body body;
    switch (k->len == 1 ? k->str[0] : k->len == 2 ? k->str[0] * 256 + k->str[1] : 0) {
    case 'd':
        if (!task_body_unpack(v->str, v->len, &body)) break;
        r->task = body.name, r->priority = body.priority, r->created_ms = body.created_ms;
        cel_msg_set(r, CEL_F_TASK), cel_msg_set(r, CEL_F_PRIORITY),
            cel_msg_set(r, CEL_F_CREATED_MS);
        break;
    case 'q':
        r->queue = s, cel_msg_set(r, CEL_F_QUEUE);
        break;
    case 'f':
        r->finished_ms = n, cel_msg_set(r, CEL_F_FINISHED_MS);
        break;
    case 'e':
        r->error = s, cel_msg_set(r, CEL_F_ERROR);
        break;
    case 'w':
        r->worker = s, cel_msg_set(r, CEL_F_WORKER);
        break;
    case 'r':
        if (v->len)
            r->result.bytes = (const uint8_t *)v->str, r->result.len = (uint32_t)v->len,
            cel_msg_set(r, CEL_F_RESULT);
        break;
    case 's' * 256 + 't':
        r->state = s, cel_msg_set(r, CEL_F_STATE);
        break;
    case 'a' * 256 + 't':
        r->attempt = (uint64_t)n, cel_msg_set(r, CEL_F_ATTEMPT);
        break;
    case 'm' * 256 + 'r':
        r->max_retries = (uint64_t)n, cel_msg_set(r, CEL_F_MAX_RETRIES);
        break;
    case 's' * 256 + 'a':
        r->started_ms = n, cel_msg_set(r, CEL_F_STARTED_MS);
        break;
    case 'r' * 256 + 's':
        if (v->len) r->reason = s, cel_msg_set(r, CEL_F_REASON);
        break;
    default:
        break;
    }
}

void status_reply(cel_client *c, uint64_t seq, const char *id, size_t idlen,
                  const redisReply *hash) {
    if (!hash || hash->type != REDIS_REPLY_ARRAY) {
        conn_send_error(c, seq, CEL_E_NOT_FOUND, "no such task (unknown, or its result expired)");
        return;
    }
    cel_msg r;
    memset(&r, 0, sizeof r);
    r.op = CEL_OP_TASK_INFO, r.seq = seq;
    r.id = (cel_str){id, (uint32_t)idlen};
    cel_msg_set(&r, CEL_F_SEQ), cel_msg_set(&r, CEL_F_ID);
    /* Fields at their default are not stored: zero deliveries, no retries. */
    cel_msg_set(&r, CEL_F_ATTEMPT), cel_msg_set(&r, CEL_F_MAX_RETRIES);
    for (size_t i = 0; i + 1 < hash->elements; i += 2)
        set_field(&r, hash->element[i], hash->element[i + 1]);
    if (!cel_msg_has(&r, CEL_F_STATE)) r.state = cel_str_c("unknown"), cel_msg_set(&r, CEL_F_STATE);
    conn_send(c, &r);
}
