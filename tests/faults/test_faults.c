/* Fault injection with real processes: redis-server, celeriacd and celeriac-worker are killed,
 * frozen, slowed, cut off behind a proxy and flooded, while faults.record tasks flow; after each
 * scenario the checker (checker.h) asserts that no acknowledged task was lost, none was acked
 * twice, redeliveries stay within what was in flight on the victim, every refusal was typed,
 * and the broker's RSS and descriptors came back. Scenario numbers are those of
 * docs/reliability.md. Leases are 600 ms and the reaper runs every 50 ms, so every expiry path
 * runs in about a second. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "checker.h"
#include "harness.h"
#include "proxy.h"
#include "tclient.h"

#define LEASE_MS 600
static char *broker_flags[] = {"--lease-ms",         "600", "--reaper-ms", "50", "--poll-ms", "50",
                               "--redis-timeout-ms", "500", NULL};
/* Light workers: a thread pool, 4 tasks at once, 1 prefetched: at most 5 in flight each. */
#define WORKER_INFLIGHT 5
static char *worker_flags[] = {"--plugin",      FAULTS_PLUGIN, "--pool", "threads",
                               "--concurrency", "4",           NULL};

typedef struct fenv {
    th_redis redis;
    th_proc broker;
    th_proc workers[64];
    int nworkers;
    tc p; /* a producer, also used by the checker */
    char log[400];
} fenv;

static bool fenv_start_redis_conf(fenv *e, const char *redis_conf, char *const bflags[]) {
    memset(e, 0, sizeof *e);
    e->p.fd = -1;
    if (!th_redis_start(&e->redis, redis_conf)) return false;
    snprintf(e->log, sizeof e->log, "%s/deliveries.log", e->redis.dir);
    if (!th_broker_start(&e->broker, &e->redis, bflags ? bflags : broker_flags) ||
        !tc_wait_ready(e->broker.port, 10000))
        return false;
    return fc_connect(&e->p, e->broker.port, "producer");
}

static bool fenv_start(fenv *e) {
    return fenv_start_redis_conf(e, NULL, NULL);
}

static bool fenv_worker(fenv *e, int broker_port, char *const flags[]) {
    char name[16];
    snprintf(name, sizeof name, "w%d", e->nworkers);
    setenv("CELERIAC_FAULTS_WORKER", name, 1);
    return th_worker_start(&e->workers[e->nworkers++], broker_port, flags ? flags : worker_flags);
}

static void dump_log(const char *what, const char *path) {
    char cmd[500];
    fprintf(stderr, "\n---- last lines of the %s log %s\n", what, path);
    snprintf(cmd, sizeof cmd, "tail -20 %s >&2", path);
    if (system(cmd) != 0) fprintf(stderr, "(cannot read it)\n");
}

/* Stops everything; the broker must exit 0 on SIGTERM (under ASan: without leaks). */
static void fenv_stop(fenv *e) {
    fc_close(&e->p);
    for (int i = 0; i < e->nworkers; i++)
        if (e->workers[i].pid) th_proc_stop(&e->workers[i], SIGTERM);
    if (e->broker.pid) {
        int st = th_proc_stop(&e->broker, SIGTERM);
        CU_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
        if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) dump_log("broker", e->broker.log);
    }
    th_redis_stop(&e->redis);
}

static int log_lines(const char *path) {
    FILE *f = fopen(path, "r");
    int n = 0, ch;
    while (f && (ch = fgetc(f)) != EOF) n += ch == '\n';
    if (f) fclose(f);
    return n;
}

static bool wait_log_lines(const char *path, int n, int ms) {
    long long end = th_now_ms() + ms;
    while (log_lines(path) < n && th_now_ms() < end) th_sleep_ms(10);
    return log_lines(path) >= n;
}

static int file_count(const char *path, const char *needle) {
    FILE *f = fopen(path, "r");
    char line[4096];
    int n = 0;
    while (f && fgets(line, sizeof line, f)) n += strstr(line, needle) != NULL;
    if (f) fclose(f);
    return n;
}

static bool wait_fds(int pid, int lo, int hi, int ms);

/* Runs fn(arg) after ms on a detached thread: heals a partition, thaws a process. */
typedef struct later {
    int ms;
    void (*fn)(void *);
    void *arg;
} later;

static void *later_main(void *v) {
    later *l = v;
    th_sleep_ms(l->ms);
    l->fn(l->arg);
    free(l);
    return NULL;
}

static void run_later(int ms, void (*fn)(void *), void *arg) {
    later *l = malloc(sizeof *l);
    *l = (later){ms, fn, arg};
    pthread_t t;
    pthread_create(&t, NULL, later_main, l);
    pthread_detach(t);
}

static void heal(void *proxy) {
    fp_set(proxy, FP_PASS);
}

static void sigcont(void *pid) {
    kill((pid_t)(intptr_t)pid, SIGCONT);
}

/* ---- S1, S2: worker killed mid-task and after its side effect ---------------------------- */

static void test_s1_s2_worker_killed_mid_task_loses_nothing(void) {
    fenv e;
    CU_ASSERT_FATAL(fenv_start(&e));
    fc_run r;
    fc_init(&r, "s1", 400, e.log);
    CU_ASSERT_FATAL(fenv_worker(&e, e.broker.port, NULL));
    CU_ASSERT_FATAL(fenv_worker(&e, e.broker.port, NULL));
    /* 30 ms tasks: the line is written first, so a kill lands after the side effect. */
    CU_ASSERT_EQUAL(fc_enqueue(&r, &e.p, "default", "faults.record", 30, 0, r.n, 100), r.n);
    CU_ASSERT_FATAL(wait_log_lines(e.log, 80, 20000));
    long long t0 = th_now_ms();
    th_proc_stop(&e.workers[0], SIGKILL);
    fc_collect(&r, &e.p, 60000, fc_stat(&e.p, "acked"));
    printf("    S1/S2: all done %lld ms after the kill\n", th_now_ms() - t0);
    fc_assert(&r, WORKER_INFLIGHT);
    CU_ASSERT(r.c.redelivered >= 1); /* the victim had tasks running */
    fc_free(&r);
    fenv_stop(&e);
}

/* ---- S3: a worker cut off past its lease ------------------------------------------------- */

/* A protocol-level worker behind the proxy holds a task; the partition outlasts the lease; a
 * second worker gets it (attempt 2) and acks; the partition heals and the first worker's ack,
 * sent with the old fencing token, is refused with LEASE_EXPIRED. */
static void test_s3_cut_off_worker_late_ack_is_refused(void) {
    fenv e;
    CU_ASSERT_FATAL(fenv_start(&e));
    fp_proxy *px = fp_start(e.broker.port);
    CU_ASSERT_FATAL(px != NULL);
    fc_run r;
    fc_init(&r, "s3", 1, NULL);
    tc wa, wb;
    CU_ASSERT_FATAL(tc_connect(&wa, fp_port(px), "worker"));
    const cel_msg *m = tc_consume(&wa, "s3", 1);
    CU_ASSERT_FATAL(m && m->op == CEL_OP_OK);
    CU_ASSERT_EQUAL(fc_enqueue(&r, &e.p, "s3", "t", 0, 0, 1, 1), 1);
    m = tc_recv(&wa, 5000);
    CU_ASSERT_FATAL(m && m->op == CEL_OP_TASK);
    cel_msg first = *m;
    char id[64];
    snprintf(id, sizeof id, "%s", tc_s(m->id));
    first.id = cel_str_c(id);
    CU_ASSERT_EQUAL(first.attempt, 1);
    long long t0 = th_now_ms();
    fp_set(px, FP_HOLD);
    CU_ASSERT_FATAL(tc_connect(&wb, e.broker.port, "worker"));
    m = tc_consume(&wb, "s3", 1);
    CU_ASSERT_FATAL(m && m->op == CEL_OP_OK);
    m = tc_recv(&wb, 5000);
    CU_ASSERT_FATAL(m && m->op == CEL_OP_TASK);
    long long redelivered_ms = th_now_ms() - t0;
    CU_ASSERT_EQUAL(m->attempt, 2);
    CU_ASSERT_NOT_EQUAL(m->token, first.token);
    m = tc_ack(&wb, m);
    CU_ASSERT(m && m->op == CEL_OP_OK);
    fc_ack(&r, id, m && m->op == CEL_OP_OK);
    fp_set(px, FP_PASS);
    m = tc_ack(&wa, &first);
    CU_ASSERT_FATAL(m != NULL);
    CU_ASSERT_EQUAL(m->op, CEL_OP_ERROR);
    CU_ASSERT_STRING_EQUAL(tc_s(m->code), "LEASE_EXPIRED");
    fc_ack(&r, id, m->op == CEL_OP_OK);
    printf("\n    S3: redelivered after %lld ms of partition (lease %d ms); late ack: %s\n",
           redelivered_ms, LEASE_MS, tc_s(m->code));
    fc_collect(&r, &e.p, 5000, fc_stat(&e.p, "acked"));
    fc_assert(&r, 0);
    CU_ASSERT_EQUAL(r.c.succeeded, 1);
    tc_close(&wa), tc_close(&wb);
    fp_stop(px);
    fc_free(&r);
    fenv_stop(&e);
}

/* The same with celeriac-worker behind the proxy: it runs a 1.5 s task, is cut off for 2 s,
 * another worker runs the task again; when the partition heals, the first worker learns its
 * lease is gone, gives the task up, and its outcome is refused. One ack in all. */
static void test_s3_cut_off_worker_daemon_gives_up_its_task(void) {
    fenv e;
    CU_ASSERT_FATAL(fenv_start(&e));
    fp_proxy *px = fp_start(e.broker.port);
    CU_ASSERT_FATAL(px != NULL);
    fc_run r;
    fc_init(&r, "s3d", 1, e.log);
    char *one[] = {"--plugin", FAULTS_PLUGIN, "--pool", "threads", "--concurrency",
                   "1",        "--prefetch",  "0",      NULL};
    CU_ASSERT_FATAL(fenv_worker(&e, fp_port(px), one));
    CU_ASSERT_EQUAL(fc_enqueue(&r, &e.p, "default", "faults.record", 1500, 0, 1, 1), 1);
    CU_ASSERT_FATAL(wait_log_lines(e.log, 1, 10000));
    fp_set(px, FP_HOLD);
    CU_ASSERT_FATAL(fenv_worker(&e, e.broker.port, one));
    CU_ASSERT(wait_log_lines(e.log, 2, 5000));
    th_sleep_ms(500);
    fp_set(px, FP_PASS);
    fc_collect(&r, &e.p, 10000, -1);
    CU_ASSERT(file_count(e.workers[0].log, "LEASE_EXPIRED") >= 1);
    th_sleep_ms(300);
    long long acked = fc_stat(&e.p, "acked");
    printf("    S3 daemon: acked=%lld, victim log lines naming LEASE_EXPIRED=%d\n", acked,
           file_count(e.workers[0].log, "LEASE_EXPIRED"));
    CU_ASSERT_EQUAL(acked, 1);
    fc_assert(&r, 1);
    CU_ASSERT_EQUAL(r.c.redelivered, 1);
    fp_stop(px);
    fc_free(&r);
    fenv_stop(&e);
}

/* The worker↔broker connection reset mid-flow (proxy *cut* for 300 ms): the broker requeues
 * the cut worker's leases at once, the worker reconnects and resends the outcomes it holds;
 * fencing refuses those of tasks already redelivered. Still one ACK per task. */
static void test_s3_connection_reset_mid_flow_acks_once(void) {
    fenv e;
    CU_ASSERT_FATAL(fenv_start(&e));
    fp_proxy *px = fp_start(e.broker.port);
    CU_ASSERT_FATAL(px != NULL);
    fc_run r;
    fc_init(&r, "s3c", 300, e.log);
    CU_ASSERT_FATAL(fenv_worker(&e, fp_port(px), NULL));
    CU_ASSERT_FATAL(fenv_worker(&e, e.broker.port, NULL));
    CU_ASSERT_EQUAL(fc_enqueue(&r, &e.p, "default", "faults.record", 40, 0, r.n, 100), r.n);
    CU_ASSERT_FATAL(wait_log_lines(e.log, 60, 20000));
    for (int k = 0; k < 2; k++) {
        fp_set(px, FP_CUT);
        th_sleep_ms(300);
        fp_set(px, FP_PASS);
        th_sleep_ms(700);
    }
    fc_collect(&r, &e.p, 60000, fc_stat(&e.p, "acked"));
    int resent = file_count(e.workers[0].log, "outcomes to resend");
    printf("    S3 reset: cut twice; the cut worker logged %d reconnects\n", resent);
    fc_assert(&r, 2 * WORKER_INFLIGHT);
    fp_stop(px);
    fc_free(&r);
    fenv_stop(&e);
}

/* ---- S4 + S20: broker killed under load with 50 workers; then Redis killed ----------------- */

static int wait_connections(tc *p, int port, int want, int ms) {
    long long end = th_now_ms() + ms;
    long long n = -1;
    while (th_now_ms() < end) {
        if (p->fd < 0) fc_connect(p, port, "producer");
        n = p->fd >= 0 ? fc_stat(p, "connections") : -1;
        if (n < 0) fc_close(p);
        if (n >= want) break;
        th_sleep_ms(20);
    }
    return (int)n;
}

/* Milliseconds of the day of the last line of path containing needle ("...T21:15:58.900Z"),
 * -1 if none. */
static long long last_stamp_ms(const char *path, const char *needle) {
    FILE *f = fopen(path, "r");
    char line[4096];
    long long ms = -1;
    int h, m, sec, milli;
    while (f && fgets(line, sizeof line, f)) {
        char *t = strchr(line, 'T');
        if (strstr(line, needle) && t && sscanf(t, "T%d:%d:%d.%dZ", &h, &m, &sec, &milli) == 4)
            ms = ((h * 60LL + m) * 60 + sec) * 1000 + milli;
    }
    if (f) fclose(f);
    return ms;
}

static int cmp_ll(const void *a, const void *b) {
    long long x = *(const long long *)a, y = *(const long long *)b;
    return x < y ? -1 : x > y;
}

static void test_s4_s20_broker_and_redis_killed_with_50_workers(void) {
    fenv e;
    CU_ASSERT_FATAL(fenv_start(&e));
    enum { W = 50 };
    char *light[] = {"--plugin", FAULTS_PLUGIN, "--pool", "threads", "--concurrency", "1", NULL};
    fc_run r;
    fc_init(&r, "s4", 2000, e.log);
    long long t_start = th_now_ms();
    for (int i = 0; i < W; i++) CU_ASSERT_FATAL(fenv_worker(&e, e.broker.port, light));
    CU_ASSERT(wait_connections(&e.p, e.broker.port, W + 1, 30000) >= W + 1);
    printf("\n    S4/S20: %d workers started and connected in %lld ms\n", W, th_now_ms() - t_start);
    CU_ASSERT_EQUAL(fc_enqueue(&r, &e.p, "default", "faults.record", 20, 0, 1000, 200), 1000);
    CU_ASSERT_FATAL(wait_log_lines(e.log, 200, 20000));
    /* Enqueues in flight when the broker dies: some get no reply and are retried by id. */
    long long t0 = th_now_ms();
    th_proc_stop(&e.broker, SIGKILL);
    fc_enqueue(&r, &e.p, "default", "faults.record", 20, 1000, 1100, 200);
    fc_close(&e.p);
    CU_ASSERT_FATAL(th_broker_restart(&e.broker, &e.redis, broker_flags));
    int back = wait_connections(&e.p, e.broker.port, W + 1, 30000);
    long long reconnect_ms = th_now_ms() - t0;
    CU_ASSERT(back >= W + 1);
    CU_ASSERT_EQUAL(
        fc_enqueue_retry(&r, &e.p, e.broker.port, "default", "faults.record", 20, 30000), 0);
    printf("    S4/S20: %d workers back %lld ms after the broker kill\n", back - 1, reconnect_ms);
    /* How the reconnects spread: each worker logs when it is connected again. */
    long long at[W];
    int nat = 0;
    for (int i = 0; i < W; i++) {
        long long ms = last_stamp_ms(e.workers[i].log, "connected to a broker");
        if (ms >= 0) at[nat++] = ms;
    }
    qsort(at, (size_t)nat, sizeof *at, cmp_ll);
    if (nat == W) {
        static const int edges[] = {10, 20, 40, 80, 160, 320, 640};
        int buckets[8] = {0};
        for (int i = 0; i < nat; i++) {
            int b = 0;
            while (b < 7 && at[i] - at[0] >= edges[b]) b++;
            buckets[b]++;
        }
        printf("    S20: reconnects spread over %lld ms (median +%lld ms); from the first: "
               "<10 ms %d, <20 %d, <40 %d, <80 %d, <160 %d, <320 %d, <640 %d, more %d\n",
               at[nat - 1] - at[0], at[nat / 2] - at[0], buckets[0], buckets[1], buckets[2],
               buckets[3], buckets[4], buckets[5], buckets[6], buckets[7]);
        CU_ASSERT(buckets[0] < W); /* jittered: not all within the same 10 ms */
    }
    CU_ASSERT_EQUAL(nat, W);
    CU_ASSERT_EQUAL(fc_enqueue(&r, &e.p, "default", "faults.record", 20, 1100, 2000, 200), 900);
    /* Now Redis: the broker reconnects alone, the workers stay connected. */
    CU_ASSERT_FATAL(wait_log_lines(e.log, 1300, 30000));
    th_redis_kill(&e.redis);
    fc_run r2;
    fc_init(&r2, "s20", 500, NULL);
    snprintf(r2.log, sizeof r2.log, "%s", e.log); /* same log, other ids */
    fc_enqueue(&r2, &e.p, "default", "faults.record", 20, 0, 100, 100);
    CU_ASSERT_FATAL(th_redis_restart(&e.redis));
    CU_ASSERT_EQUAL(
        fc_enqueue_retry(&r2, &e.p, e.broker.port, "default", "faults.record", 20, 30000), 0);
    CU_ASSERT_EQUAL(fc_enqueue(&r2, &e.p, "default", "faults.record", 20, 100, 500, 200), 400);
    fc_collect(&r, &e.p, 90000, -1);
    fc_collect(&r2, &e.p, 90000, -1);
    fc_assert(&r, 2 * W);  /* a broker kill: every worker's running + prefetched task */
    fc_assert(&r2, 2 * W); /* a Redis kill: the same bound */
    CU_ASSERT_EQUAL(wait_connections(&e.p, e.broker.port, W + 1, 5000), W + 1);
    fc_free(&r), fc_free(&r2);
    fenv_stop(&e);
}

/* ---- S5: Redis kill -9 with appendfsync always and everysec ------------------------------- */

static void redis_crash_run(const char *mode) {
    char conf[64], name[32];
    snprintf(conf, sizeof conf, "appendfsync %s", mode);
    snprintf(name, sizeof name, "s5%s", mode);
    fenv e;
    CU_ASSERT_FATAL(fenv_start_redis_conf(&e, conf, NULL));
    fc_run r;
    fc_init(&r, name, 1000, e.log);
    CU_ASSERT_FATAL(fenv_worker(&e, e.broker.port, NULL));
    CU_ASSERT_FATAL(fenv_worker(&e, e.broker.port, NULL));
    CU_ASSERT_EQUAL(fc_enqueue(&r, &e.p, "default", "faults.record", 20, 0, 500, 100), 500);
    wait_log_lines(e.log, 100, 10000);
    long long t0 = th_now_ms();
    th_redis_kill(&e.redis);
    int ok = fc_enqueue(&r, &e.p, "default", "faults.record", 2, 500, 600, 100);
    long long refused_ms = th_now_ms() - t0;
    CU_ASSERT_EQUAL(ok, 0);
    CU_ASSERT_FATAL(th_redis_restart(&e.redis));
    CU_ASSERT_EQUAL(fc_enqueue_retry(&r, &e.p, e.broker.port, "default", "faults.record", 2, 20000),
                    0);
    long long back_ms = th_now_ms() - t0;
    CU_ASSERT_EQUAL(fc_enqueue(&r, &e.p, "default", "faults.record", 2, 600, 1000, 100), 400);
    fc_collect(&r, &e.p, 60000, fc_stat(&e.p, "acked"));
    printf("    S5 %s: 100 enqueues refused in %lld ms while Redis was down; all acked %lld ms "
           "after the kill\n",
           mode, refused_ms, back_ms);
    fc_assert(&r, 2 * WORKER_INFLIGHT);
    CU_ASSERT(strstr(r.codes, "UNAVAILABLE") != NULL);
    fc_free(&r);
    fenv_stop(&e);
}

static void test_s5_redis_crash_appendfsync_always(void) {
    redis_crash_run("always");
}

static void test_s5_redis_crash_appendfsync_everysec(void) {
    redis_crash_run("everysec");
}

/* ---- S5b: RDB-only Redis is warned about ------------------------------------------------ */

static void test_s5b_rdb_only_redis_is_warned_about(void) {
    fenv e;
    CU_ASSERT_FATAL(fenv_start_redis_conf(&e, "appendonly no\nmaxmemory-policy allkeys-lru", NULL));
    th_sleep_ms(300);
    int aof = file_count(e.broker.log, "appendonly=no");
    int evict = file_count(e.broker.log, "maxmemory-policy is allkeys-lru");
    printf("\n    S5b: start-up warnings: appendonly %d, eviction policy %d\n", aof, evict);
    CU_ASSERT(aof == 1 && evict == 1);
    fenv_stop(&e);
}

/* ---- S15: handshake abuse ------------------------------------------------------------------ */

/* There is no client authentication in the protocol (the broker listens on loopback by
 * default); what exists is the handshake: a second hello is refused with STATE, a request
 * before hello is PROTOCOL and closes, an oversized first frame is TOO_BIG from its header. */
static void test_s15_handshake_abuse(void) {
    char *flags[] = {"--max-frame", "4096", NULL};
    fenv e;
    CU_ASSERT_FATAL(fenv_start_redis_conf(&e, NULL, flags));
    int fds0 = fc_fds(e.broker.pid);
    cel_msg h;
    tc_msg(&h, CEL_OP_HELLO);
    h.role = cel_str_c("producer"), h.version = CEL_PROTO_VERSION;
    cel_msg_set(&h, CEL_F_ROLE), cel_msg_set(&h, CEL_F_VERSION);
    const cel_msg *m = tc_reply(&e.p, tc_send(&e.p, &h), 3000);
    CU_ASSERT(m && m->op == CEL_OP_ERROR && cel_str_eq(m->code, "STATE"));
    m = tc_enqueue_sync(&e.p, "default", "t", "s15-after"); /* still usable */
    CU_ASSERT(m && m->op == CEL_OP_OK);
    int refused = 0;
    for (int i = 0; i < 50; i++) {
        tc t;
        CU_ASSERT_FATAL(tc_connect(&t, e.broker.port, NULL));
        uint8_t hdr[CEL_FRAME_HEADER];
        cel_frame_header_write(hdr, i % 2 ? 1u << 20 : 4097);
        tc_send_raw(&t, hdr, sizeof hdr);
        m = tc_recv(&t, 3000);
        refused += m && m->op == CEL_OP_ERROR && cel_str_eq(m->code, "TOO_BIG");
        CU_ASSERT(tc_wait_closed(&t, 3000));
        tc_close(&t);
    }
    CU_ASSERT_EQUAL(refused, 50);
    CU_ASSERT(wait_fds(e.broker.pid, fds0 - 1, fds0 + 1, 5000));
    printf("\n    S15: second hello -> STATE; %d/50 oversized first frames -> TOO_BIG and closed; "
           "fds %d -> %d\n",
           refused, fds0, fc_fds(e.broker.pid));
    fenv_stop(&e);
}

/* ---- S18: client retry after a lost reply ------------------------------------------------- */

/* Enqueues whose replies are never read (the client drops the connection right after
 * sending), retried by id on a new connection: each task is stored and run once. */
static void test_s18_retry_after_lost_reply_stores_once(void) {
    fenv e;
    CU_ASSERT_FATAL(fenv_start(&e));
    fc_run r;
    fc_init(&r, "s18", 200, e.log);
    tc lossy;
    CU_ASSERT_FATAL(tc_connect(&lossy, e.broker.port, "producer"));
    for (int i = 0; i < r.n; i++) {
        uint8_t args[1] = {0};
        cel_msg m;
        tc_msg(&m, CEL_OP_ENQUEUE);
        m.queue = cel_str_c("default"), m.task = cel_str_c("faults.record");
        m.id = cel_str_c(fc_id(&r, i)), m.args.bytes = args, m.args.len = 1;
        cel_msg_set(&m, CEL_F_QUEUE), cel_msg_set(&m, CEL_F_TASK), cel_msg_set(&m, CEL_F_ID);
        cel_msg_set(&m, CEL_F_ARGS);
        tc_send(&lossy, &m);
        r.enq[i] = FC_NO_REPLY, r.no_replies++;
    }
    /* The broker must have read the requests before the connection goes: closing a socket with
     * unread replies sends a reset, which may discard requests still in the broker's buffer. */
    for (int i = 0; i < 200 && fc_stat(&e.p, "enqueued") < r.n; i++) th_sleep_ms(25);
    tc_close(&lossy); /* replies lost */
    CU_ASSERT_EQUAL(fc_enqueue_retry(&r, &e.p, e.broker.port, "default", "faults.record", 0, 10000),
                    0);
    CU_ASSERT_FATAL(fenv_worker(&e, e.broker.port, NULL));
    fc_collect(&r, &e.p, 30000, fc_stat(&e.p, "acked"));
    fc_assert(&r, 0);
    CU_ASSERT_EQUAL(r.recovered_on_retry, r.n); /* every retry found the first attempt's task */
    CU_ASSERT_EQUAL(r.c.succeeded, r.n);
    fc_free(&r);
    fenv_stop(&e);
}

/* ---- S6: Redis answering LOADING ---------------------------------------------------------- */

static bool redis_ok(redisContext *c, const char *cmd) {
    redisReply *rep = redisCommand(c, cmd);
    bool ok = rep && rep->type != REDIS_REPLY_ERROR;
    if (rep) freeReplyObject(rep);
    return ok;
}

static long long redis_int(redisContext *c, const char *fmt, const char *arg) {
    redisReply *rep = redisCommand(c, fmt, arg);
    long long v = rep && rep->type == REDIS_REPLY_INTEGER ? rep->integer : -1;
    if (rep) freeReplyObject(rep);
    return v;
}

/* Redis restarts into a multi-second load (10,000 keys, key-load-delay 100 us each): the broker
 * meets LOADING, answers UNAVAILABLE, keeps retrying instead of exiting, and serves once loaded. */
static void test_s6_redis_loading_is_waited_out(void) {
    fenv e;
    CU_ASSERT_FATAL(fenv_start(&e));
    redisContext *rc = th_redis_connect(&e.redis);
    CU_ASSERT_FATAL(rc != NULL);
    redisReply *fill =
        redisCommand(rc, "EVAL %s 0", "for i=1,10000 do redis.call('SET','filler:'..i,'x') end");
    CU_ASSERT(fill && fill->type != REDIS_REPLY_ERROR);
    if (fill) freeReplyObject(fill);
    CU_ASSERT(redis_ok(rc, "BGREWRITEAOF"));
    for (int i = 0; i < 200; i++) {
        redisReply *rep = redisCommand(rc, "INFO persistence");
        bool busy = rep && rep->str && strstr(rep->str, "aof_rewrite_in_progress:1");
        bool sched = rep && rep->str && strstr(rep->str, "aof_rewrite_scheduled:1");
        if (rep) freeReplyObject(rep);
        if (!busy && !sched) break;
        th_sleep_ms(20);
    }
    redisFree(rc);
    fc_run r;
    fc_init(&r, "s6", 300, e.log);
    CU_ASSERT_EQUAL(fc_enqueue(&r, &e.p, "default", "faults.record", 0, 0, 100, 100), 100);
    th_redis_kill(&e.redis);
    size_t l = strlen(e.redis.conf);
    snprintf(e.redis.conf + l, sizeof e.redis.conf - l,
             "\nkey-load-delay 100\nloading-process-events-interval-bytes 1024\n");
    long long t0 = th_now_ms();
    /* Not waiting for the load: the enqueues below must meet it (th_redis_restart would return
     * only once loaded, and the broker may be ready again before the first one). */
    CU_ASSERT_FATAL(th_redis_restart_loading(&e.redis));
    /* Enqueue one at a time until Redis has loaded. */
    long long first_ok = -1;
    for (int i = 100; i < 200; i++) {
        while (th_now_ms() - t0 < 30000) {
            int ok = fc_enqueue(&r, &e.p, "default", "faults.record", 0, i, i + 1, 1);
            if (ok == 1) break;
            if (ok < 0) fc_close(&e.p), fc_connect(&e.p, e.broker.port, "producer");
            th_sleep_ms(20);
        }
        if (first_ok < 0) first_ok = th_now_ms() - t0;
    }
    CU_ASSERT(kill(e.broker.pid, 0) == 0);
    int loading = file_count(e.broker.log, "LOADING");
    int timeouts = file_count(e.broker.log, "timed out");
    printf("\n    S6: first enqueue accepted %lld ms after the restart; broker log lines naming "
           "LOADING: %d, timeouts: %d; refusals: %d [%s]\n",
           first_ok, loading, timeouts, r.refusals, r.codes);
    CU_ASSERT(loading + timeouts >= 1);
    CU_ASSERT(strstr(r.codes, "UNAVAILABLE") != NULL);
    CU_ASSERT_EQUAL(fc_enqueue(&r, &e.p, "default", "faults.record", 0, 200, 300, 100), 100);
    CU_ASSERT_FATAL(fenv_worker(&e, e.broker.port, NULL));
    fc_collect(&r, &e.p, 30000, fc_stat(&e.p, "acked"));
    fc_assert(&r, 0);
    fc_free(&r);
    fenv_stop(&e);
}

/* ---- S7: broker↔Redis partition shorter and longer than --redis-timeout-ms ---------------- */

static void test_s7_redis_partition_short_and_long(void) {
    fenv e;
    memset(&e, 0, sizeof e);
    e.p.fd = -1;
    CU_ASSERT_FATAL(th_redis_start(&e.redis, NULL));
    snprintf(e.log, sizeof e.log, "%s/deliveries.log", e.redis.dir);
    fp_proxy *px = fp_start(e.redis.port);
    CU_ASSERT_FATAL(px != NULL);
    th_redis via = e.redis;
    via.port = fp_port(px);
    CU_ASSERT_FATAL(th_broker_start(&e.broker, &via, broker_flags));
    CU_ASSERT_FATAL(fc_connect(&e.p, e.broker.port, "producer"));
    fc_run r;
    fc_init(&r, "s7", 600, e.log);
    CU_ASSERT_FATAL(fenv_worker(&e, e.broker.port, NULL));
    CU_ASSERT_FATAL(fenv_worker(&e, e.broker.port, NULL));
    /* Wait for the broker to be ready on Redis (through the proxy). */
    for (int i = 0; i < 200 && fc_enqueue(&r, &e.p, "default", "faults.record", 2, 0, 1, 1) != 1;
         i++)
        th_sleep_ms(50);
    CU_ASSERT_EQUAL(fc_enqueue(&r, &e.p, "default", "faults.record", 2, 0, 200, 100), 199);
    /* Shorter than the 500 ms timeout: requests are slow, none fails. */
    long long timeouts0 = fc_stat(&e.p, "redis_timeouts");
    fp_set(px, FP_HOLD);
    run_later(250, heal, px);
    long long t0 = th_now_ms();
    CU_ASSERT_EQUAL(fc_enqueue(&r, &e.p, "default", "faults.record", 2, 200, 300, 100), 100);
    long long short_ms = th_now_ms() - t0;
    CU_ASSERT_EQUAL(fc_stat(&e.p, "redis_timeouts"), timeouts0);
    CU_ASSERT_EQUAL(r.untyped, 0);
    th_sleep_ms(300);
    /* Longer: requests in flight time out once with UNAVAILABLE, new ones are refused at once,
     * the broker reconnects after the partition heals; the client retries by id. */
    fp_set(px, FP_HOLD);
    run_later(1500, heal, px);
    t0 = th_now_ms();
    int ok = fc_enqueue(&r, &e.p, "default", "faults.record", 2, 300, 400, 100);
    long long long_ms = th_now_ms() - t0;
    CU_ASSERT(ok < 100);
    CU_ASSERT(long_ms < 1400); /* answered before the partition healed */
    CU_ASSERT_EQUAL(fc_enqueue_retry(&r, &e.p, e.broker.port, "default", "faults.record", 2, 30000),
                    0);
    long long recovered_ms = th_now_ms() - t0;
    CU_ASSERT_EQUAL(fc_enqueue(&r, &e.p, "default", "faults.record", 2, 400, 600, 100), 200);
    fc_collect(&r, &e.p, 60000, fc_stat(&e.p, "acked"));
    printf("    S7: 250 ms partition: 100 enqueues in %lld ms, no timeout; 1500 ms partition: "
           "100 enqueues answered in %lld ms (%d ok, [%s]), all acked after %lld ms, "
           "redis_timeouts=%lld\n",
           short_ms, long_ms, ok, r.codes, recovered_ms, fc_stat(&e.p, "redis_timeouts"));
    fc_assert(&r, 2 * WORKER_INFLIGHT);
    CU_ASSERT(strstr(r.codes, "UNAVAILABLE") != NULL);
    fp_stop(px);
    fc_free(&r);
    fenv_stop(&e);
}

/* ---- S8: slow Redis: DEBUG SLEEP, CLIENT PAUSE, SIGSTOP ----------------------------------- */

static int raw_connect(int port) {
    return tc_raw_connect(port);
}

static void test_s8_slow_redis_gets_typed_errors_and_bounded_memory(void) {
    fenv e;
    CU_ASSERT_FATAL(fenv_start(&e));
    fc_run r;
    fc_init(&r, "s8", 800, e.log);
    CU_ASSERT_FATAL(fenv_worker(&e, e.broker.port, NULL));
    CU_ASSERT_EQUAL(fc_enqueue(&r, &e.p, "default", "faults.record", 2, 0, 200, 100), 200);
    long rss0 = fc_rss_kb(e.broker.pid);
    const char *what[] = {"DEBUG SLEEP 1.5", "CLIENT PAUSE 1500", "SIGSTOP 1.5 s"};
    for (int k = 0; k < 3; k++) {
        int fd = -1;
        if (k == 0) {
            fd = raw_connect(e.redis.port);
            const char cmd[] = "*3\r\n$5\r\nDEBUG\r\n$5\r\nSLEEP\r\n$3\r\n1.5\r\n";
            CU_ASSERT(send(fd, cmd, sizeof cmd - 1, 0) == (ssize_t)sizeof cmd - 1);
        } else if (k == 1) {
            redisContext *rc = th_redis_connect(&e.redis);
            CU_ASSERT(rc && redis_ok(rc, "CLIENT PAUSE 1500 ALL"));
            if (rc) redisFree(rc);
        } else {
            kill(e.redis.pid, SIGSTOP);
            run_later(1500, sigcont, (void *)(intptr_t)e.redis.pid);
        }
        th_sleep_ms(50);
        long long t0 = th_now_ms();
        int from = 200 + k * 200;
        int ok = fc_enqueue(&r, &e.p, "default", "faults.record", 2, from, from + 200, 200);
        long long ms = th_now_ms() - t0;
        CU_ASSERT(ok >= 0);
        CU_ASSERT(ms < 3000);
        printf("%s    S8 %s: 200 enqueues answered in %lld ms (%d ok), broker RSS %ld KiB\n",
               k ? "" : "\n", what[k], ms, ok, fc_rss_kb(e.broker.pid));
        th_sleep_ms(1600);
        if (fd >= 0) close(fd);
        CU_ASSERT_EQUAL(
            fc_enqueue_retry(&r, &e.p, e.broker.port, "default", "faults.record", 2, 30000), 0);
    }
    fc_collect(&r, &e.p, 60000, fc_stat(&e.p, "acked"));
    long rss1 = fc_rss_kb(e.broker.pid);
    printf("    S8: broker RSS %ld -> %ld KiB; refusals [%s]\n", rss0, rss1, r.codes);
    fc_assert(&r, 3 * WORKER_INFLIGHT);
    CU_ASSERT(rss1 - rss0 < 64 * 1024);
    fc_free(&r);
    fenv_stop(&e);
}

/* ---- S12: thousands of idle connections --------------------------------------------------- */

static int ping_p99_us(tc *t, int n) {
    int *us = malloc(sizeof *us * (size_t)n);
    for (int i = 0; i < n; i++) {
        cel_msg m;
        tc_msg(&m, CEL_OP_PING);
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        tc_reply(t, tc_send(t, &m), 5000);
        clock_gettime(CLOCK_MONOTONIC, &b);
        us[i] = (int)((b.tv_sec - a.tv_sec) * 1000000 + (b.tv_nsec - a.tv_nsec) / 1000);
    }
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && us[j] < us[j - 1]; j--) {
            int x = us[j];
            us[j] = us[j - 1], us[j - 1] = x;
        }
    int p = us[n * 99 / 100];
    free(us);
    return p;
}

static bool wait_fds(int pid, int lo, int hi, int ms) {
    long long end = th_now_ms() + ms;
    int n;
    while (((n = fc_fds(pid)) < lo || n > hi) && th_now_ms() < end) th_sleep_ms(20);
    return n >= lo && n <= hi;
}

static void test_s12_many_idle_connections(void) {
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    int n = rl.rlim_cur > 10000 ? 8000 : (int)rl.rlim_cur - 500;
    if (n < 100) {
        printf("\n    S12: skipped, only %d descriptors allowed\n", (int)rl.rlim_cur);
        return;
    }
    char *flags[] = {"--hello-timeout-ms", "4000", "--max-connections", "10000", NULL};
    fenv e;
    CU_ASSERT_FATAL(fenv_start_redis_conf(&e, NULL, flags));
    th_sleep_ms(200);
    int fds0 = fc_fds(e.broker.pid);
    long rss0 = fc_rss_kb(e.broker.pid);
    int p99_idle = ping_p99_us(&e.p, 300);
    int half = n / 2;
    tc *hello = calloc((size_t)half, sizeof *hello);
    int *raw = calloc((size_t)half, sizeof *raw);
    long long t0 = th_now_ms();
    int nhello = 0, nraw = 0;
    /* Those with hello first: the others must all be open before their deadline. */
    for (int i = 0; i < half; i++) nhello += fc_connect(&hello[i], e.broker.port, "producer");
    for (int i = 0; i < half; i++) nraw += (raw[i] = raw_connect(e.broker.port)) >= 0;
    long long open_ms = th_now_ms() - t0;
    CU_ASSERT(nhello == half && nraw == half);
    CU_ASSERT(wait_fds(e.broker.pid, fds0 + nhello + nraw, fds0 + nhello + nraw + 5, 10000));
    long rss_open = fc_rss_kb(e.broker.pid);
    int p99_busy = ping_p99_us(&e.p, 300);
    /* Past the hello deadline the half that never said hello is closed; the rest stays. */
    CU_ASSERT(wait_fds(e.broker.pid, fds0 + nhello, fds0 + nhello + 5, 10000));
    int closed = 0;
    for (int i = 0; i < half; i++) {
        char b;
        struct pollfd pf = {raw[i], POLLIN, 0};
        closed += raw[i] >= 0 && poll(&pf, 1, 0) == 1 && recv(raw[i], &b, 1, MSG_DONTWAIT) == 0;
    }
    CU_ASSERT_EQUAL(closed, nraw);
    for (int i = 0; i < half; i++) {
        fc_close(&hello[i]);
        if (raw[i] >= 0) close(raw[i]);
    }
    long long c0 = th_now_ms();
    bool back = wait_fds(e.broker.pid, fds0 - 2, fds0 + 2, 10000);
    CU_ASSERT(back);
    long long back_ms = th_now_ms() - c0;
    long rss_after = fc_rss_kb(e.broker.pid);
    printf("\n    S12: %d connections (%d with hello) opened in %lld ms; broker RSS %ld -> %ld "
           "KiB = %ld bytes/connection; ping p99 %d us idle, %d us with them open; "
           "%d never-hello closed at the deadline; fds %d -> %d, back to %d in %lld ms; RSS "
           "after close %ld KiB\n",
           nhello + nraw, nhello, open_ms, rss0, rss_open,
           (rss_open - rss0) * 1024 / (nhello + nraw), p99_idle, p99_busy, closed, fds0,
           fds0 + nhello + nraw, fc_fds(e.broker.pid), back_ms, rss_after);
    CU_ASSERT((rss_open - rss0) * 1024 / (nhello + nraw) < 64 * 1024);
    CU_ASSERT(p99_busy < 50000);
    free(hello), free(raw);
    fenv_stop(&e);
}

/* ---- S14: slow-loris ---------------------------------------------------------------------- */

static void test_s14_slow_loris_is_cut_off(void) {
    char *flags[] = {"--hello-timeout-ms", "500", "--idle-timeout", "1", NULL};
    fenv e;
    CU_ASSERT_FATAL(fenv_start_redis_conf(&e, NULL, flags));
    th_sleep_ms(100);
    int fds0 = fc_fds(e.broker.pid);
    /* (a) a hello sent one byte per 100 ms: the hello deadline closes it. */
    cel_msg h;
    tc_msg(&h, CEL_OP_HELLO);
    h.seq = 1, h.role = cel_str_c("producer"), h.version = CEL_PROTO_VERSION;
    cel_msg_set(&h, CEL_F_SEQ), cel_msg_set(&h, CEL_F_ROLE), cel_msg_set(&h, CEL_F_VERSION);
    cel_buf b;
    cel_buf_init(&b);
    cel_error err;
    CU_ASSERT_FATAL(cel_msg_encode(&b, &h, UINT32_MAX, &err) == CEL_OK);
    int fd = raw_connect(e.broker.port);
    long long t0 = th_now_ms();
    size_t sent = 0;
    while (sent < b.len && send(fd, b.data + sent, 1, MSG_NOSIGNAL) == 1) {
        sent++;
        th_sleep_ms(100);
    }
    long long a_ms = th_now_ms() - t0;
    close(fd);
    CU_ASSERT(sent < b.len);
    cel_buf_free(&b);
    /* (b) a producer that stalls mid-frame: the idle timeout closes it. */
    tc t;
    CU_ASSERT_FATAL(tc_connect(&t, e.broker.port, "producer"));
    const uint8_t part[] = {0xCE, 0x01, 0x00};
    tc_send_raw(&t, part, sizeof part);
    t0 = th_now_ms();
    CU_ASSERT(tc_wait_closed(&t, 4000));
    long long b_ms = th_now_ms() - t0;
    tc_close(&t);
    /* (c) a text client dribbling a line without a newline, 1 byte per 200 ms for 3 s: only
     * whole lines count as activity, so the idle timeout closes it. */
    fd = raw_connect(e.broker.port);
    t0 = th_now_ms();
    int dribbled = 0;
    while (th_now_ms() - t0 < 3000 && send(fd, "x", 1, MSG_NOSIGNAL) == 1) {
        dribbled++;
        th_sleep_ms(200);
    }
    char c;
    struct pollfd pf = {fd, POLLIN, 0};
    bool text_closed = poll(&pf, 1, 0) == 1 && recv(fd, &c, 1, MSG_DONTWAIT) <= 0;
    CU_ASSERT(text_closed);
    close(fd);
    /* The broker still serves (our idle producer was closed by the idle timeout too). */
    fc_close(&e.p);
    CU_ASSERT_FATAL(fc_connect(&e.p, e.broker.port, "producer"));
    CU_ASSERT(fc_stat(&e.p, "connections") >= 1);
    CU_ASSERT(wait_fds(e.broker.pid, fds0 - 1, fds0 + 1, 5000));
    printf("\n    S14: byte-a-second hello cut after %lld ms (%zu bytes sent); mid-frame stall "
           "cut after %lld ms; text dribble of %d bytes over 3 s %s; fds %d -> %d\n",
           a_ms, sent, b_ms, dribbled, text_closed ? "closed by the idle timeout" : "NOT closed",
           fds0, fc_fds(e.broker.pid));
    CU_ASSERT(file_count(e.broker.log, "no hello before the deadline") >= 1);
    CU_ASSERT(file_count(e.broker.log, "idle timeout") >= 1);
    fenv_stop(&e);
}

/* ---- S17: 100k delayed tasks ---------------------------------------------------------------- */

static void test_s17_100k_delayed_tasks_live_in_redis(void) {
    fenv e;
    CU_ASSERT_FATAL(fenv_start(&e));
    CU_ASSERT_FATAL(fenv_worker(&e, e.broker.port, NULL));
    enum { N = 100000, BULK = 1000 };
    th_sleep_ms(200);
    long rss0 = fc_rss_kb(e.broker.pid), wrss0 = fc_rss_kb(e.workers[0].pid);
    static cel_msg items[BULK];
    static char ids[BULK][32];
    long long t0 = th_now_ms();
    int stored = 0;
    for (int b = 0; b < N / BULK; b++) {
        for (int i = 0; i < BULK; i++) {
            snprintf(ids[i], sizeof ids[i], "s17-%d", b * BULK + i);
            tc_msg(&items[i], CEL_OP_ENQUEUE);
            items[i].queue = cel_str_c("default"), items[i].task = cel_str_c("faults.record");
            items[i].id = cel_str_c(ids[i]), items[i].delay_ms = 3600000;
            cel_msg_set(&items[i], CEL_F_QUEUE), cel_msg_set(&items[i], CEL_F_TASK);
            cel_msg_set(&items[i], CEL_F_ID), cel_msg_set(&items[i], CEL_F_DELAY_MS);
        }
        cel_msg m;
        tc_msg(&m, CEL_OP_ENQUEUE_BULK);
        m.tasks.msgs = items, m.tasks.n = BULK;
        cel_msg_set(&m, CEL_F_TASKS);
        const cel_msg *r = tc_reply(&e.p, tc_send(&e.p, &m), 30000);
        CU_ASSERT_FATAL(r && r->op == CEL_OP_OK);
        stored += BULK;
    }
    long long ms = th_now_ms() - t0;
    th_sleep_ms(500); /* a few reaper passes over the delayed set */
    redisContext *rc = th_redis_connect(&e.redis);
    long long in_redis = redis_int(rc, "ZCARD %s", "cel:{default}:delayed");
    redisFree(rc);
    long rss1 = fc_rss_kb(e.broker.pid), wrss1 = fc_rss_kb(e.workers[0].pid);
    printf("\n    S17: %d delayed tasks stored in %lld ms; delayed zset %lld; broker RSS %ld -> "
           "%ld KiB, worker RSS %ld -> %ld KiB\n",
           stored, ms, in_redis, rss0, rss1, wrss0, wrss1);
    CU_ASSERT_EQUAL(in_redis, N);
    CU_ASSERT(rss1 - rss0 < 48 * 1024);
    CU_ASSERT(wrss1 - wrss0 < 8 * 1024);
    CU_ASSERT_EQUAL(log_lines(e.log), 0); /* nothing ran early */
    fenv_stop(&e);
}

/* ---- S19: text-port abuse ----------------------------------------------------------------- */

static bool read_until(int fd, const char *needle, int ms, char *out, size_t cap) {
    size_t len = 0;
    long long end = th_now_ms() + ms;
    out[0] = 0;
    while (th_now_ms() < end && !strstr(out, needle)) {
        struct pollfd pf = {fd, POLLIN, 0};
        if (poll(&pf, 1, 50) <= 0) continue;
        if (len + 1 >= cap) len = 0; /* keep the tail only */
        ssize_t n = recv(fd, out + len, cap - 1 - len, 0);
        if (n <= 0) break;
        len += (size_t)n;
        out[len] = 0;
    }
    return strstr(out, needle) != NULL;
}

static void test_s19_text_port_abuse(void) {
    fenv e;
    CU_ASSERT_FATAL(fenv_start(&e));
    th_sleep_ms(100);
    redisContext *rc = th_redis_connect(&e.redis);
    long long keys0 = redis_int(rc, "DBSIZE", NULL);
    int fds0 = fc_fds(e.broker.pid);
    long rss0 = fc_rss_kb(e.broker.pid);
    char out[8192];
    int fd = raw_connect(e.broker.port);
    /* A 1 MiB line, then a PING on the same connection. */
    char *big = malloc(1 << 20);
    memset(big, 'A', 1 << 20);
    CU_ASSERT(tc_send_raw(&(tc){.fd = fd}, big, 1 << 20));
    CU_ASSERT(tc_send_raw(&(tc){.fd = fd}, "\r\nPING\r\n", 8));
    CU_ASSERT(read_until(fd, "OK PONG", 5000, out, sizeof out));
    CU_ASSERT(strstr(out, "ERR TOO_BIG") != NULL);
    /* NUL, telnet IAC negotiation, unknown commands, bad JSON, PURGE without CONFIRM. */
    const char abuse[] = "PI\0NG\r\n\xff\xfb\x01PING\r\nFROB x\r\nENQUEUE q t {bad\r\n"
                         "PURGE q\r\nENQUEUE q{x} t\r\nPING\r\n";
    CU_ASSERT(tc_send_raw(&(tc){.fd = fd}, abuse, sizeof abuse - 1));
    CU_ASSERT(read_until(fd, "OK PONG\r\nERR PROTOCOL", 5000, out, sizeof out) ||
              strstr(out, "ERR PROTOCOL"));
    th_sleep_ms(300);
    read_until(fd, "\xff\xff", 300, out + strlen(out), sizeof out - strlen(out));
    printf("\n    S19 replies: %.400s\n", out);
    CU_ASSERT(strstr(out, "ERR UNKNOWN_OP") != NULL);
    CU_ASSERT(strstr(out, "ERR BAD_FIELD") != NULL);
    close(fd);
    /* 200 connections at once, each sending a 64 KiB junk line and an unknown command. */
    enum { C = 200 };
    int fds[C], answered = 0;
    for (int i = 0; i < C; i++) {
        fds[i] = raw_connect(e.broker.port);
        tc_send_raw(&(tc){.fd = fds[i]}, big, 65536);
        tc_send_raw(&(tc){.fd = fds[i]}, "\nBOGUS\n", 7);
    }
    for (int i = 0; i < C; i++) {
        answered += read_until(fds[i], "ERR UNKNOWN_OP", 5000, out, sizeof out);
        close(fds[i]);
    }
    free(big);
    CU_ASSERT_EQUAL(answered, C);
    CU_ASSERT(wait_fds(e.broker.pid, fds0 - 1, fds0 + 1, 5000));
    long long keys1 = redis_int(rc, "DBSIZE", NULL);
    redisFree(rc);
    long rss1 = fc_rss_kb(e.broker.pid);
    printf("    S19: %d/%d abusive connections got typed errors; Redis keys %lld -> %lld; fds "
           "%d -> %d; broker RSS %ld -> %ld KiB\n",
           answered, C, keys0, keys1, fds0, fc_fds(e.broker.pid), rss0, rss1);
    CU_ASSERT_EQUAL(keys1, keys0); /* nothing was stored */
    CU_ASSERT(rss1 - rss0 < 32 * 1024);
    fenv_stop(&e);
}

int main(void) {
    /* RSS comparisons want freed memory back in the allocator, not parked in ASan's quarantine
     * (256 MiB by default); leak checking stays on. */
    char opts[512];
    const char *old = getenv("ASAN_OPTIONS");
    snprintf(opts, sizeof opts, "%s%squarantine_size_mb=16", old ? old : "", old ? ":" : "");
    setenv("ASAN_OPTIONS", opts, 1);
    static const th_test tests[] = {
        {"S1/S2 worker killed mid-task loses nothing",
         test_s1_s2_worker_killed_mid_task_loses_nothing},
        {"S3 cut-off worker's late ack is refused", test_s3_cut_off_worker_late_ack_is_refused},
        {"S3 cut-off worker daemon gives up its task",
         test_s3_cut_off_worker_daemon_gives_up_its_task},
        {"S3 connection reset mid-flow acks once", test_s3_connection_reset_mid_flow_acks_once},
        {"S4/S20 broker and Redis killed with 50 workers",
         test_s4_s20_broker_and_redis_killed_with_50_workers},
        {"S5 Redis crash, appendfsync always", test_s5_redis_crash_appendfsync_always},
        {"S5 Redis crash, appendfsync everysec", test_s5_redis_crash_appendfsync_everysec},
        {"S5b RDB-only Redis is warned about", test_s5b_rdb_only_redis_is_warned_about},
        {"S6 Redis LOADING is waited out", test_s6_redis_loading_is_waited_out},
        {"S7 Redis partition shorter and longer than the timeout",
         test_s7_redis_partition_short_and_long},
        {"S8 slow Redis gets typed errors, bounded memory",
         test_s8_slow_redis_gets_typed_errors_and_bounded_memory},
        {"S12 many idle connections", test_s12_many_idle_connections},
        {"S14 slow-loris is cut off", test_s14_slow_loris_is_cut_off},
        {"S15 handshake abuse", test_s15_handshake_abuse},
        {"S17 100k delayed tasks live in Redis", test_s17_100k_delayed_tasks_live_in_redis},
        {"S18 retry after a lost reply stores once", test_s18_retry_after_lost_reply_stores_once},
        {"S19 text-port abuse", test_s19_text_port_abuse},
        {NULL, NULL}};
    /* FAULTS_ONLY=S7 runs the scenarios whose name contains "S7". */
    static th_test chosen[sizeof tests / sizeof *tests];
    const char *only = getenv("FAULTS_ONLY");
    size_t n = 0;
    for (const th_test *t = tests; t->name; t++)
        if (!only || strstr(t->name, only)) chosen[n++] = *t;
    chosen[n] = (th_test){NULL, NULL};
    return th_run("faults", chosen);
}
