/* task_info replies: a task's Redis hash (see docs/redis-layout.md) turned into the wire view. */
#include <stdlib.h>
#include <string.h>

#include "broker.h"

static const char *const terminal[] = {"succeeded", "failed", "dead", "cancelled", "expired"};

bool state_is_terminal(const char *st, size_t len) {
    for (size_t i = 0; i < sizeof terminal / sizeof *terminal; i++)
        if (strlen(terminal[i]) == len && memcmp(terminal[i], st, len) == 0) return true;
    return false;
}

static void set_field(cel_msg *r, const redisReply *k, const redisReply *v) {
    cel_str s = {v->str, (uint32_t)v->len};
    long long n = v->str ? strtoll(v->str, NULL, 10) : 0;
    if (!k->str || !v->str) return;
    switch (k->len == 1 ? k->str[0] : k->len == 2 ? k->str[0] * 256 + k->str[1] : 0) {
    case 'q':
        r->queue = s, cel_msg_set(r, CEL_F_QUEUE);
        break;
    case 'n':
        r->task = s, cel_msg_set(r, CEL_F_TASK);
        break;
    case 'p':
        r->priority = n, cel_msg_set(r, CEL_F_PRIORITY);
        break;
    case 'c':
        r->created_ms = n, cel_msg_set(r, CEL_F_CREATED_MS);
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
    for (size_t i = 0; i + 1 < hash->elements; i += 2)
        set_field(&r, hash->element[i], hash->element[i + 1]);
    if (!cel_msg_has(&r, CEL_F_STATE)) r.state = cel_str_c("unknown"), cel_msg_set(&r, CEL_F_STATE);
    conn_send(c, &r);
}
