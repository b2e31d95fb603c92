/* Set-up shared by the worker's end-to-end suites: a real redis-server, celeriacd and
 * celeriac-worker per test, a producer connection, and small readers for what a test checks
 * from outside (task states, broker counters, the worker's log, its pool children). */
#ifndef CELERIAC_TEST_WORKER_ENV_H
#define CELERIAC_TEST_WORKER_ENV_H

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "tclient.h"

/* Short leases and reaper ticks, so lease paths run in well under a second: a task that is not
 * touched is taken back after 600 ms. */
static char *broker_flags[] = {"--lease-ms", "600", "--reaper-ms", "50", "--poll-ms", "50", NULL};

typedef struct env {
    th_redis redis;
    th_proc broker, worker;
    tc p; /* a producer */
} env;

static inline void env_dump_log(const char *what, const char *path) {
    char cmd[400];
    fprintf(stderr, "\n---- last lines of the %s log %s\n", what, path);
    snprintf(cmd, sizeof cmd, "tail -25 %s >&2", path);
    if (system(cmd) != 0) fprintf(stderr, "(cannot read it)\n");
}

/* broker_extra NULL: broker_flags. worker_flags NULL: none; worker_flags == (void *)-1: no
 * worker at all. */
static inline bool env_start(env *e, char *const broker_extra[], char *const worker_flags[]) {
    memset(e, 0, sizeof *e);
    e->p.fd = -1;
    if (!th_redis_start(&e->redis, NULL)) return false;
    if (!th_broker_start(&e->broker, &e->redis, broker_extra ? broker_extra : broker_flags) ||
        !tc_wait_ready(e->broker.port, 10000))
        return false;
    if (worker_flags != (void *)-1 && !th_worker_start(&e->worker, e->broker.port, worker_flags))
        return false;
    return tc_connect(&e->p, e->broker.port, "producer");
}

/* Stops a worker with SIGTERM and checks that it drained and exited cleanly (under ASan: no
 * leaks either). */
static inline void worker_stop_clean(th_proc *w) {
    if (!w->pid) return;
    int st = th_proc_stop(w, SIGTERM);
    CU_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) env_dump_log("worker", w->log);
}

static inline void env_stop(env *e) {
    if (e->p.fd >= 0) tc_close(&e->p);
    worker_stop_clean(&e->worker);
    if (e->broker.pid) th_proc_stop(&e->broker, SIGTERM);
    th_redis_stop(&e->redis);
}

/* Enqueues a task on "default"; args are packed msgpack (or NULL). */
static inline bool enqueue_limits(tc *p, const char *id, const char *task, const void *args,
                                  size_t len, uint64_t soft_ms, uint64_t hard_ms) {
    cel_msg m;
    tc_msg(&m, CEL_OP_ENQUEUE);
    m.queue = cel_str_c("default"), m.task = cel_str_c(task), m.id = cel_str_c(id);
    cel_msg_set(&m, CEL_F_QUEUE), cel_msg_set(&m, CEL_F_TASK), cel_msg_set(&m, CEL_F_ID);
    if (args) m.args.bytes = args, m.args.len = (uint32_t)len, cel_msg_set(&m, CEL_F_ARGS);
    if (soft_ms) m.soft_ms = soft_ms, cel_msg_set(&m, CEL_F_SOFT_MS);
    if (hard_ms) m.hard_ms = hard_ms, cel_msg_set(&m, CEL_F_HARD_MS);
    const cel_msg *r = tc_reply(p, tc_send(p, &m), 5000);
    CU_ASSERT(r && r->op == CEL_OP_OK);
    return r && r->op == CEL_OP_OK;
}

static inline bool enqueue(tc *p, const char *id, const char *task, const void *args, size_t len) {
    return enqueue_limits(p, id, task, args, len, 0, 0);
}

/* Waits for the task to end; the task_info (valid until p's next receive). */
static inline const cel_msg *finish(tc *p, const char *id) {
    const cel_msg *r = tc_wait(p, id, 20000);
    CU_ASSERT_FATAL(r != NULL);
    if (r->op != CEL_OP_TASK_INFO)
        fprintf(stderr, "\n%s: %s %s\n", id, tc_s(r->code), tc_s(r->msg));
    CU_ASSERT_EQUAL_FATAL(r->op, CEL_OP_TASK_INFO);
    return r;
}

/* Polls the task's state until it is `state`; false after ms. */
static inline bool wait_state(tc *p, const char *id, const char *state, int ms) {
    long long end = th_now_ms() + ms;
    while (th_now_ms() < end) {
        const cel_msg *r = tc_status(p, id);
        if (r && r->op == CEL_OP_TASK_INFO && !strcmp(tc_s(r->state), state)) return true;
        th_sleep_ms(20);
    }
    return false;
}

/* A counter from the broker's stats ("acked", "failed", ...); -1 if missing. */
static inline long long broker_stat(tc *p, const char *name) {
    return tc_stat(p, name);
}

/* Counts the lines of the file at path containing needle (0 if it cannot be read). */
static inline int file_count(const char *path, const char *needle) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof line, f)) n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

/* Waits up to ms for needle to be on at least count lines of the file. */
static inline bool file_wait_count(const char *path, const char *needle, int count, int ms) {
    long long end = th_now_ms() + ms;
    while (file_count(path, needle) < count && th_now_ms() < end) th_sleep_ms(20);
    return file_count(path, needle) >= count;
}

/* Waits up to ms for needle to appear in the file. */
static inline bool file_wait(const char *path, const char *needle, int ms) {
    return file_wait_count(path, needle, 1, ms);
}

/* The worker's pool children (Linux /proc); returns how many were stored. */
static inline int children_of(pid_t pid, pid_t *out, int max) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)pid, (int)pid);
    FILE *f = fopen(path, "r");
    int n = 0, c;
    while (f && n < max && fscanf(f, "%d", &c) == 1) out[n++] = (pid_t)c;
    if (f) fclose(f);
    return n;
}

/* Packed msgpack args used across the suites. */
static const uint8_t ARGS_SLEEP_0_25[] = {0x91, 0xcb, 0x3f, 0xd0, 0, 0, 0, 0, 0, 0}; /* [0.25] */
static const uint8_t ARGS_SLEEP_1[] = {0x91, 0x01};                                  /* [1] */
static const uint8_t ARGS_SLEEP_2[] = {0x02};                                        /* 2 */
static const uint8_t ARGS_SLEEP_10[] = {0x91, 0x0a};                                 /* [10] */

#endif
