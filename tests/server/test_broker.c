/* Broker delivery semantics against a real redis-server and a real celeriacd. */
#include <sys/wait.h>
#include <time.h>

#include "common.h"

/* For tests that hold tasks without touching them. */
static char *long_lease[] = {"--lease-ms", "60000", "--reaper-ms", "50", NULL};

static void test_enqueue_dispatch_ack_round_trip(void) {
    env e;
    tc p, w;
    env_start_pw(&e, NULL, &p, &w);
    const cel_msg *r = tc_enqueue_sync(&p, "default", "celeriac.echo", "task-1");
    CU_ASSERT_FATAL(r && r->op == CEL_OP_OK);
    CU_ASSERT_STRING_EQUAL(tc_s(r->id), "task-1");
    CU_ASSERT_STRING_EQUAL(tc_s(r->state), "queued");
    CU_ASSERT_FALSE(r->existed);
    r = tc_consume(&w, "default", 4);
    CU_ASSERT_FATAL(r && r->op == CEL_OP_OK);
    const cel_msg *t = tc_recv(&w, 3000);
    CU_ASSERT_FATAL(t && t->op == CEL_OP_TASK);
    CU_ASSERT_STRING_EQUAL(tc_s(t->id), "task-1");
    CU_ASSERT_STRING_EQUAL(tc_s(t->task), "celeriac.echo");
    CU_ASSERT_EQUAL(t->attempt, 1);
    CU_ASSERT(t->token > 0);
    r = tc_status(&p, "task-1");
    CU_ASSERT_FATAL(r && r->op == CEL_OP_TASK_INFO);
    CU_ASSERT_STRING_EQUAL(tc_s(r->state), "active");
    cel_msg task = *t;
    r = tc_ack(&w, &task);
    CU_ASSERT_FATAL(r && r->op == CEL_OP_OK);
    CU_ASSERT_STRING_EQUAL(tc_s(r->state), "succeeded");
    r = tc_status(&p, "task-1");
    CU_ASSERT_FATAL(r && r->op == CEL_OP_TASK_INFO);
    CU_ASSERT_STRING_EQUAL(tc_s(r->state), "succeeded");
    CU_ASSERT_EQUAL(r->attempt, 1);
    CU_ASSERT(r->finished_ms >= r->created_ms && r->created_ms > 0);
    /* From the task's stored body: its name, priority and creation time (the broker's clock). */
    CU_ASSERT_STRING_EQUAL(tc_s(r->task), "celeriac.echo");
    CU_ASSERT(cel_msg_has(r, CEL_F_PRIORITY) && r->priority == 0);
    CU_ASSERT(cel_msg_has(r, CEL_F_MAX_RETRIES) && r->max_retries == 0);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    long long now_ms = (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    CU_ASSERT(r->created_ms <= now_ms && r->created_ms > now_ms - 60000);
    env_stop_pw(&e, &p, &w);
}

/* A task record whose body is not one the broker wrote (another program's, or damaged): the
 * broker neither crashes nor loops; the task reaches a worker under a name no worker has, so
 * it fails, and its status still answers. */
static void test_unreadable_task_record(void) {
    env e;
    tc p, w;
    env_start_pw(&e, NULL, &p, &w);
    redisContext *rc = th_redis_connect(&e.redis);
    CU_ASSERT_FATAL(rc != NULL);
    const char *cmds[] = {"HSET cel:t:bad q default d \x95\xa1 s 1 st queued",
                          "ZADD cel:{default}:ready 1 bad", "SADD cel:queues default"};
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++)
        freeReplyObject(redisCommand(rc, cmds[i]));
    redisFree(rc);
    const cel_msg *r = tc_consume(&w, "default", 1);
    CU_ASSERT_FATAL(r && r->op == CEL_OP_OK);
    const cel_msg *t = tc_recv(&w, 3000);
    CU_ASSERT_FATAL(t && t->op == CEL_OP_TASK);
    CU_ASSERT_STRING_EQUAL(tc_s(t->id), "bad");
    CU_ASSERT_STRING_EQUAL(tc_s(t->task), "celeriac.unreadable-task-record");
    r = tc_status(&p, "bad");
    CU_ASSERT_FATAL(r && r->op == CEL_OP_TASK_INFO);
    CU_ASSERT_STRING_EQUAL(tc_s(r->state), "active");
    CU_ASSERT_FALSE(cel_msg_has(r, CEL_F_TASK));
    env_stop_pw(&e, &p, &w);
}

/* Sends n enqueues to queue in one write (so the broker reads them as one batch); ids[i] NULL
 * lets the broker pick. Returns the first seq. */
static uint64_t send_enqueues(tc *p, const char *queue, const char *const *ids, int n) {
    cel_buf frames;
    cel_buf_init(&frames);
    uint64_t first = p->seq + 1;
    for (int i = 0; i < n; i++) {
        cel_msg m;
        cel_error err;
        tc_msg(&m, CEL_OP_ENQUEUE);
        m.seq = ++p->seq, m.queue = cel_str_c(queue), m.task = cel_str_c("t");
        cel_msg_set(&m, CEL_F_SEQ), cel_msg_set(&m, CEL_F_QUEUE), cel_msg_set(&m, CEL_F_TASK);
        if (ids && ids[i]) m.id = cel_str_c(ids[i]), cel_msg_set(&m, CEL_F_ID);
        CU_ASSERT_FATAL(cel_msg_encode(&frames, &m, UINT32_MAX, &err) == CEL_OK);
    }
    CU_ASSERT_FATAL(tc_send_raw(p, frames.data, frames.len));
    cel_buf_free(&frames);
    return first;
}

/* The replies to n enqueues sent from seq on: whether each id existed (-1: no OK). */
static void enqueue_replies(tc *p, uint64_t seq, int n, int *existed) {
    for (int i = 0; i < n; i++) {
        const cel_msg *r = tc_reply(p, seq + (uint64_t)i, 5000);
        existed[i] = r && r->op == CEL_OP_OK ? r->existed : -1;
    }
}

static void test_enqueue_with_same_id_is_idempotent(void) {
    env e;
    CU_ASSERT_FATAL(env_start(&e, long_lease));
    tc p, w;
    CU_ASSERT_FATAL(tc_connect(&p, e.broker.port, "producer"));
    const cel_msg *r = tc_enqueue_sync(&p, "q1", "t", "same-id");
    CU_ASSERT_FATAL(r && r->op == CEL_OP_OK && !r->existed);
    r = tc_enqueue_sync(&p, "q1", "t", "same-id");
    CU_ASSERT_FATAL(r && r->op == CEL_OP_OK);
    CU_ASSERT_TRUE(r->existed);
    CU_ASSERT_STRING_EQUAL(tc_s(r->id), "same-id");
    /* Within one batch: an id taken before, and an id given twice, each make one task. */
    const char *mixed[] = {"new-a", "same-id", "new-b", "new-a"};
    int existed[4];
    enqueue_replies(&p, send_enqueues(&p, "q1", mixed, 4), 4, existed);
    CU_ASSERT(existed[0] == 0 && existed[1] == 1 && existed[2] == 0 && existed[3] == 1);
    const char *twice[] = {"new-c", "new-c"};
    enqueue_replies(&p, send_enqueues(&p, "q1", twice, 2), 2, existed);
    CU_ASSERT(existed[0] == 0 && existed[1] == 1);
    CU_ASSERT_FATAL(tc_connect(&w, e.broker.port, "worker"));
    tc_consume(&w, "q1", 10);
    int tasks = 0;
    for (const cel_msg *m; (m = tc_recv(&w, 500));) tasks += m->op == CEL_OP_TASK;
    CU_ASSERT_EQUAL(tasks, 4); /* same-id, new-a, new-b, new-c: once each */
    env_stop_pw(&e, &p, &w);
}

static void test_worker_disconnect_requeues_leased_tasks(void) {
    env e;
    CU_ASSERT_FATAL(env_start(&e, long_lease));
    tc p, w1, w2;
    CU_ASSERT_FATAL(tc_connect(&p, e.broker.port, "producer"));
    CU_ASSERT_FATAL(tc_connect(&w1, e.broker.port, "worker"));
    tc_enqueue_sync(&p, "q", "t", "dc-1");
    tc_consume(&w1, "q", 1);
    const cel_msg *t = tc_recv(&w1, 3000);
    CU_ASSERT_FATAL(t && t->op == CEL_OP_TASK);
    tc_close(&w1);
    CU_ASSERT_FATAL(tc_connect(&w2, e.broker.port, "worker"));
    long long start = th_now_ms();
    tc_consume(&w2, "q", 1);
    t = tc_recv(&w2, 3000);
    CU_ASSERT_FATAL(t && t->op == CEL_OP_TASK);
    CU_ASSERT_STRING_EQUAL(tc_s(t->id), "dc-1");
    CU_ASSERT_EQUAL(t->attempt, 2);
    /* Back at once, not after the 60 s lease. */
    CU_ASSERT(th_now_ms() - start < 2000);
    tc_close(&p), tc_close(&w2);
    env_stop(&e);
}

static void test_expired_lease_is_requeued_and_stale_ack_refused(void) {
    env e;
    CU_ASSERT_FATAL(env_start(&e, NULL));
    tc p, w1, w2;
    CU_ASSERT_FATAL(tc_connect(&p, e.broker.port, "producer"));
    CU_ASSERT_FATAL(tc_connect(&w1, e.broker.port, "worker"));
    CU_ASSERT_FATAL(tc_connect(&w2, e.broker.port, "worker"));
    tc_enqueue_sync(&p, "q", "t", "lease-1");
    tc_consume(&w1, "q", 1);
    const cel_msg *t = tc_recv(&w1, 3000);
    CU_ASSERT_FATAL(t && t->op == CEL_OP_TASK);
    cel_msg first = *t;
    char id1[64];
    snprintf(id1, sizeof id1, "%s", tc_s(first.id));
    first.id = cel_str_c(id1);
    /* w1 hangs past its 400 ms lease: the reaper hands the task to w2. */
    tc_consume(&w2, "q", 1);
    t = tc_recv(&w2, 3000);
    CU_ASSERT_FATAL(t && t->op == CEL_OP_TASK);
    CU_ASSERT_EQUAL(t->attempt, 2);
    CU_ASSERT(t->token != first.token);
    cel_msg second = *t;
    char id2[64];
    snprintf(id2, sizeof id2, "%s", tc_s(second.id));
    second.id = cel_str_c(id2);
    const cel_msg *r = tc_ack(&w1, &first);
    CU_ASSERT_FATAL(r && r->op == CEL_OP_ERROR);
    CU_ASSERT_STRING_EQUAL(tc_s(r->code), "LEASE_EXPIRED");
    r = tc_ack(&w2, &second);
    CU_ASSERT_FATAL(r && r->op == CEL_OP_OK);
    /* A task is acked at most once. */
    r = tc_ack(&w2, &second);
    CU_ASSERT_FATAL(r && r->op == CEL_OP_ERROR);
    CU_ASSERT_STRING_EQUAL(tc_s(r->code), "LEASE_EXPIRED");
    tc_close(&p), tc_close(&w1), tc_close(&w2);
    env_stop(&e);
}

static void test_touch_extends_lease(void) {
    env e;
    CU_ASSERT_FATAL(env_start(&e, NULL));
    tc p, w1, w2;
    CU_ASSERT_FATAL(tc_connect(&p, e.broker.port, "producer"));
    CU_ASSERT_FATAL(tc_connect(&w1, e.broker.port, "worker"));
    CU_ASSERT_FATAL(tc_connect(&w2, e.broker.port, "worker"));
    tc_enqueue_sync(&p, "q", "t", "touch-1");
    tc_consume(&w1, "q", 1);
    const cel_msg *t = tc_recv(&w1, 3000);
    CU_ASSERT_FATAL(t && t->op == CEL_OP_TASK);
    uint64_t token = t->token;
    tc_consume(&w2, "q", 1);
    for (int i = 0; i < 8; i++) { /* 8 × 150 ms: three leases' worth */
        cel_msg m;
        tc_msg(&m, CEL_OP_TOUCH);
        m.id = cel_str_c("touch-1"), m.token = token;
        cel_msg_set(&m, CEL_F_ID), cel_msg_set(&m, CEL_F_TOKEN);
        const cel_msg *r = tc_reply(&w1, tc_send(&w1, &m), 3000);
        CU_ASSERT_FATAL(r && r->op == CEL_OP_OK);
        th_sleep_ms(150);
    }
    CU_ASSERT_PTR_NULL(tc_recv(&w2, 100)); /* never redelivered while touched */
    tc_close(&p), tc_close(&w1), tc_close(&w2);
    env_stop(&e);
}

static void test_wait_blocks_until_task_finishes(void) {
    env e;
    tc p, w;
    env_start_pw(&e, NULL, &p, &w);
    tc_enqueue_sync(&p, "q", "t", "wait-1");
    cel_msg m;
    tc_msg(&m, CEL_OP_WAIT);
    m.id = cel_str_c("wait-1"), m.timeout_ms = 10000;
    cel_msg_set(&m, CEL_F_ID), cel_msg_set(&m, CEL_F_TIMEOUT_MS);
    uint64_t seq = tc_send(&p, &m);
    CU_ASSERT_PTR_NULL(tc_recv(&p, 300)); /* nothing until the task ends */
    tc_consume(&w, "q", 1);
    const cel_msg *t = tc_recv(&w, 3000);
    CU_ASSERT_FATAL(t != NULL);
    cel_msg task = *t;
    long long acked = th_now_ms();
    tc_ack(&w, &task);
    const cel_msg *r = tc_reply(&p, seq, 5000);
    CU_ASSERT_FATAL(r && r->op == CEL_OP_TASK_INFO);
    CU_ASSERT_STRING_EQUAL(tc_s(r->state), "succeeded");
    CU_ASSERT(th_now_ms() - acked < 500); /* woken by the ack, not by a poll */
    r = tc_wait(&p, "never-enqueued", 200);
    CU_ASSERT_FATAL(r && r->op == CEL_OP_ERROR);
    CU_ASSERT_STRING_EQUAL(tc_s(r->code), "NOT_FOUND");
    tc_enqueue_sync(&p, "q2", "t", "wait-2");
    r = tc_wait(&p, "wait-2", 300);
    CU_ASSERT_FATAL(r && r->op == CEL_OP_ERROR);
    CU_ASSERT_STRING_EQUAL(tc_s(r->code), "TIMEOUT");
    env_stop_pw(&e, &p, &w);
}

static uint64_t send_wait(tc *t, const char *id) {
    cel_msg m;
    tc_msg(&m, CEL_OP_WAIT);
    m.id = cel_str_c(id), m.timeout_ms = 30000;
    cel_msg_set(&m, CEL_F_ID), cel_msg_set(&m, CEL_F_TIMEOUT_MS);
    return tc_send(t, &m);
}

/* Waits are kept by task id and by client: every waiter of a task wakes when it ends (several
 * on one task, a few hundred in all: the broker's table grows under them), and a client that
 * leaves takes its own waits with it, not the others'. */
static void test_many_waits_wake_by_task_and_leave_with_their_client(void) {
    env e;
    tc p, w, gone;
    env_start_pw(&e, long_lease, &p, &w);
    CU_ASSERT_FATAL(tc_connect(&gone, e.broker.port, "producer"));
    enum { N = 200, SAME = 3 };
    static char ids[N][32];
    for (int i = 0; i < N; i++) {
        snprintf(ids[i], sizeof ids[i], "mw-%d", i);
        tc_enqueue(&p, "mwq", "t", ids[i]);
    }
    for (int i = 0; i < N; i++) CU_ASSERT_PTR_NOT_NULL(tc_recv(&p, 3000));
    for (int i = 0; i < N; i++) send_wait(&p, ids[i]);
    for (int k = 0; k < SAME; k++) send_wait(&p, ids[0]);
    send_wait(&gone, ids[1]), send_wait(&gone, ids[2]);
    /* All waiting, and past the broker's first re-check of them (each re-checks Redis once a
     * second): from here, only a finish it sees can wake them within the next second. */
    CU_ASSERT_PTR_NULL(tc_recv(&p, 1100));
    tc stats;
    CU_ASSERT_FATAL(tc_connect(&stats, e.broker.port, "producer"));
    CU_ASSERT_EQUAL(tc_stat(&stats, "waits"), N + SAME + 2);
    tc_close(&gone);
    long long waits = -1;
    for (long long end = th_now_ms() + 3000; th_now_ms() < end && waits != N + SAME;)
        waits = tc_stat(&stats, "waits"); /* the broker sees the close a moment later */
    CU_ASSERT_EQUAL(waits, N + SAME);
    tc_consume(&w, "mwq", N);
    static cel_msg tasks[N];
    static char tids[N][CEL_ID_MAX + 1];
    for (int i = 0; i < N; i++) {
        const cel_msg *t = tc_recv(&w, 3000);
        CU_ASSERT_FATAL(t && t->op == CEL_OP_TASK);
        tasks[i] = *t;
        snprintf(tids[i], sizeof tids[i], "%s", tc_s(t->id));
        tasks[i].id = cel_str_c(tids[i]);
    }
    for (int i = 0; i < N; i++) tc_ack(&w, &tasks[i]);
    long long acked = th_now_ms();
    int woke = 0;
    for (int i = 0; i < N + SAME; i++) {
        const cel_msg *r = tc_recv(&p, 5000);
        woke += r && r->op == CEL_OP_TASK_INFO && !strcmp(tc_s(r->state), "succeeded");
    }
    CU_ASSERT_EQUAL(woke, N + SAME);
    CU_ASSERT(th_now_ms() - acked < 400); /* woken by the acks, not by the next re-check */
    CU_ASSERT_PTR_NULL(tc_recv(&p, 200)); /* one reply per wait */
    CU_ASSERT_EQUAL(tc_stat(&stats, "waits"), 0);
    tc_close(&stats);
    env_stop_pw(&e, &p, &w);
}

/* The broker finds queues by name in an index that grows with them: a worker on 256 queues
 * gets the task of every one, enqueued before it consumed (the consume's dispatch) and after
 * (the enqueue's own lease or dispatch). */
static void test_a_worker_on_many_queues_gets_every_task(void) {
    env e;
    tc p, w;
    env_start_pw(&e, long_lease, &p, &w);
    enum { NQ = 256 };
    static char names[NQ][16];
    static cel_str qs[NQ];
    for (int i = 0; i < NQ; i++) {
        snprintf(names[i], sizeof names[i], "mq-%d", i);
        qs[i] = cel_str_c(names[i]);
    }
    for (int i = 0; i < NQ / 2; i++) tc_enqueue(&p, names[i], "t", names[i]);
    for (int i = 0; i < NQ / 2; i++) CU_ASSERT_PTR_NOT_NULL(tc_recv(&p, 3000));
    uint64_t consumed = tc_consume_send(&w, qs, NQ, NQ);
    for (int i = NQ / 2; i < NQ; i++) tc_enqueue(&p, names[i], "t", names[i]);
    static bool seen[NQ];
    int got = 0, oks = 0;
    /* Tasks may come before the consume's own reply: every message counts. */
    for (const cel_msg *t; got < NQ && (t = tc_recv(&w, 3000));) {
        int i = -1;
        oks += t->op == CEL_OP_OK && t->seq == consumed;
        if (t->op == CEL_OP_TASK && sscanf(tc_s(t->id), "mq-%d", &i) == 1 && i >= 0 && i < NQ &&
            !seen[i])
            seen[i] = true, got++;
    }
    CU_ASSERT_EQUAL(got, NQ);
    CU_ASSERT(oks == 1 || (oks == 0 && tc_reply(&w, consumed, 3000)));
    env_stop_pw(&e, &p, &w);
}

/* A worker on two busy queues with one credit gets their tasks in turn, not one queue's all
 * first (docs/delivery.md: each queue is dispatched independently, round-robin). */
static void test_a_worker_takes_its_queues_in_turn(void) {
    env e;
    tc p, w;
    env_start_pw(&e, long_lease, &p, &w);
    enum { EACH = 10 };
    for (int i = 0; i < EACH; i++)
        tc_enqueue(&p, "turn-a", "t", NULL), tc_enqueue(&p, "turn-b", "t", NULL);
    for (int i = 0; i < 2 * EACH; i++) CU_ASSERT_PTR_NOT_NULL(tc_recv(&p, 3000));
    cel_str qs[] = {cel_str_c("turn-a"), cel_str_c("turn-b")};
    tc_consume_send(&w, qs, 2, 1);
    char order[2 * EACH + 1] = "";
    for (int n = 0; n < 2 * EACH;) {
        const cel_msg *t = tc_recv(&w, 3000);
        if (!t) break;
        if (t->op != CEL_OP_TASK) continue;
        order[n++] = tc_s(t->queue)[strlen("turn-")];
        tc_ack_send(&w, t);
    }
    int switches = 0;
    for (int i = 1; order[i]; i++) switches += order[i] != order[i - 1];
    CU_ASSERT_EQUAL(strlen(order), 2 * EACH);
    CU_ASSERT(switches >= EACH);
    env_stop_pw(&e, &p, &w);
}

static void test_credits_bound_tasks_in_flight(void) {
    env e;
    tc p, w;
    env_start_pw(&e, long_lease, &p, &w);
    for (int i = 0; i < 10; i++) tc_enqueue(&p, "cq", "t", NULL);
    for (int i = 0; i < 10; i++) CU_ASSERT_PTR_NOT_NULL(tc_recv(&p, 3000));
    tc_consume(&w, "cq", 3);
    cel_msg got[3];
    char ids[3][64];
    for (int i = 0; i < 3; i++) {
        const cel_msg *t = tc_recv(&w, 3000);
        CU_ASSERT_FATAL(t && t->op == CEL_OP_TASK);
        got[i] = *t;
        snprintf(ids[i], sizeof ids[i], "%s", tc_s(t->id));
        got[i].id = cel_str_c(ids[i]);
    }
    CU_ASSERT_PTR_NULL(tc_recv(&w, 300)); /* no fourth task without credit */
    cel_msg a;
    tc_msg(&a, CEL_OP_ACK);
    a.id = got[0].id, a.token = got[0].token;
    cel_msg_set(&a, CEL_F_ID), cel_msg_set(&a, CEL_F_TOKEN);
    tc_send(&w, &a);
    int tasks = 0, oks = 0;
    for (const cel_msg *m; (m = tc_recv(&w, 500));) {
        tasks += m->op == CEL_OP_TASK;
        oks += m->op == CEL_OP_OK;
    }
    CU_ASSERT_EQUAL(oks, 1);
    CU_ASSERT_EQUAL(tasks, 1); /* one ack frees exactly one credit */
    env_stop_pw(&e, &p, &w);
}

/* Enqueue calls carry leases for a waiting worker while other lease calls are still in flight;
 * reserved credits keep them from leasing one credit twice. Sixteen producers' enqueues overlap
 * in flight; the worker (8 credits) never holds more than 8 unacked tasks, and gets all 32. */
static void test_overlapping_enqueue_leases_respect_credits(void) {
    enum { PRODUCERS = 16, EACH = 2, CREDITS = 8, ALL = PRODUCERS * EACH };
    env e;
    tc p, w, ps[PRODUCERS];
    env_start_pw(&e, long_lease, &p, &w);
    tc_consume(&w, "burst", CREDITS);
    th_sleep_ms(100);
    for (int i = 0; i < PRODUCERS; i++)
        CU_ASSERT_FATAL(tc_connect(&ps[i], e.broker.port, "producer"));
    for (int k = 0; k < EACH; k++)
        for (int i = 0; i < PRODUCERS; i++) tc_enqueue(&ps[i], "burst", "t", NULL);
    for (int i = 0; i < PRODUCERS; i++)
        for (int k = 0; k < EACH; k++) CU_ASSERT_PTR_NOT_NULL(tc_recv(&ps[i], 5000));
    static char ids[ALL][64];
    static uint64_t tokens[ALL];
    int got = 0, acked = 0, most = 0;
    /* Take what the broker sends until it stops (no credit left), then ack it all. */
    for (int rounds = 0; got < ALL && rounds < ALL; rounds++) {
        for (const cel_msg *m; got < ALL && (m = tc_recv(&w, 300));) {
            if (m->op != CEL_OP_TASK) continue;
            snprintf(ids[got], sizeof ids[got], "%s", tc_s(m->id));
            tokens[got++] = m->token;
        }
        if (got - acked > most) most = got - acked;
        for (; acked < got; acked++) {
            cel_msg a;
            tc_msg(&a, CEL_OP_ACK);
            a.id = cel_str_c(ids[acked]), a.token = tokens[acked];
            cel_msg_set(&a, CEL_F_ID), cel_msg_set(&a, CEL_F_TOKEN);
            tc_send(&w, &a);
        }
    }
    CU_ASSERT_EQUAL(got, ALL);
    CU_ASSERT(most <= CREDITS); /* never more unacked tasks than credits */
    for (int i = 0; i < PRODUCERS; i++) tc_close(&ps[i]);
    env_stop_pw(&e, &p, &w);
}

static void test_tasks_reach_waiting_worker_without_poll_delay(void) {
    env e;
    char *slow_poll[] = {"--poll-ms", "10000", NULL};
    CU_ASSERT_FATAL(env_start(&e, slow_poll));
    tc p, w;
    CU_ASSERT_FATAL(tc_connect(&p, e.broker.port, "producer"));
    CU_ASSERT_FATAL(tc_connect(&w, e.broker.port, "worker"));
    tc_consume(&w, "fast", 1);
    th_sleep_ms(100);
    long long start = th_now_ms();
    tc_enqueue_sync(&p, "fast", "t", "fast-1");
    const cel_msg *t = tc_recv(&w, 3000);
    CU_ASSERT_FATAL(t && t->op == CEL_OP_TASK);
    CU_ASSERT(th_now_ms() - start < 1000); /* the 10 s poll never ran */
    env_stop_pw(&e, &p, &w);
}

/* An enqueue call's lease takes the oldest ready task, which may be one enqueued through another
 * broker; its own task then stays ready and must be dispatched as soon as the worker has credit
 * again, not at the next poll. */
static void test_task_left_by_an_enqueue_lease_is_dispatched(void) {
    env e;
    char *slow_poll[] = {"--poll-ms", "10000", NULL};
    tc p, w, p2;
    th_proc b2;
    env_start_pw(&e, slow_poll, &p, &w);
    CU_ASSERT_FATAL(th_broker_start(&b2, &e.redis, slow_poll) && tc_wait_ready(b2.port, 10000));
    CU_ASSERT_FATAL(tc_connect(&p2, b2.port, "producer"));
    tc_consume(&w, "mix", 1);
    th_sleep_ms(100);
    tc_enqueue_sync(&p2, "mix", "t", "old-1"); /* this broker does not hear of it */
    tc_enqueue_sync(&p, "mix", "t", "new-1");
    const cel_msg *t = tc_recv(&w, 3000);
    CU_ASSERT_FATAL(t && t->op == CEL_OP_TASK);
    CU_ASSERT_STRING_EQUAL(tc_s(t->id), "old-1");
    cel_msg a;
    tc_msg(&a, CEL_OP_ACK);
    a.id = cel_str_c("old-1"), a.token = t->token;
    cel_msg_set(&a, CEL_F_ID), cel_msg_set(&a, CEL_F_TOKEN);
    long long start = th_now_ms();
    tc_send(&w, &a);
    /* The credit is free when the ack arrives: the next task may come before the ack's OK. */
    bool got_new = false;
    for (const cel_msg *m; !got_new && (m = tc_recv(&w, 3000));)
        got_new = m->op == CEL_OP_TASK && !strcmp(tc_s(m->id), "new-1");
    CU_ASSERT(got_new);
    CU_ASSERT(th_now_ms() - start < 1000); /* the 10 s poll never ran */
    tc_close(&p2);
    th_proc_stop(&b2, SIGTERM);
    env_stop_pw(&e, &p, &w);
}

/* Calls of a Redis command since the last CONFIG RESETSTAT. */
static long long redis_calls(redisContext *rc, const char *cmd) {
    redisReply *r = redisCommand(rc, "INFO commandstats");
    char key[64];
    snprintf(key, sizeof key, "cmdstat_%s:calls=", cmd);
    const char *at = r && r->type == REDIS_REPLY_STRING ? strstr(r->str, key) : NULL;
    long long n = at ? atoll(at + strlen(key)) : 0;
    freeReplyObject(r);
    return n;
}

/* A burst of enqueues read at once is sent to Redis in calls of one lease's size, each leasing
 * its own tasks to the waiting worker: none is written as ready and read back to be leased
 * (the dispatch path's HMGET), and no call waits for 4 KiB reads. */
static void test_a_burst_reaches_a_waiting_worker_written_once(void) {
    enum { N = 100 };
    char *flags[] = {"--lease-ms", "60000", "--poll-ms", "10000", "--dispatch-batch", "16", NULL};
    env e;
    tc p, w;
    env_start_pw(&e, flags, &p, &w);
    tc_consume(&w, "burst", 200);
    th_sleep_ms(100);
    redisContext *rc = th_redis_connect(&e.redis);
    CU_ASSERT_FATAL(rc != NULL);
    freeReplyObject(redisCommand(rc, "CONFIG RESETSTAT"));
    send_enqueues(&p, "burst", NULL, N);
    int ok = 0, got = 0;
    for (const cel_msg *m; ok < N && (m = tc_recv(&p, 3000));) ok += m->op == CEL_OP_OK;
    for (const cel_msg *m; got < N && (m = tc_recv(&w, 3000));) got += m->op == CEL_OP_TASK;
    CU_ASSERT_EQUAL(ok, N);
    CU_ASSERT_EQUAL(got, N);
    CU_ASSERT_EQUAL(redis_calls(rc, "hmget"), 0);
    CU_ASSERT_EQUAL(redis_calls(rc, "hget"), 0); /* the ids are checked by one EXISTS a call */
    CU_ASSERT(redis_calls(rc, "evalsha") >= N / 16);
    redisFree(rc);
    env_stop_pw(&e, &p, &w);
}

/* Tasks an enqueue call leases to the waiting worker itself come back from Redis without their
 * bodies (the broker holds them): each must still reach the worker with its own name, args and
 * limits, whatever order the lease takes them in (priorities reorder them), next to a task that
 * was already ready (whose body Redis sends). */
static void test_tasks_leased_by_their_own_call_keep_their_bodies(void) {
    enum { N = 6 };
    env e;
    tc p, w;
    env_start_pw(&e, long_lease, &p, &w);
    tc_enqueue_sync(&p, "own", "older", "own-old"); /* ready before the worker comes */
    tc_consume(&w, "own", 16);
    th_sleep_ms(100);
    cel_buf frames;
    cel_buf_init(&frames);
    static const int prio[N] = {0, 5, 1, 9, 5, 3};
    char names[N][16], ids[N][16];
    uint8_t args[N][16];
    for (int i = 0; i < N; i++) {
        cel_msg m;
        tc_msg(&m, CEL_OP_ENQUEUE);
        snprintf(names[i], sizeof names[i], "own.t%d", i);
        snprintf(ids[i], sizeof ids[i], "own-%d", i);
        /* [i, "a<i>"] */
        args[i][0] = 0x92, args[i][1] = (uint8_t)i, args[i][2] = 0xa2, args[i][3] = 'a';
        args[i][4] = (uint8_t)('0' + i);
        m.seq = ++p.seq, m.queue = cel_str_c("own"), m.task = cel_str_c(names[i]);
        m.id = cel_str_c(ids[i]), m.args.bytes = args[i], m.args.len = 5;
        m.priority = prio[i], m.soft_ms = 1000 + (uint64_t)i;
        cel_msg_set(&m, CEL_F_SEQ), cel_msg_set(&m, CEL_F_QUEUE), cel_msg_set(&m, CEL_F_TASK);
        cel_msg_set(&m, CEL_F_ID), cel_msg_set(&m, CEL_F_ARGS), cel_msg_set(&m, CEL_F_PRIORITY);
        cel_msg_set(&m, CEL_F_SOFT_MS);
        CU_ASSERT_FATAL(cel_msg_encode(&frames, &m, UINT32_MAX, NULL) == CEL_OK);
    }
    CU_ASSERT_FATAL(tc_send_raw(&p, frames.data, frames.len));
    cel_buf_free(&frames);
    int got = 0, right = 0;
    bool old = false;
    for (const cel_msg *t; got < N + 1 && (t = tc_recv(&w, 3000));) {
        if (t->op != CEL_OP_TASK) continue;
        got++;
        if (!strcmp(tc_s(t->id), "own-old")) {
            old = !strcmp(tc_s(t->task), "older");
            continue;
        }
        int i = atoi(tc_s(t->id) + 4);
        if (i < 0 || i >= N) continue;
        const msgpack_object *a = t->args.obj;
        bool args_ok = a && a->type == MSGPACK_OBJECT_ARRAY && a->via.array.size == 2 &&
                       a->via.array.ptr[0].type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
                       a->via.array.ptr[0].via.u64 == (uint64_t)i &&
                       a->via.array.ptr[1].type == MSGPACK_OBJECT_STR &&
                       a->via.array.ptr[1].via.str.size == 2 &&
                       !memcmp(a->via.array.ptr[1].via.str.ptr, args[i] + 3, 2);
        right += !strcmp(tc_s(t->id), ids[i]) && !strcmp(tc_s(t->task), names[i]) && args_ok &&
                 t->soft_ms == 1000 + (uint64_t)i && t->attempt == 1;
    }
    CU_ASSERT_EQUAL(got, N + 1);
    CU_ASSERT(old);
    CU_ASSERT_EQUAL(right, N);
    env_stop_pw(&e, &p, &w);
}

/* Pending waits are re-checked in Redis together, once a second, by one script call for up to
 * 1,000 of them; not each by a command of its own, sent from its own timer. */
static void test_pending_waits_are_rechecked_together(void) {
    enum { N = 300 };
    char *flags[] = {"--reaper-ms", "60000", "--poll-ms", "60000", NULL};
    env e;
    tc p, w;
    env_start_pw(&e, flags, &p, &w);
    static char ids[N][16];
    const char *idp[N];
    for (int i = 0; i < N; i++) snprintf(ids[i], sizeof ids[i], "held-%d", i), idp[i] = ids[i];
    int existed[N];
    enqueue_replies(&p, send_enqueues(&p, "held", idp, N), N, existed);
    CU_ASSERT_EQUAL_FATAL(existed[N - 1], 0);
    cel_buf frames;
    cel_buf_init(&frames);
    uint64_t first = p.seq + 1;
    for (int i = 0; i < N; i++) {
        cel_msg m;
        tc_msg(&m, CEL_OP_WAIT);
        m.seq = ++p.seq, m.id = cel_str_c(ids[i]), m.timeout_ms = 30000;
        cel_msg_set(&m, CEL_F_SEQ), cel_msg_set(&m, CEL_F_ID), cel_msg_set(&m, CEL_F_TIMEOUT_MS);
        CU_ASSERT_FATAL(cel_msg_encode(&frames, &m, UINT32_MAX, NULL) == CEL_OK);
    }
    CU_ASSERT_FATAL(tc_send_raw(&p, frames.data, frames.len));
    cel_buf_free(&frames);
    CU_ASSERT_PTR_NULL(tc_recv(&p, 300)); /* checked once on arrival: all still queued */
    redisContext *rc = th_redis_connect(&e.redis);
    CU_ASSERT_FATAL(rc != NULL);
    freeReplyObject(redisCommand(rc, "CONFIG RESETSTAT"));
    th_sleep_ms(2500);
    long long calls = redis_calls(rc, "evalsha"), hgets = redis_calls(rc, "hget");
    CU_ASSERT(calls >= 2 && calls <= 4); /* two or three re-checks of all 300 */
    CU_ASSERT(hgets >= 2 * N);
    if (calls < 2 || calls > 4) fprintf(stderr, "\n  %lld script calls, %lld HGET\n", calls, hgets);
    /* A task ending through this broker still answers its wait. */
    tc_consume(&w, "held", 1);
    const cel_msg *t = tc_recv(&w, 3000);
    CU_ASSERT_FATAL(t && t->op == CEL_OP_TASK);
    cel_msg task = *t;
    task.id = cel_str_c(ids[0]);
    CU_ASSERT_FATAL(tc_ack(&w, &task) != NULL);
    const cel_msg *r = tc_reply(&p, first, 3000);
    CU_ASSERT_FATAL(r && r->op == CEL_OP_TASK_INFO);
    CU_ASSERT_STRING_EQUAL(tc_s(r->state), "succeeded");
    redisFree(rc);
    env_stop_pw(&e, &p, &w);
}

int main(void) {
    static const th_test tests[] = {
        {"enqueue, dispatch, ack round trip", test_enqueue_dispatch_ack_round_trip},
        {"pending waits are re-checked together", test_pending_waits_are_rechecked_together},
        {"unreadable task record", test_unreadable_task_record},
        {"enqueue with the same id is idempotent", test_enqueue_with_same_id_is_idempotent},
        {"worker disconnect requeues leased tasks", test_worker_disconnect_requeues_leased_tasks},
        {"expired lease is requeued and the stale ack refused",
         test_expired_lease_is_requeued_and_stale_ack_refused},
        {"touch extends the lease", test_touch_extends_lease},
        {"wait blocks until the task finishes", test_wait_blocks_until_task_finishes},
        {"many waits wake by task and leave with their client",
         test_many_waits_wake_by_task_and_leave_with_their_client},
        {"a worker on many queues gets every task", test_a_worker_on_many_queues_gets_every_task},
        {"a worker takes its queues in turn", test_a_worker_takes_its_queues_in_turn},
        {"credits bound the tasks in flight", test_credits_bound_tasks_in_flight},
        {"overlapping enqueue leases respect credits",
         test_overlapping_enqueue_leases_respect_credits},
        {"tasks reach a waiting worker without poll delay",
         test_tasks_reach_waiting_worker_without_poll_delay},
        {"a burst reaches a waiting worker written once",
         test_a_burst_reaches_a_waiting_worker_written_once},
        {"tasks leased by their own call keep their bodies",
         test_tasks_leased_by_their_own_call_keep_their_bodies},
        {"task left by an enqueue lease is dispatched",
         test_task_left_by_an_enqueue_lease_is_dispatched},
        {NULL, NULL}};
    return th_run("broker", tests);
}
