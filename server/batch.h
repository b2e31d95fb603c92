/* A batch of script arguments built while a read's frames are processed and sent as one
 * script call when the read is done: many enqueues or worker outcomes cost one Redis round
 * trip. Entries remember which request each result answers. */
#ifndef CELERIAC_BATCH_H
#define CELERIAC_BATCH_H

#include "broker.h"

typedef struct batch_entry {
    uint64_t seq;
    cel_op op;
    uint32_t id_off, id_len; /* the task id, inside the arena */
} batch_entry;

typedef struct batch {
    cel_server *srv;
    cel_client *client; /* NULL for broker-internal work (requeue on disconnect) */
    int script;
    bool bulk; /* one enqueue_bulk request: one reply with all ids */
    uint64_t bulk_seq;
    cel_buf arena;   /* argument bytes */
    cel_buf args;    /* uint32_t pairs (offset, length) into arena */
    cel_buf entries; /* batch_entry */
    size_t nentries;
    size_t count_arg;  /* index of the argument holding the entry count */
    lease_call *lease; /* enqueue: a lease carried by the same call (dispatch_reserve) */
} batch;

batch *batch_new(cel_server *s, cel_client *c, int script);
void batch_free(batch *b);
void batch_arg(batch *b, const void *p, size_t len);
void batch_arg_str(batch *b, cel_str s);
void batch_arg_u64(batch *b, uint64_t v);
/* One msgpack value, packed into the arena as one argument. */
void batch_arg_object(batch *b, const msgpack_object *o);
void batch_arg_i64(batch *b, int64_t v);
/* The arena bytes appended since start (by the caller, into b->arena) become one argument. */
void batch_arg_since(batch *b, size_t start);
/* Reserves the entry-count argument; batch_send fills it. */
void batch_arg_count(batch *b);
batch_entry *batch_add_entry(batch *b, uint64_t seq, cel_op op);
/* Argument i (0 is the prefix) and its length. */
const char *batch_arg_get(const batch *b, size_t i, size_t *len);
const char *batch_entry_id(const batch *b, const batch_entry *e);
/* Sends the script call; cb gets (reply, err, b) and must free b. Returns non-OK (and frees
 * nothing) when Redis is unavailable or busy. */
cel_err batch_send(batch *b, cel_redis_cb cb, cel_error *err);

#endif
