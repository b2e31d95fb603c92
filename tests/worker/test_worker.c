/* celeriac-worker end to end, what it does when all goes well: built-in, plugin, example and
 * embedded tasks; limits from the task and from flags; cancel of a running task; its flags and
 * its log. Real redis-server, celeriacd and worker processes (see worker_env.h). */
#include "worker_env.h"

static void test_builtin_tasks_end_to_end(void) {
    env e;
    char *flags[] = {"--concurrency", "2", NULL};
    CU_ASSERT_FATAL(env_start(&e, NULL, flags));
    const uint8_t echo_args[] = {0x92, 0x01, 0xa2, 'h', 'i'}; /* [1, "hi"] */
    enqueue(&e.p, "noop", "celeriac.noop", NULL, 0);
    enqueue(&e.p, "echo", "celeriac.echo", echo_args, sizeof echo_args);
    enqueue(&e.p, "sleep", "celeriac.sleep", ARGS_SLEEP_0_25, sizeof ARGS_SLEEP_0_25);
    enqueue(&e.p, "sleep-number", "celeriac.sleep", ARGS_SLEEP_2, sizeof ARGS_SLEEP_2);
    enqueue(&e.p, "fail", "celeriac.fail", NULL, 0);
    enqueue(&e.p, "crash", "celeriac.crash", NULL, 0);
    enqueue(&e.p, "unknown", "no.such.task", NULL, 0);

    CU_ASSERT_STRING_EQUAL(tc_s(finish(&e.p, "noop")->state), "succeeded");
    const cel_msg *r = finish(&e.p, "echo");
    CU_ASSERT_STRING_EQUAL(tc_s(r->state), "succeeded");
    CU_ASSERT_FATAL(r->result.obj && r->result.obj->type == MSGPACK_OBJECT_ARRAY &&
                    r->result.obj->via.array.size == 2);
    CU_ASSERT_EQUAL(r->result.obj->via.array.ptr[0].via.u64, 1);
    CU_ASSERT_EQUAL(r->result.obj->via.array.ptr[1].via.str.size, 2);
    r = finish(&e.p, "sleep");
    CU_ASSERT_STRING_EQUAL(tc_s(r->state), "succeeded");
    CU_ASSERT(r->finished_ms - r->started_ms >= 240);
    r = finish(&e.p, "sleep-number");
    CU_ASSERT_STRING_EQUAL(tc_s(r->state), "succeeded");
    CU_ASSERT(r->finished_ms - r->started_ms >= 1990);
    r = finish(&e.p, "fail");
    CU_ASSERT_STRING_EQUAL(tc_s(r->state), "failed");
    CU_ASSERT_STRING_EQUAL(tc_s(r->reason), "error");
    CU_ASSERT_STRING_EQUAL(tc_s(r->error), "celeriac.fail always fails (attempt 1)");
    r = finish(&e.p, "crash");
    CU_ASSERT_STRING_EQUAL(tc_s(r->reason), "worker_lost");
    CU_ASSERT_PTR_NOT_NULL(strstr(tc_s(r->error), "killed by signal 11 (SIGSEGV)"));
    r = finish(&e.p, "unknown");
    CU_ASSERT_STRING_EQUAL(tc_s(r->state), "failed");
    CU_ASSERT_PTR_NOT_NULL(strstr(tc_s(r->error), "unknown task 'no.such.task'"));
    /* The crash killed one child; the worker kept serving with a new one. */
    enqueue(&e.p, "after", "celeriac.noop", NULL, 0);
    CU_ASSERT_STRING_EQUAL(tc_s(finish(&e.p, "after")->state), "succeeded");
    env_stop(&e);
}

static void test_plugin_tasks_in_both_pools(void) {
    for (int pool = 0; pool < 2; pool++) {
        env e;
        char *flags[] = {"--plugin", TEST_PLUGIN, "--pool", pool ? "threads" : "prefork", NULL};
        CU_ASSERT_FATAL(env_start(&e, NULL, flags));
        const uint8_t args[] = {0x93, 0x01, 0x02, 0x27}; /* [1, 2, 39] */
        enqueue(&e.p, "add", "test.add", args, sizeof args);
        enqueue(&e.p, "echo", "celeriac.echo", args, sizeof args);
        const cel_msg *r = finish(&e.p, "add");
        CU_ASSERT_STRING_EQUAL(tc_s(r->state), "succeeded");
        CU_ASSERT_FATAL(r->result.obj != NULL);
        CU_ASSERT_EQUAL(r->result.obj->via.u64, 42);
        CU_ASSERT_STRING_EQUAL(tc_s(finish(&e.p, "echo")->state), "succeeded");
        /* Args larger than a socketpair takes at once reach the runner whole, and come back. */
        enum { BIG = 600 * 1024 };
        static uint8_t big[BIG + 6];
        big[0] = 0x91, big[1] = 0xc6; /* [bin32 of BIG bytes] */
        big[2] = 0, big[3] = BIG >> 16, big[4] = (BIG >> 8) & 0xff, big[5] = BIG & 0xff;
        for (size_t i = 6; i < sizeof big; i++) big[i] = (uint8_t)(i * 7);
        enqueue(&e.p, "big", "celeriac.echo", big, sizeof big);
        r = finish(&e.p, "big");
        CU_ASSERT_STRING_EQUAL(tc_s(r->state), "succeeded");
        CU_ASSERT_FATAL(r->result.obj && r->result.obj->type == MSGPACK_OBJECT_ARRAY &&
                        r->result.obj->via.array.size == 1);
        const msgpack_object *b = &r->result.obj->via.array.ptr[0];
        CU_ASSERT(b->type == MSGPACK_OBJECT_BIN && b->via.bin.size == BIG &&
                  memcmp(b->via.bin.ptr, big + 6, BIG) == 0);
        env_stop(&e);
    }
}

/* --pool solo: tasks run in the worker process itself (no children), one at a time whatever
 * --concurrency says; results, failures and soft limits as in the other pools; a crash ends the
 * worker, and the broker takes its task back. */
static void test_solo_pool(void) {
    env e;
    char *flags[] = {"--plugin",        TEST_PLUGIN, "--pool",     "solo",
                     "--concurrency",   "4",         "--prefetch", "16",
                     "--soft-limit-ms", "150",       NULL};
    CU_ASSERT_FATAL(env_start(&e, NULL, flags));
    CU_ASSERT(file_wait(e.worker.log, "solo pool of 1, prefetch 16", 5000));
    char id[32];
    for (int i = 0; i < 40; i++) {
        const uint8_t args[] = {0x92, (uint8_t)i, 0x02}; /* [i, 2] */
        snprintf(id, sizeof id, "add-%d", i);
        enqueue(&e.p, id, "test.add", args, sizeof args);
    }
    enqueue(&e.p, "soft", "celeriac.sleep", ARGS_SLEEP_10, sizeof ARGS_SLEEP_10);
    enqueue(&e.p, "fail", "celeriac.fail", NULL, 0);
    enqueue(&e.p, "unknown", "no.such.task", NULL, 0);
    for (int i = 0; i < 40; i++) {
        snprintf(id, sizeof id, "add-%d", i);
        const cel_msg *r = finish(&e.p, id);
        CU_ASSERT_STRING_EQUAL(tc_s(r->state), "succeeded");
        CU_ASSERT_FATAL(r->result.obj != NULL);
        CU_ASSERT_EQUAL(r->result.obj->via.u64, (uint64_t)i + 2);
    }
    const cel_msg *r = finish(&e.p, "soft");
    CU_ASSERT_STRING_EQUAL(tc_s(r->reason), "timeout");
    CU_ASSERT(r->finished_ms - r->started_ms < 1500);
    CU_ASSERT_STRING_EQUAL(tc_s(finish(&e.p, "fail")->reason), "error");
    CU_ASSERT_PTR_NOT_NULL(strstr(tc_s(finish(&e.p, "unknown")->error), "unknown task"));
    pid_t kids[4];
    CU_ASSERT_EQUAL(children_of(e.worker.pid, kids, 4), 0);

    enqueue(&e.p, "crash", "celeriac.crash", NULL, 0);
    long long t0 = th_now_ms();
    int st = th_stop(e.worker.pid, 0, 10000); /* 0: no signal, wait for the crash */
    e.worker.pid = 0;
    CU_ASSERT(th_now_ms() - t0 < 9000); /* it died by itself, not by th_stop's SIGKILL */
    CU_ASSERT(!(WIFEXITED(st) && WEXITSTATUS(st) == 0));
    CU_ASSERT(wait_state(&e.p, "crash", "queued", 5000));
    env_stop(&e);
}

static const msgpack_object *map_get(const msgpack_object *m, const char *key) {
    for (uint32_t i = 0; m && m->type == MSGPACK_OBJECT_MAP && i < m->via.map.size; i++) {
        const msgpack_object *k = &m->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == strlen(key) &&
            !memcmp(k->via.str.ptr, key, k->via.str.size))
            return &m->via.map.ptr[i].val;
    }
    return NULL;
}

/* {"path": path} packed into buf; returns its length. */
static size_t path_args(uint8_t *buf, size_t cap, const char *path) {
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str_with_body(&pk, "path", 4);
    msgpack_pack_str_with_body(&pk, path, strlen(path));
    size_t n = sb.size <= cap ? sb.size : 0;
    memcpy(buf, sb.data, n);
    msgpack_sbuffer_destroy(&sb);
    return n;
}

/* The example plugin (examples/wordcount.c), loaded the way its comment says. */
static void test_example_wordcount_plugin(void) {
    env e;
    char *flags[] = {"--plugin", WORDCOUNT_PLUGIN, NULL};
    CU_ASSERT_FATAL(env_start(&e, NULL, flags));
    char path[300];
    snprintf(path, sizeof path, "%s/words.txt", e.redis.dir);
    FILE *f = fopen(path, "w");
    CU_ASSERT_FATAL(f != NULL);
    fputs("one two\n  three\tfour five\n\nsix", f);
    fclose(f);
    uint8_t args[400];
    enqueue(&e.p, "wc", "wc.count", args, path_args(args, sizeof args, path));
    enqueue(&e.p, "wc-missing", "wc.count", args,
            path_args(args, sizeof args, "/nonexistent/words.txt"));
    const cel_msg *r = finish(&e.p, "wc");
    CU_ASSERT_STRING_EQUAL(tc_s(r->state), "succeeded");
    const msgpack_object *lines = map_get(r->result.obj, "lines"),
                         *words = map_get(r->result.obj, "words"),
                         *bytes = map_get(r->result.obj, "bytes");
    CU_ASSERT_FATAL(lines && words && bytes);
    CU_ASSERT_EQUAL(lines->via.u64, 3);
    CU_ASSERT_EQUAL(words->via.u64, 6);
    CU_ASSERT_EQUAL(bytes->via.u64, 30);
    r = finish(&e.p, "wc-missing");
    CU_ASSERT_STRING_EQUAL(tc_s(r->state), "failed");
    CU_ASSERT_PTR_NOT_NULL(strstr(tc_s(r->error), "No such file or directory"));
    env_stop(&e);
}

/* A program linking libceleriac-worker.so with its own task, loading a plugin as well. */
static void test_embedded_worker_runs_its_own_tasks(void) {
    env e;
    CU_ASSERT_FATAL(env_start(&e, NULL, (void *)-1));
    char addr[32];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", e.broker.port);
    snprintf(e.worker.log, sizeof e.worker.log, "%s/embedded.log", e.redis.dir);
    char *argv[] = {EMBEDDED_WORKER, "--broker",    addr,    "--plugin",
                    TEST_PLUGIN,     "--log-level", "debug", NULL};
    e.worker.pid = th_spawn(argv, e.worker.log);
    CU_ASSERT_FATAL(e.worker.pid > 0);
    const uint8_t args[] = {0x92, 0x14, 0x16}; /* [20, 22] */
    enqueue(&e.p, "hi", "embedded.hello", NULL, 0);
    enqueue(&e.p, "add", "test.add", args, sizeof args);
    enqueue(&e.p, "noop", "celeriac.noop", NULL, 0);
    const cel_msg *r = finish(&e.p, "hi");
    CU_ASSERT_STRING_EQUAL(tc_s(r->state), "succeeded");
    CU_ASSERT_FATAL(r->result.obj && r->result.obj->type == MSGPACK_OBJECT_STR);
    CU_ASSERT_EQUAL(r->result.obj->via.str.size, strlen("hello from hi"));
    r = finish(&e.p, "add");
    CU_ASSERT_STRING_EQUAL(tc_s(r->state), "succeeded");
    CU_ASSERT_EQUAL(r->result.obj->via.u64, 42);
    CU_ASSERT_STRING_EQUAL(tc_s(finish(&e.p, "noop")->state), "succeeded");
    env_stop(&e);
}

/* Limits: the task's own soft_ms/hard_ms, and the flags' defaults for tasks without them. */
static void test_time_limits_from_task_and_flags(void) {
    env e;
    char *flags[] = {"--concurrency", "2",        "--soft-limit-ms", "150", "--hard-limit-ms",
                     "400",           "--plugin", TEST_PLUGIN,       NULL};
    CU_ASSERT_FATAL(env_start(&e, NULL, flags));
    enqueue_limits(&e.p, "soft", "celeriac.sleep", ARGS_SLEEP_10, sizeof ARGS_SLEEP_10, 0, 0);
    enqueue_limits(&e.p, "own-soft", "celeriac.sleep", ARGS_SLEEP_10, sizeof ARGS_SLEEP_10, 600,
                   5000);
    enqueue_limits(&e.p, "hard", "test.spin", NULL, 0, 0, 0);
    enqueue_limits(&e.p, "own-hard", "test.spin", NULL, 0, 0, 800);
    const cel_msg *r = finish(&e.p, "soft");
    CU_ASSERT_STRING_EQUAL(tc_s(r->state), "failed");
    CU_ASSERT_STRING_EQUAL(tc_s(r->reason), "timeout");
    CU_ASSERT_STRING_EQUAL(tc_s(r->error), "soft time limit");
    CU_ASSERT(r->finished_ms - r->started_ms < 1500);
    r = finish(&e.p, "own-soft");
    CU_ASSERT_STRING_EQUAL(tc_s(r->error), "soft time limit");
    CU_ASSERT(r->finished_ms - r->started_ms >= 590 && r->finished_ms - r->started_ms < 2500);
    r = finish(&e.p, "hard");
    CU_ASSERT_STRING_EQUAL(tc_s(r->reason), "timeout");
    CU_ASSERT_PTR_NOT_NULL(strstr(tc_s(r->error), "hard time limit of 400 ms exceeded"));
    r = finish(&e.p, "own-hard");
    CU_ASSERT_STRING_EQUAL(tc_s(r->reason), "timeout");
    CU_ASSERT_PTR_NOT_NULL(strstr(tc_s(r->error), "hard time limit of 800 ms exceeded"));
    CU_ASSERT(r->finished_ms - r->started_ms >= 790);
    env_stop(&e);
}

static bool cancel(tc *p, const char *id) {
    cel_msg m;
    tc_msg(&m, CEL_OP_CANCEL);
    m.id = cel_str_c(id);
    cel_msg_set(&m, CEL_F_ID);
    const cel_msg *r = tc_reply(p, tc_send(p, &m), 5000);
    return r && r->op == CEL_OP_OK && !strcmp(tc_s(r->state), "cancelled");
}

/* Cancel of a running task: a cooperative one stops at once; one that ignores the cancel is
 * killed after --abort-grace-ms. Either way its slot serves the next task. */
static void test_cancel_of_running_tasks(void) {
    env e;
    char *flags[] = {"--concurrency",    "1",   "--prefetch", "0", "--plugin", TEST_PLUGIN,
                     "--abort-grace-ms", "300", NULL};
    CU_ASSERT_FATAL(env_start(&e, NULL, flags));
    enqueue(&e.p, "polite", "celeriac.sleep", ARGS_SLEEP_10, sizeof ARGS_SLEEP_10);
    CU_ASSERT_FATAL(wait_state(&e.p, "polite", "active", 5000));
    CU_ASSERT(cancel(&e.p, "polite"));
    long long t0 = th_now_ms();
    enqueue(&e.p, "next", "celeriac.noop", NULL, 0);
    CU_ASSERT_STRING_EQUAL(tc_s(finish(&e.p, "next")->state), "succeeded");
    CU_ASSERT(th_now_ms() - t0 < 1000);

    enqueue(&e.p, "deaf", "test.spin", NULL, 0);
    CU_ASSERT_FATAL(wait_state(&e.p, "deaf", "active", 5000));
    CU_ASSERT(cancel(&e.p, "deaf"));
    t0 = th_now_ms();
    enqueue(&e.p, "after-deaf", "celeriac.noop", NULL, 0);
    CU_ASSERT_STRING_EQUAL(tc_s(finish(&e.p, "after-deaf")->state), "succeeded");
    long long took = th_now_ms() - t0;
    CU_ASSERT(took >= 250 && took < 3000);
    CU_ASSERT_STRING_EQUAL(tc_s(finish(&e.p, "deaf")->state), "cancelled");
    CU_ASSERT(file_count(e.worker.log, "still running 300 ms after its abort") == 1);
    CU_ASSERT(file_count(e.worker.log, "warn task deaf: cancelled: child killed by signal 9") == 1);
    CU_ASSERT(file_count(e.worker.log, "lease lost") == 0); /* cancelled, not lost */
    env_stop(&e);
}

/* Runs the worker binary with args; returns its exit status, output in out (a file). */
static int run_worker_cli(char *const args[], const char *out) {
    char *argv[16] = {(char *)th_bin("worker/celeriac-worker")};
    int n = 1;
    for (int i = 0; args[i] && n < 15; i++) argv[n++] = args[i];
    argv[n] = NULL;
    unlink(out);
    pid_t pid = th_spawn(argv, out);
    return th_stop(pid, 0, 10000); /* signal 0: just wait */
}

static void test_flags_help_and_start_up_errors(void) {
    char out[300];
    snprintf(out, sizeof out, "%s/celeriac-worker-cli-%d.txt",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", (int)getpid());
    char *help[] = {"--help", NULL};
    int st = run_worker_cli(help, out);
    CU_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    const char *documented[] = {
        "--broker",        "--queues",        "--name",           "--plugin",
        "--pool",          "--concurrency",   "--prefetch",       "--pool-pipeline",
        "--soft-limit-ms", "--hard-limit-ms", "--abort-grace-ms", "--drain-timeout-ms",
        "--heartbeat-ms",  "--log-level",     "--log-file",       "SIGTERM",
        "SIGQUIT",         "SIGHUP",          "celeriac.crash"};
    for (size_t i = 0; i < sizeof documented / sizeof *documented; i++) {
        CU_ASSERT(file_count(out, documented[i]) > 0);
        if (!file_count(out, documented[i])) fprintf(stderr, "\n--help lacks %s\n", documented[i]);
    }
    char *bad[][3] = {{"--concurrency", "0", NULL},  {"--pool", "fibers", NULL},
                      {"--queues", "a b", NULL},     {"--broker", "host:99999", NULL},
                      {"--log-level", "loud", NULL}, {"--no-such-flag", NULL, NULL}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        st = run_worker_cli(bad[i], out);
        CU_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 2);
    }
    CU_ASSERT(file_count(out, "see --help") > 0);
    char *pipeline_bad[] = {"--pool-pipeline", "sometimes", NULL};
    st = run_worker_cli(pipeline_bad, out);
    CU_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 2);
    char *pipeline_threads[] = {"--pool", "threads", "--pool-pipeline", "on", NULL};
    st = run_worker_cli(pipeline_threads, out);
    CU_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 2);
    CU_ASSERT(file_count(out, "--pool-pipeline on needs --pool prefork") == 1);
    char *missing[] = {"--plugin", "/nonexistent/libnothing.so", "--broker", "127.0.0.1:1", NULL};
    st = run_worker_cli(missing, out);
    CU_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 1);
    CU_ASSERT(file_count(out, "cannot load plugin: /nonexistent/libnothing.so") == 1);
    /* The same task names twice: refused, naming the task and who registered it first. */
    char *twice[] = {"--plugin", TEST_PLUGIN,   "--plugin", TEST_PLUGIN,
                     "--broker", "127.0.0.1:1", NULL};
    st = run_worker_cli(twice, out);
    CU_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 1);
    CU_ASSERT(file_count(out, "\" is already registered by " TEST_PLUGIN) == 1);
    unlink(out);
}

/* --log-file: a task's log lines (written in a pool child) land in it; after a rename and SIGHUP
 * the parent and its children write to a new file. */
static void test_log_file_and_sighup_reopen(void) {
    env e;
    char log[300], rotated[310];
    CU_ASSERT_FATAL(th_redis_start(&e.redis, NULL));
    snprintf(log, sizeof log, "%s/worker.log", e.redis.dir);
    snprintf(rotated, sizeof rotated, "%s.1", log);
    char *flags[] = {"--plugin", TEST_PLUGIN, "--log-file", log, "--concurrency", "1", NULL};
    /* Ready on Redis, not just listening: an enqueue before that is refused UNAVAILABLE. */
    CU_ASSERT_FATAL(th_broker_start(&e.broker, &e.redis, broker_flags) &&
                    tc_wait_ready(e.broker.port, 10000));
    CU_ASSERT_FATAL(th_worker_start(&e.worker, e.broker.port, flags));
    CU_ASSERT_FATAL(tc_connect(&e.p, e.broker.port, "producer"));
    const uint8_t first[] = {0xa5, 'f', 'i', 'r', 's', 't'}, second[] = {0xa3, '2', 'n', 'd'};
    enqueue(&e.p, "log1", "test.log", first, sizeof first);
    CU_ASSERT_STRING_EQUAL(tc_s(finish(&e.p, "log1")->state), "succeeded");
    CU_ASSERT(file_wait(log, "task log1 (test.log): first", 2000));
    CU_ASSERT(file_count(log, "task log1 (test.log): 100% done") == 1);
    CU_ASSERT_FATAL(rename(log, rotated) == 0);
    kill(e.worker.pid, SIGHUP);
    CU_ASSERT(file_wait(log, "SIGHUP: log reopened", 2000));
    enqueue(&e.p, "log2", "test.log", second, sizeof second);
    CU_ASSERT_STRING_EQUAL(tc_s(finish(&e.p, "log2")->state), "succeeded");
    CU_ASSERT(file_wait(log, "task log2 (test.log): 2nd", 2000));
    CU_ASSERT(file_count(rotated, "2nd") == 0);
    env_stop(&e);
}

int main(void) {
    static const th_test tests[] = {
        {"built-in tasks end to end", test_builtin_tasks_end_to_end},
        {"plugin tasks in both pools", test_plugin_tasks_in_both_pools},
        {"solo pool", test_solo_pool},
        {"example word-count plugin", test_example_wordcount_plugin},
        {"embedded worker runs its own tasks", test_embedded_worker_runs_its_own_tasks},
        {"time limits from the task and from flags", test_time_limits_from_task_and_flags},
        {"cancel of running tasks", test_cancel_of_running_tasks},
        {"flags, --help and start-up errors", test_flags_help_and_start_up_errors},
        {"log file and SIGHUP reopen", test_log_file_and_sighup_reopen},
        {NULL, NULL}};
    return th_run("worker", tests);
}
