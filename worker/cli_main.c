/* celeriac-worker: the worker daemon with the built-in tasks and any --plugin. */
#include <celeriac/worker.h>

int main(int argc, char **argv) {
    return celeriac_worker_main(argc, argv, NULL);
}
