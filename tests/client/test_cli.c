/* The celeriac CLI against a real redis-server, celeriacd and celeriac-worker: what it prints
 * on stdout (ids, JSON), its one-line errors on stderr and its exit codes. */
#include <jansson.h>

#include "client_env.h"

static bool is_task_id(const char *s) {
    return strlen(s) == 32 && strspn(s, "0123456789abcdef") == 32;
}

/* Parses r->out as JSON and returns member key as text ("" when absent). */
static const char *json_member(const cli_result *r, const char *key, char *buf, size_t cap) {
    json_t *j = json_loads(r->out, JSON_DECODE_ANY, NULL);
    json_t *v = json_object_get(j, key);
    char *s = v ? json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
    snprintf(buf, cap, "%s", s ? s : "");
    free(s);
    json_decref(j);
    return buf;
}

static void test_cli_enqueue_and_wait_print_id_and_result(void) {
    env e;
    CU_ASSERT_FATAL(env_start(&e, true));
    cli_result r, w;
    cli_run(&r, "--broker", e.addr, "enqueue", "celeriac.echo", "{\"x\": 1}");
    CU_ASSERT_EQUAL(r.status, 0);
    CU_ASSERT(is_task_id(r.out));
    CU_ASSERT_STRING_EQUAL(r.err, "");
    cli_run(&w, "--broker", e.addr, "wait", r.out, "--timeout", "10");
    CU_ASSERT_EQUAL(w.status, 0);
    CU_ASSERT_STRING_EQUAL(w.out, "{\"x\":1}");
    char buf[256];
    cli_run(&w, "--broker", e.addr, "wait", "--info", r.out);
    CU_ASSERT_STRING_EQUAL(json_member(&w, "state", buf, sizeof buf), "\"succeeded\"");
    CU_ASSERT_STRING_EQUAL(json_member(&w, "result", buf, sizeof buf), "{\"x\":1}");
    /* Args from stdin, the broker from $CELERIAC_BROKER, options after TASK. */
    cli_run_env(&r, e.addr, "[42, \"a\"]\n", "enqueue", "celeriac.echo", "-", "--priority", "7",
                (char *)NULL);
    CU_ASSERT(r.status == 0 && is_task_id(r.out));
    cli_run_env(&w, e.addr, NULL, "wait", r.out, (char *)NULL);
    CU_ASSERT(w.status == 0 && !strcmp(w.out, "[42,\"a\"]"));
    /* A given id is printed back; --broker=ADDR works too. */
    char broker_eq[80];
    snprintf(broker_eq, sizeof broker_eq, "--broker=%s", e.addr);
    cli_run(&r, broker_eq, "enqueue", "--id", "given-1", "--queue", "default", "--retries", "0",
            "--soft-limit", "5", "--hard-limit", "10", "--result-ttl", "60", "celeriac.noop");
    CU_ASSERT(r.status == 0 && !strcmp(r.out, "given-1"));
    cli_run(&w, broker_eq, "wait", "given-1");
    CU_ASSERT(w.status == 0 && !strcmp(w.out, "null")); /* noop has no result */
    env_stop(&e);
}

static void test_cli_failed_task_and_timed_out_wait_exit_1(void) {
    env e;
    CU_ASSERT_FATAL(env_start(&e, true));
    cli_result r;
    cli_run(&r, "--broker", e.addr, "enqueue", "--id", "f1", "celeriac.fail");
    CU_ASSERT_EQUAL(r.status, 0);
    cli_run(&r, "--broker", e.addr, "wait", "f1", "--timeout", "10");
    CU_ASSERT_EQUAL(r.status, 1);
    CU_ASSERT_STRING_EQUAL(r.out, "");
    CU_ASSERT(one_line(r.err) && strstr(r.err, "task f1 failed: ") &&
              strstr(r.err, "always fails"));
    cli_run(&r, "--broker", e.addr, "enqueue", "--delay", "60", "--id", "d1", "celeriac.noop");
    CU_ASSERT_EQUAL(r.status, 0);
    /* The timeout is honoured wherever the option stands. */
    cli_run(&r, "--broker", e.addr, "wait", "d1", "--timeout", "0.5");
    CU_ASSERT_EQUAL(r.status, 1);
    CU_ASSERT(one_line(r.err) && strstr(r.err, "TIMEOUT"));
    CU_ASSERT(r.ms < 3000);
    cli_run(&r, "--broker", e.addr, "wait", "--timeout", "0.2", "d1");
    CU_ASSERT(r.status == 1 && r.ms < 3000);
    env_stop(&e);
}

static void test_cli_status_cancel_stats_and_queues_print_json(void) {
    env e;
    CU_ASSERT_FATAL(env_start(&e, true));
    cli_result r;
    char buf[256];
    cli_run(&r, "--broker", e.addr, "enqueue", "--delay", "60", "--id", "d1", "celeriac.noop");
    cli_run(&r, "--broker", e.addr, "status", "d1");
    CU_ASSERT_EQUAL(r.status, 0);
    CU_ASSERT_STRING_EQUAL(json_member(&r, "state", buf, sizeof buf), "\"scheduled\"");
    CU_ASSERT_STRING_EQUAL(json_member(&r, "started_ms", buf, sizeof buf), "null");
    CU_ASSERT_STRING_EQUAL(json_member(&r, "task", buf, sizeof buf), "\"celeriac.noop\"");
    cli_run(&r, "--broker", e.addr, "cancel", "d1");
    CU_ASSERT_EQUAL(r.status, 0);
    CU_ASSERT_STRING_EQUAL(r.out, "{\"id\":\"d1\",\"state\":\"cancelled\"}");
    cli_run(&r, "--broker", e.addr, "enqueue", "--id", "done-1", "celeriac.noop");
    cli_run(&r, "--broker", e.addr, "wait", "done-1");
    cli_run(&r, "--broker", e.addr, "cancel", "done-1");
    CU_ASSERT_EQUAL(r.status, 3);
    CU_ASSERT(one_line(r.err) && strstr(r.err, "cancel: done-1: STATE: "));
    cli_run(&r, "--broker", e.addr, "status", "nope");
    CU_ASSERT_EQUAL(r.status, 3);
    CU_ASSERT(one_line(r.err) && strstr(r.err, "status: nope: NOT_FOUND: "));
    cli_run(&r, "--broker", e.addr, "queues");
    CU_ASSERT_EQUAL(r.status, 0);
    json_t *q = json_loads(r.out, 0, NULL);
    CU_ASSERT(json_is_integer(json_object_get(json_object_get(q, "default"), "ready")));
    json_decref(q);
    cli_run(&r, "--broker", e.addr, "stats");
    CU_ASSERT_EQUAL(r.status, 0);
    json_t *s = json_loads(r.out, 0, NULL);
    CU_ASSERT(json_integer_value(json_object_get(s, "enqueued")) >= 2);
    CU_ASSERT(json_is_object(json_object_get(s, "queues")));
    json_decref(s);
    env_stop(&e);
}

static void test_cli_operator_commands(void) {
    env e;
    CU_ASSERT_FATAL(env_start(&e, true));
    cli_result r;
    cli_run(&r, "--broker", e.addr, "pause", "default");
    CU_ASSERT(r.status == 0 && !strcmp(r.out, "{\"queue\":\"default\",\"paused\":true}"));
    cli_run(&r, "--broker", e.addr, "enqueue", "--id", "p1", "celeriac.echo", "[1]");
    cli_run(&r, "--broker", e.addr, "wait", "p1", "--timeout", "0.5");
    CU_ASSERT_EQUAL(r.status, 1); /* paused: not dispatched */
    cli_run(&r, "--broker", e.addr, "resume", "default");
    CU_ASSERT(r.status == 0 && !strcmp(r.out, "{\"queue\":\"default\",\"paused\":false}"));
    cli_run(&r, "--broker", e.addr, "wait", "p1", "--timeout", "10");
    CU_ASSERT(r.status == 0 && !strcmp(r.out, "[1]"));
    cli_run(&r, "--broker", e.addr, "enqueue", "--queue", "pq", "--delay", "60", "t");
    cli_run(&r, "--broker", e.addr, "enqueue", "--queue", "pq", "t");
    cli_run(&r, "--broker", e.addr, "purge", "pq", "--yes");
    CU_ASSERT(r.status == 0 && !strcmp(r.out, "{\"queue\":\"pq\",\"purged\":2}"));
    cli_run(&r, "--broker", e.addr, "dead", "list", "default", "--count", "10");
    CU_ASSERT(r.status == 0 && !strcmp(r.out, "[]"));
    cli_run(&r, "--broker", e.addr, "dead", "requeue", "default");
    CU_ASSERT(r.status == 0 && !strcmp(r.out, "{\"queue\":\"default\",\"requeued\":0}"));
    cli_run(&r, "--broker", e.addr, "dead", "purge", "default", "--yes");
    CU_ASSERT(r.status == 0 && !strcmp(r.out, "{\"queue\":\"default\",\"purged\":0}"));
    env_stop(&e);
}

int main(void) {
    static const th_test tests[] = {{"CLI enqueue and wait print the id and the result",
                                     test_cli_enqueue_and_wait_print_id_and_result},
                                    {"CLI failed task and timed-out wait exit 1",
                                     test_cli_failed_task_and_timed_out_wait_exit_1},
                                    {"CLI status, cancel, stats and queues print JSON",
                                     test_cli_status_cancel_stats_and_queues_print_json},
                                    {"CLI operator commands", test_cli_operator_commands},
                                    {NULL, NULL}};
    return th_run("celeriac CLI", tests);
}
