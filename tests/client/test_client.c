/* libceleriac's sync and async faces and the example producers against a real redis-server,
 * celeriacd and celeriac-worker: results, bulk, cancel, unique keys, and streams of enqueues
 * that survive a broker killed mid-stream with no task lost or stored twice. */
#include <celeriac/celeriac.h>
#include <celeriac/conn.h>
#include <event2/event.h>
#include <jansson.h>
#include <pthread.h>

#include "client_env.h"

static celeriac *connect_to(const env *e) {
    char err[256];
    celeriac *c = celeriac_connect(e->addr, 5000, err, sizeof err);
    if (!c) fprintf(stderr, "\nconnect: %s\n", err);
    return c;
}

/* A number from the broker's stats, e.g. stat(c, "queues", "stream", "ready"); -1 if absent. */
static long long queue_stat(celeriac *c, const char *queue, const char *what) {
    char *text = NULL;
    if (celeriac_stats(c, &text) != CELERIAC_OK) return -1;
    json_t *j = json_loads(text, 0, NULL);
    json_t *v = json_object_get(json_object_get(json_object_get(j, "queues"), queue), what);
    long long n = json_is_integer(v) ? json_integer_value(v) : -1;
    json_decref(j);
    free(text);
    return n;
}

static void test_sync_enqueue_wait_status_cancel_bulk(void) {
    env e;
    CU_ASSERT_FATAL(env_start(&e, true));
    celeriac *c = connect_to(&e);
    CU_ASSERT_FATAL(c != NULL);
    char id[CELERIAC_ID_SIZE];
    CU_ASSERT_EQUAL(
        celeriac_enqueue_json(c, "default", "celeriac.echo", "{\"k\": [1, 2]}", NULL, id),
        CELERIAC_OK);
    CU_ASSERT_EQUAL(strlen(id), 32);
    celeriac_task_info t;
    CU_ASSERT_EQUAL_FATAL(celeriac_wait(c, id, 10000, &t), CELERIAC_OK);
    CU_ASSERT_STRING_EQUAL(t.state, "succeeded");
    CU_ASSERT_STRING_EQUAL(t.result_json, "{\"k\":[1,2]}");
    const uint8_t packed[] = {0x81, 0xa1, 'k', 0x92, 0x01, 0x02}; /* the same as msgpack */
    CU_ASSERT(t.result_len == sizeof packed && !memcmp(t.result, packed, sizeof packed));
    CU_ASSERT(t.worker[0] != 0 && t.finished_ms >= t.started_ms && t.started_ms > 0);
    celeriac_task_info_free(&t);
    CU_ASSERT_EQUAL(celeriac_status(c, id, &t), CELERIAC_OK);
    CU_ASSERT_EQUAL(t.attempt, 1);
    celeriac_task_info_free(&t);
    /* msgpack args straight through. */
    CU_ASSERT_EQUAL(
        celeriac_enqueue(c, "default", "celeriac.echo", packed, sizeof packed, NULL, id),
        CELERIAC_OK);
    CU_ASSERT_EQUAL(celeriac_wait(c, id, 10000, &t), CELERIAC_OK);
    CU_ASSERT_STRING_EQUAL(t.result_json, "{\"k\":[1,2]}");
    celeriac_task_info_free(&t);
    /* Delayed, then cancelled before it runs; a finished task cannot be cancelled. */
    celeriac_opts o = {.delay_ms = 60000, .id = "later-1", .priority = 9};
    CU_ASSERT_EQUAL(celeriac_enqueue_json(c, "default", "celeriac.noop", NULL, &o, id),
                    CELERIAC_OK);
    CU_ASSERT_STRING_EQUAL(id, "later-1");
    CU_ASSERT_EQUAL(celeriac_status(c, "later-1", &t), CELERIAC_OK);
    CU_ASSERT_STRING_EQUAL(t.state, "scheduled");
    celeriac_task_info_free(&t);
    CU_ASSERT_EQUAL(celeriac_cancel(c, "later-1"), CELERIAC_OK);
    CU_ASSERT_EQUAL(celeriac_wait(c, "later-1", 1000, &t), CELERIAC_OK);
    CU_ASSERT_STRING_EQUAL(t.state, "cancelled");
    celeriac_task_info_free(&t);
    /* Bulk: all stored, ids returned in order. */
    celeriac_bulk_item items[3] = {{"default", "celeriac.echo", "[1]", {.id = "b1"}},
                                   {"default", "celeriac.echo", "[2]", {0}},
                                   {"default", "celeriac.noop", NULL, {.id = "b3"}}};
    char ids[3][CELERIAC_ID_SIZE];
    CU_ASSERT_EQUAL_FATAL(celeriac_enqueue_bulk(c, items, 3, ids), CELERIAC_OK);
    CU_ASSERT_STRING_EQUAL(ids[0], "b1");
    CU_ASSERT_EQUAL(strlen(ids[1]), 32);
    CU_ASSERT_EQUAL_FATAL(celeriac_wait(c, ids[1], 10000, &t), CELERIAC_OK);
    CU_ASSERT_STRING_EQUAL(t.result_json, "[2]");
    celeriac_task_info_free(&t);
    CU_ASSERT_EQUAL(celeriac_wait(c, "b1", 10000, &t), CELERIAC_OK);
    celeriac_task_info_free(&t);
    CU_ASSERT_EQUAL(celeriac_cancel(c, "b1"), CELERIAC_E_STATE);
    CU_ASSERT(strlen(celeriac_last_error(c)) > 0);
    char *stats = NULL;
    CU_ASSERT_EQUAL(celeriac_stats(c, &stats), CELERIAC_OK);
    CU_ASSERT(stats && strstr(stats, "\"default\""));
    free(stats);
    celeriac_close(c);
    env_stop(&e);
}

static void test_failures_and_bad_arguments_get_clear_errors(void) {
    env e;
    CU_ASSERT_FATAL(env_start(&e, true));
    celeriac *c = connect_to(&e);
    CU_ASSERT_FATAL(c != NULL);
    CU_ASSERT_EQUAL(celeriac_enqueue_json(c, "bad queue", "t", NULL, NULL, NULL), CELERIAC_E_ARGS);
    CU_ASSERT(strstr(celeriac_last_error(c), "bad queue 'bad queue'") != NULL);
    CU_ASSERT_EQUAL(celeriac_enqueue_json(c, "q", "t", "{not json", NULL, NULL), CELERIAC_E_ARGS);
    CU_ASSERT(strstr(celeriac_last_error(c), "not JSON") != NULL);
    celeriac_opts o = {.priority = 300};
    CU_ASSERT_EQUAL(celeriac_enqueue_json(c, "q", "t", NULL, &o, NULL), CELERIAC_E_ARGS);
    CU_ASSERT_EQUAL(celeriac_enqueue_bulk(c, NULL, 0, NULL), CELERIAC_E_ARGS);
    celeriac_task_info t;
    CU_ASSERT_EQUAL(celeriac_status(c, "no-such-task", &t), CELERIAC_E_NOT_FOUND);
    CU_ASSERT_EQUAL(celeriac_wait(c, "no/such", 100, &t), CELERIAC_E_ARGS);
    CU_ASSERT_EQUAL(celeriac_cancel(c, "no-such-task"), CELERIAC_E_NOT_FOUND);
    /* A task that fails ends "failed" with its error; a wait that runs out is TIMEOUT. */
    char id[CELERIAC_ID_SIZE];
    CU_ASSERT_EQUAL(celeriac_enqueue_json(c, "default", "celeriac.fail", NULL, NULL, id),
                    CELERIAC_OK);
    CU_ASSERT_EQUAL_FATAL(celeriac_wait(c, id, 10000, &t), CELERIAC_OK);
    CU_ASSERT_STRING_EQUAL(t.state, "failed");
    CU_ASSERT(t.error && strstr(t.error, "always fails"));
    celeriac_task_info_free(&t);
    celeriac_opts later = {.delay_ms = 60000};
    CU_ASSERT_EQUAL(celeriac_enqueue_json(c, "default", "celeriac.noop", NULL, &later, id),
                    CELERIAC_OK);
    long long t0 = th_now_ms();
    CU_ASSERT_EQUAL(celeriac_wait(c, id, 300, &t), CELERIAC_E_TIMEOUT);
    CU_ASSERT(th_now_ms() - t0 < 3000);
    /* The handle is still good after every one of those. */
    CU_ASSERT_EQUAL(celeriac_enqueue_json(c, "q", "t", NULL, NULL, NULL), CELERIAC_OK);
    CU_ASSERT_STRING_EQUAL(celeriac_last_error(c), "");
    celeriac_close(c);
    env_stop(&e);
}

static void test_unique_key_returns_the_task_that_holds_it(void) {
    env e;
    CU_ASSERT_FATAL(env_start(&e, false));
    celeriac *c = connect_to(&e);
    CU_ASSERT_FATAL(c != NULL);
    celeriac_opts o = {.unique_key = "report-42"};
    char first[CELERIAC_ID_SIZE], second[CELERIAC_ID_SIZE];
    CU_ASSERT_EQUAL(celeriac_enqueue_json(c, "uq", "t", NULL, &o, first), CELERIAC_OK);
    CU_ASSERT_EQUAL(celeriac_enqueue_json(c, "uq", "t", NULL, &o, second), CELERIAC_OK);
    CU_ASSERT_STRING_EQUAL(first, second);
    CU_ASSERT_EQUAL(queue_stat(c, "uq", "ready"), 1);
    celeriac_close(c);
    env_stop(&e);
}

/* ---- async ----------------------------------------------------------------------------------- */

typedef struct batch {
    int done, ok, want;
    char last_id[CELERIAC_ID_SIZE];
    struct event_base *base;
} batch;

static void on_done(int status, const char *id, const celeriac_task_info *info, void *arg) {
    batch *b = arg;
    b->done++;
    b->ok += status == CELERIAC_OK && (!info || !strcmp(info->state, "succeeded"));
    snprintf(b->last_id, sizeof b->last_id, "%s", id);
    if (b->done == b->want) event_base_loopbreak(b->base);
}

static void run_until(batch *b, int want) {
    b->done = b->ok = 0, b->want = want;
    struct timeval tv = {30, 0};
    event_base_loopexit(b->base, &tv);
    event_base_dispatch(b->base);
}

static void on_stats(int status, const char *json, void *arg) {
    batch *b = arg;
    b->done++;
    b->ok += status == CELERIAC_OK && json && strstr(json, "\"acked\"");
    event_base_loopbreak(b->base);
}

static void test_async_pipelines_many_requests(void) {
    env e;
    CU_ASSERT_FATAL(env_start(&e, true));
    batch b = {.base = event_base_new()};
    celeriac_async *a = celeriac_async_new(b.base, e.addr);
    CU_ASSERT_FATAL(a != NULL);
    const unsigned char args[] = {0x91, 0x07};
    for (int i = 0; i < 500; i++) {
        char id[32];
        snprintf(id, sizeof id, "async-%d", i);
        celeriac_opts o = {.id = id};
        CU_ASSERT_EQUAL(celeriac_async_enqueue(a, "default", "celeriac.echo", args, sizeof args, &o,
                                               on_done, &b),
                        CELERIAC_OK);
        CU_ASSERT_EQUAL(celeriac_async_wait(a, id, 20000, on_done, &b), CELERIAC_OK);
    }
    run_until(&b, 1000);
    CU_ASSERT_EQUAL(b.ok, 1000);
    /* JSON args, bulk, status, cancel and stats on the same connection. */
    CU_ASSERT_EQUAL(
        celeriac_async_enqueue_json(a, "default", "celeriac.echo", "{\"x\": 1}", NULL, on_done, &b),
        CELERIAC_OK);
    run_until(&b, 1);
    CU_ASSERT(b.ok == 1 && strlen(b.last_id) == 32);
    celeriac_bulk_item items[2] = {{"default", "celeriac.noop", NULL, {.id = "ab-1"}},
                                   {"default", "celeriac.echo", "[3]", {.id = "ab-2"}}};
    CU_ASSERT_EQUAL(celeriac_async_enqueue_bulk(a, items, 2, on_done, &b), CELERIAC_OK);
    run_until(&b, 2);
    CU_ASSERT(b.ok == 2 && !strcmp(b.last_id, "ab-2"));
    celeriac_opts later = {.id = "ab-later", .delay_ms = 60000};
    CU_ASSERT_EQUAL(
        celeriac_async_enqueue(a, "default", "celeriac.noop", NULL, 0, &later, on_done, &b),
        CELERIAC_OK);
    CU_ASSERT_EQUAL(celeriac_async_cancel(a, "ab-later", on_done, &b), CELERIAC_OK);
    CU_ASSERT_EQUAL(celeriac_async_wait(a, "ab-later", 5000, on_done, &b), CELERIAC_OK);
    run_until(&b, 3);
    CU_ASSERT_EQUAL(b.ok, 2); /* enqueue and cancel ok; the wait saw "cancelled", not success */
    CU_ASSERT_EQUAL(celeriac_async_status(a, "nope", on_done, &b), CELERIAC_OK);
    run_until(&b, 1);
    CU_ASSERT_EQUAL(b.ok, 0);
    CU_ASSERT_EQUAL(celeriac_async_stats(a, on_stats, &b), CELERIAC_OK);
    run_until(&b, 1);
    CU_ASSERT_EQUAL(b.ok, 1);
    celeriac_async_free(a);
    event_base_free(b.base);
    env_stop(&e);
}

/* ---- broker restarts ---------------------------------------------------------------------------
 */

typedef struct killer {
    env *e;
    int after_ms, times;
    bool start_worker;
    pthread_t thread;
    volatile bool done;
} killer;

/* Kills the broker (-9: replies in flight are lost) after a while and starts it again on the
 * same port, `times` times; then optionally starts a worker. The producer meanwhile keeps going
 * in the main thread. */
static void *kill_and_restart(void *arg) {
    killer *k = arg;
    for (int i = 0; i < k->times; i++) {
        th_sleep_ms(k->after_ms);
        th_proc_stop(&k->e->broker, SIGKILL);
        th_sleep_ms(100);
        if (!th_broker_restart(&k->e->broker, &k->e->redis, env_broker_flags))
            fprintf(stderr, "\nbroker did not come back\n");
    }
    if (k->start_worker) th_worker_start(&k->e->worker, k->e->broker.port, NULL);
    k->done = true;
    return NULL;
}

static void killer_start(killer *k, env *e, int after_ms, int times, bool start_worker) {
    *k = (killer){.e = e, .after_ms = after_ms, .times = times, .start_worker = start_worker};
    CU_ASSERT_FATAL(pthread_create(&k->thread, NULL, kill_and_restart, k) == 0);
}

static void test_sync_stream_survives_broker_kills_without_dup_or_loss(void) {
    env e;
    CU_ASSERT_FATAL(env_start(&e, false));
    celeriac *c = connect_to(&e);
    CU_ASSERT_FATAL(c != NULL);
    enum { BULK = 200 };
    static celeriac_bulk_item items[BULK];
    for (int i = 0; i < BULK; i++) items[i] = (celeriac_bulk_item){"stream", "t", "[2]", {0}};
    killer k;
    killer_start(&k, &e, 300, 3, false);
    long long stored = 0, refused = 0;
    /* Ids come from the library: a resend must reuse the one it chose. Bulks keep Redis busy
     * longer, widening the window in which a kill loses a reply to a stored request. */
    for (int i = 0; !k.done || i < 100; i++) {
        bool bulk = i % 8 == 7;
        int rc = bulk ? celeriac_enqueue_bulk(c, items, BULK, NULL)
                      : celeriac_enqueue_json(c, "stream", "t", "[1]", NULL, NULL);
        if (rc == CELERIAC_OK)
            stored += bulk ? BULK : 1;
        else
            refused++, fprintf(stderr, "\n%s\n", celeriac_last_error(c));
    }
    pthread_join(k.thread, NULL);
    CU_ASSERT_EQUAL(refused, 0);
    CU_ASSERT_EQUAL(queue_stat(c, "stream", "ready"), stored); /* every task once */
    celeriac_close(c);
    env_stop(&e);
}

static void on_enqueued(int status, const char *id, const celeriac_task_info *info, void *arg) {
    (void)id, (void)info;
    batch *b = arg;
    b->done++;
    b->ok += status == CELERIAC_OK;
    if (b->done == b->want) event_base_loopbreak(b->base);
}

static void test_async_stream_survives_broker_kill_without_dup_or_loss(void) {
    env e;
    CU_ASSERT_FATAL(env_start(&e, false));
    batch b = {.base = event_base_new()};
    celeriac_async *a = celeriac_async_new(b.base, e.addr);
    CU_ASSERT_FATAL(a != NULL);
    enum { N = 20000 };
    for (int i = 0; i < N; i++)
        CU_ASSERT_EQUAL(
            celeriac_async_enqueue(a, "astream", "celeriac.noop", NULL, 0, NULL, on_enqueued, &b),
            CELERIAC_OK);
    /* All 20000 are in flight or queued; kill the broker while their replies stream back. */
    killer k;
    killer_start(&k, &e, 150, 1, false);
    b.want = N;
    struct timeval limit = {40, 0};
    event_base_loopexit(b.base, &limit);
    event_base_dispatch(b.base);
    pthread_join(k.thread, NULL);
    CU_ASSERT_EQUAL(b.done, N);
    CU_ASSERT_EQUAL(b.ok, N);
    celeriac_async_free(a);
    event_base_free(b.base);
    celeriac *c = connect_to(&e);
    CU_ASSERT_FATAL(c != NULL);
    CU_ASSERT_EQUAL(queue_stat(c, "astream", "ready"), N);
    celeriac_close(c);
    env_stop(&e);
}

typedef struct outcome_count {
    int calls, unavailable, ok;
} outcome_count;

static void count_outcome(cel_conn *c, const cel_msg *r, const cel_error *err, void *arg) {
    (void)c;
    outcome_count *n = arg;
    n->calls++;
    n->unavailable += !r && err->code == CEL_E_UNAVAILABLE;
    n->ok += r && r->op != CEL_OP_ERROR;
}

static bool run_until_up(struct event_base *base, cel_conn *c, int ms) {
    long long end = th_now_ms() + ms;
    while (!cel_conn_is_up(c) && th_now_ms() < end) event_base_loop(base, EVLOOP_NONBLOCK);
    return cel_conn_is_up(c);
}

static cel_err send_stats(cel_conn *c, outcome_count *n) {
    cel_msg m;
    memset(&m, 0, sizeof m);
    m.op = CEL_OP_STATS;
    cel_error err;
    return cel_conn_send(c, &m, count_outcome, n, &err);
}

/* The broker dies; the client writes before it has read the close. The first write goes out
 * (and draws a reset), the second fails: that failure must end the requests written so far
 * with UNAVAILABLE at once, with no SIGPIPE (left at its default here: it would kill the
 * test), and the connection must come back once a broker does. */
static void test_a_write_to_a_dead_broker_fails_its_requests_cleanly(void) {
    env e;
    CU_ASSERT_FATAL(env_start(&e, false));
    signal(SIGPIPE, SIG_DFL);
    struct event_base *base = event_base_new();
    const char *brokers[] = {e.addr};
    cel_conn_opts o = {.brokers = brokers,
                       .nbrokers = 1,
                       .role = "producer",
                       .backoff_min_ms = 20,
                       .backoff_max_ms = 100};
    cel_conn *c = cel_conn_new(base, &o);
    CU_ASSERT_FATAL(c && run_until_up(base, c, 5000));
    th_proc_stop(&e.broker, SIGKILL);
    outcome_count first = {0}, second = {0};
    CU_ASSERT_EQUAL(send_stats(c, &first), CEL_OK);
    cel_conn_flush(c);
    CU_ASSERT_EQUAL(first.calls, 0); /* written: the dead peer answers with a reset */
    th_sleep_ms(100);
    CU_ASSERT_EQUAL(send_stats(c, &second), CEL_OK);
    cel_conn_flush(c);
    CU_ASSERT_EQUAL(first.unavailable, 1);
    CU_ASSERT_EQUAL(second.unavailable, 1);
    CU_ASSERT_FALSE(cel_conn_is_up(c));
    CU_ASSERT_FATAL(th_broker_restart(&e.broker, &e.redis, env_broker_flags));
    CU_ASSERT(run_until_up(base, c, 5000));
    outcome_count after = {0};
    CU_ASSERT_EQUAL(send_stats(c, &after), CEL_OK);
    for (long long end = th_now_ms() + 5000; !after.calls && th_now_ms() < end;)
        event_base_loop(base, EVLOOP_ONCE);
    CU_ASSERT_EQUAL(after.ok, 1);
    cel_conn_free(c);
    event_base_free(base);
    env_stop(&e);
}

static void test_sync_wait_survives_broker_restart(void) {
    env e;
    CU_ASSERT_FATAL(env_start(&e, false));
    celeriac *c = connect_to(&e);
    CU_ASSERT_FATAL(c != NULL);
    char id[CELERIAC_ID_SIZE];
    CU_ASSERT_EQUAL(celeriac_enqueue_json(c, "default", "celeriac.echo", "[5]", NULL, id),
                    CELERIAC_OK);
    /* No worker yet: the wait blocks in the broker, which is killed under it; the wait is
     * resent to the new broker, and the worker started then runs the task. */
    killer k;
    killer_start(&k, &e, 300, 1, true);
    celeriac_task_info t;
    CU_ASSERT_EQUAL(celeriac_wait(c, id, 15000, &t), CELERIAC_OK);
    CU_ASSERT_STRING_EQUAL(t.state, "succeeded");
    CU_ASSERT(t.result_json && !strcmp(t.result_json, "[5]"));
    celeriac_task_info_free(&t);
    pthread_join(k.thread, NULL);
    celeriac_close(c);
    env_stop(&e);
}

static void test_calls_report_unavailable_when_no_broker_returns(void) {
    env e;
    CU_ASSERT_FATAL(env_start(&e, false));
    celeriac *c = connect_to(&e);
    CU_ASSERT_FATAL(c != NULL);
    celeriac_set_timeout(c, 700);
    th_proc_stop(&e.broker, SIGKILL);
    long long t0 = th_now_ms();
    CU_ASSERT_EQUAL(celeriac_enqueue_json(c, "q", "t", NULL, NULL, NULL), CELERIAC_E_UNAVAILABLE);
    CU_ASSERT(th_now_ms() - t0 < 3000);
    CU_ASSERT(strstr(celeriac_last_error(c), "refused") != NULL);
    celeriac_task_info t;
    CU_ASSERT_EQUAL(celeriac_status(c, "x", &t), CELERIAC_E_UNAVAILABLE);
    celeriac_close(c);
    env_stop(&e);
}

/* Redis down: the broker answers UNAVAILABLE, the sync face retries after pauses, and the
 * enqueue goes through once Redis is back (same id, so at most one task). */
static void *restart_redis(void *arg) {
    env *e = arg;
    th_sleep_ms(700);
    if (!th_redis_restart(&e->redis)) fprintf(stderr, "\nredis did not come back\n");
    return NULL;
}

static void test_sync_enqueue_rides_out_a_redis_outage(void) {
    env e;
    CU_ASSERT_FATAL(env_start(&e, false));
    celeriac *c = connect_to(&e);
    CU_ASSERT_FATAL(c != NULL);
    th_redis_kill(&e.redis);
    pthread_t t;
    CU_ASSERT_FATAL(pthread_create(&t, NULL, restart_redis, &e) == 0);
    char id[CELERIAC_ID_SIZE];
    celeriac_opts o = {.id = "during-outage"};
    int rc = celeriac_enqueue_json(c, "outage", "t", NULL, &o, id);
    pthread_join(t, NULL);
    CU_ASSERT_EQUAL(rc, CELERIAC_OK);
    if (rc != CELERIAC_OK) fprintf(stderr, "\n%s\n", celeriac_last_error(c));
    CU_ASSERT_EQUAL(queue_stat(c, "outage", "ready"), 1);
    celeriac_close(c);
    env_stop(&e);
}

/* ---- the examples ------------------------------------------------------------------------------
 */

static int run(const char *cmd, char *out, size_t cap) {
    FILE *p = popen(cmd, "r");
    size_t n = p ? fread(out, 1, cap - 1, p) : 0;
    out[n] = 0;
    int st = p ? pclose(p) : -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_example_producers_run(void) {
    env e;
    CU_ASSERT_FATAL(env_start_plugin(&e, true, WORDCOUNT_PLUGIN));
    char cmd[1024], out[8192];
    snprintf(cmd, sizeof cmd, "%s %s", th_bin("examples/celeriac-example-sync"), e.addr);
    CU_ASSERT_EQUAL(run(cmd, out, sizeof out), 0);
    CU_ASSERT(strstr(out, "echo returned {\"greeting\":\"hello\"}") != NULL);
    CU_ASSERT(strstr(out, "bulk: 3 tasks, 3 succeeded") != NULL);
    CU_ASSERT(strstr(out, "delayed task cancelled") != NULL);
    snprintf(cmd, sizeof cmd, "CELERIAC_BROKER=%s %s 300", e.addr,
             th_bin("examples/celeriac-example-async"));
    CU_ASSERT_EQUAL(run(cmd, out, sizeof out), 0);
    CU_ASSERT(strstr(out, "300 enqueued, 300 succeeded with the right result") != NULL);
    snprintf(cmd, sizeof cmd, "%s %s 40 %s/README.md %s/docs/delivery.md",
             th_bin("examples/celeriac-demo-producer"), e.addr, CELERIAC_SOURCE_DIR,
             CELERIAC_SOURCE_DIR);
    CU_ASSERT_EQUAL(run(cmd, out, sizeof out), 0);
    CU_ASSERT(strstr(out, "40 succeeded, 0 failed") != NULL);
    env_stop(&e);
}

int main(void) {
    static const th_test tests[] = {
        {"sync enqueue, wait, status, cancel, bulk", test_sync_enqueue_wait_status_cancel_bulk},
        {"failures and bad arguments get clear errors",
         test_failures_and_bad_arguments_get_clear_errors},
        {"a unique key returns the task that holds it",
         test_unique_key_returns_the_task_that_holds_it},
        {"async pipelines many requests", test_async_pipelines_many_requests},
        {"sync stream survives broker kills without dup or loss",
         test_sync_stream_survives_broker_kills_without_dup_or_loss},
        {"async stream survives a broker kill without dup or loss",
         test_async_stream_survives_broker_kill_without_dup_or_loss},
        {"a write to a dead broker fails its requests cleanly",
         test_a_write_to_a_dead_broker_fails_its_requests_cleanly},
        {"sync wait survives a broker restart", test_sync_wait_survives_broker_restart},
        {"calls report UNAVAILABLE when no broker returns",
         test_calls_report_unavailable_when_no_broker_returns},
        {"sync enqueue rides out a Redis outage", test_sync_enqueue_rides_out_a_redis_outage},
        {"example producers run", test_example_producers_run},
        {NULL, NULL}};
    return th_run("client", tests);
}
