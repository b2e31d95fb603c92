/* Test harness shared by every suite: real processes on free loopback ports in temp dirs.
 * Nothing here mocks Redis or the network; it only starts, stops and waits for the real things. */
#ifndef CELERIAC_TEST_HARNESS_H
#define CELERIAC_TEST_HARNESS_H

#include <CUnit/Basic.h>
#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <sys/types.h>

typedef struct th_redis {
    pid_t pid;
    int port;
    char dir[256];
    char conf[512]; /* extra config lines, kept for restarts */
} th_redis;

/* A port that was free on 127.0.0.1 a moment ago. */
int th_free_port(void);
/* Polls until something accepts TCP connections on 127.0.0.1:port; false after timeout_ms. */
bool th_wait_port(int port, int timeout_ms);
/* Milliseconds on a monotonic clock. */
long long th_now_ms(void);
void th_sleep_ms(int ms);

/* Starts redis-server on a free port in a fresh temp dir with AOF on (appendfsync always unless
 * extra_conf says otherwise). extra_conf: newline-separated config lines, or NULL. */
bool th_redis_start(th_redis *r, const char *extra_conf);
/* Same port and dir again (after th_redis_kill), so its AOF is replayed. */
bool th_redis_restart(th_redis *r);
/* Returns once the port accepts: Redis may still be loading its AOF (answering LOADING). */
bool th_redis_restart_loading(th_redis *r);
/* kill -9, no shutdown save. */
void th_redis_kill(th_redis *r);
/* Stops redis and removes its dir. */
void th_redis_stop(th_redis *r);
redisContext *th_redis_connect(const th_redis *r);

/* Starts argv[0] with argv, stdout+stderr appended to logfile (or inherited when NULL). */
pid_t th_spawn(char *const argv[], const char *logfile);
/* Sends sig and waits up to timeout_ms for exit; SIGKILL after that. Returns the wait status. */
int th_stop(pid_t pid, int sig, int timeout_ms);

/* A celeriacd or celeriac-worker started from this build tree, logging to a file under the
 * temp dir (kept when a test fails, for reading). */
typedef struct th_proc {
    pid_t pid;
    int port; /* brokers: the port it listens on */
    char log[300];
} th_proc;

/* Path of a binary built by this tree, e.g. th_bin("server/celeriacd"). */
const char *th_bin(const char *rel);
/* Starts celeriacd on a free port against redis r; extra: NULL-terminated extra flags or NULL.
 * Returns once the port accepts connections. */
bool th_broker_start(th_proc *b, const th_redis *r, char *const extra[]);
/* Starts a broker again on b->port (after a stop or kill), as a restarted daemon would be. */
bool th_broker_restart(th_proc *b, const th_redis *r, char *const extra[]);
/* Starts celeriac-worker against the broker on broker_port with extra flags. */
bool th_worker_start(th_proc *w, int broker_port, char *const extra[]);
/* Sends sig (SIGTERM for a clean stop, SIGKILL for a crash) and reaps the process. */
int th_proc_stop(th_proc *p, int sig);

/* Registers one suite with its tests (NULL-terminated {name, fn} pairs) and runs all registered
 * suites when run is true. Returns the number of failures (the process exit code). */
typedef struct th_test {
    const char *name;
    CU_TestFunc fn;
} th_test;
int th_run(const char *suite, const th_test *tests);

#endif
