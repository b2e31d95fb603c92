/* libceleriac: the producer API of celeriac.
 *
 * Two faces over one connection layer (celeriac/conn.h):
 * - sync: celeriac_connect / celeriac_enqueue / celeriac_wait ... block the calling thread on a
 *   private event loop until the broker answers;
 * - async: celeriac_async_* run on the caller's libevent event_base and report through
 *   callbacks; many requests may be in flight on one connection (pipelined, replies matched by
 *   sequence number).
 *
 * Errors: functions return CELERIAC_OK (0) or a CELERIAC_E_* code. celeriac_errname gives its
 * stable name (as on the wire: "NOT_FOUND"), celeriac_strerror a sentence, and
 * celeriac_last_error(c) the message of the sync handle's last failure (the broker's own words
 * when it refused). Nothing is printed.
 *
 * Ownership: every string and buffer passed in is copied (or fully used) before the call returns;
 * the caller keeps ownership. Strings handed to callbacks are valid only during the callback.
 * celeriac_task_info contents are owned by the caller once filled and released with
 * celeriac_task_info_free; other malloc'd results say how to free them.
 *
 * Threads: the library keeps no global state. A celeriac or celeriac_async handle must be used
 * by one thread at a time (one handle per thread is the simple rule); an async handle only from
 * the thread running its event_base.
 *
 * Retries and idempotence: an enqueue always carries a task id (32 random hex chars when the
 * caller gives none). When the connection drops before the reply, the request is sent again
 * with the same id once a broker answers, and the broker returns the task it already stored: a
 * resend never creates a second task. Status, wait and cancel are resent the same way (a wait
 * with what remains of its timeout). The sync face also retries an UNAVAILABLE or BUSY answer
 * after a short pause; everything stops at the handle's timeout (celeriac_set_timeout).
 *
 * Signals: the library writes its sockets with MSG_NOSIGNAL, so a broker that closed the
 * connection never raises SIGPIPE in the caller's program; neither face needs it ignored. */
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
    CELERIAC_E_PROTOCOL = 1, /* the broker sent something malformed, or refused ours */
    CELERIAC_E_TOO_BIG,      /* a request (e.g. its args) is beyond the broker's frame limit */
    CELERIAC_E_TOO_DEEP,     /* args nest more than 16 levels */
    CELERIAC_E_BAD_FIELD,    /* the broker refused a field (a value out of range) */
    CELERIAC_E_UNKNOWN_OP,   /* the broker does not speak this operation */
    CELERIAC_E_UNAVAILABLE,  /* no broker reachable, or the broker cannot reach Redis */
    CELERIAC_E_BUSY,         /* the broker is overloaded; try again later */
    CELERIAC_E_NOT_FOUND,    /* no such task, or its result expired */
    CELERIAC_E_LEASE_EXPIRED,
    CELERIAC_E_TIMEOUT,   /* the wait ran out, or no reply came within the handle's timeout */
    CELERIAC_E_STATE,     /* not possible in the task's state (e.g. cancel of a finished task) */
    CELERIAC_E_INTERNAL,  /* a failure inside the broker or the library (e.g. out of memory) */
    CELERIAC_E_ARGS = 100 /* bad arguments, refused before anything was sent */
};

#define CELERIAC_ID_SIZE 129 /* ids, queue and task names are at most 128 bytes, plus NUL */

/* "NOT_FOUND", "TIMEOUT", ... ("ARGS" for CELERIAC_E_ARGS, "UNKNOWN" otherwise). */
const char *celeriac_errname(int code);
/* A short sentence saying what the code means. */
const char *celeriac_strerror(int code);

/* Enqueue options; zero means "not set" (the broker's default). Durations are at most 30 days. */
typedef struct celeriac_opts {
    const char *id;         /* NULL: a random 128-bit id in hex; else 1..128 of [A-Za-z0-9_.:-] */
    int priority;           /* 0..255, higher first; FIFO within a priority */
    uint64_t delay_ms;      /* run no sooner than this from now */
    int64_t eta_ms;         /* or at this Unix time in ms */
    uint32_t max_retries;   /* retries after failures, with backoff (default 0) */
    uint64_t soft_ms;       /* the task is told to stop after this long */
    uint64_t hard_ms;       /* the task is killed after this long */
    uint32_t result_ttl_s;  /* how long the result is kept (default: the broker's, 24 h) */
    const char *unique_key; /* while a task with this key exists, return it instead */
    int64_t expires_ms;     /* never start after this Unix time in ms */
} celeriac_opts;

typedef struct celeriac_task_info {
    char id[CELERIAC_ID_SIZE];
    char state[32]; /* scheduled queued active retrying succeeded failed dead cancelled expired */
    char queue[CELERIAC_ID_SIZE];
    char task[CELERIAC_ID_SIZE];
    char reason[64];   /* why it failed: "error", "timeout", "worker_lost", "cancelled", or "" */
    char *error;       /* malloc'd error text, or NULL */
    char *result_json; /* malloc'd JSON text of the result, or NULL */
    unsigned attempt;  /* deliveries so far (1 = first) */
    int64_t created_ms, started_ms, finished_ms; /* Unix time in ms; 0: not yet */
    void *result;      /* malloc'd result as one packed msgpack object, or NULL */
    size_t result_len; /* bytes at result */
    char worker[257];  /* the worker that ran it last, or "" */
} celeriac_task_info;

/* Frees what t owns (not t itself); t may then be reused. */
void celeriac_task_info_free(celeriac_task_info *t);

/* ---- sync ---- */
typedef struct celeriac celeriac;

/* brokers: "host:port[,host:port...]" (up to 32, tried in turn); NULL or "" means
 * $CELERIAC_BROKER, else 127.0.0.1:7878. Returns once a broker answered, or NULL with the
 * reason in err (when not NULL) once each broker failed once (refused, unknown host) or
 * timeout_ms (<= 0: 5000) passed. Once connected, a lost connection is re-established by the
 * calls themselves. */
celeriac *celeriac_connect(const char *brokers, int timeout_ms, char *err, size_t errlen);
void celeriac_close(celeriac *c);
/* The message of the last failed call on c ("" after a success). Valid until the next call. */
const char *celeriac_last_error(const celeriac *c);
/* How long one call may take in all, resends included (<= 0: the default, 10000 ms); a wait
 * gets its own timeout on top. */
void celeriac_set_timeout(celeriac *c, int timeout_ms);

/* args_json: any JSON value, or NULL for no args. id_out (may be NULL) gets the task's id: the
 * given or generated one, or that of the task already holding opts->unique_key. */
int celeriac_enqueue_json(celeriac *c, const char *queue, const char *task, const char *args_json,
                          const celeriac_opts *opts, char id_out[CELERIAC_ID_SIZE]);
/* args: one packed msgpack object (len bytes), or NULL. */
int celeriac_enqueue(celeriac *c, const char *queue, const char *task, const void *args, size_t len,
                     const celeriac_opts *opts, char id_out[CELERIAC_ID_SIZE]);

typedef struct celeriac_bulk_item {
    const char *queue, *task, *args_json; /* args_json may be NULL */
    celeriac_opts opts;
} celeriac_bulk_item;
/* 1..100000 items in one request. All or nothing: either every item is stored (ids_out[i]
 * filled, when ids_out is not NULL) or none is. */
int celeriac_enqueue_bulk(celeriac *c, const celeriac_bulk_item *items, size_t n,
                          char (*ids_out)[CELERIAC_ID_SIZE]);

/* out (may be NULL) is filled on success; release it with celeriac_task_info_free. */
int celeriac_status(celeriac *c, const char *id, celeriac_task_info *out);
/* Blocks in the broker (no polling) until the task has ended: succeeded, failed, dead,
 * cancelled or expired (see out->state); CELERIAC_E_TIMEOUT after timeout_ms. */
int celeriac_wait(celeriac *c, const char *id, int timeout_ms, celeriac_task_info *out);
/* Cancels a scheduled, queued or running task (a running one is aborted by its worker);
 * CELERIAC_E_STATE if it had already ended. */
int celeriac_cancel(celeriac *c, const char *id);
/* *json_out: malloc'd JSON object of the broker's counters, with per-queue depths under
 * "queues"; free() it. */
int celeriac_stats(celeriac *c, char **json_out);

/* Operator commands on a queue. action: "pause", "resume", "purge" (ready and scheduled tasks),
 * "dead_requeue" (id, or NULL for all), "dead_purge". *count_out (may be NULL) gets how many
 * tasks were affected. */
int celeriac_queue_admin(celeriac *c, const char *action, const char *queue, const char *id,
                         uint64_t *count_out);
/* Ids in a queue's dead set, oldest first, at most max (0: 100). *ids_out is a malloc'd array
 * of n malloc'd strings; release with celeriac_ids_free. */
int celeriac_dead_list(celeriac *c, const char *queue, size_t max, char ***ids_out, size_t *n_out);
void celeriac_ids_free(char **ids, size_t n);

/* ---- async ---- */
typedef struct celeriac_async celeriac_async;
/* status: CELERIAC_OK or an error; id: the task's id (for an enqueue: as for id_out above);
 * info: for status and wait, else NULL. Valid only during the call. Each accepted request gets
 * exactly one call (one per item for a bulk enqueue). */
typedef void (*celeriac_cb)(int status, const char *id, const celeriac_task_info *info, void *arg);
typedef void (*celeriac_stats_cb)(int status, const char *json, void *arg);

/* Starts connecting on base at once; requests made before the broker answers are queued.
 * brokers as for celeriac_connect. Returns NULL on a bad broker list or no memory. */
celeriac_async *celeriac_async_new(struct event_base *base, const char *brokers);
/* Fails every request still in flight with CELERIAC_E_UNAVAILABLE (their callbacks run before
 * it returns) and frees a. May be called from inside a callback. */
void celeriac_async_free(celeriac_async *a);
/* How long a request may take, waiting for a connection and resends included (<= 0: the
 * default, 30000 ms); a wait gets its own timeout on top. Applies to later requests. */
void celeriac_async_set_timeout(celeriac_async *a, int timeout_ms);

/* These return CELERIAC_OK once the request is queued (cb then runs exactly once, never before
 * the call returns), or an error (cb never runs): CELERIAC_E_ARGS, CELERIAC_E_TOO_BIG, or
 * CELERIAC_E_UNAVAILABLE while a is being freed. */
int celeriac_async_enqueue(celeriac_async *a, const char *queue, const char *task, const void *args,
                           size_t len, const celeriac_opts *opts, celeriac_cb cb, void *arg);
int celeriac_async_enqueue_json(celeriac_async *a, const char *queue, const char *task,
                                const char *args_json, const celeriac_opts *opts, celeriac_cb cb,
                                void *arg);
/* All or nothing, like celeriac_enqueue_bulk; cb runs once per item, in order, with its id. */
int celeriac_async_enqueue_bulk(celeriac_async *a, const celeriac_bulk_item *items, size_t n,
                                celeriac_cb cb, void *arg);
int celeriac_async_status(celeriac_async *a, const char *id, celeriac_cb cb, void *arg);
int celeriac_async_wait(celeriac_async *a, const char *id, int timeout_ms, celeriac_cb cb,
                        void *arg);
int celeriac_async_cancel(celeriac_async *a, const char *id, celeriac_cb cb, void *arg);
int celeriac_async_stats(celeriac_async *a, celeriac_stats_cb cb, void *arg);

#ifdef __cplusplus
}
#endif
#endif
