/* A task plugin built by the tests. test.add sums its integer args; test.attempt returns the
 * attempt number it runs as; test.log writes its args (a string) to the worker's log; test.spin
 * runs forever, ignoring cancels and soft limits (only a hard limit or a kill ends it).
 * Built three times: as is, with PLUGIN_FAIL_INIT (init fails) and PLUGIN_NO_INIT (no init). */
#include <celeriac/task.h>
#include <stdio.h>

#ifndef PLUGIN_NO_INIT
static int add(celeriac_task_ctx *ctx) {
    const msgpack_object *a = celeriac_task_args(ctx);
    if (a->type != MSGPACK_OBJECT_ARRAY) {
        celeriac_task_error(ctx, "test.add wants an array of integers");
        return CELERIAC_TASK_FATAL;
    }
    long long sum = 0;
    for (uint32_t i = 0; i < a->via.array.size; i++) sum += (long long)a->via.array.ptr[i].via.i64;
    char json[32];
    snprintf(json, sizeof json, "%lld", sum);
    return celeriac_task_result_json(ctx, json) == 0 ? CELERIAC_TASK_OK : CELERIAC_TASK_FATAL;
}

static int attempt(celeriac_task_ctx *ctx) {
    char json[32];
    snprintf(json, sizeof json, "%u", celeriac_task_attempt(ctx));
    return celeriac_task_result_json(ctx, json) == 0 ? CELERIAC_TASK_OK : CELERIAC_TASK_FATAL;
}

static int log_line(celeriac_task_ctx *ctx) {
    const msgpack_object *a = celeriac_task_args(ctx);
    if (a->type != MSGPACK_OBJECT_STR) return CELERIAC_TASK_FATAL;
    celeriac_task_log(ctx, "%.*s", (int)a->via.str.size, a->via.str.ptr);
    celeriac_task_progress(ctx, 100);
    return CELERIAC_TASK_OK;
}

static int spin(celeriac_task_ctx *ctx) {
    (void)ctx;
    for (volatile unsigned long i = 0;; i++) {
    }
    return CELERIAC_TASK_OK;
}

int celeriac_plugin_init(celeriac_registry *r) {
    int rc = celeriac_register(r, "test.add", add, NULL) ||
             celeriac_register(r, "test.attempt", attempt, NULL) ||
             celeriac_register(r, "test.log", log_line, NULL) ||
             celeriac_register(r, "test.spin", spin, NULL);
#ifdef PLUGIN_FAIL_INIT
    rc = -1;
#endif
    return rc;
}
#else
int test_plugin_without_init(void);
int test_plugin_without_init(void) {
    return 0;
}
#endif
