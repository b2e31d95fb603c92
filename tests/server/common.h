/* Shared set-up for the broker suites: one redis-server and one celeriacd per test. */
#ifndef CELERIAC_TEST_SERVER_COMMON_H
#define CELERIAC_TEST_SERVER_COMMON_H

#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "tclient.h"

/* Short leases and timers so expiry paths run in well under a second. */
static char *fast_flags[] = {"--lease-ms",         "400", "--reaper-ms", "50", "--poll-ms", "50",
                             "--redis-timeout-ms", "500", NULL};

typedef struct env {
    th_redis redis;
    th_proc broker;
} env;

static inline bool env_wait_ready(int port) {
    return tc_wait_ready(port, 10000);
}

static inline bool env_start(env *e, char *const extra[]) {
    if (!th_redis_start(&e->redis, NULL)) return false;
    return th_broker_start(&e->broker, &e->redis, extra ? extra : fast_flags) &&
           env_wait_ready(e->broker.port);
}

static inline void env_stop(env *e) {
    int st = th_proc_stop(&e->broker, SIGTERM);
    /* A clean stop must exit 0 (and, under ASan, without leaks). */
    CU_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "tail -30 %s >&2", e->broker.log);
        if (system(cmd) != 0) fprintf(stderr, "see %s\n", e->broker.log);
    }
    th_redis_stop(&e->redis);
}

/* A broker on a fresh Redis, with one producer and one worker connection. */
static inline void env_start_pw(env *e, char *const extra[], tc *p, tc *w) {
    CU_ASSERT_FATAL(env_start(e, extra));
    CU_ASSERT_FATAL(tc_connect(p, e->broker.port, "producer"));
    CU_ASSERT_FATAL(tc_connect(w, e->broker.port, "worker"));
}

static inline void env_stop_pw(env *e, tc *p, tc *w) {
    tc_close(p);
    tc_close(w);
    env_stop(e);
}

#endif
