/* The task registry and the two pools on their own: no broker, no Redis. Tasks go to a prefork
 * or thread pool on a private event loop, exactly as the daemon hands them over, and the
 * outcomes are checked: results, failures, crashes named by signal, hard and soft limits,
 * aborts, and that a pool leaves no process behind. */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "pool.h"

/* ---- the outcome of the last task ---- */

typedef struct got {
    int n; /* outcomes seen */
    cel_op op;
    bool retry;
    char error[1200], reason[32];
    uint8_t result[256];
    size_t result_len;
} got;

static got last;
/* Every outcome by task id, in order (the pipelined pool's tests run several at once). */
static struct {
    char id[32], reason[32], error[64];
    cel_op op;
} seen[64];
static int nseen;
static struct event_base *base;
static celeriac_registry reg;

static void on_outcome(const cel_msg *m, void *arg) {
    (void)arg;
    last.n++;
    last.op = m->op, last.retry = m->retry;
    if (nseen < 64) {
        snprintf(seen[nseen].id, sizeof seen[nseen].id, "%.*s", (int)m->id.len,
                 m->id.ptr ? m->id.ptr : "");
        snprintf(seen[nseen].reason, sizeof seen[nseen].reason, "%.*s", (int)m->reason.len,
                 m->reason.ptr ? m->reason.ptr : "");
        snprintf(seen[nseen].error, sizeof seen[nseen].error, "%.*s", (int)m->error.len,
                 m->error.ptr ? m->error.ptr : "");
        seen[nseen++].op = m->op;
    }
    snprintf(last.error, sizeof last.error, "%.*s", (int)m->error.len,
             m->error.ptr ? m->error.ptr : "");
    snprintf(last.reason, sizeof last.reason, "%.*s", (int)m->reason.len,
             m->reason.ptr ? m->reason.ptr : "");
    last.result_len = 0;
    if (m->result.obj) {
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_object(&pk, *m->result.obj);
        if (sb.size <= sizeof last.result) memcpy(last.result, sb.data, sb.size);
        last.result_len = sb.size;
        msgpack_sbuffer_destroy(&sb);
    }
}

static void wake(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what, (void)arg;
}

/* Runs the loop until n outcomes were seen or ms passed; true if they were. */
static bool loop_until(int n, int ms) {
    long long end = th_now_ms() + ms;
    struct event *tick = event_new(base, -1, EV_PERSIST, wake, NULL);
    struct timeval tv = {0, 5000};
    event_add(tick, &tv);
    while (last.n < n && th_now_ms() < end) event_base_loop(base, EVLOOP_ONCE);
    event_free(tick);
    return last.n >= n;
}

static uint64_t next_token = 1;

/* Hands one task to the pool. args: packed msgpack or NULL. */
static bool submit(cel_pool *p, const char *id, const char *task, const uint8_t *args, size_t len,
                   uint64_t soft_ms, uint64_t hard_ms) {
    static const uint8_t nil = 0xc0;
    cel_msg t;
    memset(&t, 0, sizeof t);
    t.op = CEL_OP_TASK;
    t.id = cel_str_c(id), t.queue = cel_str_c("default"), t.task = cel_str_c(task);
    t.args.bytes = args ? args : &nil, t.args.len = args ? (uint32_t)len : 1;
    t.attempt = 1, t.token = next_token++, t.lease_ms = 30000;
    t.soft_ms = soft_ms, t.hard_ms = hard_ms;
    t.present = 1u << CEL_F_ID | 1u << CEL_F_QUEUE | 1u << CEL_F_TASK | 1u << CEL_F_ARGS |
                1u << CEL_F_ATTEMPT | 1u << CEL_F_TOKEN | 1u << CEL_F_LEASE_MS;
    return pool_run(p, &t);
}

/* Runs one task to its outcome (within ms). */
static bool run(cel_pool *p, const char *task, const uint8_t *args, size_t len, uint64_t soft_ms,
                uint64_t hard_ms, int ms) {
    int before = last.n;
    if (!submit(p, "t1", task, args, len, soft_ms, hard_ms)) return false;
    return loop_until(before + 1, ms);
}

/* ---- handlers registered by this test program ---- */

static atomic_bool release_spinners;
static atomic_int spinners; /* in this process: pool threads */

/* Ignores cancels and soft limits: only a hard limit, a kill or the test stops it. */
static int spin(celeriac_task_ctx *ctx) {
    (void)ctx;
    atomic_fetch_add(&spinners, 1);
    while (!atomic_load(&release_spinners)) {
    }
    atomic_fetch_sub(&spinners, 1);
    return CELERIAC_TASK_OK;
}

/* Does not look at cancels, finishes 300 ms later and claims success. */
static int deaf(celeriac_task_ctx *ctx) {
    struct timespec ts = {0, 300 * 1000 * 1000};
    nanosleep(&ts, NULL);
    return celeriac_task_result_json(ctx, "\"done\"") == 0 ? CELERIAC_TASK_OK : CELERIAC_TASK_FATAL;
}

static int do_abort(celeriac_task_ctx *ctx) {
    (void)ctx;
    signal(SIGABRT, SIG_DFL);
    abort();
}

static int do_exit(celeriac_task_ctx *ctx) {
    (void)ctx;
    _exit(3);
}

static int bad_code(celeriac_task_ctx *ctx) {
    (void)ctx;
    return 7;
}

static int with_data(celeriac_task_ctx *ctx) {
    char json[64];
    snprintf(json, sizeof json, "[\"%s\", \"%s\", %u, \"%s\"]",
             (const char *)celeriac_task_data(ctx), celeriac_task_queue(ctx),
             celeriac_task_attempt(ctx), celeriac_task_name(ctx));
    return celeriac_task_result_json(ctx, json) == 0 ? CELERIAC_TASK_OK : CELERIAC_TASK_FATAL;
}

/* Counts this process's descriptors from 3 to 1023 (not stdio, which a test runner may pipe)
 * that are sockets or pipes, and says whether the
 * descriptor in args ([fd]) is open: [sockets, pipes, open]. */
static int count_fds(celeriac_task_ctx *ctx) {
    const msgpack_object *a = celeriac_task_args(ctx);
    int want = a->type == MSGPACK_OBJECT_ARRAY && a->via.array.size == 1
                   ? (int)a->via.array.ptr[0].via.i64
                   : -1;
    int sockets = 0, pipes = 0;
    for (int fd = 3; fd < 1024; fd++) {
        struct stat st;
        if (fstat(fd, &st) != 0) continue;
        sockets += S_ISSOCK(st.st_mode), pipes += S_ISFIFO(st.st_mode);
    }
    char json[64];
    snprintf(json, sizeof json, "[%d, %d, %s]", sockets, pipes,
             want >= 0 && fcntl(want, F_GETFD) != -1 ? "true" : "false");
    return celeriac_task_result_json(ctx, json) == 0 ? CELERIAC_TASK_OK : CELERIAC_TASK_FATAL;
}

static int setup(void) {
    registry_init(&reg);
    static char data[] = "data";
    if (builtin_register(&reg) || celeriac_register(&reg, "t.spin", spin, NULL) ||
        celeriac_register(&reg, "t.deaf", deaf, NULL) ||
        celeriac_register(&reg, "t.abort", do_abort, NULL) ||
        celeriac_register(&reg, "t.exit", do_exit, NULL) ||
        celeriac_register(&reg, "t.bad_code", bad_code, NULL) ||
        celeriac_register(&reg, "t.data", with_data, data) ||
        celeriac_register(&reg, "t.fds", count_fds, NULL))
        return -1;
    cel_log_open(NULL, CEL_LOG_WARN);
    base = event_base_new();
    return base ? 0 : -1;
}

static const uint8_t echo_args[] = {0x92, 0x01, 0xa2, 'h', 'i'}; /* [1, "hi"] */
static const uint8_t five_s[] = {0x91, 0x05};                    /* [5] */

/* ---- registry ---- */

static void test_registry_refuses_bad_names_and_reports_plugin_errors(void) {
    celeriac_registry r;
    registry_init(&r);
    CU_ASSERT_EQUAL(celeriac_register(&r, "app.ok", spin, NULL), 0);
    CU_ASSERT_EQUAL(celeriac_register(&r, "app.ok", spin, NULL), -1);        /* taken */
    CU_ASSERT_EQUAL(celeriac_register(&r, "app bad", spin, NULL), -1);       /* charset */
    CU_ASSERT_EQUAL(celeriac_register(&r, "", spin, NULL), -1);              /* empty */
    CU_ASSERT_EQUAL(celeriac_register(&r, "celeriac.noop", spin, NULL), -1); /* reserved */
    CU_ASSERT_EQUAL(celeriac_register(&r, "app.null", NULL, NULL), -1);      /* no handler */
    CU_ASSERT_PTR_NOT_NULL(registry_find(&r, "app.ok", 6));
    CU_ASSERT_PTR_NULL(registry_find(&r, "app.o", 5));
    char why[600];
    CU_ASSERT_FALSE(registry_load_plugin(&r, "/nonexistent/libx.so", why, sizeof why));
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "/nonexistent/libx.so"));
    CU_ASSERT_FALSE(registry_load_plugin(&r, TEST_PLUGIN_NO_INIT, why, sizeof why));
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "does not export celeriac_plugin_init"));
    CU_ASSERT_FALSE(registry_load_plugin(&r, TEST_PLUGIN_FAIL_INIT, why, sizeof why));
    CU_ASSERT_PTR_NOT_NULL(strstr(why, "returned -1"));
    CU_ASSERT_TRUE(registry_load_plugin(&r, TEST_PLUGIN, why, sizeof why));
    CU_ASSERT_PTR_NOT_NULL(registry_find(&r, "test.add", 8));
    /* Loading it twice would register its names twice: refused, nothing replaced. */
    CU_ASSERT_FALSE(registry_load_plugin(&r, TEST_PLUGIN, why, sizeof why));
    registry_free(&r);
}

/* ---- both pools ---- */

static void check_common_outcomes(cel_pool *p) {
    CU_ASSERT_FATAL(run(p, "celeriac.noop", NULL, 0, 0, 0, 5000));
    CU_ASSERT_EQUAL(last.op, CEL_OP_ACK);
    CU_ASSERT_EQUAL(last.result_len, 0);

    CU_ASSERT_FATAL(run(p, "celeriac.echo", echo_args, sizeof echo_args, 0, 0, 5000));
    CU_ASSERT_EQUAL(last.op, CEL_OP_ACK);
    CU_ASSERT_EQUAL(last.result_len, sizeof echo_args);
    CU_ASSERT(memcmp(last.result, echo_args, sizeof echo_args) == 0);

    CU_ASSERT_FATAL(run(p, "celeriac.fail", NULL, 0, 0, 0, 5000));
    CU_ASSERT_EQUAL(last.op, CEL_OP_FAIL);
    CU_ASSERT_TRUE(last.retry);
    CU_ASSERT_STRING_EQUAL(last.reason, "error");
    CU_ASSERT_STRING_EQUAL(last.error, "celeriac.fail always fails (attempt 1)");

    CU_ASSERT_FATAL(run(p, "no.such.task", NULL, 0, 0, 0, 5000));
    CU_ASSERT_EQUAL(last.op, CEL_OP_FAIL);
    CU_ASSERT_FALSE(last.retry);
    CU_ASSERT_PTR_NOT_NULL(strstr(last.error, "unknown task 'no.such.task'"));

    const uint8_t minus[] = {0xff}; /* -1 seconds */
    CU_ASSERT_FATAL(run(p, "celeriac.sleep", minus, sizeof minus, 0, 0, 5000));
    CU_ASSERT_EQUAL(last.op, CEL_OP_FAIL);
    CU_ASSERT_FALSE(last.retry);

    CU_ASSERT_FATAL(run(p, "t.bad_code", NULL, 0, 0, 0, 5000));
    CU_ASSERT_EQUAL(last.op, CEL_OP_FAIL);
    CU_ASSERT_PTR_NOT_NULL(strstr(last.error, "returned 7"));

    CU_ASSERT_FATAL(run(p, "t.data", NULL, 0, 0, 0, 5000));
    const char want[] = "\x94\xa4"
                        "data\xa7"
                        "default\x01\xa6t.data";
    CU_ASSERT_EQUAL(last.result_len, sizeof want - 1);
    CU_ASSERT(memcmp(last.result, want, sizeof want - 1) == 0);

    /* Soft limit: celeriac.sleep sees it and stops at once; the failure says why. */
    long long t0 = th_now_ms();
    CU_ASSERT_FATAL(run(p, "celeriac.sleep", five_s, sizeof five_s, 100, 0, 5000));
    CU_ASSERT(th_now_ms() - t0 < 3000); /* well before the 5 s sleep (slack for valgrind) */
    CU_ASSERT_EQUAL(last.op, CEL_OP_FAIL);
    CU_ASSERT_STRING_EQUAL(last.reason, "timeout");
    CU_ASSERT_STRING_EQUAL(last.error, "soft time limit");
}

/* A cooperative task stops when aborted; a deaf one is reported cancelled anyway. */
static void check_abort(cel_pool *p) {
    int before = last.n;
    CU_ASSERT_FATAL(submit(p, "sleepy", "celeriac.sleep", five_s, sizeof five_s, 0, 0));
    loop_until(before + 1, 100);
    long long t0 = th_now_ms();
    CU_ASSERT_TRUE(pool_running(p, cel_str_c("sleepy"), next_token - 1));
    pool_abort(p, cel_str_c("sleepy"), next_token - 1, 5000);
    CU_ASSERT_FATAL(loop_until(before + 1, 3000));
    CU_ASSERT(th_now_ms() - t0 < 3000); /* well before the 5 s sleep (slack for valgrind) */
    CU_ASSERT_EQUAL(last.op, CEL_OP_FAIL);
    CU_ASSERT_STRING_EQUAL(last.reason, "cancelled");
    CU_ASSERT_FALSE(last.retry);

    before = last.n;
    CU_ASSERT_FATAL(submit(p, "deaf", "t.deaf", NULL, 0, 0, 0));
    loop_until(before + 1, 50);
    pool_abort(p, cel_str_c("deaf"), next_token - 1, 5000);
    CU_ASSERT_FATAL(loop_until(before + 1, 3000));
    CU_ASSERT_EQUAL(last.op, CEL_OP_FAIL);
    CU_ASSERT_STRING_EQUAL(last.reason, "cancelled");
    CU_ASSERT_EQUAL(last.result_len, 0);
}

/* A runaway (ignores everything) is ended at its hard limit; the slot serves again. */
static void check_hard_limit(cel_pool *p, const char *how) {
    long long t0 = th_now_ms();
    CU_ASSERT_FATAL(run(p, "t.spin", NULL, 0, 50, 200, 5000));
    CU_ASSERT(th_now_ms() - t0 < 4000); /* t.spin never ends by itself (slack for valgrind) */
    CU_ASSERT_EQUAL(last.op, CEL_OP_FAIL);
    CU_ASSERT_STRING_EQUAL(last.reason, "timeout");
    CU_ASSERT_TRUE(last.retry);
    CU_ASSERT_PTR_NOT_NULL(strstr(last.error, "hard time limit of 200 ms exceeded"));
    CU_ASSERT_PTR_NOT_NULL(strstr(last.error, how));
    CU_ASSERT_FATAL(run(p, "celeriac.noop", NULL, 0, 0, 0, 5000));
    CU_ASSERT_EQUAL(last.op, CEL_OP_ACK);
}

static void test_prefork_pool_outcomes(void) {
    cel_pool *p = pool_new(base, CEL_POOL_PREFORK, 2, &reg, on_outcome, NULL);
    CU_ASSERT_FATAL(p != NULL);
    CU_ASSERT_EQUAL(pool_idle(p), 2);
    check_common_outcomes(p);
    check_abort(p);
    check_hard_limit(p, "child killed by signal 9 (SIGKILL)");
    CU_ASSERT_EQUAL(pool_idle(p), 2);
    CU_ASSERT_EQUAL(pool_busy(p), 0);
    pool_free(p);
}

static void test_thread_pool_outcomes(void) {
    atomic_store(&release_spinners, false);
    cel_pool *p = pool_new(base, CEL_POOL_THREADS, 2, &reg, on_outcome, NULL);
    CU_ASSERT_FATAL(p != NULL);
    check_common_outcomes(p);
    check_abort(p);
    check_hard_limit(p, "thread abandoned");
    CU_ASSERT_EQUAL(pool_idle(p), 2);
    pool_free(p);
    atomic_store(&release_spinners, true); /* let the abandoned thread return */
    long long end = th_now_ms() + 2000;
    while (atomic_load(&spinners) > 0 && th_now_ms() < end) th_sleep_ms(5);
    CU_ASSERT_EQUAL(atomic_load(&spinners), 0);
    atomic_store(&release_spinners, false);
}

static void test_prefork_child_death_fails_the_task_and_is_replaced(void) {
    cel_pool *p = pool_new(base, CEL_POOL_PREFORK, 1, &reg, on_outcome, NULL);
    CU_ASSERT_FATAL(p != NULL);
    pid_t first = p->slots[0].pid;
    const struct {
        const char *task, *reason, *error;
    } deaths[] = {
        {"celeriac.crash", "worker_lost", "worker child killed by signal 11 (SIGSEGV)"},
        {"t.abort", "worker_lost", "worker child killed by signal 6 (SIGABRT)"},
        {"t.exit", "worker_lost", "worker child exited with status 3"},
    };
    for (size_t i = 0; i < sizeof deaths / sizeof *deaths; i++) {
        CU_ASSERT_FATAL(run(p, deaths[i].task, NULL, 0, 0, 0, 5000));
        CU_ASSERT_EQUAL(last.op, CEL_OP_FAIL);
        CU_ASSERT_STRING_EQUAL(last.reason, deaths[i].reason);
        CU_ASSERT_TRUE(last.retry);
        CU_ASSERT_PTR_NOT_NULL(strstr(last.error, deaths[i].error));
        if (!strstr(last.error, deaths[i].error)) fprintf(stderr, "\n  got: %s\n", last.error);
    }
    CU_ASSERT_NOT_EQUAL(p->slots[0].pid, first);
    CU_ASSERT_EQUAL(kill(first, 0), -1); /* reaped, not a zombie */
    CU_ASSERT_FATAL(run(p, "celeriac.echo", echo_args, sizeof echo_args, 0, 0, 5000));
    CU_ASSERT_EQUAL(last.op, CEL_OP_ACK);
    pool_free(p);
}

static void test_prefork_abort_grace_then_kill(void) {
    cel_pool *p = pool_new(base, CEL_POOL_PREFORK, 1, &reg, on_outcome, NULL);
    CU_ASSERT_FATAL(p != NULL);
    int before = last.n;
    CU_ASSERT_FATAL(submit(p, "runaway", "t.spin", NULL, 0, 0, 0));
    loop_until(before + 1, 100);
    long long t0 = th_now_ms();
    pool_abort(p, cel_str_c("runaway"), next_token - 1, 300);
    CU_ASSERT_FATAL(loop_until(before + 1, 3000));
    long long took = th_now_ms() - t0;
    CU_ASSERT(took >= 250 && took < 2000);
    CU_ASSERT_STRING_EQUAL(last.reason, "cancelled");
    CU_ASSERT_FALSE(last.retry);
    CU_ASSERT_PTR_NOT_NULL(strstr(last.error, "cancelled: child killed by signal 9"));
    /* An abort naming another delivery (stale token) changes nothing. */
    before = last.n;
    CU_ASSERT_FATAL(submit(p, "sleepy", "celeriac.sleep",
                           (const uint8_t *)"\x91\xcb\x3f\xc9\x99\x99\x99\x99\x99\x9a", 10, 0,
                           0)); /* [0.2] */
    pool_abort(p, cel_str_c("sleepy"), next_token + 100, 0);
    CU_ASSERT_FATAL(loop_until(before + 1, 3000));
    CU_ASSERT_EQUAL(last.op, CEL_OP_ACK);
    pool_free(p);
}

/* The outcome of task id as "ack" or "fail:<reason>" ("none" if there was none), and where it
 * came among the outcomes seen. */
static const char *outcome_of(const char *id, int *at) {
    static char out[64];
    for (int i = 0; i < nseen; i++) {
        if (strcmp(seen[i].id, id) != 0) continue;
        if (at) *at = i;
        if (seen[i].op == CEL_OP_ACK) return "ack";
        snprintf(out, sizeof out, "fail:%s", seen[i].reason);
        return out;
    }
    return "none";
}

/* Submits a pair: a runs, b (t.data) is queued behind it in the same child; nothing more fits.
 * Their tokens, for aborts. */
static uint64_t token_a, token_b;
static void pair(cel_pool *p, const char *a, const char *ta, const uint8_t *args, size_t len,
                 uint64_t hard_ms, const char *b) {
    token_a = next_token;
    CU_ASSERT_FATAL(submit(p, a, ta, args, len, 0, hard_ms));
    token_b = next_token;
    CU_ASSERT_FATAL(submit(p, b, "t.data", NULL, 0, 0, 0));
    CU_ASSERT_EQUAL(pool_busy(p), 2);
    CU_ASSERT_EQUAL(pool_idle(p), 0);
    CU_ASSERT_FALSE(submit(p, "third", "t.data", NULL, 0, 0, 0));
}

/* Pipelining: a busy child is written its next task, which it runs right after; what is done to
 * one task (its cancel check seeing the next task's frame, an abort, a crash, a hard limit)
 * stays with that task, and a queued task that never started is not lost. */
static void test_prefork_pipeline_keeps_tasks_apart(void) {
    cel_pool *t = pool_new(base, CEL_POOL_THREADS, 1, &reg, on_outcome, NULL);
    CU_ASSERT_FATAL(t != NULL);
    CU_ASSERT_FALSE(pool_set_pipeline(t, true)); /* prefork only */
    pool_free(t);
    cel_pool *p = pool_new(base, CEL_POOL_PREFORK, 1, &reg, on_outcome, NULL);
    CU_ASSERT_FATAL(p != NULL && pool_set_pipeline(p, true));
    nseen = 0;
    static const uint8_t fifth[] = {0x91, 0xcb, 0x3f, 0xc9, 0x99, 0x99, 0x99, 0x99, 0x99, 0x9a};
    int n = last.n, at_a = -1, at_b = -1;
    /* celeriac.sleep checks for cancels while it sleeps; the next task's frame is not one. */
    pair(p, "a", "celeriac.sleep", fifth, sizeof fifth, 0, "b");
    CU_ASSERT_FATAL(loop_until(n + 2, 5000));
    CU_ASSERT_STRING_EQUAL(outcome_of("a", &at_a), "ack");
    CU_ASSERT_STRING_EQUAL(outcome_of("b", &at_b), "ack");
    CU_ASSERT(at_a < at_b);
    /* Aborting the queued task: it never starts. */
    n = last.n;
    pair(p, "c", "celeriac.sleep", fifth, sizeof fifth, 0, "d");
    pool_abort(p, cel_str_c("d"), token_b, 5000);
    CU_ASSERT_FATAL(loop_until(n + 2, 5000));
    CU_ASSERT_STRING_EQUAL(outcome_of("c", NULL), "ack");
    CU_ASSERT_STRING_EQUAL(outcome_of("d", &at_b), "fail:cancelled");
    CU_ASSERT_STRING_EQUAL(seen[at_b].error, "cancelled before it started");
    /* Aborting the running one: the queued one still runs. */
    n = last.n;
    pair(p, "e", "celeriac.sleep", five_s, sizeof five_s, 0, "f");
    loop_until(n + 1, 100);
    pool_abort(p, cel_str_c("e"), token_a, 5000);
    CU_ASSERT_FATAL(loop_until(n + 2, 3000));
    CU_ASSERT_STRING_EQUAL(outcome_of("e", NULL), "fail:cancelled");
    CU_ASSERT_STRING_EQUAL(outcome_of("f", NULL), "ack");
    /* A crash, and a hard limit: only the running task fails; the queued one runs on the new
     * child (it never started, so it is not lost, nor counted against). */
    n = last.n;
    pair(p, "g", "celeriac.crash", NULL, 0, 0, "h");
    CU_ASSERT_FATAL(loop_until(n + 2, 5000));
    CU_ASSERT_STRING_EQUAL(outcome_of("g", NULL), "fail:worker_lost");
    CU_ASSERT_STRING_EQUAL(outcome_of("h", NULL), "ack");
    n = last.n;
    pair(p, "i", "t.spin", NULL, 0, 200, "j");
    CU_ASSERT_FATAL(loop_until(n + 2, 5000));
    CU_ASSERT_STRING_EQUAL(outcome_of("i", NULL), "fail:timeout");
    CU_ASSERT_STRING_EQUAL(outcome_of("j", NULL), "ack");
    /* A crash with a cancelled task queued: that one is reported cancelled, not run. */
    n = last.n;
    pair(p, "k", "celeriac.crash", NULL, 0, 0, "l");
    pool_abort(p, cel_str_c("l"), token_b, 5000);
    CU_ASSERT_FATAL(loop_until(n + 2, 5000));
    CU_ASSERT_STRING_EQUAL(outcome_of("k", NULL), "fail:worker_lost");
    CU_ASSERT_STRING_EQUAL(outcome_of("l", NULL), "fail:cancelled");
    /* The child finishes one task and dies in the next before the pool reads the first one's
     * outcome (its socket is not watched here until the child's death is): that outcome stands,
     * and the crash is the second task's. */
    n = last.n;
    CU_ASSERT_FATAL(submit(p, "o1", "t.data", NULL, 0, 0, 0));
    CU_ASSERT_FATAL(submit(p, "o2", "celeriac.crash", NULL, 0, 0, 0));
    event_del(p->slots[0].rev);
    th_sleep_ms(300);
    CU_ASSERT_FATAL(loop_until(n + 2, 5000));
    CU_ASSERT_STRING_EQUAL(outcome_of("o1", NULL), "ack");
    CU_ASSERT_STRING_EQUAL(outcome_of("o2", NULL), "fail:worker_lost");
    /* Draining: the queued task is given back, not run and not reported (the broker gets it
     * back with the worker's other waiting tasks). */
    n = last.n;
    pair(p, "m", "celeriac.sleep", fifth, sizeof fifth, 0, "n");
    pool_withdraw_queued(p);
    CU_ASSERT_FATAL(loop_until(n + 1, 5000));
    loop_until(n + 2, 300);
    CU_ASSERT_STRING_EQUAL(outcome_of("m", NULL), "ack");
    CU_ASSERT_STRING_EQUAL(outcome_of("n", NULL), "none");
    CU_ASSERT_EQUAL(pool_busy(p), 0);
    CU_ASSERT_EQUAL(pool_idle(p), 1);
    pool_free(p);
}

/* A child keeps its runner socket and the parent's files (a log), nothing else: a socket or pipe
 * of the parent's held by a child would outlive the parent, and the broker would not see the
 * worker go. */
static void test_prefork_child_keeps_only_its_socket_and_files(void) {
    int sv[2], pp[2];
    CU_ASSERT_FATAL(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0 && pipe(pp) == 0);
    FILE *f = tmpfile();
    CU_ASSERT_FATAL(f != NULL);
    cel_pool *p = pool_new(base, CEL_POOL_PREFORK, 2, &reg, on_outcome, NULL);
    CU_ASSERT_FATAL(p != NULL);
    uint8_t args[] = {0x91, (uint8_t)fileno(f)}; /* [fd], a positive fixint */
    CU_ASSERT_FATAL(fileno(f) < 128 && run(p, "t.fds", args, sizeof args, 0, 0, 5000));
    const uint8_t want[] = {0x93, 0x01, 0x00, 0xc3}; /* [1, 0, true] */
    CU_ASSERT_EQUAL(last.result_len, sizeof want);
    CU_ASSERT(memcmp(last.result, want, sizeof want) == 0);
    pool_free(p);
    fclose(f), close(sv[0]), close(sv[1]), close(pp[0]), close(pp[1]);
}

/* Freeing a pool (the daemon stopping) leaves no child behind, busy or idle. */
static void test_pool_free_leaves_no_children(void) {
    cel_pool *p = pool_new(base, CEL_POOL_PREFORK, 2, &reg, on_outcome, NULL);
    CU_ASSERT_FATAL(p != NULL);
    pid_t pids[2] = {p->slots[0].pid, p->slots[1].pid};
    CU_ASSERT_FATAL(submit(p, "long", "celeriac.sleep", five_s, sizeof five_s, 0, 0));
    loop_until(last.n + 1, 100);
    CU_ASSERT_EQUAL(pool_busy(p), 1);
    long long t0 = th_now_ms();
    pool_free(p);
    CU_ASSERT(th_now_ms() - t0 < 3000); /* does not wait for the 5 s task */
    for (int i = 0; i < 2; i++) CU_ASSERT(kill(pids[i], 0) == -1 && errno == ESRCH);
}

int main(void) {
    if (setup() != 0) return 1;
    static const th_test tests[] = {
        {"registry refuses bad names and reports plugin errors",
         test_registry_refuses_bad_names_and_reports_plugin_errors},
        {"prefork pool: results, failures, soft/hard limits, aborts", test_prefork_pool_outcomes},
        {"thread pool: the same, runaways abandoned", test_thread_pool_outcomes},
        {"prefork child death fails the task with its signal and is replaced",
         test_prefork_child_death_fails_the_task_and_is_replaced},
        {"prefork abort: grace period, then kill", test_prefork_abort_grace_then_kill},
        {"prefork child keeps only its runner socket and files",
         test_prefork_child_keeps_only_its_socket_and_files},
        {"pool_free leaves no children", test_pool_free_leaves_no_children},
        {"prefork pipeline keeps tasks apart", test_prefork_pipeline_keeps_tasks_apart},
        {NULL, NULL}};
    int rc = th_run("pool", tests);
    event_base_free(base);
    registry_free(&reg);
    return rc;
}
