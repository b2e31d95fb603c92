/* libceleriac and the celeriac CLI without a broker: ids, broker lists, checked enqueues, JSON
 * args, error names, connection failures, the async face's callbacks when nothing answers, and
 * the CLI's usage errors. */
#include <event2/event.h>
#include <jansson.h>

#include "client_env.h"
#include "internal.h"
#include "json.h"

static void test_generated_ids_are_32_hex_and_distinct(void) {
    enum { N = 2000 };
    static char ids[N][CELERIAC_ID_SIZE];
    for (int i = 0; i < N; i++) {
        cel_id_new(ids[i]);
        CU_ASSERT_EQUAL(strlen(ids[i]), 32);
        CU_ASSERT_EQUAL(strspn(ids[i], "0123456789abcdef"), 32);
        CU_ASSERT(cel_id_valid(ids[i], 32));
    }
    qsort(ids, N, CELERIAC_ID_SIZE, (int (*)(const void *, const void *))strcmp);
    int dups = 0;
    for (int i = 1; i < N; i++) dups += strcmp(ids[i - 1], ids[i]) == 0;
    CU_ASSERT_EQUAL(dups, 0);
}

/* Ids come from a pool of random bytes: a forked child must not hand out the ids its parent
 * will hand out next (the pool it inherited). */
static void test_a_forked_child_draws_other_ids_than_its_parent(void) {
    char first[CELERIAC_ID_SIZE], parent[CELERIAC_ID_SIZE], child[CELERIAC_ID_SIZE] = "";
    cel_id_new(first); /* the pool is now filled, and inherited by the child */
    int fds[2];
    CU_ASSERT_FATAL(pipe(fds) == 0);
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        cel_id_new(child);
        _exit(write(fds[1], child, 33) == 33 ? 0 : 1);
    }
    close(fds[1]);
    read_all(fds[0], child, sizeof child);
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    cel_id_new(parent);
    CU_ASSERT_EQUAL(strlen(child), 32);
    CU_ASSERT(strcmp(child, parent) != 0);
    CU_ASSERT(strcmp(child, first) != 0);
}

static void test_broker_lists_default_env_and_errors(void) {
    cel_brokers b;
    char why[256];
    unsetenv("CELERIAC_BROKER");
    CU_ASSERT_FATAL(cel_brokers_parse(NULL, &b, why, sizeof why));
    CU_ASSERT_EQUAL(b.n, 1);
    CU_ASSERT_STRING_EQUAL(b.addrs[0], "127.0.0.1:7878");
    cel_brokers_free(&b);
    setenv("CELERIAC_BROKER", "h1:1,h2:2", 1);
    CU_ASSERT_FATAL(cel_brokers_parse("", &b, why, sizeof why));
    CU_ASSERT_EQUAL(b.n, 2);
    CU_ASSERT_STRING_EQUAL(b.addrs[1], "h2:2");
    cel_brokers_free(&b);
    CU_ASSERT_FATAL(cel_brokers_parse("[::1]:9,other", &b, why, sizeof why)); /* beats env */
    CU_ASSERT_EQUAL(b.n, 2);
    cel_brokers_free(&b);
    unsetenv("CELERIAC_BROKER");
    const char *bad[] = {"a:1,,b:2", "host:0", "host:70000", "host:", "::1", ":7878", "h:1x"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        CU_ASSERT_FALSE(cel_brokers_parse(bad[i], &b, why, sizeof why));
        CU_ASSERT(strstr(why, "broker address") != NULL);
    }
    char many[33 * 8] = "";
    for (int i = 0; i < 33; i++) strcat(many, i ? ",h:1" : "h:1");
    CU_ASSERT_FALSE(cel_brokers_parse(many, &b, why, sizeof why));
    CU_ASSERT(strstr(why, "more than 32") != NULL);
}

/* JSON → msgpack bytes → JSON gives the same value. */
static bool round_trips(const char *text) {
    cel_buf b;
    cel_buf_init(&b);
    char why[256];
    bool ok = cel_json_args(text, &b, why, sizeof why) == CELERIAC_OK;
    json_t *in = json_loads(text, JSON_DECODE_ANY, NULL);
    json_t *out = ok ? cel_json_from_bytes(b.data, b.len) : NULL;
    ok = ok && json_equal(in, out);
    json_decref(in), json_decref(out);
    cel_buf_free(&b);
    return ok;
}

static void nested(char *out, int depth) {
    for (int i = 0; i < depth; i++) strcat(out, "[");
    strcat(out, "1");
    for (int i = 0; i < depth; i++) strcat(out, "]");
}

static void test_json_args_convert_and_report_errors(void) {
    CU_ASSERT(round_trips("{\"a\": [1, -2, 3.5, true, false, null], \"b\": {\"c\": \"d\"}}"));
    CU_ASSERT(round_trips("\"caf\\u00e9 \\u2603\""));
    CU_ASSERT(round_trips("[9223372036854775807, -9223372036854775808, 0.1]"));
    CU_ASSERT(round_trips("42"));
    CU_ASSERT(round_trips("[]"));
    cel_buf b;
    cel_buf_init(&b);
    /* A msgpack uint64 beyond INT64_MAX (from a non-JSON producer) stays a positive number. */
    const uint8_t umax[] = {0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    json_t *big = cel_json_from_bytes(umax, sizeof umax);
    CU_ASSERT_FATAL(big != NULL);
    CU_ASSERT(json_is_real(big) && json_real_value(big) > 1.8e19);
    json_decref(big);
    char why[256];
    CU_ASSERT_EQUAL(cel_json_args("{\"a\": 1,", &b, why, sizeof why), CELERIAC_E_ARGS);
    CU_ASSERT(strstr(why, "not JSON") && strstr(why, "line 1, column"));
    CU_ASSERT_EQUAL(cel_json_args("", &b, why, sizeof why), CELERIAC_E_ARGS);
    cel_buf_free(&b);
    /* The broker allows args 15 containers deep inside an enqueue, 13 inside a bulk one. */
    char deep[80] = "";
    cel_enq e;
    nested(deep, 15);
    CU_ASSERT_EQUAL(cel_enq_prepare(&e, "q", "t", NULL, 0, deep, NULL, why, sizeof why),
                    CELERIAC_OK);
    cel_enq_free(&e);
    deep[0] = 0, nested(deep, 16);
    CU_ASSERT_EQUAL(cel_enq_prepare(&e, "q", "t", NULL, 0, deep, NULL, why, sizeof why),
                    CELERIAC_E_TOO_DEEP);
    CU_ASSERT(strstr(why, "nest deeper") != NULL);
    cel_enq_free(&e);
    deep[0] = 0, nested(deep, 14);
    celeriac_bulk_item item = {"q", "t", deep, {0}};
    CU_ASSERT_EQUAL(cel_enq_prepare_bulk(&e, &item, 1, why, sizeof why), CELERIAC_E_TOO_DEEP);
    CU_ASSERT(strstr(why, "bulk item 0") != NULL);
    cel_enq_free(&e);
}

static int prepare(const char *queue, const char *task, const celeriac_opts *o, char *why) {
    cel_enq e;
    int rc = cel_enq_prepare(&e, queue, task, NULL, 0, NULL, o, why, 256);
    cel_enq_free(&e);
    return rc;
}

static void test_enqueue_checks_refuse_bad_arguments_with_reasons(void) {
    char why[256], long_id[140];
    memset(long_id, 'x', 129), long_id[129] = 0;
    CU_ASSERT_EQUAL(prepare("bad queue", "t", NULL, why), CELERIAC_E_ARGS);
    CU_ASSERT(strstr(why, "bad queue 'bad queue'") != NULL);
    CU_ASSERT_EQUAL(prepare("q", "t{x}", NULL, why), CELERIAC_E_ARGS);
    CU_ASSERT(strstr(why, "bad task name") != NULL);
    CU_ASSERT_EQUAL(prepare(NULL, "t", NULL, why), CELERIAC_E_ARGS);
    celeriac_opts o = {.id = long_id};
    CU_ASSERT_EQUAL(prepare("q", "t", &o, why), CELERIAC_E_ARGS);
    CU_ASSERT(strstr(why, "bad task id") != NULL);
    o = (celeriac_opts){.unique_key = "a b"};
    CU_ASSERT_EQUAL(prepare("q", "t", &o, why), CELERIAC_E_ARGS);
    CU_ASSERT(strstr(why, "unique key") != NULL);
    o = (celeriac_opts){.priority = 256};
    CU_ASSERT_EQUAL(prepare("q", "t", &o, why), CELERIAC_E_ARGS);
    CU_ASSERT(strstr(why, "priority 256") != NULL);
    o = (celeriac_opts){.delay_ms = 31ull * 24 * 3600 * 1000};
    CU_ASSERT_EQUAL(prepare("q", "t", &o, why), CELERIAC_E_ARGS);
    o = (celeriac_opts){.max_retries = 1000001};
    CU_ASSERT_EQUAL(prepare("q", "t", &o, why), CELERIAC_E_ARGS);
    o = (celeriac_opts){.eta_ms = -1};
    CU_ASSERT_EQUAL(prepare("q", "t", &o, why), CELERIAC_E_ARGS);
    cel_enq e;
    const uint8_t reserved[] = {0xc1}, two[] = {0x01, 0x02};
    CU_ASSERT_EQUAL(cel_enq_prepare(&e, "q", "t", reserved, 1, NULL, NULL, why, sizeof why),
                    CELERIAC_E_ARGS);
    CU_ASSERT(strstr(why, "not one msgpack object") != NULL);
    cel_enq_free(&e);
    CU_ASSERT_EQUAL(cel_enq_prepare(&e, "q", "t", two, 2, NULL, NULL, why, sizeof why),
                    CELERIAC_E_ARGS);
    cel_enq_free(&e);
    /* Good ones: an id is chosen once, a given one is kept, and owning survives the caller. */
    char queue[] = "q1";
    o = (celeriac_opts){.id = "given-1", .priority = 255, .unique_key = "u:1"};
    CU_ASSERT_EQUAL_FATAL(cel_enq_prepare(&e, queue, "t", two, 1, NULL, &o, why, sizeof why),
                          CELERIAC_OK);
    CU_ASSERT_STRING_EQUAL(e.id, "given-1");
    CU_ASSERT_FATAL(cel_enq_own(&e));
    queue[0] = 'X';
    cel_msg m;
    cel_enq_msg(&e, &m);
    CU_ASSERT(cel_str_eq(m.queue, "q1") && cel_str_eq(m.unique_key, "u:1"));
    CU_ASSERT(cel_msg_has(&m, CEL_F_ARGS) && m.priority == 255);
    cel_enq_free(&e);
    CU_ASSERT_EQUAL(cel_enq_prepare(&e, "q", "t", NULL, 0, NULL, NULL, why, sizeof why),
                    CELERIAC_OK);
    CU_ASSERT_EQUAL(strlen(e.id), 32);
    cel_enq_free(&e);
}

static void test_error_names_and_messages_cover_every_code(void) {
    for (int code = 0; code < CEL_E__COUNT; code++) {
        CU_ASSERT_STRING_EQUAL(celeriac_errname(code), cel_err_name((cel_err)code));
        CU_ASSERT(celeriac_strerror(code) && strlen(celeriac_strerror(code)) > 3);
        for (int other = 0; other < code; other++)
            CU_ASSERT(strcmp(celeriac_strerror(code), celeriac_strerror(other)) != 0);
    }
    CU_ASSERT_STRING_EQUAL(celeriac_errname(CELERIAC_E_ARGS), "ARGS");
    CU_ASSERT_STRING_EQUAL(celeriac_errname(CELERIAC_E_NOT_FOUND), "NOT_FOUND");
    CU_ASSERT_STRING_EQUAL(celeriac_errname(555), "UNKNOWN");
    CU_ASSERT_STRING_EQUAL(celeriac_strerror(-3), "unknown error");
}

static void test_connect_fails_fast_and_says_why(void) {
    char err[256];
    long long t0 = th_now_ms();
    CU_ASSERT_PTR_NULL(celeriac_connect("127.0.0.1:1", 5000, err, sizeof err));
    CU_ASSERT(th_now_ms() - t0 < 2000); /* refused: nothing to wait for */
    CU_ASSERT(strstr(err, "127.0.0.1:1") && strstr(err, "refused"));
    t0 = th_now_ms();
    CU_ASSERT_PTR_NULL(celeriac_connect("127.0.0.1:1,127.0.0.1:2", 5000, err, sizeof err));
    CU_ASSERT(th_now_ms() - t0 < 2000);
    CU_ASSERT_PTR_NULL(celeriac_connect("no-port:", 5000, err, sizeof err));
    CU_ASSERT(strstr(err, "bad broker address 'no-port:'") != NULL);
    CU_ASSERT_PTR_NULL(celeriac_connect("127.0.0.1:1", 5000, NULL, 0)); /* err is optional */
}

typedef struct outcome {
    int calls, unavailable;
    celeriac_async *free_me; /* freed by the first callback */
    struct event_base *base;
} outcome;

static void on_outcome(int status, const char *id, const celeriac_task_info *info, void *arg) {
    outcome *o = arg;
    o->calls++;
    o->unavailable += status == CELERIAC_E_UNAVAILABLE && id && id[0] && !info;
    if (o->free_me) {
        celeriac_async *a = o->free_me;
        o->free_me = NULL;
        celeriac_async_free(a); /* from inside a callback: the others are failed right here */
        event_base_loopbreak(o->base);
    }
}

static void test_async_without_broker_answers_each_request_once(void) {
    outcome o = {0, 0, NULL, event_base_new()};
    CU_ASSERT_PTR_NULL(celeriac_async_new(o.base, "bad address:x"));
    celeriac_async *a = celeriac_async_new(o.base, "127.0.0.1:1");
    CU_ASSERT_FATAL(a != NULL);
    celeriac_async_set_timeout(a, 300);
    /* Refused before anything is queued: no callback. */
    CU_ASSERT_EQUAL(celeriac_async_enqueue_json(a, "q", "t", "{bad", NULL, on_outcome, &o),
                    CELERIAC_E_ARGS);
    CU_ASSERT_EQUAL(celeriac_async_status(a, "bad id!", on_outcome, &o), CELERIAC_E_ARGS);
    CU_ASSERT_EQUAL(celeriac_async_enqueue(a, "q", "t", NULL, 0, NULL, NULL, NULL),
                    CELERIAC_E_ARGS);
    CU_ASSERT_EQUAL(celeriac_async_enqueue_json(a, "q", "t", "[1]", NULL, on_outcome, &o),
                    CELERIAC_OK);
    CU_ASSERT_EQUAL(celeriac_async_wait(a, "some-id", 60000, on_outcome, &o), CELERIAC_OK);
    celeriac_bulk_item items[2] = {{"q", "t", NULL, {0}}, {"q", "t", "{}", {0}}};
    CU_ASSERT_EQUAL(celeriac_async_enqueue_bulk(a, items, 2, on_outcome, &o), CELERIAC_OK);
    CU_ASSERT_EQUAL(o.calls, 0); /* never before the call returns */
    o.free_me = a;
    long long t0 = th_now_ms();
    event_base_dispatch(o.base);
    /* The enqueue ran out of time at 300 ms (no broker: UNAVAILABLE); its callback freed the
     * handle, which answered the wait and both bulk items at once. */
    CU_ASSERT(th_now_ms() - t0 < 3000);
    CU_ASSERT_EQUAL(o.calls, 4);
    CU_ASSERT_EQUAL(o.unavailable, 4);
    event_base_free(o.base);
}

static void test_cli_usage_errors_without_a_broker(void) {
    cli_result r;
    const char *cmds[] = {"enqueue", "wait",  "status", "cancel", "stats",
                          "queues",  "pause", "resume", "purge",  "dead"};
    for (size_t i = 0; i < sizeof cmds / sizeof *cmds; i++) {
        /* --help never connects (the broker here does not exist) and exits 0. */
        cli_run(&r, "--broker", "127.0.0.1:1", cmds[i], "--help");
        CU_ASSERT_EQUAL(r.status, 0);
        char want[64];
        snprintf(want, sizeof want, "usage: celeriac [global options] %s", cmds[i]);
        CU_ASSERT(strstr(r.out, want) != NULL);
        CU_ASSERT_STRING_EQUAL(r.err, "");
    }
    cli_run(&r, "--help");
    CU_ASSERT(r.status == 0 && strstr(r.out, "enqueue [options] TASK [ARGS-JSON]"));
    cli_run(&r, "help", "wait");
    CU_ASSERT(r.status == 0 && strstr(r.out, "--timeout S"));
    struct {
        const char *a, *b, *c, *d, *expect;
    } usage[] = {
        {"frob", NULL, NULL, NULL, "unknown command 'frob'"},
        {"enqueue", NULL, NULL, NULL, "missing TASK"},
        {"enqueue", "--bogus", "t", NULL, "unknown option '--bogus'"},
        {"enqueue", "--priority", "1.5", "t", "bad value '1.5' for --priority"},
        {"enqueue", "--delay", "-1", "t", "bad value '-1' for --delay"},
        {"enqueue", "--queue", NULL, NULL, "option '--queue' needs a value"},
        {"enqueue", "t", "{\"a\":", NULL, "ARGS-JSON is not JSON"},
        {"enqueue", "t", "[1]", "extra", "unexpected argument 'extra'"},
        {"enqueue", "bad task!", NULL, NULL, "bad task name"},
        {"wait", "id", "--timeout", "soon", "bad value 'soon' for --timeout"},
        {"status", NULL, NULL, NULL, "missing task ID"},
        {"cancel", "a b", NULL, NULL, "bad task id 'a b'"},
        {"purge", "q", NULL, NULL, "add --yes"},
        {"dead", "frob", "q", NULL, "unknown dead command 'frob'"},
        {"--broker", "x:y", "stats", NULL, "bad broker address 'x:y'"},
        {"--broker", NULL, NULL, NULL, "option '--broker' needs a value"},
        {"--connect-timeout", "0", "stats", NULL, "bad connect timeout '0'"},
        {"--frob", "stats", NULL, NULL, "unknown option '--frob'"},
    };
    for (size_t i = 0; i < sizeof usage / sizeof *usage; i++) {
        cli_run(&r, usage[i].a, usage[i].b, usage[i].c, usage[i].d);
        CU_ASSERT_EQUAL(r.status, 2);
        CU_ASSERT(one_line(r.err) && strncmp(r.err, "celeriac: ", 10) == 0);
        CU_ASSERT(strstr(r.err, usage[i].expect) != NULL);
        if (!strstr(r.err, usage[i].expect)) fprintf(stderr, "\n  got: %s\n", r.err);
        CU_ASSERT_STRING_EQUAL(r.out, "");
    }
    cli_run_env(&r, NULL, NULL, (char *)NULL); /* no command */
    CU_ASSERT(r.status == 2 && strstr(r.err, "usage: celeriac"));
    /* An unreachable broker is exit 3 with the reason, after checking the arguments. */
    cli_run(&r, "--broker", "127.0.0.1:1", "enqueue", "celeriac.noop", "[1]");
    CU_ASSERT_EQUAL(r.status, 3);
    CU_ASSERT(one_line(r.err) && strstr(r.err, "127.0.0.1:1: Connection refused"));
    cli_run_env(&r, "127.0.0.1:2", NULL, "stats", (char *)NULL);
    CU_ASSERT(r.status == 3 && strstr(r.err, "127.0.0.1:2")); /* $CELERIAC_BROKER is used */
}

int main(void) {
    static const th_test tests[] = {
        {"generated ids are 32 hex chars and distinct", test_generated_ids_are_32_hex_and_distinct},
        {"a forked child draws other ids than its parent",
         test_a_forked_child_draws_other_ids_than_its_parent},
        {"broker lists: default, env and errors", test_broker_lists_default_env_and_errors},
        {"JSON args convert and report errors", test_json_args_convert_and_report_errors},
        {"enqueue checks refuse bad arguments with reasons",
         test_enqueue_checks_refuse_bad_arguments_with_reasons},
        {"error names and messages cover every code",
         test_error_names_and_messages_cover_every_code},
        {"connect fails fast and says why", test_connect_fails_fast_and_says_why},
        {"async without a broker answers each request once",
         test_async_without_broker_answers_each_request_once},
        {"CLI usage errors without a broker", test_cli_usage_errors_without_a_broker},
        {NULL, NULL}};
    return th_run("client units", tests);
}
