/* celeriac-worker end to end: real redis-server, celeriacd and worker processes. */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>

#include "harness.h"
#include "tclient.h"

typedef struct env {
    th_redis redis;
    th_proc broker, worker;
} env;

static char *broker_flags[] = {"--lease-ms", "600", "--reaper-ms", "50", "--poll-ms", "50", NULL};

static bool env_start(env *e, char *const worker_flags[]) {
    if (!th_redis_start(&e->redis, NULL)) return false;
    if (!th_broker_start(&e->broker, &e->redis, broker_flags)) return false;
    return th_worker_start(&e->worker, e->broker.port, worker_flags);
}

static void env_stop(env *e) {
    if (e->worker.pid) {
        int st = th_proc_stop(&e->worker, SIGTERM);
        CU_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    th_proc_stop(&e->broker, SIGTERM);
    th_redis_stop(&e->redis);
}

/* Enqueues task with JSON-ish args given as packed msgpack bytes. */
static void enqueue(tc *p, const char *id, const char *task, const uint8_t *args, size_t len,
                    uint64_t hard_ms) {
    cel_msg m;
    tc_msg(&m, CEL_OP_ENQUEUE);
    m.queue = cel_str_c("default"), m.task = cel_str_c(task), m.id = cel_str_c(id);
    cel_msg_set(&m, CEL_F_QUEUE), cel_msg_set(&m, CEL_F_TASK), cel_msg_set(&m, CEL_F_ID);
    if (args) m.args.bytes = args, m.args.len = (uint32_t)len, cel_msg_set(&m, CEL_F_ARGS);
    if (hard_ms) m.hard_ms = hard_ms, cel_msg_set(&m, CEL_F_HARD_MS);
    const cel_msg *r = tc_reply(p, tc_send(p, &m), 5000);
    CU_ASSERT(r && r->op == CEL_OP_OK);
}

static const cel_msg *finish(tc *p, const char *id) {
    const cel_msg *r = tc_wait(p, id, 15000);
    CU_ASSERT_FATAL(r != NULL);
    if (r->op != CEL_OP_TASK_INFO)
        fprintf(stderr, "\n%s: %s %s\n", id, tc_s(r->code), tc_s(r->msg));
    CU_ASSERT_EQUAL_FATAL(r->op, CEL_OP_TASK_INFO);
    return r;
}

static void test_builtin_tasks_end_to_end(void) {
    env e;
    char *flags[] = {"--concurrency", "2", NULL};
    CU_ASSERT_FATAL(env_start(&e, flags));
    tc p;
    CU_ASSERT_FATAL(tc_connect(&p, e.broker.port, "producer"));
    const uint8_t echo_args[] = {0x92, 0x01, 0xa2, 'h', 'i'};
    const uint8_t sleep_args[] = {0x91, 0xcb, 0x3f, 0xb9, 0x99,
                                  0x99, 0x99, 0x99, 0x99, 0x9a}; /* [0.1] */
    const uint8_t long_sleep[] = {0x91, 0x0a};                   /* [10] */
    enqueue(&p, "noop", "celeriac.noop", NULL, 0, 0);
    enqueue(&p, "echo", "celeriac.echo", echo_args, sizeof echo_args, 0);
    enqueue(&p, "sleep", "celeriac.sleep", sleep_args, sizeof sleep_args, 0);
    enqueue(&p, "fail", "celeriac.fail", NULL, 0, 0);
    enqueue(&p, "crash", "celeriac.crash", NULL, 0, 0);
    enqueue(&p, "runaway", "celeriac.sleep", long_sleep, sizeof long_sleep, 300);
    enqueue(&p, "unknown", "no.such.task", NULL, 0, 0);
    CU_ASSERT_STRING_EQUAL(tc_s(finish(&p, "noop")->state), "succeeded");
    const cel_msg *r = finish(&p, "echo");
    CU_ASSERT_STRING_EQUAL(tc_s(r->state), "succeeded");
    CU_ASSERT_FATAL(r->result.obj && r->result.obj->type == MSGPACK_OBJECT_ARRAY);
    CU_ASSERT_EQUAL(r->result.obj->via.array.ptr[0].via.u64, 1);
    CU_ASSERT_STRING_EQUAL(tc_s(finish(&p, "sleep")->state), "succeeded");
    r = finish(&p, "fail");
    CU_ASSERT_STRING_EQUAL(tc_s(r->state), "failed");
    CU_ASSERT_STRING_EQUAL(tc_s(r->error), "celeriac.fail always fails (attempt 1)");
    r = finish(&p, "crash");
    CU_ASSERT_STRING_EQUAL(tc_s(r->reason), "worker_lost");
#ifdef __SANITIZE_ADDRESS__
    /* ASan catches the SIGSEGV itself, reports it and exits the child with status 1. */
    CU_ASSERT(strstr(tc_s(r->error), "worker child") != NULL);
#else
    CU_ASSERT(strstr(tc_s(r->error), "SIGSEGV") != NULL);
#endif
    r = finish(&p, "runaway");
    CU_ASSERT_STRING_EQUAL(tc_s(r->reason), "timeout");
    CU_ASSERT(r->finished_ms - r->started_ms < 5000);
    r = finish(&p, "unknown");
    CU_ASSERT(strstr(tc_s(r->error), "unknown task 'no.such.task'") != NULL);
    /* The worker kept serving after a crash and a kill. */
    enqueue(&p, "after", "celeriac.noop", NULL, 0, 0);
    CU_ASSERT_STRING_EQUAL(tc_s(finish(&p, "after")->state), "succeeded");
    tc_close(&p);
    env_stop(&e);
}

static void test_plugin_tasks_and_thread_pool(void) {
    for (int pool = 0; pool < 2; pool++) {
        env e;
        char *flags[] = {"--plugin", TEST_PLUGIN, "--pool", pool ? "threads" : "prefork", NULL};
        CU_ASSERT_FATAL(env_start(&e, flags));
        tc p;
        CU_ASSERT_FATAL(tc_connect(&p, e.broker.port, "producer"));
        const uint8_t args[] = {0x93, 0x01, 0x02, 0x27}; /* [1, 2, 39] */
        enqueue(&p, "add", "test.add", args, sizeof args, 0);
        const cel_msg *r = finish(&p, "add");
        CU_ASSERT_STRING_EQUAL(tc_s(r->state), "succeeded");
        CU_ASSERT_FATAL(r->result.obj != NULL);
        CU_ASSERT_EQUAL(r->result.obj->via.u64, 42);
        tc_close(&p);
        env_stop(&e);
    }
}

static void test_long_task_with_short_lease_is_not_redelivered(void) {
    env e;
    CU_ASSERT_FATAL(env_start(&e, NULL));
    th_proc w2;
    CU_ASSERT_FATAL(th_worker_start(&w2, e.broker.port, NULL));
    tc p;
    CU_ASSERT_FATAL(tc_connect(&p, e.broker.port, "producer"));
    const uint8_t two_s[] = {0x91, 0x02}; /* 2 s against a 600 ms lease */
    enqueue(&p, "long", "celeriac.sleep", two_s, sizeof two_s, 0);
    const cel_msg *r = finish(&p, "long");
    CU_ASSERT_STRING_EQUAL(tc_s(r->state), "succeeded");
    CU_ASSERT_EQUAL(r->attempt, 1);
    tc_close(&p);
    th_proc_stop(&w2, SIGTERM);
    env_stop(&e);
}

static void test_killed_worker_task_runs_again_elsewhere(void) {
    env e;
    CU_ASSERT_FATAL(env_start(&e, NULL));
    tc p;
    CU_ASSERT_FATAL(tc_connect(&p, e.broker.port, "producer"));
    const uint8_t one_s[] = {0x91, 0x01};
    enqueue(&p, "victim", "celeriac.sleep", one_s, sizeof one_s, 0);
    th_sleep_ms(300);
    th_proc_stop(&e.worker, SIGKILL); /* parent and its children's broker link die at once */
    CU_ASSERT_FATAL(th_worker_start(&e.worker, e.broker.port, NULL));
    const cel_msg *r = finish(&p, "victim");
    CU_ASSERT_STRING_EQUAL(tc_s(r->state), "succeeded");
    CU_ASSERT_EQUAL(r->attempt, 2);
    tc_close(&p);
    env_stop(&e);
}

static void test_sigterm_drain_loses_nothing(void) {
    env e;
    char *flags[] = {"--concurrency", "2", "--prefetch", "4", NULL};
    CU_ASSERT_FATAL(env_start(&e, flags));
    tc p;
    CU_ASSERT_FATAL(tc_connect(&p, e.broker.port, "producer"));
    const uint8_t quarter[] = {0x91, 0xcb, 0x3f, 0xd0, 0, 0, 0, 0, 0, 0}; /* [0.25] */
    char ids[8][16];
    for (int i = 0; i < 8; i++) {
        snprintf(ids[i], sizeof ids[i], "d%d", i);
        enqueue(&p, ids[i], "celeriac.sleep", quarter, sizeof quarter, 0);
    }
    th_sleep_ms(100);
    int st = th_proc_stop(&e.worker, SIGTERM);
    CU_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CU_ASSERT_FATAL(th_worker_start(&e.worker, e.broker.port, flags));
    int done = 0;
    for (int i = 0; i < 8; i++) done += !strcmp(tc_s(finish(&p, ids[i])->state), "succeeded");
    CU_ASSERT_EQUAL(done, 8);
    tc_close(&p);
    env_stop(&e);
}

static void test_results_arrive_across_a_broker_restart(void) {
    env e;
    char *slow_lease[] = {"--lease-ms", "30000", "--reaper-ms", "50", NULL};
    CU_ASSERT_FATAL(th_redis_start(&e.redis, NULL));
    CU_ASSERT_FATAL(th_broker_start(&e.broker, &e.redis, slow_lease));
    CU_ASSERT_FATAL(th_worker_start(&e.worker, e.broker.port, NULL));
    tc p;
    CU_ASSERT_FATAL(tc_connect(&p, e.broker.port, "producer"));
    const uint8_t one_s[] = {0x91, 0x01};
    enqueue(&p, "through", "celeriac.sleep", one_s, sizeof one_s, 0);
    tc_close(&p);
    th_sleep_ms(300);
    th_proc_stop(&e.broker, SIGKILL);
    th_sleep_ms(200);
    CU_ASSERT_FATAL(th_broker_restart(&e.broker, &e.redis, slow_lease));
    CU_ASSERT_FATAL(tc_connect(&p, e.broker.port, "producer"));
    const cel_msg *r = finish(&p, "through");
    CU_ASSERT_STRING_EQUAL(tc_s(r->state), "succeeded");
    CU_ASSERT_EQUAL(r->attempt, 1); /* the worker's resent ack was accepted, no rerun */
    tc_close(&p);
    env_stop(&e);
}

static void test_poison_task_goes_dead_while_others_flow(void) {
    env e;
    char *flags[] = {"--concurrency", "2", NULL};
    CU_ASSERT_FATAL(env_start(&e, flags));
    tc p;
    CU_ASSERT_FATAL(tc_connect(&p, e.broker.port, "producer"));
    cel_msg m;
    tc_msg(&m, CEL_OP_ENQUEUE);
    m.queue = cel_str_c("default"), m.task = cel_str_c("celeriac.crash"), m.id = cel_str_c("pill");
    m.max_retries = 50;
    m.present = 1u << CEL_F_QUEUE | 1u << CEL_F_TASK | 1u << CEL_F_ID | 1u << CEL_F_MAX_RETRIES;
    CU_ASSERT(tc_reply(&p, tc_send(&p, &m), 5000) != NULL);
    char ids[40][16];
    for (int i = 0; i < 40; i++) {
        snprintf(ids[i], sizeof ids[i], "ok-%d", i);
        enqueue(&p, ids[i], "celeriac.noop", NULL, 0, 0);
    }
    const cel_msg *r = finish(&p, "pill");
    CU_ASSERT_STRING_EQUAL(tc_s(r->state), "dead");
    CU_ASSERT_STRING_EQUAL(tc_s(r->reason), "worker_lost");
    CU_ASSERT_EQUAL(r->attempt, 3); /* three deliveries killed a child, then no more */
    int ok = 0;
    for (int i = 0; i < 40; i++) ok += !strcmp(tc_s(finish(&p, ids[i])->state), "succeeded");
    CU_ASSERT_EQUAL(ok, 40);
    tc_close(&p);
    env_stop(&e);
}

static void test_ten_thousand_delayed_tasks_due_at_once_run_exactly_once(void) {
    env e;
    char *flags[] = {"--concurrency", "2", "--prefetch", "64", NULL};
    CU_ASSERT_FATAL(env_start(&e, flags));
    th_proc w2;
    CU_ASSERT_FATAL(th_worker_start(&w2, e.broker.port, flags));
    tc p;
    CU_ASSERT_FATAL(tc_connect(&p, e.broker.port, "producer"));
    enum { N = 10000 };
    for (int i = 0; i < N; i++) {
        cel_msg m;
        tc_msg(&m, CEL_OP_ENQUEUE);
        char id[16];
        snprintf(id, sizeof id, "late-%d", i);
        m.queue = cel_str_c("default"), m.task = cel_str_c("celeriac.noop"), m.id = cel_str_c(id);
        m.delay_ms = 1000;
        m.present = 1u << CEL_F_QUEUE | 1u << CEL_F_TASK | 1u << CEL_F_ID | 1u << CEL_F_DELAY_MS;
        tc_send(&p, &m);
    }
    int scheduled = 0;
    for (int i = 0; i < N; i++) {
        const cel_msg *r = tc_recv(&p, 10000);
        scheduled += r && r->op == CEL_OP_OK && !strcmp(tc_s(r->state), "scheduled");
    }
    CU_ASSERT_EQUAL_FATAL(scheduled, N);
    redisContext *rc = th_redis_connect(&e.redis);
    long long deadline = th_now_ms() + 60000;
    long long left = N;
    while (left > 0 && th_now_ms() < deadline) {
        th_sleep_ms(200);
        redisReply *rep =
            redisCommand(rc, "EVAL %s 0",
                         "local n = 0 for _, k in ipairs({'ready','delayed','leased'}) do n = n + "
                         "redis.call('ZCARD', 'cel:{default}:' .. k) end return n");
        left = rep ? rep->integer : -1;
        freeReplyObject(rep);
    }
    CU_ASSERT_EQUAL(left, 0);
    /* Every task succeeded on its first and only delivery. */
    int once = 0;
    for (int i = 0; i < N; i++) redisAppendCommand(rc, "HMGET cel:{default}:t:late-%d st at", i);
    for (int i = 0; i < N; i++) {
        redisReply *rep = NULL;
        redisGetReply(rc, (void **)&rep);
        once += rep && rep->elements == 2 && rep->element[0]->str &&
                !strcmp(rep->element[0]->str, "succeeded") && !strcmp(rep->element[1]->str, "1");
        freeReplyObject(rep);
    }
    CU_ASSERT_EQUAL(once, N);
    redisFree(rc);
    tc_close(&p);
    th_proc_stop(&w2, SIGTERM);
    env_stop(&e);
}

static void test_soft_limit_tells_the_task_to_stop(void) {
    env e;
    CU_ASSERT_FATAL(env_start(&e, NULL));
    tc p;
    CU_ASSERT_FATAL(tc_connect(&p, e.broker.port, "producer"));
    cel_msg m;
    tc_msg(&m, CEL_OP_ENQUEUE);
    const uint8_t ten_s[] = {0x91, 0x0a};
    m.queue = cel_str_c("default"), m.task = cel_str_c("celeriac.sleep"), m.id = cel_str_c("soft");
    m.args.bytes = ten_s, m.args.len = sizeof ten_s, m.soft_ms = 200;
    m.present = 1u << CEL_F_QUEUE | 1u << CEL_F_TASK | 1u << CEL_F_ID | 1u << CEL_F_ARGS |
                1u << CEL_F_SOFT_MS;
    CU_ASSERT(tc_reply(&p, tc_send(&p, &m), 5000) != NULL);
    const cel_msg *r = finish(&p, "soft");
    CU_ASSERT_STRING_EQUAL(tc_s(r->state), "failed");
    CU_ASSERT_STRING_EQUAL(tc_s(r->error), "soft time limit");
    CU_ASSERT(r->finished_ms - r->started_ms < 3000); /* it stopped itself, long before 10 s */
    tc_close(&p);
    env_stop(&e);
}

static void test_worker_fails_over_to_the_next_broker(void) {
    env e;
    CU_ASSERT_FATAL(th_redis_start(&e.redis, NULL));
    th_proc b2;
    CU_ASSERT_FATAL(th_broker_start(&e.broker, &e.redis, broker_flags));
    CU_ASSERT_FATAL(th_broker_start(&b2, &e.redis, broker_flags));
    char second[32];
    snprintf(second, sizeof second, "127.0.0.1:%d", b2.port);
    char *flags[] = {"--broker", second, NULL};
    CU_ASSERT_FATAL(th_worker_start(&e.worker, e.broker.port, flags));
    th_sleep_ms(300);
    th_proc_stop(&e.broker, SIGKILL); /* the worker's first broker dies */
    tc p;
    CU_ASSERT_FATAL(tc_connect(&p, b2.port, "producer"));
    enqueue(&p, "via-second", "celeriac.noop", NULL, 0, 0);
    CU_ASSERT_STRING_EQUAL(tc_s(finish(&p, "via-second")->state), "succeeded");
    tc_close(&p);
    th_proc_stop(&e.worker, SIGTERM);
    e.worker.pid = 0;
    th_proc_stop(&b2, SIGTERM);
    th_redis_stop(&e.redis);
}

int main(void) {
    static const th_test tests[] = {
        {"built-in tasks end to end", test_builtin_tasks_end_to_end},
        {"plugin tasks, prefork and thread pools", test_plugin_tasks_and_thread_pool},
        {"long task with a short lease is not redelivered",
         test_long_task_with_short_lease_is_not_redelivered},
        {"killed worker's task runs again elsewhere", test_killed_worker_task_runs_again_elsewhere},
        {"SIGTERM drain loses nothing", test_sigterm_drain_loses_nothing},
        {"results arrive across a broker restart", test_results_arrive_across_a_broker_restart},
        {"poison task goes dead while others flow", test_poison_task_goes_dead_while_others_flow},
        {"soft limit tells the task to stop", test_soft_limit_tells_the_task_to_stop},
        {"worker fails over to the next broker", test_worker_fails_over_to_the_next_broker},
        {"10k delayed tasks due at once run exactly once",
         test_ten_thousand_delayed_tasks_due_at_once_run_exactly_once},
        {NULL, NULL}};
    return th_run("worker", tests);
}
