/* The thread pool: each slot's runner is a thread of the worker process. Cheaper than prefork,
 * but a task that crashes takes the whole worker down, and a thread cannot be killed safely: at
 * a hard limit or the end of an abort's grace period the pool abandons the thread instead (its
 * task is reported failed, a new thread takes the slot, and the old one sees its socket closed
 * — celeriac_task_should_stop turns true — and exits when its handler returns). */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "pool.h"

typedef struct runner_arg {
    const celeriac_registry *reg;
    int fd;
} runner_arg;

static void *runner_thread(void *arg) {
    runner_arg a = *(runner_arg *)arg;
    free(arg);
    runner_loop(a.fd, a.reg);
    close(a.fd);
    return NULL;
}

static bool threads_start(cel_slot *s, int fd) {
    runner_arg *a = malloc(sizeof *a);
    if (!a) return false;
    a->reg = s->pool->reg, a->fd = fd;
    /* Signals stay with the event loop's thread: new threads inherit this mask. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&s->thread, NULL, runner_thread, a);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        free(a);
        errno = rc;
        return false;
    }
    return true;
}

static void threads_kill(cel_slot *s) {
    pthread_detach(s->thread);
    pool_slot_lost(s, "abandoned (a thread cannot be killed; it stops when its handler returns)");
}

static void threads_reap(cel_slot *s) {
    if (s->busy)
        pthread_detach(s->thread);
    else
        pthread_join(s->thread, NULL);
}

static bool threads_init(cel_pool *p) {
    (void)p;
    return true;
}

static void threads_fini(cel_pool *p) {
    (void)p;
}

const cel_pool_ops pool_threads_ops = {
    .what = "thread",
    .init = threads_init,
    .fini = threads_fini,
    .start = threads_start,
    .kill = threads_kill,
    .reap = threads_reap,
};
