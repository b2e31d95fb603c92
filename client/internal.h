/* Internal to libceleriac (not installed): what the sync face (sync.c), the async face
 * (async.c) and the tests share — ids, broker lists, checked enqueues, reading replies. */
#ifndef CELERIAC_CLIENT_INTERNAL_H
#define CELERIAC_CLIENT_INTERNAL_H

#include <celeriac/celeriac.h>
#include <celeriac/conn.h>

/* None of this is part of the shared library's interface. */
#pragma GCC visibility push(hidden)

/* Sync calls: long enough for a broker restart to pass unnoticed, short enough for a person. */
#define CEL_SYNC_TIMEOUT_MS 10000
/* Async requests: producers that stream keep more in flight, so they get more room. */
#define CEL_ASYNC_TIMEOUT_MS 30000
#define CEL_MAX_BROKERS 32
#define CEL_BULK_MAX 100000u
/* The protocol's limit on every duration field (proto/schema.h). */
#define CEL_CLIENT_MAX_DURATION_MS (30ull * 24 * 3600 * 1000)

/* ---- ids.c ---- */

/* 32 lowercase hex chars from 128 bits of getrandom(). */
void cel_id_new(char out[CELERIAC_ID_SIZE]);

/* ---- brokers.c ---- */

typedef struct cel_brokers {
    char **addrs;
    size_t n;
} cel_brokers;

/* list: "host:port[,host:port...]"; NULL or "" means $CELERIAC_BROKER, else 127.0.0.1:7878.
 * False (with why) on an empty entry, a bad address, too many, or no memory. */
bool cel_brokers_parse(const char *list, cel_brokers *out, char *why, size_t cap);
void cel_brokers_free(cel_brokers *b);
/* Connection options for a producer on these brokers. */
cel_conn_opts cel_brokers_conn_opts(const cel_brokers *b, const char *client_name);

/* ---- enqueue.c ---- */

/* One checked enqueue with its id chosen. It points at the caller's strings until
 * cel_enq_own copies them (the async face keeps requests beyond the call, to resend them). */
typedef struct cel_enq {
    char id[CELERIAC_ID_SIZE];
    const char *queue, *task;
    celeriac_opts opts; /* opts.id points at id */
    cel_buf args;       /* one packed msgpack object */
    bool has_args;
    char *owned; /* copies of queue, task and unique_key after cel_enq_own */
} cel_enq;

/* Checks names and options and packs the args (msgpack bytes, or else JSON text, or none).
 * Returns CELERIAC_OK, or CELERIAC_E_ARGS (or _TOO_DEEP) with a reason in why. e must be freed
 * with cel_enq_free either way. */
int cel_enq_prepare(cel_enq *e, const char *queue, const char *task, const void *args, size_t len,
                    const char *args_json, const celeriac_opts *o, char *why, size_t cap);
bool cel_enq_own(cel_enq *e);
void cel_enq_free(cel_enq *e);
/* An enqueue message pointing into e (for a bulk entry, set op to CEL_OP_NONE). */
void cel_enq_msg(const cel_enq *e, cel_msg *m);
/* Prepares n bulk items into es (n of them, zeroed by the caller); stops at the first bad
 * one, naming it in why. Free with cel_enq_free_all. */
int cel_enq_prepare_bulk(cel_enq *es, const celeriac_bulk_item *items, size_t n, char *why,
                         size_t cap);
void cel_enq_free_all(cel_enq *es, size_t n);
/* JSON text → one packed msgpack object appended to out. */
int cel_json_args(const char *text, cel_buf *out, char *why, size_t cap);

/* ---- replies.c ---- */

/* CELERIAC_OK, or the error a reply (or a local failure) carries. */
int cel_reply_code(const cel_msg *r, const cel_error *err);
/* Fills t from a task_info reply (t's strings are malloc'd: celeriac_task_info_free). */
void cel_reply_task_info(const cel_msg *r, celeriac_task_info *t);
/* The stats of a stats_info reply as malloc'd JSON text, or NULL. */
char *cel_reply_stats_json(const cel_msg *r);
/* Item i of the reply's ids into out; false when the reply has no such item. */
bool cel_reply_id(const cel_msg *r, uint32_t i, char out[CELERIAC_ID_SIZE]);
/* Whether a code means "nothing was done, the same request may succeed later". */
bool cel_code_retryable(int code);
/* Checks a task id given by the caller. */
bool cel_id_ok(const char *id);

#pragma GCC visibility pop

#endif
