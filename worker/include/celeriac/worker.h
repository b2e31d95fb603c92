/* Embedding the worker: a program links libceleriac-worker, registers its own handlers and runs
 * the same daemon as celeriac-worker, with the same flags and signals:
 *
 *     #include <celeriac/worker.h>
 *
 *     static int resize(celeriac_task_ctx *ctx) { ... return CELERIAC_TASK_OK; }
 *     static int my_tasks(celeriac_registry *r) {
 *         return celeriac_register(r, "app.resize", resize, NULL);
 *     }
 *     int main(int argc, char **argv) {
 *         return celeriac_worker_main(argc, argv, my_tasks);
 *     }
 *
 * Link with -lceleriac-worker (shared), or the static archive plus its dependencies (libevent,
 * msgpack-c, jansson, -ldl, -lpthread). A program that also loads --plugin objects must export
 * its symbols (-rdynamic) when it links the static archive, so plugins find celeriac_register. */
#ifndef CELERIAC_WORKER_H
#define CELERIAC_WORKER_H

#include <celeriac/task.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Parses the celeriac-worker flags (see `--help`), registers the built-in tasks, then init's
 * tasks (init may be NULL), then every --plugin, and runs until drained by SIGTERM/SIGINT or
 * stopped by SIGQUIT. Returns the process exit code: 0 after a clean stop, 1 when start-up
 * failed (a plugin, a registration, the pool), 2 on a bad flag. Call it from the main thread:
 * prefork children are tied to the thread that forked them. */
int celeriac_worker_main(int argc, char **argv, celeriac_plugin_init_fn init);

#ifdef __cplusplus
}
#endif
#endif
