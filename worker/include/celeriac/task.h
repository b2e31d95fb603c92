/* The celeriac task ABI: what a task plugin (a .so loaded by `celeriac-worker --plugin`) or a
 * program embedding libceleriac-worker (see celeriac/worker.h) implements.
 *
 * A plugin exports one function, celeriac_plugin_init, which registers handlers by task name:
 *
 *     #include <celeriac/task.h>
 *
 *     static int hello(celeriac_task_ctx *ctx) {
 *         if (celeriac_task_should_stop(ctx)) return CELERIAC_TASK_ERROR;
 *         return celeriac_task_result_json(ctx, "\"hello\"") == 0 ? CELERIAC_TASK_OK
 *                                                                 : CELERIAC_TASK_FATAL;
 *     }
 *     int celeriac_plugin_init(celeriac_registry *r) {
 *         return celeriac_register(r, "demo.hello", hello, NULL);
 *     }
 *
 * Build it with `cc -shared -fPIC -o libdemo.so demo.c` (msgpack-c headers on the include path);
 * the celeriac_* functions are resolved from the worker that loads it.
 *
 * Where a handler runs: plugins are loaded once, before the pool starts. With the prefork pool
 * (the default) each handler call runs in a pool child process, so a crash kills only that child
 * (the task fails with reason "worker_lost"); with --pool threads it runs on a pool thread and
 * must be thread-safe; with --pool solo it runs in the worker's own event loop, one task at a
 * time (a crash ends the worker, and nothing is heard from the broker until it returns).
 * Handlers keep no state between tasks that they cannot lose.
 *
 * A handler returns CELERIAC_TASK_OK, or CELERIAC_TASK_ERROR after describing the problem with
 * celeriac_task_error (the task fails and the broker retries it while the task's max_retries
 * allows), or CELERIAC_TASK_FATAL (the task fails for good). Everything a handler gets from ctx
 * is valid only during the call. */
#ifndef CELERIAC_TASK_H
#define CELERIAC_TASK_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped when a change would break a compiled plugin. */
#define CELERIAC_TASK_ABI 1

enum { CELERIAC_TASK_OK = 0, CELERIAC_TASK_ERROR = 1, CELERIAC_TASK_FATAL = 2 };

typedef struct celeriac_task_ctx celeriac_task_ctx;
typedef struct celeriac_registry celeriac_registry;
typedef int (*celeriac_task_fn)(celeriac_task_ctx *ctx);

/* Registers name → fn. Names are 1..128 bytes of [A-Za-z0-9_.:-]; "celeriac." is taken by the
 * built-in tasks. data is handed back by celeriac_task_data. Returns 0, or -1 if the name is
 * invalid or already registered. */
int celeriac_register(celeriac_registry *r, const char *name, celeriac_task_fn fn, void *data);

/* The function a plugin exports under this name; returns 0 on success. */
typedef int (*celeriac_plugin_init_fn)(celeriac_registry *r);
#define CELERIAC_PLUGIN_INIT "celeriac_plugin_init"

/* ---- what the task is ---- */
const char *celeriac_task_id(const celeriac_task_ctx *ctx);
const char *celeriac_task_name(const celeriac_task_ctx *ctx);
const char *celeriac_task_queue(const celeriac_task_ctx *ctx);
/* 1 on the first delivery, 2 on the first retry or redelivery, ... */
unsigned celeriac_task_attempt(const celeriac_task_ctx *ctx);
/* The task's args as given by the producer (nil when it gave none). */
const msgpack_object *celeriac_task_args(const celeriac_task_ctx *ctx);
void *celeriac_task_data(const celeriac_task_ctx *ctx);

/* ---- what it produces ---- */
/* The result, stored by the broker for producers to fetch: one msgpack object, given packed or
 * as JSON text. The last call wins. Returns 0, or -1 when the value is not exactly one valid
 * object. A result larger than the broker's frame limit turns the task into a failure. */
int celeriac_task_result(celeriac_task_ctx *ctx, const void *msgpack, size_t len);
int celeriac_task_result_json(celeriac_task_ctx *ctx, const char *json);
/* The error message reported with CELERIAC_TASK_ERROR / CELERIAC_TASK_FATAL (up to 1 KiB). */
void celeriac_task_error(celeriac_task_ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- staying in touch ---- */
/* True once the task should stop: its soft time limit passed, or it was cancelled (or the
 * worker is going away). Long tasks check this between steps and return early; the hard limit
 * kills them regardless. A task failing after its soft limit passed is reported with reason
 * "timeout"; a cancelled one as "cancelled", never retried. Cheap enough to call every few
 * milliseconds. */
bool celeriac_task_should_stop(celeriac_task_ctx *ctx);
/* True when the stop is a cancel rather than the soft time limit. */
bool celeriac_task_cancelled(celeriac_task_ctx *ctx);
/* Progress 0..100, written to the worker's log when it changes. */
void celeriac_task_progress(celeriac_task_ctx *ctx, unsigned percent);
/* A line in the worker's log, tagged with the task's id and name. */
void celeriac_task_log(celeriac_task_ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#ifdef __cplusplus
}
#endif
#endif
