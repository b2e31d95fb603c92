/* Every broker limit has a default, a flag and a test: connections, output buffer, idle
 * timeout, hello deadline, Redis commands in flight, frame size, busy polling. */
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "common.h"

static void test_connection_limit_pauses_accepting(void) {
    env e;
    char *flags[] = {"--max-connections", "2", NULL};
    CU_ASSERT_FATAL(env_start(&e, flags));
    tc a, b, c;
    CU_ASSERT_FATAL(tc_connect(&a, e.broker.port, "producer"));
    CU_ASSERT_FATAL(tc_connect(&b, e.broker.port, "producer"));
    /* The third TCP connect completes in the kernel backlog, but no hello is answered. */
    CU_ASSERT_FALSE(tc_connect(&c, e.broker.port, "producer"));
    tc_close(&c);
    tc_close(&a);
    th_sleep_ms(100);
    CU_ASSERT_TRUE(tc_connect(&c, e.broker.port, "producer"));
    tc_close(&b), tc_close(&c);
    env_stop(&e);
}

static void test_flooding_client_is_paused_and_others_unaffected(void) {
    env e;
    char *flags[] = {"--output-soft", "2048", "--output-hard", "1048576", NULL};
    CU_ASSERT_FATAL(env_start(&e, flags));
    tc flood, other;
    CU_ASSERT_FATAL(tc_connect(&flood, e.broker.port, "producer"));
    CU_ASSERT_FATAL(tc_connect(&other, e.broker.port, "producer"));
    /* 20000 pings, never reading a reply. */
    cel_buf b;
    cel_buf_init(&b);
    for (int i = 0; i < 20000; i++) {
        cel_msg m;
        tc_msg(&m, CEL_OP_PING);
        m.seq = (uint64_t)i + 1000, cel_msg_set(&m, CEL_F_SEQ);
        cel_msg_encode(&b, &m, UINT32_MAX, NULL);
    }
    int flags_nb = fcntl(flood.fd, F_GETFL);
    fcntl(flood.fd, F_SETFL, flags_nb | O_NONBLOCK);
    size_t sent = 0;
    long long end = th_now_ms() + 2000;
    while (sent < b.len && th_now_ms() < end) {
        ssize_t n = send(flood.fd, b.data + sent, b.len - sent, MSG_NOSIGNAL);
        if (n > 0)
            sent += (size_t)n;
        else
            th_sleep_ms(5);
    }
    fcntl(flood.fd, F_SETFL, flags_nb);
    /* Meanwhile another client is served normally. */
    const cel_msg *r = tc_enqueue_sync(&other, "q", "t", "not-starved");
    CU_ASSERT_FATAL(r && r->op == CEL_OP_OK);
    /* Once the flooder reads, every reply it is owed arrives, in order. */
    if (sent < b.len) tc_send_raw(&flood, b.data + sent, b.len - sent);
    int got = 0;
    for (const cel_msg *m; got < 20000 && (m = tc_recv(&flood, 5000));)
        got += m->op == CEL_OP_OK && m->seq == (uint64_t)got + 1000;
    CU_ASSERT_EQUAL(got, 20000);
    cel_buf_free(&b);
    tc_close(&flood), tc_close(&other);
    env_stop(&e);
}

static void test_idle_and_hello_timeouts_close_connections(void) {
    env e;
    char *flags[] = {"--idle-timeout", "1", "--hello-timeout-ms", "300", NULL};
    CU_ASSERT_FATAL(env_start(&e, flags));
    tc silent, idle;
    CU_ASSERT_FATAL(tc_connect(&silent, e.broker.port, NULL));
    CU_ASSERT_TRUE(tc_wait_closed(&silent, 2000)); /* no hello within 300 ms */
    CU_ASSERT_FATAL(tc_connect(&idle, e.broker.port, "producer"));
    long long start = th_now_ms();
    CU_ASSERT_TRUE(tc_wait_closed(&idle, 5000));
    CU_ASSERT(th_now_ms() - start >= 900);
    tc_close(&silent), tc_close(&idle);
    env_stop(&e);
}

static void test_redis_inflight_limit_answers_busy(void) {
    env e;
    char *flags[] = {"--max-redis-inflight", "1", NULL};
    CU_ASSERT_FATAL(env_start(&e, flags));
    tc t;
    CU_ASSERT_FATAL(tc_connect(&t, e.broker.port, "producer"));
    /* All 200 in one write, so the broker reads them together: the first takes the one Redis
     * slot (NOT_FOUND), the ones read with it get BUSY whatever the machine's speed. */
    cel_buf all;
    cel_buf_init(&all);
    for (int i = 0; i < 200; i++) {
        cel_msg m;
        tc_msg(&m, CEL_OP_STATUS);
        m.seq = ++t.seq, cel_msg_set(&m, CEL_F_SEQ);
        m.id = cel_str_c("x"), cel_msg_set(&m, CEL_F_ID);
        CU_ASSERT_FATAL(cel_msg_encode(&all, &m, UINT32_MAX, NULL) == CEL_OK);
    }
    tc_send_raw(&t, all.data, all.len);
    cel_buf_free(&all);
    int busy = 0, notfound = 0;
    for (int i = 0; i < 200; i++) {
        const cel_msg *r = tc_recv(&t, 5000);
        if (!r) break;
        busy += r->op == CEL_OP_ERROR && !strcmp(tc_s(r->code), "BUSY");
        notfound += r->op == CEL_OP_ERROR && !strcmp(tc_s(r->code), "NOT_FOUND");
    }
    CU_ASSERT(busy > 0);
    CU_ASSERT(notfound > 0);
    CU_ASSERT_EQUAL(busy + notfound, 200);
    tc_close(&t);
    env_stop(&e);
}

static void test_frame_limit_flag_is_enforced(void) {
    env e;
    char *flags[] = {"--max-frame", "1024", NULL};
    CU_ASSERT_FATAL(env_start(&e, flags));
    tc t;
    CU_ASSERT_FATAL(tc_connect(&t, e.broker.port, "producer"));
    cel_msg m;
    tc_msg(&m, CEL_OP_ENQUEUE);
    m.queue = cel_str_c("q"), m.task = cel_str_c("t");
    static char big[2000];
    memset(big, 'x', sizeof big - 1);
    msgpack_object arg = {.type = MSGPACK_OBJECT_STR, .via.str = {sizeof big - 1, big}};
    m.args.obj = &arg;
    cel_msg_set(&m, CEL_F_QUEUE), cel_msg_set(&m, CEL_F_TASK), cel_msg_set(&m, CEL_F_ARGS);
    tc_send(&t, &m);
    const cel_msg *r = tc_recv(&t, 3000);
    CU_ASSERT_FATAL(r && r->op == CEL_OP_ERROR);
    CU_ASSERT_STRING_EQUAL(tc_s(r->code), "TOO_BIG");
    CU_ASSERT_TRUE(tc_wait_closed(&t, 3000));
    tc_close(&t);
    env_stop(&e);
}

/* CPU time (user + system, clock ticks) a process has used so far, from /proc. */
static long long cpu_ticks(pid_t pid) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    unsigned long long ut = 0, st = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (long long)(ut + st);
}

/* --busy-poll-us: while requests keep coming the loop polls instead of sleeping (CPU busy even
 * though each request is tiny), tasks flow as without it, and once input stops the loop sleeps
 * again (an idle broker burns no CPU). */
static void test_busy_poll_spins_only_after_input(void) {
    env e;
    tc p, w;
    /* No reaper run in the test's time: its Redis reply would open the window too. */
    char *flags[] = {"--busy-poll-us", "100000", "--reaper-ms", "600000", NULL};
    env_start_pw(&e, flags, &p, &w);
    const cel_msg *r = tc_consume(&w, "q", 1);
    CU_ASSERT_FATAL(r && r->op == CEL_OP_OK);
    for (int i = 0; i < 20; i++) {
        char id[16];
        snprintf(id, sizeof id, "bp-%d", i);
        r = tc_enqueue_sync(&p, "q", "celeriac.noop", id);
        CU_ASSERT_FATAL(r && r->op == CEL_OP_OK);
        const cel_msg *t = tc_recv(&w, 3000);
        CU_ASSERT_FATAL(t && t->op == CEL_OP_TASK);
        cel_msg task = *t;
        r = tc_ack(&w, &task);
        CU_ASSERT_FATAL(r && r->op == CEL_OP_OK);
    }
    /* A stats request every 50 ms for a second: each keeps the 100 ms window open. */
    long long t0 = cpu_ticks(e.broker.pid);
    for (int i = 0; i < 20; i++) {
        CU_ASSERT(tc_stat(&p, "enqueued") == 20);
        th_sleep_ms(50);
    }
    long long busy = cpu_ticks(e.broker.pid) - t0;
    tc_close(&w); /* an idle worker's queue is polled in Redis every --poll-ms: input too */
    th_sleep_ms(300);
    t0 = cpu_ticks(e.broker.pid);
    th_sleep_ms(1000);
    long long idle = cpu_ticks(e.broker.pid) - t0;
    CU_ASSERT(busy > 50); /* of ~100 ticks in that second */
    CU_ASSERT(idle >= 0 && idle < 25);
    if (busy <= 50 || idle >= 25) fprintf(stderr, "\nbusy %lld idle %lld ticks\n", busy, idle);
    tc_close(&p);
    env_stop(&e);
}

static void test_bad_flags_are_refused_with_a_message(void) {
    char *argv[] = {(char *)th_bin("server/celeriacd"), "--port", "99999", NULL};
    pid_t pid = th_spawn(argv, "/dev/null");
    int st = th_stop(pid, 0, 5000);
    CU_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 2);
    char *spin[][3] = {{"--busy-poll-us", "100001", NULL}, {"--busy-poll-us", "-1", NULL}};
    for (int i = 0; i < 2; i++) {
        char *bad[] = {(char *)th_bin("server/celeriacd"), spin[i][0], spin[i][1], NULL};
        st = th_stop(th_spawn(bad, "/dev/null"), 0, 5000);
        CU_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 2);
    }
    char *help[] = {(char *)th_bin("server/celeriacd"), "--help", NULL};
    pid = th_spawn(help, "/dev/null");
    st = th_stop(pid, 0, 5000);
    CU_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* --redis-socket: the broker reaches Redis over a unix socket (its TCP port points nowhere). */
static void test_redis_over_a_unix_socket(void) {
    char sock[64], conf[128];
    snprintf(sock, sizeof sock, "/tmp/celeriac-test-%d.sock", (int)getpid());
    snprintf(conf, sizeof conf, "unixsocket %s\nunixsocketperm 700", sock);
    th_redis r;
    CU_ASSERT_FATAL(th_redis_start(&r, conf));
    th_proc b;
    char *flags[] = {"--redis-socket", sock, "--redis-port", "1", NULL};
    CU_ASSERT_FATAL(th_broker_start(&b, &r, flags) && env_wait_ready(b.port));
    tc t;
    CU_ASSERT_FATAL(tc_connect(&t, b.port, "producer"));
    const cel_msg *r1 = tc_enqueue_sync(&t, "q", "celeriac.noop", "via-socket");
    CU_ASSERT_FATAL(r1 && r1->op == CEL_OP_OK);
    r1 = tc_status(&t, "via-socket");
    CU_ASSERT(r1 && r1->op == CEL_OP_TASK_INFO && !strcmp(tc_s(r1->state), "queued"));
    tc_close(&t);
    th_proc_stop(&b, SIGTERM);
    th_redis_stop(&r);
    unlink(sock);
}

static void test_config_file_sets_flags(void) {
    th_redis r;
    CU_ASSERT_FATAL(th_redis_start(&r, NULL));
    char path[300];
    snprintf(path, sizeof path, "%s/celeriacd.conf", r.dir);
    FILE *f = fopen(path, "w");
    CU_ASSERT_FATAL(f != NULL);
    fprintf(f, "# comments and blank lines are fine\n\nmax-frame 512\nname from-config\n");
    fclose(f);
    th_proc b;
    char *flags[] = {"--config", path, NULL};
    CU_ASSERT_FATAL(th_broker_start(&b, &r, flags));
    tc t;
    CU_ASSERT_FATAL(tc_connect(&t, b.port, NULL));
    cel_msg m;
    tc_msg(&m, CEL_OP_HELLO);
    m.role = cel_str_c("producer"), m.version = 1;
    cel_msg_set(&m, CEL_F_ROLE), cel_msg_set(&m, CEL_F_VERSION);
    const cel_msg *w = tc_reply(&t, tc_send(&t, &m), 5000);
    CU_ASSERT_FATAL(w && w->op == CEL_OP_WELCOME);
    CU_ASSERT_EQUAL(w->max_frame, 512);
    CU_ASSERT_STRING_EQUAL(tc_s(w->server), "from-config");
    tc_close(&t);
    th_proc_stop(&b, SIGTERM);
    f = fopen(path, "w");
    fprintf(f, "no-such-option 1\n");
    fclose(f);
    char *argv[] = {(char *)th_bin("server/celeriacd"), "--config", path, NULL};
    int st = th_stop(th_spawn(argv, "/dev/null"), 0, 5000);
    CU_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 2);
    th_redis_stop(&r);
}

int main(void) {
    static const th_test tests[] = {
        {"connection limit pauses accepting", test_connection_limit_pauses_accepting},
        {"flooding client is paused and others unaffected",
         test_flooding_client_is_paused_and_others_unaffected},
        {"idle and hello timeouts close connections",
         test_idle_and_hello_timeouts_close_connections},
        {"redis in-flight limit answers BUSY", test_redis_inflight_limit_answers_busy},
        {"frame limit flag is enforced", test_frame_limit_flag_is_enforced},
        {"busy poll spins only after input", test_busy_poll_spins_only_after_input},
        {"bad flags are refused with a message", test_bad_flags_are_refused_with_a_message},
        {"config file sets flags", test_config_file_sets_flags},
        {"redis over a unix socket", test_redis_over_a_unix_socket},
        {NULL, NULL}};
    return th_run("broker limits", tests);
}
