/* A program that embeds the worker (linked against libceleriac-worker.so) and registers a task
 * of its own from main, as celeriac/worker.h shows. Takes the celeriac-worker flags. */
#include <celeriac/worker.h>
#include <stdio.h>

/* embedded.hello → "hello from <task id>" */
static int hello(celeriac_task_ctx *ctx) {
    char json[200];
    snprintf(json, sizeof json, "\"hello from %s\"", celeriac_task_id(ctx));
    return celeriac_task_result_json(ctx, json) == 0 ? CELERIAC_TASK_OK : CELERIAC_TASK_FATAL;
}

static int register_tasks(celeriac_registry *r) {
    return celeriac_register(r, "embedded.hello", hello, NULL);
}

int main(int argc, char **argv) {
    return celeriac_worker_main(argc, argv, register_tasks);
}
