/* libceleriac (sync and async), the celeriac CLI and the example producer against a real
 * redis-server, celeriacd and celeriac-worker. */
#include <celeriac/celeriac.h>
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

#include "harness.h"

typedef struct env {
    th_redis redis;
    th_proc broker, worker;
    char addr[64];
} env;

static bool env_start(env *e, bool worker) {
    char *flags[] = {"--lease-ms", "2000", "--reaper-ms", "100", NULL};
    if (!th_redis_start(&e->redis, NULL) || !th_broker_start(&e->broker, &e->redis, flags))
        return false;
    snprintf(e->addr, sizeof e->addr, "127.0.0.1:%d", e->broker.port);
    char *wflags[] = {"--plugin", WORDCOUNT_PLUGIN, "--queues", "default,demo", NULL};
    e->worker.pid = 0;
    return !worker || th_worker_start(&e->worker, e->broker.port, wflags);
}

static void env_stop(env *e) {
    if (e->worker.pid) th_proc_stop(&e->worker, SIGTERM);
    th_proc_stop(&e->broker, SIGTERM);
    th_redis_stop(&e->redis);
}

static void test_sync_enqueue_wait_status_cancel_bulk(void) {
    env e;
    CU_ASSERT_FATAL(env_start(&e, true));
    char err[256];
    celeriac *c = celeriac_connect(e.addr, 5000, err, sizeof err);
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
    celeriac_task_info_free(&t);
    CU_ASSERT_EQUAL(celeriac_status(c, id, &t), CELERIAC_OK);
    CU_ASSERT_EQUAL(t.attempt, 1);
    celeriac_task_info_free(&t);
    /* Delayed, then cancelled before it runs. */
    celeriac_opts o = {.delay_ms = 60000, .id = "later-1"};
    CU_ASSERT_EQUAL(celeriac_enqueue_json(c, "default", "celeriac.noop", NULL, &o, id),
                    CELERIAC_OK);
    CU_ASSERT_STRING_EQUAL(id, "later-1");
    CU_ASSERT_EQUAL(celeriac_cancel(c, "later-1"), CELERIAC_OK);
    CU_ASSERT_EQUAL(celeriac_status(c, "later-1", &t), CELERIAC_OK);
    CU_ASSERT_STRING_EQUAL(t.state, "cancelled");
    celeriac_task_info_free(&t);
    /* Bulk: all stored, ids returned in order. */
    celeriac_bulk_item items[3] = {{"default", "celeriac.echo", "[1]", {.id = "b1"}},
                                   {"default", "celeriac.echo", "[2]", {.id = "b2"}},
                                   {"default", "celeriac.noop", NULL, {.id = "b3"}}};
    char ids[3][CELERIAC_ID_SIZE];
    CU_ASSERT_EQUAL(celeriac_enqueue_bulk(c, items, 3, ids), CELERIAC_OK);
    CU_ASSERT_STRING_EQUAL(ids[1], "b2");
    CU_ASSERT_EQUAL_FATAL(celeriac_wait(c, "b2", 10000, &t), CELERIAC_OK);
    CU_ASSERT_STRING_EQUAL(t.result_json, "[2]");
    celeriac_task_info_free(&t);
    char *stats = NULL;
    CU_ASSERT_EQUAL(celeriac_stats(c, &stats), CELERIAC_OK);
    CU_ASSERT(stats && strstr(stats, "\"default\""));
    free(stats);
    celeriac_close(c);
    env_stop(&e);
}

static void test_bad_arguments_get_clear_errors(void) {
    env e;
    CU_ASSERT_FATAL(env_start(&e, false));
    char err[256];
    CU_ASSERT_PTR_NULL(celeriac_connect("127.0.0.1:1", 300, err, sizeof err));
    CU_ASSERT(strstr(err, "cannot reach") != NULL);
    celeriac *c = celeriac_connect(e.addr, 5000, err, sizeof err);
    CU_ASSERT_FATAL(c != NULL);
    CU_ASSERT_EQUAL(celeriac_enqueue_json(c, "bad queue", "t", NULL, NULL, NULL), CELERIAC_E_ARGS);
    CU_ASSERT_EQUAL(celeriac_enqueue_json(c, "q", "t", "{not json", NULL, NULL), CELERIAC_E_ARGS);
    CU_ASSERT(strstr(celeriac_last_error(c), "not JSON") != NULL);
    celeriac_opts o = {.priority = 300};
    CU_ASSERT_EQUAL(celeriac_enqueue_json(c, "q", "t", NULL, &o, NULL), CELERIAC_E_ARGS);
    celeriac_task_info t;
    CU_ASSERT_EQUAL(celeriac_status(c, "no-such-task", &t), CELERIAC_E_NOT_FOUND);
    CU_ASSERT_EQUAL(celeriac_enqueue_json(c, "q", "t", NULL, NULL, NULL), CELERIAC_OK);
    CU_ASSERT_STRING_EQUAL(celeriac_strerror(CELERIAC_E_TIMEOUT), "TIMEOUT");
    celeriac_close(c);
    env_stop(&e);
}

typedef struct batch {
    int done, ok;
    struct event_base *base;
} batch;

static void on_done(int status, const char *id, const celeriac_task_info *info, void *arg) {
    (void)id;
    batch *b = arg;
    b->done++;
    b->ok += status == CELERIAC_OK && (!info || !strcmp(info->state, "succeeded"));
    if (b->done == 1000) event_base_loopbreak(b->base);
}

static struct event_base *stats_base;

static void on_stats(int status, const char *json, void *arg) {
    if (status == CELERIAC_OK && json) *(char **)arg = strdup(json);
    event_base_loopbreak(stats_base);
}

static void test_async_pipelines_many_requests(void) {
    env e;
    CU_ASSERT_FATAL(env_start(&e, true));
    batch b = {0, 0, event_base_new()};
    stats_base = b.base;
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
    struct timeval tv = {30, 0};
    event_base_loopexit(b.base, &tv);
    event_base_dispatch(b.base);
    CU_ASSERT_EQUAL(b.done, 1000);
    CU_ASSERT_EQUAL(b.ok, 1000);
    CU_ASSERT_EQUAL(celeriac_async_enqueue(a, "bad name", "t", NULL, 0, NULL, on_done, &b),
                    CELERIAC_E_ARGS);
    /* Bulk and stats on the same connection. */
    celeriac_bulk_item items[2] = {{"default", "celeriac.noop", NULL, {.id = "ab-1"}},
                                   {"default", "celeriac.echo", "[3]", {.id = "ab-2"}}};
    b.done = b.ok = 998; /* the callbacks below bring it to 1000 and stop the loop */
    CU_ASSERT_EQUAL(celeriac_async_enqueue_bulk(a, items, 2, on_done, &b), CELERIAC_OK);
    event_base_dispatch(b.base);
    CU_ASSERT_EQUAL(b.ok, 1000);
    char *stats = NULL;
    CU_ASSERT_EQUAL(celeriac_async_stats(a, on_stats, &stats), CELERIAC_OK);
    event_base_dispatch(b.base);
    CU_ASSERT(stats && strstr(stats, "\"acked\""));
    free(stats);
    celeriac_async_free(a);
    event_base_free(b.base);
    env_stop(&e);
}

static void test_enqueue_stream_survives_broker_restart_without_dup_or_loss(void) {
    env e;
    CU_ASSERT_FATAL(env_start(&e, false));
    char err[256];
    celeriac *c = celeriac_connect(e.addr, 5000, err, sizeof err);
    CU_ASSERT_FATAL(c != NULL);
    int ok = 0;
    char *flags[] = {"--lease-ms", "2000", NULL};
    for (int i = 0; i < 400; i++) {
        if (i == 200) {
            th_proc_stop(&e.broker, SIGKILL);
            CU_ASSERT_FATAL(th_broker_restart(&e.broker, &e.redis, flags));
        }
        char id[32];
        snprintf(id, sizeof id, "s-%d", i);
        celeriac_opts o = {.id = id};
        ok += celeriac_enqueue_json(c, "stream", "celeriac.noop", NULL, &o, NULL) == CELERIAC_OK;
    }
    CU_ASSERT_EQUAL(ok, 400);
    redisContext *r = th_redis_connect(&e.redis);
    redisReply *rep = redisCommand(r, "ZCARD cel:{stream}:ready");
    CU_ASSERT_EQUAL(rep->integer, 400); /* every task once: none lost, none doubled */
    freeReplyObject(rep);
    redisFree(r);
    celeriac_close(c);
    env_stop(&e);
}

static int run_cli(char *out, size_t cap, const char *fmt, const char *a, const char *b) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, fmt, th_bin("client/celeriac"), a, b);
    FILE *p = popen(cmd, "r");
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    if (n && out[n - 1] == '\n') out[n - 1] = 0;
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_cli_output_and_exit_codes(void) {
    env e;
    CU_ASSERT_FATAL(env_start(&e, true));
    char id[256], out[4096];
    CU_ASSERT_EQUAL(run_cli(id, sizeof id, "%s --broker %s enqueue celeriac.echo '{\"x\": 1}' 2>&1",
                            e.addr, ""),
                    0);
    CU_ASSERT_EQUAL(strlen(id), 32);
    CU_ASSERT_EQUAL(
        run_cli(out, sizeof out, "%s --broker %s wait %s --timeout 10 2>&1", e.addr, id), 0);
    CU_ASSERT(strstr(out, "\"state\":\"succeeded\"") && strstr(out, "\"result\":{\"x\":1}"));
    CU_ASSERT_EQUAL(
        run_cli(id, sizeof id, "%s --broker %s enqueue --id f1 celeriac.fail%s", e.addr, ""), 0);
    CU_ASSERT_EQUAL(
        run_cli(out, sizeof out, "%s --broker %s wait f1 --timeout 10 2>/dev/null%s", e.addr, ""),
        1);
    CU_ASSERT(strstr(out, "\"state\":\"failed\"") != NULL);
    CU_ASSERT_EQUAL(run_cli(out, sizeof out, "%s --broker %s status nope 2>&1%s", e.addr, ""), 3);
    CU_ASSERT(strstr(out, "NOT_FOUND") != NULL);
    CU_ASSERT_EQUAL(run_cli(out, sizeof out, "%s --broker %s enqueue t '{bad' 2>&1%s", e.addr, ""),
                    2);
    CU_ASSERT(strstr(out, "not JSON") != NULL);
    CU_ASSERT_EQUAL(
        run_cli(out, sizeof out, "%s --broker %s enqueue --delay 60 --id d1 t%s", e.addr, ""), 0);
    CU_ASSERT_EQUAL(
        run_cli(out, sizeof out, "%s --broker %s wait d1 --timeout 0.3 2>&1%s", e.addr, ""), 1);
    CU_ASSERT(strstr(out, "TIMEOUT") != NULL);
    CU_ASSERT_EQUAL(run_cli(out, sizeof out, "%s --broker %s cancel d1%s", e.addr, ""), 0);
    CU_ASSERT_EQUAL(run_cli(out, sizeof out, "%s --broker %s queues%s", e.addr, ""), 0);
    CU_ASSERT(strstr(out, "\"default\"") != NULL);
    CU_ASSERT_EQUAL(run_cli(out, sizeof out, "%s frob%s%s 2>&1", "", ""), 2);
    CU_ASSERT_EQUAL(run_cli(out, sizeof out, "%s --broker 127.0.0.1:1 stats 2>&1%s%s", "", ""), 3);
    CU_ASSERT_EQUAL(run_cli(out, sizeof out, "%s enqueue --help%s%s", "", ""), 0);
    CU_ASSERT(strstr(out, "usage: celeriac") != NULL);
    env_stop(&e);
}

static void test_example_producer_runs(void) {
    env e;
    CU_ASSERT_FATAL(env_start(&e, true));
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s %s 40 %s/README.md %s/docs/delivery.md > /dev/null",
             th_bin("examples/celeriac-demo-producer"), e.addr, CELERIAC_SOURCE_DIR,
             CELERIAC_SOURCE_DIR);
    int st = system(cmd);
    CU_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    env_stop(&e);
}

int main(void) {
    static const th_test tests[] = {
        {"sync enqueue, wait, status, cancel, bulk", test_sync_enqueue_wait_status_cancel_bulk},
        {"bad arguments get clear errors", test_bad_arguments_get_clear_errors},
        {"async pipelines many requests", test_async_pipelines_many_requests},
        {"enqueue stream survives a broker restart without dup or loss",
         test_enqueue_stream_survives_broker_restart_without_dup_or_loss},
        {"CLI output and exit codes", test_cli_output_and_exit_codes},
        {"example producer runs", test_example_producer_runs},
        {NULL, NULL}};
    return th_run("client", tests);
}
