/* Built-in tasks, present in every worker: for demos, tests and benchmarks, and as the shortest
 * examples of the task ABI. */
#include <math.h>
#include <signal.h>
#include <time.h>

#include "clock.h"
#include "worker.h"

static int task_noop(celeriac_task_ctx *ctx) {
    (void)ctx;
    return CELERIAC_TASK_OK;
}

/* Returns its args as the result. */
static int task_echo(celeriac_task_ctx *ctx) {
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_object(&pk, *celeriac_task_args(ctx));
    int rc = celeriac_task_result(ctx, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    return rc == 0 ? CELERIAC_TASK_OK : CELERIAC_TASK_FATAL;
}

/* seconds, or [seconds]: a non-negative integer or float. */
static bool seconds_arg(const msgpack_object *o, double *out) {
    if (o->type == MSGPACK_OBJECT_ARRAY && o->via.array.size == 1) o = &o->via.array.ptr[0];
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        *out = (double)o->via.u64;
    else if (o->type == MSGPACK_OBJECT_FLOAT32 || o->type == MSGPACK_OBJECT_FLOAT64)
        *out = o->via.f64;
    else
        return false;
    return isfinite(*out) && *out >= 0;
}

/* Sleeps in 10 ms steps so that a cancel or the soft limit stops it within one step. */
static int task_sleep(celeriac_task_ctx *ctx) {
    double secs;
    if (!seconds_arg(celeriac_task_args(ctx), &secs)) {
        celeriac_task_error(ctx, "celeriac.sleep wants seconds or [seconds] (a number >= 0)");
        return CELERIAC_TASK_FATAL;
    }
    long long end = cel_now_ms() + (long long)(secs * 1000);
    while (cel_now_ms() < end) {
        if (celeriac_task_should_stop(ctx)) {
            celeriac_task_error(ctx,
                                celeriac_task_cancelled(ctx) ? "cancelled" : "soft time limit");
            return CELERIAC_TASK_ERROR;
        }
        long long left = end - cel_now_ms();
        struct timespec step = {0, (left < 10 ? (left > 0 ? left : 0) : 10) * 1000000L};
        nanosleep(&step, NULL);
    }
    return CELERIAC_TASK_OK;
}

static int task_fail(celeriac_task_ctx *ctx) {
    celeriac_task_error(ctx, "celeriac.fail always fails (attempt %u)", celeriac_task_attempt(ctx));
    return CELERIAC_TASK_ERROR;
}

/* A real segmentation fault. The default action is restored first, and the address is not
 * NULL: sanitizer runtimes catch SIGSEGV and null stores, print a report and exit(1), which would
 * hide the signal the worker must name. */
static int task_crash(celeriac_task_ctx *ctx) {
    (void)ctx;
    signal(SIGSEGV, SIG_DFL);
    volatile int *volatile nowhere = (volatile int *)(uintptr_t)8;
    *nowhere = 1;
    return CELERIAC_TASK_FATAL;
}

int builtin_register(celeriac_registry *r) {
    return registry_add_builtin(r, "celeriac.noop", task_noop) ||
           registry_add_builtin(r, "celeriac.echo", task_echo) ||
           registry_add_builtin(r, "celeriac.sleep", task_sleep) ||
           registry_add_builtin(r, "celeriac.fail", task_fail) ||
           registry_add_builtin(r, "celeriac.crash", task_crash);
}
