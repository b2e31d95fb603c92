/* Built-in tasks, for demos, tests and benchmarks. */
#include <signal.h>
#include <time.h>

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

static bool number_arg(const msgpack_object *o, double *out) {
    if (o->type == MSGPACK_OBJECT_ARRAY && o->via.array.size > 0) o = &o->via.array.ptr[0];
    switch (o->type) {
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        *out = (double)o->via.u64;
        return true;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        *out = o->via.f64;
        return true;
    default:
        return false;
    }
}

/* Sleeps args[0] seconds in small steps, stopping early when told to. */
static int task_sleep(celeriac_task_ctx *ctx) {
    double secs;
    if (!number_arg(celeriac_task_args(ctx), &secs) || secs < 0) {
        celeriac_task_error(ctx, "celeriac.sleep wants [seconds]");
        return CELERIAC_TASK_FATAL;
    }
    struct timespec step = {0, 10 * 1000 * 1000};
    for (double slept = 0; slept < secs; slept += 0.01) {
        if (celeriac_task_should_stop(ctx)) {
            celeriac_task_error(ctx,
                                celeriac_task_cancelled(ctx) ? "cancelled" : "soft time limit");
            return CELERIAC_TASK_ERROR;
        }
        nanosleep(&step, NULL);
    }
    return CELERIAC_TASK_OK;
}

static int task_fail(celeriac_task_ctx *ctx) {
    celeriac_task_error(ctx, "celeriac.fail always fails (attempt %u)", celeriac_task_attempt(ctx));
    return CELERIAC_TASK_ERROR;
}

static int task_crash(celeriac_task_ctx *ctx) {
    (void)ctx;
    raise(SIGSEGV);
    return CELERIAC_TASK_FATAL;
}

void builtin_register(celeriac_registry *r) {
    celeriac_register(r, "celeriac.noop", task_noop, NULL);
    celeriac_register(r, "celeriac.echo", task_echo, NULL);
    celeriac_register(r, "celeriac.sleep", task_sleep, NULL);
    celeriac_register(r, "celeriac.fail", task_fail, NULL);
    celeriac_register(r, "celeriac.crash", task_crash, NULL);
}
