/* The broker under bad input and failure: malformed frames from a raw socket, Redis killed
 * and restarted mid-stream, and two brokers sharing one Redis. */
#include <stdlib.h>
#include <sys/wait.h>

#include "common.h"

static const cel_msg *raw_exchange(int port, const void *bytes, size_t len, bool hello) {
    static tc t;
    static bool open;
    if (open) tc_close(&t);
    open = true;
    if (!tc_connect(&t, port, hello ? "producer" : NULL)) return NULL;
    tc_send_raw(&t, bytes, len);
    return tc_recv(&t, 3000);
}

static void assert_error(const cel_msg *r, const char *code) {
    CU_ASSERT_FATAL(r != NULL);
    CU_ASSERT_EQUAL_FATAL(r->op, CEL_OP_ERROR);
    CU_ASSERT_STRING_EQUAL(tc_s(r->code), code);
}

static size_t frame(uint8_t *out, const uint8_t *body, uint32_t len) {
    cel_frame_header_write(out, len);
    memcpy(out + CEL_FRAME_HEADER, body, len);
    return CEL_FRAME_HEADER + len;
}

static void test_malformed_frames_get_typed_errors_and_broker_stays_up(void) {
    env e;
    CU_ASSERT_FATAL(env_start(&e, NULL));
    uint8_t buf[256];
    /* Bad magic: not our protocol at all. */
    const uint8_t bad_magic[] = {0xCE, 0x07, 0, 0, 0, 1, 0xc0};
    assert_error(raw_exchange(e.broker.port, bad_magic, sizeof bad_magic, false), "PROTOCOL");
    /* Declared length beyond the frame limit: refused from the header alone. */
    const uint8_t huge[] = {0xCE, 0x01, 0xFF, 0xFF, 0xFF, 0xFF};
    assert_error(raw_exchange(e.broker.port, huge, sizeof huge, true), "TOO_BIG");
    /* Something other than hello first. */
    const uint8_t ping[] = {0x82, 0xa2, 'o', 'p', 0xa4, 'p', 'i', 'n', 'g', 0xa3, 's', 'e', 'q', 1};
    assert_error(raw_exchange(e.broker.port, buf, frame(buf, ping, sizeof ping), false),
                 "PROTOCOL");
    /* An array32 header claiming 2^31 items inside a 20-byte frame. */
    const uint8_t liar[] = {0x81, 0xa2, 'o', 'p', 0xdd, 0x7f, 0xff, 0xff, 0xff};
    assert_error(raw_exchange(e.broker.port, buf, frame(buf, liar, sizeof liar), true), "TOO_BIG");
    /* Root not a map. */
    const uint8_t arr[] = {0x91, 0x01};
    assert_error(raw_exchange(e.broker.port, buf, frame(buf, arr, sizeof arr), true), "PROTOCOL");
    /* Nesting 40 deep. */
    uint8_t deep[64];
    for (int i = 0; i < 40; i++) deep[i] = 0x91;
    deep[40] = 0x01;
    assert_error(raw_exchange(e.broker.port, buf, frame(buf, deep, 41), true), "TOO_DEEP");
    /* Wrong field type is not fatal: the connection stays usable. */
    const uint8_t wrong[] = {0x83, 0xa2, 'o', 'p', 0xa6, 's', 't',  'a', 't', 'u',
                             's',  0xa3, 's', 'e', 'q',  7,   0xa2, 'i', 'd', 0x05};
    tc t;
    CU_ASSERT_FATAL(tc_connect(&t, e.broker.port, "producer"));
    tc_send_raw(&t, buf, frame(buf, wrong, sizeof wrong));
    const cel_msg *r = tc_recv(&t, 3000);
    assert_error(r, "BAD_FIELD");
    CU_ASSERT_EQUAL(r->seq, 7);
    r = tc_enqueue_sync(&t, "q", "t", "after-bad-field");
    CU_ASSERT_FATAL(r && r->op == CEL_OP_OK);
    /* Truncated: half a frame, then EOF. Nothing may be enqueued from it. */
    size_t n = frame(buf, wrong, sizeof wrong);
    tc t2;
    CU_ASSERT_FATAL(tc_connect(&t2, e.broker.port, "producer"));
    tc_send_raw(&t2, buf, n / 2);
    tc_close(&t2);
    /* Neither protocol: a byte that is not magic and not text. */
    const uint8_t junk[] = {0x01, 0x02};
    tc t3;
    CU_ASSERT_FATAL(tc_connect(&t3, e.broker.port, NULL));
    tc_send_raw(&t3, junk, sizeof junk);
    CU_ASSERT_TRUE(tc_wait_closed(&t3, 3000));
    tc_close(&t3);
    /* Still serving. */
    r = tc_status(&t, "after-bad-field");
    CU_ASSERT_FATAL(r && r->op == CEL_OP_TASK_INFO);
    CU_ASSERT_STRING_EQUAL(tc_s(r->state), "queued");
    tc_close(&t);
    raw_exchange(e.broker.port, "", 0, false);
    env_stop(&e);
}

/* Enqueues ids "<prefix>-N" one at a time; returns how many got OK and marks them. */
static int enqueue_range(tc *t, const char *prefix, int from, int to, char *acked) {
    int ok = 0;
    for (int i = from; i < to; i++) {
        char id[64];
        snprintf(id, sizeof id, "%s-%d", prefix, i);
        const cel_msg *r = tc_enqueue_sync(t, "rq", "t", id);
        if (r && r->op == CEL_OP_OK)
            acked[i] = 1, ok++;
        else if (r)
            CU_ASSERT_STRING_EQUAL(tc_s(r->code), "UNAVAILABLE");
    }
    return ok;
}

static void test_redis_restart_loses_no_acknowledged_task(void) {
    env e;
    CU_ASSERT_FATAL(env_start(&e, NULL));
    tc t;
    CU_ASSERT_FATAL(tc_connect(&t, e.broker.port, "producer"));
    enum { N = 600 };
    char acked[N] = {0};
    int ok = enqueue_range(&t, "r", 0, 300, acked);
    CU_ASSERT_EQUAL(ok, 300);
    th_redis_kill(&e.redis);
    /* While Redis is down: typed UNAVAILABLE, at once, nothing buffered. */
    long long start = th_now_ms();
    ok += enqueue_range(&t, "r", 300, 400, acked);
    CU_ASSERT(th_now_ms() - start < 5000);
    CU_ASSERT_FATAL(th_redis_restart(&e.redis));
    /* The broker reconnects by itself: retrying one id until it is accepted. */
    long long deadline = th_now_ms() + 10000;
    while (!acked[400] && th_now_ms() < deadline) {
        enqueue_range(&t, "r", 400, 401, acked);
        th_sleep_ms(20);
    }
    CU_ASSERT_FATAL(acked[400]);
    ok += 1 + enqueue_range(&t, "r", 401, N, acked);
    CU_ASSERT(ok >= 300 + (N - 400));
    for (int k = 0; k < N; k++) {
        if (!acked[k]) continue;
        char id[64];
        snprintf(id, sizeof id, "r-%d", k);
        const cel_msg *r = tc_status(&t, id);
        CU_ASSERT(r && r->op == CEL_OP_TASK_INFO);
    }
    tc_close(&t);
    env_stop(&e);
}

typedef struct tally {
    int acks_ok, stale, deliveries;
    unsigned char *acked; /* per task: successful acks */
} tally;

/* Worker side: ack every task as it arrives (pipelined), count successful acks per task. */
static void work_until(tc *ws, int nw, tally *ty, int expected, int timeout_ms) {
    long long end = th_now_ms() + timeout_ms;
    static char pending_ids[4][65536][16];
    static uint64_t seq_to_task[4][65536];
    while (ty->acks_ok < expected && th_now_ms() < end) {
        for (int k = 0; k < nw; k++) {
            const cel_msg *m = tc_recv(&ws[k], 5);
            if (!m) continue;
            if (m->op == CEL_OP_TASK) {
                ty->deliveries++;
                cel_msg a;
                tc_msg(&a, CEL_OP_ACK);
                const char *id = tc_s(m->id);
                a.id = cel_str_c(id), a.token = m->token;
                cel_msg_set(&a, CEL_F_ID), cel_msg_set(&a, CEL_F_TOKEN);
                uint64_t seq = tc_send(&ws[k], &a);
                snprintf(pending_ids[k][seq % 65536], 16, "%s", id);
                seq_to_task[k][seq % 65536] = (uint64_t)atoi(id + 2);
            } else if (m->op == CEL_OP_OK) {
                ty->acks_ok++;
                ty->acked[seq_to_task[k][m->seq % 65536]]++;
            } else if (m->op == CEL_OP_ERROR) {
                ty->stale++;
            }
        }
    }
}

static void test_two_brokers_one_redis_ack_every_task_once(void) {
    env e;
    CU_ASSERT_FATAL(env_start(&e, NULL));
    th_proc b2;
    CU_ASSERT_FATAL(th_broker_start(&b2, &e.redis, fast_flags) && env_wait_ready(b2.port));
    enum { N = 10000 };
    tc p1, p2, ws[2];
    CU_ASSERT_FATAL(tc_connect(&p1, e.broker.port, "producer"));
    CU_ASSERT_FATAL(tc_connect(&p2, b2.port, "producer"));
    for (int i = 0; i < N; i++) {
        char id[16];
        snprintf(id, sizeof id, "t-%d", i);
        tc_enqueue(i % 2 ? &p2 : &p1, "two", "t", id);
    }
    int replies = 0;
    for (int i = 0; i < N; i++) {
        const cel_msg *r = tc_recv(i % 2 ? &p2 : &p1, 10000);
        replies += r && r->op == CEL_OP_OK;
    }
    CU_ASSERT_EQUAL_FATAL(replies, N);
    CU_ASSERT_FATAL(tc_connect(&ws[0], e.broker.port, "worker"));
    CU_ASSERT_FATAL(tc_connect(&ws[1], b2.port, "worker"));
    tc_consume(&ws[0], "two", 32);
    tc_consume(&ws[1], "two", 32);
    tally ty = {0, 0, 0, calloc(N, 1)};
    work_until(ws, 2, &ty, N, 120000);
    CU_ASSERT_EQUAL(ty.acks_ok, N);
    int once = 0;
    for (int i = 0; i < N; i++) once += ty.acked[i] == 1;
    CU_ASSERT_EQUAL(once, N);
    printf("\n    two brokers: %d deliveries, %d acks ok, %d stale\n", ty.deliveries, ty.acks_ok,
           ty.stale);
    free(ty.acked);
    tc_close(&p1), tc_close(&p2), tc_close(&ws[0]), tc_close(&ws[1]);
    int st = th_proc_stop(&b2, SIGTERM);
    CU_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    env_stop(&e);
}

/* A wait held by one broker for a task that ends through another: no finish passes through
 * the waiting broker, so only its periodic re-check of the task's state can answer. */
static void test_a_wait_sees_a_task_end_through_another_broker(void) {
    env e;
    CU_ASSERT_FATAL(env_start(&e, NULL));
    th_proc b2;
    CU_ASSERT_FATAL(th_broker_start(&b2, &e.redis, fast_flags) && env_wait_ready(b2.port));
    tc p, w;
    CU_ASSERT_FATAL(tc_connect(&p, e.broker.port, "producer"));
    CU_ASSERT_FATAL(tc_connect(&w, b2.port, "worker"));
    const cel_msg *r = tc_enqueue_sync(&p, "elsewhere", "t", "ended-elsewhere");
    CU_ASSERT_FATAL(r && r->op == CEL_OP_OK);
    cel_msg m;
    tc_msg(&m, CEL_OP_WAIT);
    m.id = cel_str_c("ended-elsewhere"), m.timeout_ms = 10000;
    cel_msg_set(&m, CEL_F_ID), cel_msg_set(&m, CEL_F_TIMEOUT_MS);
    uint64_t seq = tc_send(&p, &m);
    CU_ASSERT_PTR_NULL(tc_recv(&p, 1500)); /* past a re-check that found it still queued */
    tc_consume(&w, "elsewhere", 1);
    const cel_msg *t = tc_recv(&w, 3000);
    CU_ASSERT_FATAL(t && t->op == CEL_OP_TASK);
    cel_msg task = *t;
    char id[64];
    snprintf(id, sizeof id, "%s", tc_s(t->id));
    task.id = cel_str_c(id);
    CU_ASSERT_FATAL(tc_ack(&w, &task) != NULL);
    r = tc_reply(&p, seq, 3000);
    CU_ASSERT_FATAL(r && r->op == CEL_OP_TASK_INFO);
    CU_ASSERT_STRING_EQUAL(tc_s(r->state), "succeeded");
    tc_close(&p), tc_close(&w);
    th_proc_stop(&b2, SIGTERM);
    env_stop(&e);
}

int main(void) {
    static const th_test tests[] = {
        {"malformed frames get typed errors and the broker stays up",
         test_malformed_frames_get_typed_errors_and_broker_stays_up},
        {"redis restart loses no acknowledged task", test_redis_restart_loses_no_acknowledged_task},
        {"a wait sees a task end through another broker",
         test_a_wait_sees_a_task_end_through_another_broker},
        {"two brokers on one redis ack every task once",
         test_two_brokers_one_redis_ack_every_task_once},
        {NULL, NULL}};
    return th_run("broker faults", tests);
}
