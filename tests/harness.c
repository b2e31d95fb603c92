/* Test harness: process control for redis-server and celeriac daemons, and the CUnit runner. */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

long long th_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void th_sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

int th_free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0) close(fd);
    return port;
}

bool th_wait_port(int port, int timeout_ms) {
    long long end = th_now_ms() + timeout_ms;
    while (th_now_ms() < end) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
        close(fd);
        if (ok) return true;
        th_sleep_ms(20);
    }
    return false;
}

/* Every process a test starts is remembered until it is stopped, so that a test that fails
 * half-way (CU_ASSERT_FATAL) leaves no redis-server or broker running behind it. */
static pid_t spawned[256];

static void kill_leftovers(void) {
    for (size_t i = 0; i < sizeof spawned / sizeof *spawned; i++) {
        if (spawned[i] <= 0) continue;
        kill(spawned[i], SIGKILL);
        waitpid(spawned[i], NULL, 0);
        spawned[i] = 0;
    }
}

static void remember(pid_t pid, bool add) {
    static bool registered;
    if (!registered) registered = atexit(kill_leftovers) == 0;
    for (size_t i = 0; i < sizeof spawned / sizeof *spawned; i++) {
        if (add ? spawned[i] == 0 : spawned[i] == pid) {
            spawned[i] = add ? pid : 0;
            return;
        }
    }
}

pid_t th_spawn(char *const argv[], const char *logfile) {
    pid_t pid = fork();
    if (pid > 0) remember(pid, true);
    if (pid != 0) return pid;
    if (logfile) {
        int fd = open(logfile, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
    }
    execvp(argv[0], argv);
    fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

int th_stop(pid_t pid, int sig, int timeout_ms) {
    int status = 0;
    if (pid <= 0) return -1;
    remember(pid, false);
    kill(pid, sig);
    long long end = th_now_ms() + timeout_ms;
    while (th_now_ms() < end) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid || (r < 0 && errno == ECHILD)) return status;
        th_sleep_ms(10);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return status;
}

/* A restarted Redis accepts connections while it still replays its AOF, answering LOADING
 * errors: ready means PING answers PONG. */
static bool redis_wait_loaded(const th_redis *r, int timeout_ms) {
    long long end = th_now_ms() + timeout_ms;
    while (th_now_ms() < end) {
        redisContext *c = th_redis_connect(r);
        redisReply *rep = c ? redisCommand(c, "PING") : NULL;
        bool pong = rep && rep->type == REDIS_REPLY_STATUS && !strcmp(rep->str, "PONG");
        if (rep) freeReplyObject(rep);
        if (c) redisFree(c);
        if (pong) return true;
        th_sleep_ms(10);
    }
    return false;
}

static bool redis_launch(th_redis *r, bool wait_loaded) {
    char conf_path[300];
    snprintf(conf_path, sizeof conf_path, "%s/redis.conf", r->dir);
    FILE *f = fopen(conf_path, "w");
    if (!f) return false;
    fprintf(f,
            "port %d\nbind 127.0.0.1\ndir %s\nsave \"\"\nappendonly yes\nappendfsync always\n"
            "maxmemory-policy noeviction\nenable-debug-command local\nlogfile %s/redis.log\n"
            "%s\n",
            r->port, r->dir, r->dir, r->conf);
    fclose(f);
    char *argv[] = {"redis-server", conf_path, NULL};
    r->pid = th_spawn(argv, NULL);
    return th_wait_port(r->port, 10000) && (!wait_loaded || redis_wait_loaded(r, 10000));
}

bool th_redis_start(th_redis *r, const char *extra_conf) {
    memset(r, 0, sizeof *r);
    snprintf(r->dir, sizeof r->dir, "%s/celeriac-redis-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(r->dir)) return false;
    snprintf(r->conf, sizeof r->conf, "%s", extra_conf ? extra_conf : "");
    r->port = th_free_port();
    return redis_launch(r, true);
}

bool th_redis_restart(th_redis *r) {
    return redis_launch(r, true);
}

bool th_redis_restart_loading(th_redis *r) {
    return redis_launch(r, false);
}

void th_redis_kill(th_redis *r) {
    th_stop(r->pid, SIGKILL, 5000);
    r->pid = 0;
}

void th_redis_stop(th_redis *r) {
    if (r->pid > 0) th_stop(r->pid, SIGTERM, 5000);
    r->pid = 0;
    if (r->dir[0]) {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", r->dir);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", r->dir);
    }
}

redisContext *th_redis_connect(const th_redis *r) {
    struct timeval tv = {5, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", r->port, tv);
    if (c && c->err) {
        redisFree(c);
        return NULL;
    }
    return c;
}

const char *th_bin(const char *rel) {
    static char path[4][512];
    static int slot;
    char *p = path[slot++ % 4];
    snprintf(p, sizeof path[0], "%s/%s", CELERIAC_BINARY_DIR, rel);
    return p;
}

static void proc_log_path(th_proc *p, const char *kind) {
    static int n;
    snprintf(p->log, sizeof p->log, "%s/celeriac-%s-%d-%d.log",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", kind, (int)getpid(), n++);
    /* Logs of failed runs are kept, so a file of this name is an earlier process's with our
     * pid: tests that read the log must not see its lines. */
    unlink(p->log);
}

/* argv = fixed flags followed by the caller's extra flags. */
static pid_t spawn_with(char **fixed, int nfixed, char *const extra[], const char *log) {
    char *argv[64];
    int n = 0;
    for (int i = 0; i < nfixed && n < 62; i++) argv[n++] = fixed[i];
    for (int i = 0; extra && extra[i] && n < 62; i++) argv[n++] = extra[i];
    argv[n] = NULL;
    return th_spawn(argv, log);
}

bool th_broker_start(th_proc *b, const th_redis *r, char *const extra[]) {
    memset(b, 0, sizeof *b);
    b->port = th_free_port();
    return th_broker_restart(b, r, extra);
}

bool th_broker_restart(th_proc *b, const th_redis *r, char *const extra[]) {
    proc_log_path(b, "broker");
    char port[16], rport[16];
    snprintf(port, sizeof port, "%d", b->port);
    snprintf(rport, sizeof rport, "%d", r->port);
    char *fixed[] = {(char *)th_bin("server/celeriacd"),
                     "--listen",
                     "127.0.0.1",
                     "--port",
                     port,
                     "--redis-port",
                     rport,
                     "--log-level",
                     "debug"};
    b->pid = spawn_with(fixed, 9, extra, b->log);
    return th_wait_port(b->port, 10000);
}

bool th_worker_start(th_proc *w, int broker_port, char *const extra[]) {
    memset(w, 0, sizeof *w);
    proc_log_path(w, "worker");
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", broker_port);
    char *fixed[] = {(char *)th_bin("worker/celeriac-worker"), "--broker", addr, "--log-level",
                     "debug"};
    w->pid = spawn_with(fixed, 5, extra, w->log);
    return w->pid > 0;
}

int th_proc_stop(th_proc *p, int sig) {
    int st = th_stop(p->pid, sig, 10000);
    p->pid = 0;
    return st;
}

int th_run(const char *suite, const th_test *tests) {
    if (CU_initialize_registry() != CUE_SUCCESS) return 1;
    CU_pSuite s = CU_add_suite(suite, NULL, NULL);
    for (const th_test *t = tests; t->name; t++) CU_add_test(s, t->name, t->fn);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    kill_leftovers();
    int failures = (int)CU_get_number_of_failures() + (int)CU_get_number_of_tests_failed();
    CU_cleanup_registry();
    return failures ? 1 : 0;
}
