/* Fuzz target: Redis replies into the broker. The input is a RESP byte stream (what Redis, or
 * something in its place, sent); hiredis's reader turns it into reply trees, and each one goes
 * through status_reply (server/status.c), which makes a task's Redis hash into the task_info a
 * client receives, and through lease_reply_valid, the check a lease reply passes first. The reply
 * must never crash the broker, and the message it produces must encode, or be refused by the
 * encoder, cleanly. conn_send here is conn.c's binary path. */
#include <hiredis/hiredis.h>
#include <string.h>

#include "broker.h"

void conn_send(cel_client *c, const cel_msg *m) {
    static cel_buf out;
    cel_error err;
    cel_buf_reset(&out);
    if (cel_msg_encode(&out, m, UINT32_MAX, &err) != CEL_OK) {
        cel_buf_reset(&out);
        cel_encode_error(&out, m->seq, CEL_E_INTERNAL, err.msg);
    }
    (void)c;
}

void conn_send_error(cel_client *c, uint64_t seq, cel_err code, const char *msg) {
    static cel_buf out;
    cel_buf_reset(&out);
    cel_encode_error(&out, seq, code, msg);
    (void)c;
}

/* hiredis 0.14 allocates an array reply's element table from its declared count at once (it has
 * no maxelements yet), so "*2147483647" is a 16 GiB calloc: a reader limit, not ours. Inputs
 * declaring more than 1,000 elements in an array are skipped: with hundreds of such headers in
 * one input, even 100,000 each added up past the fuzzer's memory limit. Every '*' counts, not only
 * those at a line start: after a malformed reply the reader may take a header from mid-line. */
static bool declares_huge_array(const uint8_t *d, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (d[i] != '*') continue;
        unsigned long long v = 0;
        for (size_t k = i + 1; k < n && d[k] >= '0' && d[k] <= '9' && v <= 1000; k++)
            v = v * 10 + (d[k] - '0');
        if (v > 1000) return true;
    }
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (declares_huge_array(data, size)) return 0;
    redisReader *r = redisReaderCreate();
    cel_client c;
    memset(&c, 0, sizeof c);
    c.state = CS_BINARY;
    redisReaderFeed(r, (const char *)data, size);
    for (int n = 0; n < 64; n++) {
        void *reply = NULL;
        if (redisReaderGetReply(r, &reply) != REDIS_OK || !reply) break;
        status_reply(&c, 7, "task-1", 6, reply);
        const redisReply *rep = reply;
        if (rep->type == REDIS_REPLY_ARRAY && rep->elements % LEASE_FIELDS == 0)
            (void)lease_reply_valid(rep->element, rep->elements / LEASE_FIELDS);
        freeReplyObject(reply);
    }
    redisReaderFree(r);
    return 0;
}
