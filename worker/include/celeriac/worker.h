/* Embedding the worker: a program links libceleriac-worker, registers its own handlers and runs
 * the same daemon as celeriac-worker (same flags, same signals):
 *
 *     static int my_init(celeriac_registry *r) { return celeriac_register(r, "app.resize", resize,
 * NULL); } int main(int argc, char **argv) { return celeriac_worker_main(argc, argv, my_init); }
 */
#ifndef CELERIAC_WORKER_PUBLIC_H
#define CELERIAC_WORKER_PUBLIC_H

#include <celeriac/task.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Parses the celeriac-worker flags, registers the built-in tasks, then init's tasks (may be
 * NULL), then any --plugin, and runs until SIGTERM/SIGINT (drain) or SIGQUIT (immediate).
 * Returns the process exit code. */
int celeriac_worker_main(int argc, char **argv, celeriac_plugin_init_fn init);

#ifdef __cplusplus
}
#endif
#endif
