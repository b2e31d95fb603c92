/* celeriac-worker when things go wrong: leases shorter than tasks, workers killed -9, stopped
 * (SIGSTOP) past their lease, drained, stopped at once; brokers killed and restarted under
 * running tasks, or gone for good with a second one listed. After each, no task is lost and none
 * is acked twice. Real redis-server, celeriacd and worker processes (see worker_env.h). */
#include "worker_env.h"

/* Touch keeps a 2 s task on its first delivery though the lease is 600 ms, with a second idle
 * worker ready to take it had the lease run out. */
static void test_long_task_with_short_lease_is_not_redelivered(void) {
    env e;
    CU_ASSERT_FATAL(env_start(&e, NULL, NULL));
    th_proc w2;
    CU_ASSERT_FATAL(th_worker_start(&w2, e.broker.port, NULL));
    enqueue(&e.p, "long", "celeriac.sleep", ARGS_SLEEP_2, sizeof ARGS_SLEEP_2);
    const cel_msg *r = finish(&e.p, "long");
    CU_ASSERT_STRING_EQUAL(tc_s(r->state), "succeeded");
    CU_ASSERT_EQUAL(r->attempt, 1);
    CU_ASSERT_EQUAL(broker_stat(&e.p, "acked"), 1);
    worker_stop_clean(&w2);
    env_stop(&e);
}

static bool all_gone(const pid_t *pids, int n, int ms) {
    long long end = th_now_ms() + ms;
    for (;;) {
        int alive = 0;
        for (int i = 0; i < n; i++) alive += kill(pids[i], 0) == 0;
        if (!alive) return true;
        if (th_now_ms() > end) return false;
        th_sleep_ms(20);
    }
}

/* kill -9 of a worker mid-task: its children die with it (even one running a task that ignores
 * everything), the broker gives the tasks to the other worker at once, and the finished one is
 * acked exactly once. */
static void test_killed_worker_task_runs_again_elsewhere_once(void) {
    env e;
    char *flags[] = {"--concurrency", "2", "--plugin", TEST_PLUGIN, NULL};
    CU_ASSERT_FATAL(env_start(&e, NULL, flags));
    enqueue(&e.p, "victim", "celeriac.sleep", ARGS_SLEEP_1, sizeof ARGS_SLEEP_1);
    enqueue_limits(&e.p, "runaway", "test.spin", NULL, 0, 0, 1000);
    CU_ASSERT_FATAL(wait_state(&e.p, "victim", "active", 5000));
    CU_ASSERT_FATAL(wait_state(&e.p, "runaway", "active", 5000));
    th_proc w2;
    CU_ASSERT_FATAL(th_worker_start(&w2, e.broker.port, flags));
    pid_t kids[64];
    int nkids = children_of(e.worker.pid, kids, 64);
    CU_ASSERT(nkids == 2);
    th_proc_stop(&e.worker, SIGKILL);
    CU_ASSERT(all_gone(kids, nkids, 2000)); /* no orphan keeps running a task */
    const cel_msg *r = finish(&e.p, "victim");
    CU_ASSERT_STRING_EQUAL(tc_s(r->state), "succeeded");
    CU_ASSERT_EQUAL(r->attempt, 2);
    r = finish(&e.p, "runaway"); /* and the runaway met its hard limit on the second worker */
    CU_ASSERT_STRING_EQUAL(tc_s(r->reason), "timeout");
    CU_ASSERT_EQUAL(r->attempt, 2);
    CU_ASSERT_EQUAL(broker_stat(&e.p, "acked"), 1);
    e.worker = w2;
    env_stop(&e);
}

/* A worker frozen (SIGSTOP) past its lease: the reaper gives the task to another worker. Thawed,
 * the first one learns from a refused touch that the lease is gone, stops the task, and what it
 * reports is refused. The task is acked once, and the first worker's credit comes back (it
 * takes the next task). */
static void test_worker_that_lost_its_lease_gives_up_the_task(void) {
    env e;
    char *one[] = {"--concurrency", "1", "--prefetch", "0", NULL};
    CU_ASSERT_FATAL(env_start(&e, NULL, one));
    enqueue(&e.p, "stolen", "celeriac.sleep", ARGS_SLEEP_2, sizeof ARGS_SLEEP_2);
    CU_ASSERT_FATAL(wait_state(&e.p, "stolen", "active", 5000));
    th_proc w2;
    CU_ASSERT_FATAL(th_worker_start(&w2, e.broker.port, one));
    kill(e.worker.pid, SIGSTOP);
    th_sleep_ms(1200); /* lease 600 ms, reaper every 50 ms: w2 has it by now */
    kill(e.worker.pid, SIGCONT);
    CU_ASSERT(file_wait(e.worker.log, "task stolen: lease lost (LEASE_EXPIRED)", 3000));
    const cel_msg *r = finish(&e.p, "stolen");
    CU_ASSERT_STRING_EQUAL(tc_s(r->state), "succeeded");
    CU_ASSERT_EQUAL(r->attempt, 2);
    CU_ASSERT_EQUAL(broker_stat(&e.p, "acked"), 1);
    CU_ASSERT_EQUAL(broker_stat(&e.p, "failed"), 0);
    worker_stop_clean(&w2);
    enqueue(&e.p, "next", "celeriac.noop", NULL, 0);
    CU_ASSERT_STRING_EQUAL(tc_s(finish(&e.p, "next")->state), "succeeded");
    env_stop(&e);
}

/* Enqueues n tasks of 0.25 s named <prefix>0.., and waits until the first one has run 50 ms. */
static void start_sleepers(env *e, char ids[][16], int n, const char *prefix) {
    for (int i = 0; i < n; i++) {
        snprintf(ids[i], 16, "%s%d", prefix, i);
        enqueue(&e->p, ids[i], "celeriac.sleep", ARGS_SLEEP_0_25, sizeof ARGS_SLEEP_0_25);
    }
    CU_ASSERT_FATAL(wait_state(&e->p, ids[0], "active", 5000));
    th_sleep_ms(50);
}

/* SIGTERM with tasks running and prefetched: running ones finish, the worker exits 0, and the
 * prefetched ones go back to the broker; a new worker finishes them. */
static void test_sigterm_drain_loses_nothing(void) {
    env e;
    char *flags[] = {"--concurrency", "2", "--prefetch", "4", NULL};
    CU_ASSERT_FATAL(env_start(&e, NULL, flags));
    char ids[8][16];
    start_sleepers(&e, ids, 8, "d");
    long long t0 = th_now_ms();
    int st = th_proc_stop(&e.worker, SIGTERM);
    CU_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CU_ASSERT(th_now_ms() - t0 < 3000);
    CU_ASSERT(file_count(e.worker.log, "drained: stopping") == 1);
    CU_ASSERT_FATAL(th_worker_start(&e.worker, e.broker.port, flags));
    int done = 0;
    for (int i = 0; i < 8; i++) {
        const cel_msg *r = finish(&e.p, ids[i]);
        done += !strcmp(tc_s(r->state), "succeeded");
        /* d0 and d1 (dispatched and started first) were running at SIGTERM: they finished
         * there, on their first delivery. */
        if (i < 2) CU_ASSERT_EQUAL(r->attempt, 1);
    }
    CU_ASSERT_EQUAL(done, 8);
    CU_ASSERT_EQUAL(broker_stat(&e.p, "acked"), 8);
    env_stop(&e);
}

/* With one child, the worker pipelines by default: the child is written its next task while it
 * runs one. At SIGTERM that queued task has not started: it is given back like any prefetched
 * one (runs on the next worker, second delivery), not run during the drain. */
static void test_sigterm_drain_gives_back_the_task_queued_in_a_child(void) {
    env e;
    char *flags[] = {"--concurrency", "1", "--prefetch", "4", NULL};
    CU_ASSERT_FATAL(env_start(&e, NULL, flags));
    CU_ASSERT(file_wait(e.worker.log, "prefork pool of 1 (pipelined)", 3000));
    char ids[4][16];
    start_sleepers(&e, ids, 4, "q");
    int st = th_proc_stop(&e.worker, SIGTERM);
    CU_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CU_ASSERT_FATAL(th_worker_start(&e.worker, e.broker.port, flags));
    int done = 0;
    for (int i = 0; i < 4; i++) {
        const cel_msg *r = finish(&e.p, ids[i]);
        done += !strcmp(tc_s(r->state), "succeeded");
        CU_ASSERT_EQUAL(r->attempt, i == 0 ? 1 : 2); /* q1 was the one queued in the child */
    }
    CU_ASSERT_EQUAL(done, 4);
    CU_ASSERT_EQUAL(broker_stat(&e.p, "acked"), 4);
    CU_ASSERT_EQUAL(broker_stat(&e.p, "failed"), 0);
    env_stop(&e);
}

/* A task still running when the drain timeout ends goes back at once (not after its 30 s lease)
 * and runs again on the next worker. */
static void test_drain_timeout_returns_running_tasks_at_once(void) {
    env e;
    char *long_lease[] = {"--lease-ms", "30000", "--reaper-ms", "50", NULL};
    char *flags[] = {"--drain-timeout-ms", "300", NULL};
    CU_ASSERT_FATAL(env_start(&e, long_lease, flags));
    enqueue(&e.p, "slow", "celeriac.sleep", ARGS_SLEEP_2, sizeof ARGS_SLEEP_2);
    CU_ASSERT_FATAL(wait_state(&e.p, "slow", "active", 5000));
    long long t0 = th_now_ms();
    int st = th_proc_stop(&e.worker, SIGTERM);
    CU_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CU_ASSERT(th_now_ms() - t0 < 1500);
    CU_ASSERT(file_count(e.worker.log, "drain timeout: stopping; 1 running") == 1);
    CU_ASSERT(wait_state(&e.p, "slow", "queued", 1000));
    CU_ASSERT_FATAL(th_worker_start(&e.worker, e.broker.port, NULL));
    const cel_msg *r = finish(&e.p, "slow");
    CU_ASSERT_STRING_EQUAL(tc_s(r->state), "succeeded");
    CU_ASSERT_EQUAL(r->attempt, 2);
    env_stop(&e);
}

/* SIGQUIT: out at once, children and all; the task goes back at once. */
static void test_sigquit_stops_at_once(void) {
    env e;
    char *long_lease[] = {"--lease-ms", "30000", NULL};
    CU_ASSERT_FATAL(env_start(&e, long_lease, NULL));
    enqueue(&e.p, "cut", "celeriac.sleep", ARGS_SLEEP_10, sizeof ARGS_SLEEP_10);
    CU_ASSERT_FATAL(wait_state(&e.p, "cut", "active", 5000));
    pid_t kids[64];
    int nkids = children_of(e.worker.pid, kids, 64);
    long long t0 = th_now_ms();
    int st = th_proc_stop(&e.worker, SIGQUIT);
    CU_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CU_ASSERT(th_now_ms() - t0 < 1000);
    CU_ASSERT(all_gone(kids, nkids, 1000));
    CU_ASSERT(wait_state(&e.p, "cut", "queued", 1000));
    env_stop(&e);
}

/* The broker is killed while two tasks run and restarted after one of them finished: that ack
 * waited in the worker and was resent; the other task kept its lease through the new broker.
 * Both succeed on their first delivery. */
static void test_results_arrive_across_a_broker_restart(void) {
    env e;
    char *long_lease[] = {"--lease-ms", "30000", "--reaper-ms", "50", NULL};
    char *flags[] = {"--concurrency", "2", NULL};
    CU_ASSERT_FATAL(env_start(&e, long_lease, flags));
    const uint8_t three_s[] = {0x03};
    enqueue(&e.p, "early", "celeriac.sleep", ARGS_SLEEP_1, sizeof ARGS_SLEEP_1);
    enqueue(&e.p, "late", "celeriac.sleep", three_s, sizeof three_s);
    CU_ASSERT_FATAL(wait_state(&e.p, "late", "active", 5000));
    tc_close(&e.p);
    th_proc_stop(&e.broker, SIGKILL);
    th_sleep_ms(1500); /* "early" ends while no broker is there */
    CU_ASSERT_FATAL(th_broker_restart(&e.broker, &e.redis, long_lease));
    CU_ASSERT_FATAL(tc_connect(&e.p, e.broker.port, "producer"));
    const cel_msg *r = finish(&e.p, "early");
    CU_ASSERT_STRING_EQUAL(tc_s(r->state), "succeeded");
    CU_ASSERT_EQUAL(r->attempt, 1);
    r = finish(&e.p, "late");
    CU_ASSERT_STRING_EQUAL(tc_s(r->state), "succeeded");
    CU_ASSERT_EQUAL(r->attempt, 1);
    CU_ASSERT(file_count(e.worker.log, "1 tasks still running, 1 outcomes to resend") == 1);
    env_stop(&e);
}

/* Redis goes down while a task runs and comes back after it finished: the broker answers the
 * ack UNAVAILABLE, the worker keeps it and sends it again until it is stored. */
static void test_ack_refused_during_a_redis_outage_is_resent(void) {
    env e;
    char *long_lease[] = {"--lease-ms", "30000", "--reaper-ms", "50", NULL};
    CU_ASSERT_FATAL(env_start(&e, long_lease, NULL));
    enqueue(&e.p, "outage", "celeriac.sleep", ARGS_SLEEP_1, sizeof ARGS_SLEEP_1);
    CU_ASSERT_FATAL(wait_state(&e.p, "outage", "active", 5000));
    th_redis_kill(&e.redis);
    CU_ASSERT(file_wait(e.worker.log, "task outage: ack not stored yet (UNAVAILABLE", 5000));
    CU_ASSERT_FATAL(th_redis_restart(&e.redis));
    /* Polled: until the broker is back on Redis it answers UNAVAILABLE to us too. */
    CU_ASSERT(wait_state(&e.p, "outage", "succeeded", 10000));
    const cel_msg *r = finish(&e.p, "outage");
    CU_ASSERT_STRING_EQUAL(tc_s(r->state), "succeeded");
    CU_ASSERT_EQUAL(r->attempt, 1);
    env_stop(&e);
}

/* After a reconnect the new connection's credits leave out the task still running from before:
 * with one slot and no prefetch, the next task is dispatched only once that one is settled. */
static void test_credits_after_a_reconnect_count_running_tasks(void) {
    env e;
    char *long_lease[] = {"--lease-ms", "30000", NULL};
    char *one[] = {"--concurrency", "1", "--prefetch", "0", NULL};
    CU_ASSERT_FATAL(env_start(&e, long_lease, one));
    enqueue(&e.p, "old", "celeriac.sleep", ARGS_SLEEP_2, sizeof ARGS_SLEEP_2);
    CU_ASSERT_FATAL(wait_state(&e.p, "old", "active", 5000));
    tc_close(&e.p);
    th_proc_stop(&e.broker, SIGKILL);
    CU_ASSERT_FATAL(th_broker_restart(&e.broker, &e.redis, long_lease));
    CU_ASSERT_FATAL(tc_connect(&e.p, e.broker.port, "producer"));
    CU_ASSERT_FATAL(file_wait(e.worker.log, "1 tasks still running", 5000));
    enqueue(&e.p, "next", "celeriac.noop", NULL, 0);
    const cel_msg *r = finish(&e.p, "old");
    CU_ASSERT_STRING_EQUAL(tc_s(r->state), "succeeded");
    long long old_done = r->finished_ms;
    r = finish(&e.p, "next");
    CU_ASSERT_STRING_EQUAL(tc_s(r->state), "succeeded");
    CU_ASSERT(r->started_ms >= old_done);
    env_stop(&e);
}

/* With its broker gone, the worker says so at its next heartbeat and then at most every 30 s
 * (not per heartbeat or per attempt), and again in the next outage after a reconnect. */
static void test_unreachable_broker_is_logged_once_per_outage(void) {
    env e;
    char *flags[] = {"--heartbeat-ms", "100", NULL};
    const char *line = "broker not reachable (127.0.0.1:";
    CU_ASSERT_FATAL(env_start(&e, NULL, flags));
    CU_ASSERT_FATAL(file_wait(e.worker.log, "connected to a broker", 5000));
    CU_ASSERT(file_count(e.worker.log, line) == 0);
    tc_close(&e.p);
    th_proc_stop(&e.broker, SIGKILL);
    CU_ASSERT(file_wait(e.worker.log, line, 3000));
    th_sleep_ms(700); /* several heartbeats and failed attempts later: still one line */
    CU_ASSERT(file_count(e.worker.log, line) == 1);
    CU_ASSERT(file_count(e.worker.log, "Connection refused; ") == 1);
    CU_ASSERT_FATAL(th_broker_restart(&e.broker, &e.redis, broker_flags));
    CU_ASSERT(file_wait_count(e.worker.log, "connected to a broker", 2, 5000));
    th_proc_stop(&e.broker, SIGKILL);
    CU_ASSERT(file_wait_count(e.worker.log, line, 2, 3000));
    CU_ASSERT_FATAL(th_broker_restart(&e.broker, &e.redis, broker_flags));
    CU_ASSERT_FATAL(tc_connect(&e.p, e.broker.port, "producer"));
    env_stop(&e);
}

static void test_worker_fails_over_to_the_next_broker(void) {
    env e;
    CU_ASSERT_FATAL(env_start(&e, NULL, (void *)-1));
    th_proc b2;
    CU_ASSERT_FATAL(th_broker_start(&b2, &e.redis, broker_flags));
    char second[32];
    snprintf(second, sizeof second, "127.0.0.1:%d", b2.port);
    char *flags[] = {"--broker", second, NULL};
    CU_ASSERT_FATAL(th_worker_start(&e.worker, e.broker.port, flags));
    th_sleep_ms(300);
    tc_close(&e.p);
    th_proc_stop(&e.broker, SIGKILL); /* the worker's first broker dies for good */
    CU_ASSERT_FATAL(tc_connect(&e.p, b2.port, "producer"));
    enqueue(&e.p, "via-second", "celeriac.noop", NULL, 0);
    CU_ASSERT_STRING_EQUAL(tc_s(finish(&e.p, "via-second")->state), "succeeded");
    e.broker = b2;
    env_stop(&e);
}

static void test_poison_task_goes_dead_while_others_flow(void) {
    env e;
    char *flags[] = {"--concurrency", "2", NULL};
    CU_ASSERT_FATAL(env_start(&e, NULL, flags));
    cel_msg m;
    tc_msg(&m, CEL_OP_ENQUEUE);
    m.queue = cel_str_c("default"), m.task = cel_str_c("celeriac.crash"), m.id = cel_str_c("pill");
    m.max_retries = 50;
    m.present = 1u << CEL_F_QUEUE | 1u << CEL_F_TASK | 1u << CEL_F_ID | 1u << CEL_F_MAX_RETRIES;
    CU_ASSERT(tc_reply(&e.p, tc_send(&e.p, &m), 5000) != NULL);
    char ids[40][16];
    for (int i = 0; i < 40; i++) {
        snprintf(ids[i], sizeof ids[i], "ok-%d", i);
        enqueue(&e.p, ids[i], "celeriac.noop", NULL, 0);
    }
    const cel_msg *r = finish(&e.p, "pill");
    CU_ASSERT_STRING_EQUAL(tc_s(r->state), "dead");
    CU_ASSERT_STRING_EQUAL(tc_s(r->reason), "worker_lost");
    CU_ASSERT_EQUAL(r->attempt, 3); /* three deliveries killed a child, then no more */
    int ok = 0;
    for (int i = 0; i < 40; i++) ok += !strcmp(tc_s(finish(&e.p, ids[i])->state), "succeeded");
    CU_ASSERT_EQUAL(ok, 40);
    env_stop(&e);
}

static void test_ten_thousand_delayed_tasks_due_at_once_run_exactly_once(void) {
    env e;
    char *flags[] = {"--concurrency", "2", "--prefetch", "64", NULL};
    CU_ASSERT_FATAL(env_start(&e, NULL, flags));
    th_proc w2;
    CU_ASSERT_FATAL(th_worker_start(&w2, e.broker.port, flags));
    enum { N = 10000 };
    for (int i = 0; i < N; i++) {
        cel_msg m;
        tc_msg(&m, CEL_OP_ENQUEUE);
        char id[16];
        snprintf(id, sizeof id, "late-%d", i);
        m.queue = cel_str_c("default"), m.task = cel_str_c("celeriac.noop"), m.id = cel_str_c(id);
        m.delay_ms = 1000;
        m.present = 1u << CEL_F_QUEUE | 1u << CEL_F_TASK | 1u << CEL_F_ID | 1u << CEL_F_DELAY_MS;
        tc_send(&e.p, &m);
    }
    int scheduled = 0;
    for (int i = 0; i < N; i++) {
        const cel_msg *r = tc_recv(&e.p, 10000);
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
    for (int i = 0; i < N; i++) redisAppendCommand(rc, "HMGET cel:t:late-%d st at", i);
    for (int i = 0; i < N; i++) {
        redisReply *rep = NULL;
        redisGetReply(rc, (void **)&rep);
        once += rep && rep->elements == 2 && rep->element[0]->str &&
                !strcmp(rep->element[0]->str, "succeeded") && !strcmp(rep->element[1]->str, "1");
        freeReplyObject(rep);
    }
    CU_ASSERT_EQUAL(once, N);
    CU_ASSERT_EQUAL(broker_stat(&e.p, "acked"), N);
    redisFree(rc);
    worker_stop_clean(&w2);
    env_stop(&e);
}

int main(void) {
    static const th_test tests[] = {
        {"long task with a short lease is not redelivered",
         test_long_task_with_short_lease_is_not_redelivered},
        {"killed worker's task runs again elsewhere, acked once",
         test_killed_worker_task_runs_again_elsewhere_once},
        {"worker that lost its lease gives up the task",
         test_worker_that_lost_its_lease_gives_up_the_task},
        {"SIGTERM drain loses nothing", test_sigterm_drain_loses_nothing},
        {"SIGTERM drain gives back the task queued in a child",
         test_sigterm_drain_gives_back_the_task_queued_in_a_child},
        {"drain timeout returns running tasks at once",
         test_drain_timeout_returns_running_tasks_at_once},
        {"SIGQUIT stops at once", test_sigquit_stops_at_once},
        {"results arrive across a broker restart", test_results_arrive_across_a_broker_restart},
        {"ack refused during a Redis outage is resent",
         test_ack_refused_during_a_redis_outage_is_resent},
        {"credits after a reconnect count running tasks",
         test_credits_after_a_reconnect_count_running_tasks},
        {"unreachable broker is logged once per outage",
         test_unreachable_broker_is_logged_once_per_outage},
        {"worker fails over to the next broker", test_worker_fails_over_to_the_next_broker},
        {"poison task goes dead while others flow", test_poison_task_goes_dead_while_others_flow},
        {"10k delayed tasks due at once run exactly once",
         test_ten_thousand_delayed_tasks_due_at_once_run_exactly_once},
        {NULL, NULL}};
    return th_run("worker faults", tests);
}
