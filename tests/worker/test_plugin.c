/* A task plugin built by the tests: test.add sums its numeric args; test.attempt returns the
 * attempt number it runs as. */
#include <celeriac/task.h>
#include <stdio.h>

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

int celeriac_plugin_init(celeriac_registry *r) {
    return celeriac_register(r, "test.add", add, NULL) ||
           celeriac_register(r, "test.attempt", attempt, NULL);
}
