/* The text protocol over a real socket: every command, MONITOR while tasks flow, over-long
 * lines, telnet IAC bytes, NUL bytes, and a client leaving mid-MONITOR. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"

typedef struct line_conn {
    int fd;
    char buf[1 << 16];
    size_t len;
} line_conn;

static bool lc_open(line_conn *l, int port) {
    l->len = 0;
    l->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    return connect(l->fd, (struct sockaddr *)&a, sizeof a) == 0;
}

static void lc_send(line_conn *l, const void *p, size_t n) {
    CU_ASSERT(send(l->fd, p, n, MSG_NOSIGNAL) == (ssize_t)n);
}

/* The next line without its CRLF, or NULL after timeout/EOF. */
static const char *lc_line(line_conn *l, int ms) {
    static char out[1 << 16];
    long long end = th_now_ms() + ms;
    for (;;) {
        char *nl = memchr(l->buf, '\n', l->len);
        if (nl) {
            size_t n = (size_t)(nl - l->buf);
            memcpy(out, l->buf, n);
            out[n && out[n - 1] == '\r' ? n - 1 : n] = 0;
            memmove(l->buf, nl + 1, l->len - n - 1);
            l->len -= n + 1;
            return out;
        }
        long long left = end - th_now_ms();
        struct pollfd p = {l->fd, POLLIN, 0};
        if (left <= 0 || poll(&p, 1, (int)left) <= 0) return NULL;
        ssize_t r = recv(l->fd, l->buf + l->len, sizeof l->buf - l->len, 0);
        if (r <= 0) return NULL;
        l->len += (size_t)r;
    }
}

static const char *cmd(line_conn *l, const char *line) {
    lc_send(l, line, strlen(line));
    lc_send(l, "\r\n", 2);
    return lc_line(l, 5000);
}

#define ASSERT_PREFIX(s, p)                                                                        \
    do {                                                                                           \
        const char *got_ = (s);                                                                    \
        bool ok_ = got_ && strncmp(got_, (p), strlen(p)) == 0;                                     \
        CU_ASSERT(ok_);                                                                            \
        if (!ok_) fprintf(stderr, "\n    want %s\n    got  %s\n", (p), got_ ? got_ : "(none)");    \
    } while (0)
#define ASSERT_CONTAINS(s, p)                                                                      \
    do {                                                                                           \
        const char *got_ = (s);                                                                    \
        CU_ASSERT(got_ &&strstr(got_, (p)) != NULL);                                               \
    } while (0)

static void test_every_command_in_a_scripted_session(void) {
    env e;
    CU_ASSERT_FATAL(env_start(&e, NULL));
    line_conn l;
    CU_ASSERT_FATAL(lc_open(&l, e.broker.port));
    ASSERT_PREFIX(cmd(&l, "PING"), "OK PONG");
    ASSERT_PREFIX(cmd(&l, "HELP"), "OK commands");
    int lines = 0;
    for (const char *s; (s = lc_line(&l, 2000)) && strcmp(s, ".") != 0;) lines++;
    CU_ASSERT(lines >= 18);
    ASSERT_PREFIX(cmd(&l, "ENQUEUE tq celeriac.echo {\"n\": [1, 2]} id=x1 priority=7"),
                  "OK {\"id\":\"x1\",\"state\":\"queued\",\"existed\":false}");
    ASSERT_PREFIX(cmd(&l, "ENQUEUE tq celeriac.noop delay_ms=60000 id=x2"),
                  "OK {\"id\":\"x2\",\"state\":\"scheduled\"");
    const char *s = cmd(&l, "TASK x1");
    ASSERT_PREFIX(s, "OK {\"id\":\"x1\",\"state\":\"queued\",\"queue\":\"tq\"");
    ASSERT_CONTAINS(s, "\"priority\":7");
    s = cmd(&l, "QUEUES");
    ASSERT_CONTAINS(s, "\"tq\":{\"ready\":1,\"active\":0,\"delayed\":1,\"dead\":0,\"paused\":0}");
    s = cmd(&l, "STATS");
    ASSERT_CONTAINS(s, "\"enqueued\":2");
    ASSERT_CONTAINS(s, "\"redis_latency_us\"");
    ASSERT_PREFIX(cmd(&l, "PEEK tq queued"), "OK {\"count\":1,\"cursor\":0,\"ids\":[\"x1\"]}");
    ASSERT_PREFIX(cmd(&l, "PEEK tq scheduled 0 10"),
                  "OK {\"count\":1,\"cursor\":0,\"ids\":[\"x2\"]}");
    ASSERT_PREFIX(cmd(&l, "WORKERS"), "OK []");
    ASSERT_PREFIX(cmd(&l, "PAUSE tq"), "OK");
    ASSERT_CONTAINS(cmd(&l, "QUEUES"), "\"paused\":1");
    ASSERT_PREFIX(cmd(&l, "RESUME tq"), "OK");
    ASSERT_PREFIX(cmd(&l, "CANCEL x2"), "OK {\"id\":\"x2\",\"state\":\"cancelled\"}");
    ASSERT_PREFIX(cmd(&l, "WAIT x2 100"), "OK {\"id\":\"x2\",\"state\":\"cancelled\"");
    ASSERT_PREFIX(cmd(&l, "WAIT x1 100"), "ERR TIMEOUT");
    ASSERT_PREFIX(cmd(&l, "DEAD tq"), "OK {\"count\":0}");
    ASSERT_PREFIX(cmd(&l, "DEAD-REQUEUE tq ALL"), "OK {\"count\":0}");
    ASSERT_PREFIX(cmd(&l, "DEAD-PURGE tq"), "ERR BAD_FIELD destructive");
    ASSERT_PREFIX(cmd(&l, "DEAD-PURGE tq CONFIRM"), "OK {\"count\":0}");
    ASSERT_PREFIX(cmd(&l, "PURGE tq"), "ERR BAD_FIELD destructive");
    ASSERT_PREFIX(cmd(&l, "PURGE tq CONFIRM"), "OK {\"count\":1}");
    ASSERT_PREFIX(cmd(&l, "TASK x1"), "ERR NOT_FOUND");
    /* Bad input: typed errors, nothing half-applied, connection still usable. */
    ASSERT_PREFIX(cmd(&l, "FROB"), "ERR UNKNOWN_OP");
    ASSERT_PREFIX(cmd(&l, "TASK"), "ERR BAD_FIELD usage: TASK ID");
    ASSERT_PREFIX(cmd(&l, "ENQUEUE tq t {\"unterminated\": "), "ERR BAD_FIELD bad JSON args");
    ASSERT_PREFIX(cmd(&l, "ENQUEUE {tq} t"), "ERR BAD_FIELD field 'queue' must be");
    ASSERT_PREFIX(cmd(&l, "ENQUEUE tq t priority=high"), "ERR BAD_FIELD options are key=value");
    ASSERT_PREFIX(cmd(&l, "ENQUEUE tq t priority=999"), "ERR BAD_FIELD");
    ASSERT_PREFIX(cmd(&l, "PEEK tq nowhere"), "ERR BAD_FIELD state must be");
    ASSERT_PREFIX(cmd(&l, "QUEUES"), "OK {\"tq\":{\"ready\":0,");
    ASSERT_PREFIX(cmd(&l, "QUIT"), "OK bye");
    CU_ASSERT_PTR_NULL(lc_line(&l, 2000));
    close(l.fd);
    env_stop(&e);
}

static void test_long_lines_iac_and_nul_bytes_are_refused_cleanly(void) {
    env e;
    CU_ASSERT_FATAL(env_start(&e, NULL));
    line_conn l;
    CU_ASSERT_FATAL(lc_open(&l, e.broker.port));
    static char big[10000];
    memset(big, 'A', sizeof big);
    lc_send(&l, big, sizeof big);
    lc_send(&l, big, sizeof big);
    lc_send(&l, "\r\n", 2);
    ASSERT_PREFIX(lc_line(&l, 3000), "ERR TOO_BIG");
    ASSERT_PREFIX(cmd(&l, "PING"), "OK PONG"); /* still usable */
    const char iac[] = "\xff\xfb\x01PI\xff\xfd\x03NG\r\n";
    lc_send(&l, iac, sizeof iac - 1);
    ASSERT_PREFIX(lc_line(&l, 3000), "OK PONG");
    const char nul[] = "PI\0NG\r\n";
    lc_send(&l, nul, sizeof nul - 1);
    ASSERT_PREFIX(lc_line(&l, 3000), "ERR PROTOCOL NUL");
    ASSERT_PREFIX(cmd(&l, "PING"), "OK PONG");
    close(l.fd);
    env_stop(&e);
}

static void test_monitor_streams_events_while_tasks_flow(void) {
    env e;
    CU_ASSERT_FATAL(env_start(&e, NULL));
    line_conn mon, quitter;
    CU_ASSERT_FATAL(lc_open(&mon, e.broker.port));
    CU_ASSERT_FATAL(lc_open(&quitter, e.broker.port));
    ASSERT_PREFIX(cmd(&mon, "MONITOR mq"), "OK monitoring");
    ASSERT_PREFIX(cmd(&quitter, "MONITOR"), "OK monitoring");
    close(quitter.fd); /* leaves mid-MONITOR: the broker must carry on */
    tc p, w;
    CU_ASSERT_FATAL(tc_connect(&p, e.broker.port, "producer"));
    CU_ASSERT_FATAL(tc_connect(&w, e.broker.port, "worker"));
    tc_enqueue_sync(&p, "other", "t", "not-shown");
    tc_enqueue_sync(&p, "mq", "t", "m1");
    tc_consume(&w, "mq", 1);
    const cel_msg *t = tc_recv(&w, 3000);
    CU_ASSERT_FATAL(t && t->op == CEL_OP_TASK);
    cel_msg task = *t;
    task.id = cel_str_c("m1");
    tc_ack(&w, &task);
    ASSERT_PREFIX(lc_line(&mon, 3000), "EVENT enqueued mq m1 queued");
    ASSERT_PREFIX(lc_line(&mon, 3000), "EVENT started mq m1 attempt=1");
    ASSERT_PREFIX(lc_line(&mon, 3000), "EVENT succeeded mq m1");
    lc_send(&mon, "\r\n", 2);
    ASSERT_PREFIX(lc_line(&mon, 3000), "OK monitor off");
    tc_enqueue_sync(&p, "mq", "t", "m2"); /* after the stop: no event for it */
    ASSERT_PREFIX(cmd(&mon, "PING"), "OK PONG");
    close(mon.fd);
    tc_close(&p), tc_close(&w);
    env_stop(&e);
}

/* WORKERS shows each worker's credits and the tasks leased to it (running or prefetched: the
 * broker cannot tell them apart). */
static void test_workers_lists_credits_and_leased_tasks(void) {
    env e;
    tc p, w;
    env_start_pw(&e, NULL, &p, &w);
    tc_consume(&w, "wq", 3);
    tc_enqueue_sync(&p, "wq", "t", "w1");
    tc_enqueue_sync(&p, "wq", "t", "w2");
    CU_ASSERT_PTR_NOT_NULL(tc_recv(&w, 3000));
    CU_ASSERT_PTR_NOT_NULL(tc_recv(&w, 3000));
    line_conn l;
    CU_ASSERT_FATAL(lc_open(&l, e.broker.port));
    const char *r = cmd(&l, "WORKERS");
    ASSERT_CONTAINS(r, "\"queues\":[\"wq\"]");
    ASSERT_CONTAINS(r, "\"credits\":3");
    ASSERT_CONTAINS(r, "\"leased\":2");
    close(l.fd);
    env_stop_pw(&e, &p, &w);
}

static void test_text_protocol_can_be_disabled(void) {
    env e;
    char *flags[] = {"--text", "off", NULL};
    CU_ASSERT_FATAL(env_start(&e, flags));
    line_conn l;
    CU_ASSERT_FATAL(lc_open(&l, e.broker.port));
    ASSERT_PREFIX(cmd(&l, "PING"), "ERR PROTOCOL text protocol disabled");
    CU_ASSERT_PTR_NULL(lc_line(&l, 2000));
    close(l.fd);
    env_stop(&e);
}

static long long proc_cpu_ticks(pid_t pid) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f) fclose(f);
    buf[n] = 0;
    const char *p = strrchr(buf, ')');
    long long ut = 0, st = 0;
    /* Fields after the command: state is the 3rd, utime the 14th, stime the 15th. */
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lld %lld", &ut, &st) != 2)
        return -1;
    return ut + st;
}

/* Lines sent while a WAIT is pending are held, and past the input bound the broker stops
 * reading (it does not spin on the readable socket) until the reply lets them run: every line
 * is then answered, in order. */
static void test_lines_behind_a_pending_wait_are_held_then_answered(void) {
    enum { PINGS = 12000 }; /* 72 KB: more than the broker holds unhandled (64 KiB here) */
    char *small_frames[] = {"--max-frame", "1024", NULL};
    env e;
    CU_ASSERT_FATAL(env_start(&e, small_frames));
    line_conn l;
    CU_ASSERT_FATAL(lc_open(&l, e.broker.port));
    ASSERT_PREFIX(cmd(&l, "ENQUEUE held t id=h1"), "OK");
    static char burst[PINGS * 6 + 32];
    size_t len = (size_t)snprintf(burst, sizeof burst, "WAIT h1 1000\r\n");
    for (int i = 0; i < PINGS; i++) memcpy(burst + len, "PING\r\n", 6), len += 6;
    long long cpu0 = proc_cpu_ticks(e.broker.pid);
    lc_send(&l, burst, len);
    ASSERT_PREFIX(lc_line(&l, 5000), "ERR TIMEOUT");
    long long cpu1 = proc_cpu_ticks(e.broker.pid);
    int pongs = 0;
    for (const char *s; pongs < PINGS && (s = lc_line(&l, 5000)) && !strcmp(s, "OK PONG");) pongs++;
    CU_ASSERT_EQUAL(pongs, PINGS);
    /* Waiting out the second took the broker well under half a second of CPU. */
    CU_ASSERT(cpu0 >= 0 && cpu1 - cpu0 < 50);
    close(l.fd);
    env_stop(&e);
}

/* A text line may be longer than --max-frame (which bounds binary frames): it is still read
 * whole and answered, not left waiting for room that never comes. */
static void test_a_line_longer_than_max_frame_is_answered(void) {
    char *tiny_frames[] = {"--max-frame", "64", NULL};
    env e;
    CU_ASSERT_FATAL(env_start(&e, tiny_frames));
    line_conn l;
    CU_ASSERT_FATAL(lc_open(&l, e.broker.port));
    char line[1200];
    memset(line, 'x', sizeof line - 1);
    memcpy(line, "FROB ", 5);
    line[sizeof line - 1] = 0;
    ASSERT_PREFIX(cmd(&l, line), "ERR UNKNOWN_OP");
    ASSERT_PREFIX(cmd(&l, "PING"), "OK PONG");
    close(l.fd);
    env_stop(&e);
}

int main(void) {
    static const th_test tests[] = {
        {"every command in a scripted session", test_every_command_in_a_scripted_session},
        {"long lines, IAC and NUL bytes are refused cleanly",
         test_long_lines_iac_and_nul_bytes_are_refused_cleanly},
        {"MONITOR streams events while tasks flow", test_monitor_streams_events_while_tasks_flow},
        {"WORKERS lists credits and leased tasks", test_workers_lists_credits_and_leased_tasks},
        {"text protocol can be disabled", test_text_protocol_can_be_disabled},
        {"a line longer than --max-frame is answered",
         test_a_line_longer_than_max_frame_is_answered},
        {"lines behind a pending WAIT are held, then answered",
         test_lines_behind_a_pending_wait_are_held_then_answered},
        {NULL, NULL}};
    return th_run("text protocol", tests);
}
