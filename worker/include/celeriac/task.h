/* The celeriac task ABI: what a task plugin (a .so loaded by celeriac-worker --plugin) or a
 * program embedding libceleriac-worker implements.
 *
 * A plugin exports one function, celeriac_plugin_init, which registers handlers by name:
 *
 *     #include <celeriac/task.h>
 *     static int hello(celeriac_task_ctx *ctx) {
 *         return celeriac_task_result_json(ctx, "\"hello\"");
 *     }
 *     int celeriac_plugin_init(celeriac_registry *r) {
 *         return celeriac_register(r, "demo.hello", hello, NULL);
 *     }
 *
 * A handler runs in a worker child process (prefork pool, the default) or a pool thread
 * (--pool threads). It returns CELERIAC_TASK_OK, or CELERIAC_TASK_ERROR after setting a message
 * with celeriac_task_error (the task then fails and may be retried), or CELERIAC_TASK_FATAL (fails
 * without retry). Everything a handler gets from ctx is valid only during the call. */
#ifndef CELERIAC_TASK_H
#define CELERIAC_TASK_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CELERIAC_TASK_ABI 1

enum { CELERIAC_TASK_OK = 0, CELERIAC_TASK_ERROR = 1, CELERIAC_TASK_FATAL = 2 };

typedef struct celeriac_task_ctx celeriac_task_ctx;
typedef struct celeriac_registry celeriac_registry;
typedef int (*celeriac_task_fn)(celeriac_task_ctx *ctx);

/* Registers name → fn; data is returned by celeriac_task_data. 0 on success, -1 if the name is
 * invalid or taken. */
int celeriac_register(celeriac_registry *r, const char *name, celeriac_task_fn fn, void *data);
/* The symbol a plugin exports; returns 0 on success. */
typedef int (*celeriac_plugin_init_fn)(celeriac_registry *r);
#define CELERIAC_PLUGIN_INIT "celeriac_plugin_init"

const char *celeriac_task_id(const celeriac_task_ctx *ctx);
const char *celeriac_task_name(const celeriac_task_ctx *ctx);
const char *celeriac_task_queue(const celeriac_task_ctx *ctx);
/* 1 on the first delivery, 2 on the first retry or redelivery, ... */
unsigned celeriac_task_attempt(const celeriac_task_ctx *ctx);
const msgpack_object *celeriac_task_args(const celeriac_task_ctx *ctx);
void *celeriac_task_data(const celeriac_task_ctx *ctx);

/* The result: one msgpack object, given packed or as JSON text. The last call wins. 0 on
 * success, -1 when the value is invalid. */
int celeriac_task_result(celeriac_task_ctx *ctx, const void *msgpack, size_t len);
int celeriac_task_result_json(celeriac_task_ctx *ctx, const char *json);
/* Sets the error message reported with CELERIAC_TASK_ERROR / CELERIAC_TASK_FATAL. */
void celeriac_task_error(celeriac_task_ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* True once the task should stop: its soft time limit passed, or it was cancelled. Long tasks
 * check this between steps and return early; the hard limit kills them regardless. */
bool celeriac_task_should_stop(celeriac_task_ctx *ctx);
bool celeriac_task_cancelled(celeriac_task_ctx *ctx);
/* Progress 0..100, visible in the worker's log. */
void celeriac_task_progress(celeriac_task_ctx *ctx, unsigned percent);
void celeriac_task_log(celeriac_task_ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#ifdef __cplusplus
}
#endif
#endif
