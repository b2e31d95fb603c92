/* Set-up shared by the client suites: a real redis-server, celeriacd and (optionally)
 * celeriac-worker per test, and a runner for the celeriac CLI that captures stdout, stderr,
 * the exit status and how long it took. */
#ifndef CELERIAC_TEST_CLIENT_ENV_H
#define CELERIAC_TEST_CLIENT_ENV_H

#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

typedef struct env {
    th_redis redis;
    th_proc broker, worker;
    char addr[64]; /* the broker as "127.0.0.1:PORT" */
} env;

/* Short leases and reaper ticks: a broker restart is noticed in well under a second. */
static char *env_broker_flags[] = {"--lease-ms", "2000", "--reaper-ms", "100", NULL};

/* plugin: a task plugin .so for the worker, or NULL. */
static inline bool env_start_plugin(env *e, bool worker, const char *plugin) {
    memset(e, 0, sizeof *e);
    if (!th_redis_start(&e->redis, NULL) ||
        !th_broker_start(&e->broker, &e->redis, env_broker_flags))
        return false;
    snprintf(e->addr, sizeof e->addr, "127.0.0.1:%d", e->broker.port);
    char *wflags[] = {"--queues", "default,demo", "--concurrency", "4", NULL, NULL, NULL};
    if (plugin) wflags[4] = "--plugin", wflags[5] = (char *)plugin;
    return !worker || th_worker_start(&e->worker, e->broker.port, wflags);
}

static inline bool env_start(env *e, bool worker) {
    return env_start_plugin(e, worker, NULL);
}

static inline void env_stop(env *e) {
    if (e->worker.pid) th_proc_stop(&e->worker, SIGTERM);
    if (e->broker.pid) th_proc_stop(&e->broker, SIGTERM);
    th_redis_stop(&e->redis);
}

typedef struct cli_result {
    int status; /* exit status, or -1 when it did not exit normally */
    long long ms;
    char out[16384], err[4096];
} cli_result;

static inline void read_all(int fd, char *buf, size_t cap) {
    size_t n = 0;
    ssize_t r;
    while (n + 1 < cap && (r = read(fd, buf + n, cap - 1 - n)) > 0) n += (size_t)r;
    buf[n] = 0;
    while (n && buf[n - 1] == '\n') buf[--n] = 0;
}

/* Runs build/client/celeriac with the given arguments (NULL-terminated), stdin from in_text
 * (or /dev/null), with CELERIAC_BROKER set to env_broker (or unset when NULL). */
static inline void cli_run_env(cli_result *r, const char *env_broker, const char *in_text, ...) {
    char *argv[32];
    int argc = 0;
    argv[argc++] = (char *)th_bin("client/celeriac");
    va_list ap;
    va_start(ap, in_text);
    for (char *a; argc < 31 && (a = va_arg(ap, char *));) argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;
    int out[2], err[2], in[2];
    if (pipe(out) || pipe(err) || pipe(in)) abort();
    long long t0 = th_now_ms();
    pid_t pid = fork();
    if (pid == 0) {
        dup2(in[0], 0), dup2(out[1], 1), dup2(err[1], 2);
        close(in[1]), close(out[0]), close(err[0]);
        if (env_broker)
            setenv("CELERIAC_BROKER", env_broker, 1);
        else
            unsetenv("CELERIAC_BROKER");
        execv(argv[0], argv);
        _exit(127);
    }
    close(in[0]), close(out[1]), close(err[1]);
    if (in_text && write(in[1], in_text, strlen(in_text)) < 0) perror("write");
    close(in[1]);
    read_all(out[0], r->out, sizeof r->out); /* small outputs: no deadlock on stderr */
    read_all(err[0], r->err, sizeof r->err);
    close(out[0]), close(err[0]);
    int st;
    waitpid(pid, &st, 0);
    r->ms = th_now_ms() - t0;
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

#define cli_run(r, ...) cli_run_env(r, NULL, NULL, __VA_ARGS__, (char *)NULL)

/* One line on stderr: the CLI's promise for every error. */
static inline bool one_line(const char *s) {
    return s[0] && !strchr(s, '\n');
}

#endif
