/* Batches: argument arenas for multi-entry script calls (see batch.h). */
#include "batch.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

batch *batch_new(cel_server *s, cel_client *c, int script) {
    batch *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    b->srv = s, b->client = c, b->script = script;
    if (c) client_ref(c);
    batch_arg(b, s->cfg->prefix, strlen(s->cfg->prefix));
    return b;
}

void batch_free(batch *b) {
    if (!b) return;
    if (b->lease) dispatch_leased(b->lease, NULL, 0, false, NULL);
    if (b->client) client_unref(b->client);
    cel_buf_free(&b->arena);
    cel_buf_free(&b->args);
    cel_buf_free(&b->entries);
    free(b);
}

void batch_arg(batch *b, const void *p, size_t len) {
    uint32_t pair[2] = {(uint32_t)b->arena.len, (uint32_t)len};
    cel_buf_append(&b->arena, p, len);
    cel_buf_append(&b->args, pair, sizeof pair);
}

void batch_arg_str(batch *b, cel_str s) {
    batch_arg(b, s.ptr ? s.ptr : "", s.len);
}

void batch_arg_u64(batch *b, uint64_t v) {
    char tmp[24];
    char *p = cel_u64_digits(tmp, v);
    batch_arg(b, p, (size_t)(tmp + 24 - p));
}

void batch_arg_object(batch *b, const msgpack_object *o) {
    size_t before = b->arena.len;
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b->arena, cel_buf_msgpack_write);
    msgpack_pack_object(&pk, *o);
    uint32_t pair[2] = {(uint32_t)before, (uint32_t)(b->arena.len - before)};
    cel_buf_append(&b->args, pair, sizeof pair);
}

void batch_arg_since(batch *b, size_t start) {
    uint32_t pair[2] = {(uint32_t)start, (uint32_t)(b->arena.len - start)};
    cel_buf_append(&b->args, pair, sizeof pair);
}

void batch_arg_i64(batch *b, int64_t v) {
    char tmp[24];
    char *p = cel_u64_digits(tmp, v < 0 ? 0 - (uint64_t)v : (uint64_t)v);
    if (v < 0) *--p = '-';
    batch_arg(b, p, (size_t)(tmp + 24 - p));
}

void batch_arg_count(batch *b) {
    b->count_arg = b->args.len / (2 * sizeof(uint32_t));
    batch_arg(b, "0000000000", 10);
}

batch_entry *batch_add_entry(batch *b, uint64_t seq, cel_op op) {
    batch_entry e = {seq, op, 0, 0};
    if (!cel_buf_append(&b->entries, &e, sizeof e)) return NULL;
    b->nentries++;
    return (batch_entry *)(b->entries.data + b->entries.len - sizeof e);
}

const char *batch_arg_get(const batch *b, size_t i, size_t *len) {
    const uint32_t *pairs = (const uint32_t *)b->args.data;
    *len = pairs[2 * i + 1];
    return (const char *)b->arena.data + pairs[2 * i];
}

const char *batch_entry_id(const batch *b, const batch_entry *e) {
    return (const char *)b->arena.data + e->id_off;
}

cel_err batch_send(batch *b, cel_redis_cb cb, cel_error *err) {
    size_t n = b->args.len / (2 * sizeof(uint32_t));
    const uint32_t *pairs = (const uint32_t *)b->args.data;
    if (b->count_arg) {
        char tmp[11];
        snprintf(tmp, sizeof tmp, "%010zu", b->nentries);
        memcpy(b->arena.data + pairs[2 * b->count_arg], tmp, 10);
    }
    const char **argv = malloc(n * sizeof *argv);
    size_t *lens = malloc(n * sizeof *lens);
    if (!argv || !lens) {
        free(argv), free(lens);
        return cel_fail(err, CEL_E_INTERNAL, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        argv[i] = (const char *)b->arena.data + pairs[2 * i];
        lens[i] = pairs[2 * i + 1];
    }
    cel_err rc =
        cel_redis_script(b->srv->redis, b->srv->script[b->script], (int)n, argv, lens, cb, b, err);
    free(argv), free(lens);
    return rc;
}
