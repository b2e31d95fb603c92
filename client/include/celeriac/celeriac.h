/* libceleriac: the producer API of celeriac.
 *
 * Two faces over one connection layer:
 * - sync: celeriac_connect / celeriac_enqueue / celeriac_wait ... block the calling thread;
 * - async: celeriac_async_* run on the caller's libevent event_base and report through
 *   callbacks; many requests may be in flight on one connection (pipelined).
 *
 * Errors: functions return CELERIAC_OK (0) or an error code (celeriac_strerror names it);
 * celeriac_last_error(c) gives the message of the last failure.
 * Ownership: strings passed in are copied before the call returns; celeriac_task_info results
 * are owned by the caller and released with celeriac_task_info_free.
 * Threads: a celeriac handle (or a celeriac_async) must be used by one thread at a time; use one
 * handle per thread.
 * Retries: an enqueue always carries a task id (generated when none is given); when the
 * connection drops before the reply, the sync API reconnects and resends it with the same id,
 * so a retry never creates a second task. */
#ifndef CELERIAC_H
#define CELERIAC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct event_base;

enum {
    CELERIAC_OK = 0,
    CELERIAC_E_PROTOCOL = 1,
    CELERIAC_E_TOO_BIG,
    CELERIAC_E_TOO_DEEP,
    CELERIAC_E_BAD_FIELD,
    CELERIAC_E_UNKNOWN_OP,
    CELERIAC_E_UNAVAILABLE,
    CELERIAC_E_BUSY,
    CELERIAC_E_NOT_FOUND,
    CELERIAC_E_LEASE_EXPIRED,
    CELERIAC_E_TIMEOUT,
    CELERIAC_E_STATE,
    CELERIAC_E_INTERNAL,
    CELERIAC_E_ARGS = 100 /* bad arguments, refused before anything was sent */
};

#define CELERIAC_ID_SIZE 129 /* ids are at most 128 bytes, plus NUL */

const char *celeriac_strerror(int code);

/* Enqueue options; zero means "not set". */
typedef struct celeriac_opts {
    const char *id;         /* NULL: a random 128-bit id in hex */
    int priority;           /* 0..255, higher first */
    uint64_t delay_ms;      /* run no sooner than this from now */
    int64_t eta_ms;         /* or at this Unix time in ms */
    uint32_t max_retries;   /* retries after failures, with backoff */
    uint64_t soft_ms;       /* the task is told to stop */
    uint64_t hard_ms;       /* the task is killed */
    uint32_t result_ttl_s;  /* how long the result is kept (default 24 h) */
    const char *unique_key; /* while a task with this key exists, return it instead */
    int64_t expires_ms;     /* never start after this Unix time in ms */
} celeriac_opts;

typedef struct celeriac_task_info {
    char id[CELERIAC_ID_SIZE];
    char state[32]; /* scheduled queued active retrying succeeded failed dead cancelled expired */
    char queue[CELERIAC_ID_SIZE];
    char task[CELERIAC_ID_SIZE];
    char reason[64];
    char *error;       /* malloc'd, or NULL */
    char *result_json; /* malloc'd JSON text of the result, or NULL */
    unsigned attempt;
    int64_t created_ms, started_ms, finished_ms;
} celeriac_task_info;

void celeriac_task_info_free(celeriac_task_info *t);

/* ---- sync ---- */
typedef struct celeriac celeriac;

/* brokers: "host:port[,host:port...]"; NULL means $CELERIAC_BROKER or 127.0.0.1:7878.
 * Returns NULL (and a message in err) when no broker answered within timeout_ms. */
celeriac *celeriac_connect(const char *brokers, int timeout_ms, char *err, size_t errlen);
void celeriac_close(celeriac *c);
const char *celeriac_last_error(const celeriac *c);

/* args_json: any JSON value, or NULL for no args. id_out (may be NULL) gets the task id. */
int celeriac_enqueue_json(celeriac *c, const char *queue, const char *task, const char *args_json,
                          const celeriac_opts *opts, char id_out[CELERIAC_ID_SIZE]);
/* args: one packed msgpack object (len bytes), or NULL. */
int celeriac_enqueue(celeriac *c, const char *queue, const char *task, const void *args, size_t len,
                     const celeriac_opts *opts, char id_out[CELERIAC_ID_SIZE]);

typedef struct celeriac_bulk_item {
    const char *queue, *task, *args_json;
    celeriac_opts opts;
} celeriac_bulk_item;
/* All or nothing: either every item is stored (ids_out[i] filled) or none is. */
int celeriac_enqueue_bulk(celeriac *c, const celeriac_bulk_item *items, size_t n,
                          char (*ids_out)[CELERIAC_ID_SIZE]);

int celeriac_status(celeriac *c, const char *id, celeriac_task_info *out);
/* Blocks in the broker until the task ends; CELERIAC_E_TIMEOUT after timeout_ms. */
int celeriac_wait(celeriac *c, const char *id, int timeout_ms, celeriac_task_info *out);
int celeriac_cancel(celeriac *c, const char *id);
/* *json_out: malloc'd JSON text of the broker's counters and queues. */
int celeriac_stats(celeriac *c, char **json_out);

/* Operator commands on a queue. action: "pause", "resume", "purge" (ready and scheduled tasks),
 * "dead_requeue" (id, or NULL for all), "dead_purge". *count_out (may be NULL) gets how many
 * tasks were affected. */
int celeriac_queue_admin(celeriac *c, const char *action, const char *queue, const char *id,
                         uint64_t *count_out);
/* Ids in a queue's dead set, oldest first, at most max. *ids_out is a malloc'd array of n
 * malloc'd strings; release with celeriac_ids_free. */
int celeriac_dead_list(celeriac *c, const char *queue, size_t max, char ***ids_out, size_t *n_out);
void celeriac_ids_free(char **ids, size_t n);

/* ---- async ---- */
typedef struct celeriac_async celeriac_async;
/* status: CELERIAC_OK or an error; id: the task's id; info: for status/wait, else NULL. Valid
 * only during the call. */
typedef void (*celeriac_cb)(int status, const char *id, const celeriac_task_info *info, void *arg);

celeriac_async *celeriac_async_new(struct event_base *base, const char *brokers);
/* Fails every request still in flight with CELERIAC_E_UNAVAILABLE. */
void celeriac_async_free(celeriac_async *a);
int celeriac_async_enqueue(celeriac_async *a, const char *queue, const char *task, const void *args,
                           size_t len, const celeriac_opts *opts, celeriac_cb cb, void *arg);
int celeriac_async_status(celeriac_async *a, const char *id, celeriac_cb cb, void *arg);
int celeriac_async_wait(celeriac_async *a, const char *id, int timeout_ms, celeriac_cb cb,
                        void *arg);
int celeriac_async_cancel(celeriac_async *a, const char *id, celeriac_cb cb, void *arg);
/* All or nothing, like celeriac_enqueue_bulk; cb runs once per item, in order, with its id. */
int celeriac_async_enqueue_bulk(celeriac_async *a, const celeriac_bulk_item *items, size_t n,
                                celeriac_cb cb, void *arg);
typedef void (*celeriac_stats_cb)(int status, const char *json, void *arg);
int celeriac_async_stats(celeriac_async *a, celeriac_stats_cb cb, void *arg);

#ifdef __cplusplus
}
#endif
#endif
