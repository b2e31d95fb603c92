/* Scheduling semantics against real processes: priorities, delays, retries with backoff, dead
 * letters, poison tasks, cancel, pause/resume across a restart, unique keys, expiry. */
#include <stdlib.h>
#include <time.h>
#include <sys/wait.h>

#include "common.h"

static char *sched_flags[] = {
    "--lease-ms",      "60000", "--reaper-ms",    "20",  "--poll-ms", "50",
    "--retry-base-ms", "200",   "--retry-cap-ms", "800", NULL};

static const cel_msg *enqueue_opts(tc *t, const char *q, const char *id, cel_msg *m) {
    m->op = CEL_OP_ENQUEUE;
    m->queue = cel_str_c(q), m->task = cel_str_c("t");
    cel_msg_set(m, CEL_F_QUEUE), cel_msg_set(m, CEL_F_TASK);
    if (id) m->id = cel_str_c(id), cel_msg_set(m, CEL_F_ID);
    return tc_reply(t, tc_send(t, m), 5000);
}

/* Receives one task push, copying its id so it outlives the next receive. */
static bool next_task(tc *w, char *id, size_t cap, uint64_t *token, uint64_t *attempt, int ms) {
    const cel_msg *t = tc_recv(w, ms);
    while (t && t->op != CEL_OP_TASK) t = tc_recv(w, ms);
    if (!t) return false;
    snprintf(id, cap, "%s", tc_s(t->id));
    if (token) *token = t->token;
    if (attempt) *attempt = t->attempt;
    return true;
}

static const cel_msg *fail_task(tc *w, const char *id, uint64_t token, const char *reason) {
    cel_msg m;
    tc_msg(&m, CEL_OP_FAIL);
    m.id = cel_str_c(id), m.token = token, m.error = cel_str_c("boom");
    m.reason = cel_str_c(reason);
    cel_msg_set(&m, CEL_F_ID), cel_msg_set(&m, CEL_F_TOKEN), cel_msg_set(&m, CEL_F_ERROR);
    cel_msg_set(&m, CEL_F_REASON);
    return tc_reply(w, tc_send(w, &m), 5000);
}

static const cel_msg *admin(tc *t, cel_op op, const char *q, const char *id) {
    cel_msg m;
    tc_msg(&m, op);
    m.queue = cel_str_c(q), cel_msg_set(&m, CEL_F_QUEUE);
    if (id) m.id = cel_str_c(id), cel_msg_set(&m, CEL_F_ID);
    return tc_reply(t, tc_send(t, &m), 5000);
}

static void test_higher_priority_first_fifo_within_priority(void) {
    env e;
    CU_ASSERT_FATAL(env_start(&e, sched_flags));
    tc p, w;
    CU_ASSERT_FATAL(tc_connect(&p, e.broker.port, "producer"));
    const int prio[] = {1, 5, 1, 9, 5, 0};
    const char *ids[] = {"a1", "b5", "c1", "d9", "e5", "f0"};
    for (int i = 0; i < 6; i++) {
        cel_msg m;
        memset(&m, 0, sizeof m);
        m.priority = prio[i], cel_msg_set(&m, CEL_F_PRIORITY);
        CU_ASSERT(enqueue_opts(&p, "pq", ids[i], &m) != NULL);
    }
    CU_ASSERT_FATAL(tc_connect(&w, e.broker.port, "worker"));
    tc_consume(&w, "pq", 1);
    const char *want[] = {"d9", "b5", "e5", "a1", "c1", "f0"};
    for (int i = 0; i < 6; i++) {
        char id[64];
        uint64_t tok;
        CU_ASSERT_FATAL(next_task(&w, id, sizeof id, &tok, NULL, 3000));
        CU_ASSERT_STRING_EQUAL(id, want[i]);
        cel_msg a;
        tc_msg(&a, CEL_OP_ACK);
        a.id = cel_str_c(id), a.token = tok;
        cel_msg_set(&a, CEL_F_ID), cel_msg_set(&a, CEL_F_TOKEN);
        tc_send(&w, &a); /* its reply is skipped by next_task */
    }
    env_stop_pw(&e, &p, &w);
}

static void ack_task(tc *w, const char *id, uint64_t tok) {
    cel_msg a;
    tc_msg(&a, CEL_OP_ACK);
    a.id = cel_str_c(id), a.token = tok;
    cel_msg_set(&a, CEL_F_ID), cel_msg_set(&a, CEL_F_TOKEN);
    tc_send(w, &a); /* its reply is skipped by next_task */
}

/* A worker waits on an empty queue; one enqueue call brings six tasks (one id twice). The lease
 * made in that same call must take the call's best tasks, not its first ones, and the rest must
 * follow in priority order; the repeated id is answered as existing, not stored twice. */
static void test_waiting_worker_gets_the_calls_best_tasks_first(void) {
    env e;
    CU_ASSERT_FATAL(env_start(&e, sched_flags));
    tc p, w;
    CU_ASSERT_FATAL(tc_connect(&w, e.broker.port, "worker"));
    CU_ASSERT_FATAL(tc_consume(&w, "fq", 2) != NULL);
    CU_ASSERT_FATAL(tc_connect(&p, e.broker.port, "producer"));
    const int prio[] = {1, 5, 9, 9, 5, 0};
    const char *ids[] = {"a1", "b5", "a1", "d9", "e5", "f0"};
    cel_buf all;
    cel_buf_init(&all);
    uint64_t first = p.seq + 1;
    for (int i = 0; i < 6; i++) {
        cel_msg m;
        tc_msg(&m, CEL_OP_ENQUEUE);
        m.seq = ++p.seq, cel_msg_set(&m, CEL_F_SEQ);
        m.queue = cel_str_c("fq"), m.task = cel_str_c("t"), m.id = cel_str_c(ids[i]);
        m.priority = prio[i];
        cel_msg_set(&m, CEL_F_QUEUE), cel_msg_set(&m, CEL_F_TASK), cel_msg_set(&m, CEL_F_ID);
        cel_msg_set(&m, CEL_F_PRIORITY);
        CU_ASSERT_FATAL(cel_msg_encode(&all, &m, UINT32_MAX, NULL) == CEL_OK);
    }
    /* One write, so the broker reads the six together and sends them in one enqueue call. */
    tc_send_raw(&p, all.data, all.len);
    cel_buf_free(&all);
    for (uint64_t seq = first; seq < first + 6; seq++) {
        const cel_msg *r = tc_reply(&p, seq, 5000);
        CU_ASSERT_FATAL(r && r->op == CEL_OP_OK);
        CU_ASSERT_EQUAL(r->existed, seq == first + 2);
    }
    const char *want[] = {"d9", "b5", "e5", "a1", "f0"};
    for (int i = 0; i < 5; i++) {
        char id[64];
        uint64_t tok, attempt;
        CU_ASSERT_FATAL(next_task(&w, id, sizeof id, &tok, &attempt, 3000));
        CU_ASSERT_STRING_EQUAL(id, want[i]);
        CU_ASSERT_EQUAL(attempt, 1);
        ack_task(&w, id, tok);
    }
    /* Each task was stored once, with its first priority, and ended as succeeded. */
    const cel_msg *st = tc_wait(&p, "a1", 3000);
    CU_ASSERT_FATAL(st != NULL);
    CU_ASSERT_STRING_EQUAL(tc_s(st->state), "succeeded");
    CU_ASSERT_EQUAL(tc_stat(&p, "enqueued"), 5);
    env_stop_pw(&e, &p, &w);
}

static void test_delayed_task_runs_when_due_not_before(void) {
    env e;
    tc p, w;
    env_start_pw(&e, sched_flags, &p, &w);
    tc_consume(&w, "dq", 10);
    cel_msg m;
    memset(&m, 0, sizeof m);
    m.delay_ms = 600, cel_msg_set(&m, CEL_F_DELAY_MS);
    long long start = th_now_ms();
    const cel_msg *r = enqueue_opts(&p, "dq", "later", &m);
    CU_ASSERT_FATAL(r && r->op == CEL_OP_OK);
    CU_ASSERT_STRING_EQUAL(tc_s(r->state), "scheduled");
    char id[64];
    CU_ASSERT_FALSE(next_task(&w, id, sizeof id, NULL, NULL, 400));
    CU_ASSERT_TRUE(next_task(&w, id, sizeof id, NULL, NULL, 3000));
    long long took = th_now_ms() - start;
    CU_ASSERT(took >= 600 && took < 1500);
    env_stop_pw(&e, &p, &w);
}

static void test_retries_back_off_then_dead_letter_list_requeue_purge(void) {
    env e;
    tc p, w;
    env_start_pw(&e, sched_flags, &p, &w);
    cel_msg m;
    memset(&m, 0, sizeof m);
    m.max_retries = 2, cel_msg_set(&m, CEL_F_MAX_RETRIES);
    enqueue_opts(&p, "rq", "flaky", &m);
    tc_consume(&w, "rq", 1);
    long long last = th_now_ms();
    for (uint64_t attempt = 1; attempt <= 3; attempt++) {
        char id[64];
        uint64_t tok, at;
        CU_ASSERT_FATAL(next_task(&w, id, sizeof id, &tok, &at, 5000));
        CU_ASSERT_EQUAL(at, attempt);
        long long gap = th_now_ms() - last;
        /* Backoff 200 ms × 2^(n-1), jittered to 50–100 %, plus reaper slack. */
        if (attempt == 2) CU_ASSERT(gap >= 100 && gap < 700);
        if (attempt == 3) CU_ASSERT(gap >= 200 && gap < 1000);
        const cel_msg *r = fail_task(&w, id, tok, "error");
        CU_ASSERT_FATAL(r && r->op == CEL_OP_OK);
        CU_ASSERT_STRING_EQUAL(tc_s(r->state), attempt < 3 ? "retrying" : "dead");
        last = th_now_ms();
    }
    const cel_msg *r = admin(&p, CEL_OP_DEAD_LIST, "rq", NULL);
    CU_ASSERT_FATAL(r && r->op == CEL_OP_OK);
    CU_ASSERT_EQUAL(r->count, 1);
    CU_ASSERT_STRING_EQUAL(tc_s(cel_list_str(&r->ids, 0)), "flaky");
    r = tc_status(&p, "flaky");
    CU_ASSERT_STRING_EQUAL(tc_s(r->state), "dead");
    CU_ASSERT_STRING_EQUAL(tc_s(r->error), "boom");
    r = admin(&p, CEL_OP_DEAD_REQUEUE, "rq", "flaky");
    CU_ASSERT_FATAL(r && r->op == CEL_OP_OK);
    CU_ASSERT_EQUAL(r->count, 1);
    char id[64];
    uint64_t tok, at;
    CU_ASSERT_FATAL(next_task(&w, id, sizeof id, &tok, &at, 3000));
    CU_ASSERT_EQUAL(at, 1); /* a fresh retry budget */
    fail_task(&w, id, tok, "error");
    for (int k = 0; k < 2; k++) {
        CU_ASSERT_FATAL(next_task(&w, id, sizeof id, &tok, &at, 5000));
        fail_task(&w, id, tok, "error");
    }
    r = admin(&p, CEL_OP_DEAD_PURGE, "rq", NULL);
    CU_ASSERT_FATAL(r && r->op == CEL_OP_OK);
    CU_ASSERT_EQUAL(r->count, 1);
    r = tc_status(&p, "flaky");
    CU_ASSERT_FATAL(r && r->op == CEL_OP_ERROR);
    CU_ASSERT_STRING_EQUAL(tc_s(r->code), "NOT_FOUND");
    env_stop_pw(&e, &p, &w);
}

/* --dead-max: the dead set keeps the newest N of a queue; older dead tasks are deleted. */
static void test_dead_set_keeps_the_newest_dead_max(void) {
    env e;
    tc p, w;
    char *flags[] = {"--lease-ms", "60000",      "--poll-ms", "50", "--poison-limit",
                     "1",          "--dead-max", "3",         NULL};
    env_start_pw(&e, flags, &p, &w);
    const char *ids[] = {"d1", "d2", "d3", "d4", "d5"};
    for (int i = 0; i < 5; i++) {
        cel_msg m;
        memset(&m, 0, sizeof m);
        CU_ASSERT_FATAL(enqueue_opts(&p, "dq", ids[i], &m) != NULL);
    }
    /* All five held at once: a push arriving before a fail's reply would be skipped by it. */
    tc_consume(&w, "dq", 5);
    char got[5][64];
    uint64_t tok[5];
    for (int i = 0; i < 5; i++) {
        CU_ASSERT_FATAL(next_task(&w, got[i], sizeof got[i], &tok[i], NULL, 5000));
        CU_ASSERT_STRING_EQUAL(got[i], ids[i]);
    }
    for (int i = 0; i < 5; i++) {
        const cel_msg *r = fail_task(&w, got[i], tok[i], "worker_lost");
        CU_ASSERT_FATAL(r && r->op == CEL_OP_OK);
        CU_ASSERT_STRING_EQUAL(tc_s(r->state), "dead");
    }
    const cel_msg *r = admin(&p, CEL_OP_DEAD_LIST, "dq", NULL);
    CU_ASSERT_FATAL(r && r->op == CEL_OP_OK);
    CU_ASSERT_EQUAL(r->count, 3);
    for (uint32_t i = 0; i < 3 && i < r->count; i++)
        CU_ASSERT_STRING_EQUAL(tc_s(cel_list_str(&r->ids, i)), ids[i + 2]);
    for (int i = 0; i < 5; i++) {
        r = tc_status(&p, ids[i]);
        CU_ASSERT_FATAL(r != NULL);
        if (i < 2) CU_ASSERT(r->op == CEL_OP_ERROR && !strcmp(tc_s(r->code), "NOT_FOUND"));
        if (i >= 2) CU_ASSERT(r->op == CEL_OP_TASK_INFO && !strcmp(tc_s(r->state), "dead"));
    }
    env_stop_pw(&e, &p, &w);
}

static void test_poison_task_goes_dead_after_three_worker_losses(void) {
    env e;
    tc p, w;
    env_start_pw(&e, sched_flags, &p, &w);
    cel_msg m;
    memset(&m, 0, sizeof m);
    m.max_retries = 100, cel_msg_set(&m, CEL_F_MAX_RETRIES);
    enqueue_opts(&p, "poison", "pill", &m);
    tc_consume(&w, "poison", 1);
    const char *states[] = {"retrying", "retrying", "dead"};
    for (int k = 0; k < 3; k++) {
        char id[64];
        uint64_t tok;
        CU_ASSERT_FATAL(next_task(&w, id, sizeof id, &tok, NULL, 5000));
        const cel_msg *r = fail_task(&w, id, tok, "worker_lost");
        CU_ASSERT_FATAL(r && r->op == CEL_OP_OK);
        CU_ASSERT_STRING_EQUAL(tc_s(r->state), states[k]);
    }
    const cel_msg *r = tc_status(&p, "pill");
    CU_ASSERT_STRING_EQUAL(tc_s(r->state), "dead");
    CU_ASSERT_STRING_EQUAL(tc_s(r->reason), "worker_lost");
    env_stop_pw(&e, &p, &w);
}

static void test_cancel_queued_and_running_tasks(void) {
    env e;
    CU_ASSERT_FATAL(env_start(&e, sched_flags));
    tc p, w;
    CU_ASSERT_FATAL(tc_connect(&p, e.broker.port, "producer"));
    tc_enqueue_sync(&p, "cq", "t", "run-me");
    tc_enqueue_sync(&p, "cq", "t", "never-run");
    cel_msg m;
    tc_msg(&m, CEL_OP_CANCEL);
    m.id = cel_str_c("never-run"), cel_msg_set(&m, CEL_F_ID);
    const cel_msg *r = tc_reply(&p, tc_send(&p, &m), 5000);
    CU_ASSERT_FATAL(r && r->op == CEL_OP_OK);
    CU_ASSERT_STRING_EQUAL(tc_s(r->state), "cancelled");
    CU_ASSERT_FATAL(tc_connect(&w, e.broker.port, "worker"));
    tc_consume(&w, "cq", 10);
    char id[64];
    uint64_t tok;
    CU_ASSERT_FATAL(next_task(&w, id, sizeof id, &tok, NULL, 3000));
    CU_ASSERT_STRING_EQUAL(id, "run-me");
    tc_msg(&m, CEL_OP_CANCEL);
    m.id = cel_str_c("run-me"), cel_msg_set(&m, CEL_F_ID);
    r = tc_reply(&p, tc_send(&p, &m), 5000);
    CU_ASSERT_FATAL(r && r->op == CEL_OP_OK);
    /* The running worker is told, and its late ack changes nothing. */
    const cel_msg *a = tc_recv(&w, 3000);
    CU_ASSERT_FATAL(a && a->op == CEL_OP_ABORT);
    CU_ASSERT_STRING_EQUAL(tc_s(a->id), "run-me");
    CU_ASSERT_EQUAL(a->token, tok);
    cel_msg task;
    memset(&task, 0, sizeof task);
    task.id = cel_str_c("run-me"), task.token = tok;
    r = tc_ack(&w, &task);
    CU_ASSERT_FATAL(r && r->op == CEL_OP_ERROR);
    CU_ASSERT_STRING_EQUAL(tc_s(r->code), "LEASE_EXPIRED");
    CU_ASSERT_FALSE(next_task(&w, id, sizeof id, NULL, NULL, 300)); /* never-run stays cancelled */
    r = tc_status(&p, "run-me");
    CU_ASSERT_STRING_EQUAL(tc_s(r->state), "cancelled");
    /* A second cancel changes nothing and says so. */
    tc_msg(&m, CEL_OP_CANCEL);
    m.id = cel_str_c("run-me"), cel_msg_set(&m, CEL_F_ID);
    r = tc_reply(&p, tc_send(&p, &m), 5000);
    CU_ASSERT_FATAL(r && r->op == CEL_OP_ERROR);
    CU_ASSERT_STRING_EQUAL(tc_s(r->code), "STATE");
    env_stop_pw(&e, &p, &w);
}

static void test_pause_survives_broker_restart(void) {
    env e;
    CU_ASSERT_FATAL(env_start(&e, sched_flags));
    tc p, w;
    CU_ASSERT_FATAL(tc_connect(&p, e.broker.port, "admin"));
    const cel_msg *r = admin(&p, CEL_OP_PAUSE, "held", NULL);
    CU_ASSERT_FATAL(r && r->op == CEL_OP_OK);
    CU_ASSERT_EQUAL(tc_enqueue_sync(&p, "held", "t", "h1")->op, CEL_OP_OK);
    tc_close(&p);
    int st = th_proc_stop(&e.broker, SIGTERM);
    CU_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CU_ASSERT_FATAL(th_broker_start(&e.broker, &e.redis, sched_flags) &&
                    env_wait_ready(e.broker.port));
    CU_ASSERT_FATAL(tc_connect(&p, e.broker.port, "admin"));
    CU_ASSERT_FATAL(tc_connect(&w, e.broker.port, "worker"));
    tc_consume(&w, "held", 1);
    char id[64];
    CU_ASSERT_FALSE(next_task(&w, id, sizeof id, NULL, NULL, 500));
    r = admin(&p, CEL_OP_RESUME, "held", NULL);
    CU_ASSERT_FATAL(r && r->op == CEL_OP_OK);
    CU_ASSERT_TRUE(next_task(&w, id, sizeof id, NULL, NULL, 3000));
    CU_ASSERT_STRING_EQUAL(id, "h1");
    env_stop_pw(&e, &p, &w);
}

static void test_unique_key_dedups_across_two_clients(void) {
    env e;
    CU_ASSERT_FATAL(env_start(&e, sched_flags));
    tc a, b;
    CU_ASSERT_FATAL(tc_connect(&a, e.broker.port, "producer"));
    CU_ASSERT_FATAL(tc_connect(&b, e.broker.port, "producer"));
    /* Both clients pipeline 50 enqueues with the same unique key and different ids. */
    for (int i = 0; i < 50; i++) {
        for (int k = 0; k < 2; k++) {
            cel_msg m;
            memset(&m, 0, sizeof m);
            char id[32];
            snprintf(id, sizeof id, "u-%d-%d", k, i);
            m.op = CEL_OP_ENQUEUE;
            m.queue = cel_str_c("uq"), m.task = cel_str_c("t"), m.id = cel_str_c(id);
            m.unique_key = cel_str_c("report-42");
            m.present =
                1u << CEL_F_QUEUE | 1u << CEL_F_TASK | 1u << CEL_F_ID | 1u << CEL_F_UNIQUE_KEY;
            tc_send(k ? &b : &a, &m);
        }
    }
    char first[64] = "";
    int fresh = 0, same = 0;
    for (int i = 0; i < 100; i++) {
        const cel_msg *r = tc_recv(i % 2 ? &b : &a, 5000);
        CU_ASSERT_FATAL(r && r->op == CEL_OP_OK);
        fresh += !r->existed;
        if (!first[0] && !r->existed) snprintf(first, sizeof first, "%s", tc_s(r->id));
        same += r->existed;
    }
    CU_ASSERT_EQUAL(fresh, 1);
    CU_ASSERT_EQUAL(same, 99);
    tc_close(&a), tc_close(&b);
    env_stop(&e);
}

static void test_expired_task_is_never_run(void) {
    env e;
    CU_ASSERT_FATAL(env_start(&e, sched_flags));
    tc p, w;
    CU_ASSERT_FATAL(tc_connect(&p, e.broker.port, "producer"));
    cel_msg m;
    memset(&m, 0, sizeof m);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    m.expires_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + 200;
    cel_msg_set(&m, CEL_F_EXPIRES_MS);
    enqueue_opts(&p, "xq", "stale", &m);
    tc_enqueue_sync(&p, "xq", "t", "fresh");
    th_sleep_ms(400);
    CU_ASSERT_FATAL(tc_connect(&w, e.broker.port, "worker"));
    tc_consume(&w, "xq", 10);
    char id[64];
    CU_ASSERT_TRUE(next_task(&w, id, sizeof id, NULL, NULL, 3000));
    CU_ASSERT_STRING_EQUAL(id, "fresh");
    CU_ASSERT_FALSE(next_task(&w, id, sizeof id, NULL, NULL, 300));
    const cel_msg *r = tc_status(&p, "stale");
    CU_ASSERT_STRING_EQUAL(tc_s(r->state), "expired");
    env_stop_pw(&e, &p, &w);
}

static void test_delay_is_kept_to_the_millisecond_not_the_reaper_tick(void) {
    env e;
    char *flags[] = {"--lease-ms", "60000", NULL}; /* default --reaper-ms 1000 */
    CU_ASSERT_FATAL(env_start(&e, flags));
    tc p, w;
    CU_ASSERT_FATAL(tc_connect(&p, e.broker.port, "producer"));
    CU_ASSERT_FATAL(tc_connect(&w, e.broker.port, "worker"));
    tc_consume(&w, "dq", 10);
    th_sleep_ms(1100); /* the first reaper tick has passed */
    cel_msg m;
    memset(&m, 0, sizeof m);
    m.delay_ms = 300, cel_msg_set(&m, CEL_F_DELAY_MS);
    long long start = th_now_ms();
    enqueue_opts(&p, "dq", "precise", &m);
    char id[64];
    CU_ASSERT_TRUE(next_task(&w, id, sizeof id, NULL, NULL, 3000));
    long long took = th_now_ms() - start;
    CU_ASSERT(took >= 290 && took < 700);
    env_stop_pw(&e, &p, &w);
}

int main(void) {
    static const th_test tests[] = {
        {"higher priority first, FIFO within a priority",
         test_higher_priority_first_fifo_within_priority},
        {"a waiting worker gets the enqueue call's best tasks first",
         test_waiting_worker_gets_the_calls_best_tasks_first},
        {"delayed task runs when due, not before", test_delayed_task_runs_when_due_not_before},
        {"delay is kept to the millisecond, not the reaper tick",
         test_delay_is_kept_to_the_millisecond_not_the_reaper_tick},
        {"retries back off, then dead letter list/requeue/purge",
         test_retries_back_off_then_dead_letter_list_requeue_purge},
        {"poison task goes dead after three worker losses",
         test_poison_task_goes_dead_after_three_worker_losses},
        {"dead set keeps the newest --dead-max", test_dead_set_keeps_the_newest_dead_max},
        {"cancel queued and running tasks", test_cancel_queued_and_running_tasks},
        {"pause survives broker restart", test_pause_survives_broker_restart},
        {"unique key dedups across two clients", test_unique_key_dedups_across_two_clients},
        {"expired task is never run", test_expired_task_is_never_run},
        {NULL, NULL}};
    return th_run("scheduling", tests);
}
