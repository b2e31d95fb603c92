/* The long soak (scripts/soak.sh): one Redis (AOF, appendfsync always), two brokers, four
 * workers that fail over between them, a producer pushing faults.record tasks, and a random
 * fault every few seconds: kill -9 of a worker, a broker or Redis (each restarted), a worker
 * frozen past its lease, Redis frozen past the brokers' timeout. When the time or the task
 * count is reached, everything is healed, unacknowledged enqueues are retried by id, and the
 * checker gives its verdict. Exit status 0 when no task was lost. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checker.h"
#include "harness.h"

static char *broker_flags[] = {
    "--lease-ms",         "2000", "--reaper-ms", "200",  "--poll-ms", "100",
    "--redis-timeout-ms", "1000", "--log-level", "info", NULL};

typedef struct soak {
    th_redis redis;
    th_proc brokers[2];
    th_proc workers[4];
    char addrs[2][32];
    tc p;
    int producer_broker;
    int faults[6];
} soak;

static const char *fault_names[] = {"kill -9 worker",     "kill -9 broker",    "kill -9 redis",
                                    "SIGSTOP worker 3 s", "SIGSTOP redis 2 s", "none"};

static void worker_start(soak *s, int i) {
    char name[16];
    snprintf(name, sizeof name, "w%d", i);
    setenv("CELERIAC_FAULTS_WORKER", name, 1);
    char *flags[] = {"--plugin",    FAULTS_PLUGIN, "--pool", "threads",  "--concurrency",
                     "8",           "--prefetch",  "8",      "--broker", s->addrs[1 - i % 2],
                     "--log-level", "warn",        NULL};
    th_worker_start(&s->workers[i], s->brokers[i % 2].port, flags);
}

static void producer_connect(soak *s) {
    for (int k = 0; k < 4 && s->p.fd < 0; k++) {
        s->producer_broker = 1 - s->producer_broker;
        fc_connect(&s->p, s->brokers[s->producer_broker].port, "producer");
        if (s->p.fd < 0) th_sleep_ms(100);
    }
}

static void inject(soak *s) {
    int f = (int)(random() % 5);
    s->faults[f]++;
    int w = (int)(random() % 4), b = (int)(random() % 2);
    printf("soak: fault: %s\n", fault_names[f]);
    fflush(stdout);
    switch (f) {
    case 0:
        th_proc_stop(&s->workers[w], SIGKILL);
        th_sleep_ms(300);
        worker_start(s, w);
        break;
    case 1:
        th_proc_stop(&s->brokers[b], SIGKILL);
        th_sleep_ms(500);
        th_broker_restart(&s->brokers[b], &s->redis, broker_flags);
        break;
    case 2:
        th_redis_kill(&s->redis);
        th_sleep_ms(300);
        th_redis_restart(&s->redis);
        break;
    case 3:
        kill(s->workers[w].pid, SIGSTOP);
        th_sleep_ms(3000);
        kill(s->workers[w].pid, SIGCONT);
        break;
    case 4:
        kill(s->redis.pid, SIGSTOP);
        th_sleep_ms(2000);
        kill(s->redis.pid, SIGCONT);
        break;
    }
}

int main(int argc, char **argv) {
    int seconds = argc > 1 ? atoi(argv[1]) : 600;
    int total = argc > 2 ? atoi(argv[2]) : 1000000;
    int fault_every_ms = argc > 3 ? atoi(argv[3]) : 5000;
    srandom((unsigned)getpid());
    soak s;
    memset(&s, 0, sizeof s);
    s.p.fd = -1;
    if (!th_redis_start(&s.redis, NULL)) return fprintf(stderr, "soak: no redis\n"), 2;
    char log[400];
    snprintf(log, sizeof log, "%s/deliveries.log", s.redis.dir);
    fc_run r;
    fc_init(&r, "soak", total, log);
    for (int b = 0; b < 2; b++) {
        if (!th_broker_start(&s.brokers[b], &s.redis, broker_flags))
            return fprintf(stderr, "soak: no broker\n"), 2;
        snprintf(s.addrs[b], sizeof s.addrs[b], "127.0.0.1:%d", s.brokers[b].port);
    }
    for (int i = 0; i < 4; i++) worker_start(&s, i);
    printf("soak: %d s, up to %d tasks, a fault every ~%d ms; redis %d, brokers %d %d\n", seconds,
           total, fault_every_ms, s.redis.port, s.brokers[0].port, s.brokers[1].port);
    long long start = th_now_ms(), end = start + (long long)seconds * 1000;
    long long next_fault = start + fault_every_ms, next_report = start + 10000;
    int sent = 0;
    while (th_now_ms() < end && sent < total) {
        producer_connect(&s);
        int chunk = total - sent < 500 ? total - sent : 500;
        if (fc_enqueue(&r, &s.p, "default", "faults.record", 0, sent, sent + chunk, 500) < 0)
            fc_close(&s.p);
        sent += chunk;
        /* Keep the backlog bounded: the producer is not the thing under test. */
        while (th_now_ms() < end) {
            int lines = 0;
            FILE *f = fopen(log, "r");
            if (f) {
                fseek(f, 0, SEEK_END);
                lines = (int)(ftell(f) / 17); /* about 17 bytes a line */
                fclose(f);
            }
            if (sent - lines < 20000) break;
            th_sleep_ms(50);
        }
        if (th_now_ms() >= next_fault) {
            inject(&s);
            next_fault = th_now_ms() + fault_every_ms / 2 + random() % (fault_every_ms + 1);
        }
        if (th_now_ms() >= next_report) {
            printf("soak: %lld s, %d enqueues sent\n", (th_now_ms() - start) / 1000, sent);
            fflush(stdout);
            next_report += 10000;
        }
    }
    printf("soak: healing; retrying unacknowledged enqueues\n");
    fflush(stdout);
    long long heal = th_now_ms();
    for (int i = 0; i < 4; i++) kill(s.workers[i].pid, SIGCONT);
    kill(s.redis.pid, SIGCONT);
    fc_close(&s.p);
    int left = 1;
    for (int k = 0; k < 10 && left; k++) {
        producer_connect(&s);
        left = fc_enqueue_retry(&r, &s.p, s.brokers[s.producer_broker].port, "default",
                                "faults.record", 0, 30000);
        if (left) fc_close(&s.p);
    }
    producer_connect(&s);
    const fc_counts *c = fc_collect(&r, &s.p, 600000, -1);
    long long elapsed = th_now_ms() - start;
    int lines = 0;
    for (int i = 0; i < r.n; i++) lines += r.delivered[i];
    printf("soak: faults:");
    for (int f = 0; f < 5; f++) printf(" %s=%d", fault_names[f], s.faults[f]);
    printf("\nsoak: %d tasks sent in %lld s of faults (%s; +%lld s to heal and drain), %d "
           "deliveries, %.0f tasks/s overall\n",
           sent, (heal - start) / 1000, sent < total ? "time limit" : "every task sent",
           (th_now_ms() - heal) / 1000, lines,
           elapsed > 0 ? (double)c->succeeded * 1000 / (double)elapsed : 0);
    bool ok = c->lost == 0 && c->unexpected == 0 && c->untyped == 0 && left == 0 &&
              c->acked_enqueues == sent;
    printf("soak: VERDICT %s: lost=%d double_ack=n/a (brokers restarted) redelivered=%d "
           "(%.3f%%) unexpected=%d untyped=%d unacked_after_retry=%d\n",
           ok ? "PASS" : "FAIL", c->lost, c->redelivered,
           sent ? 100.0 * c->redelivered / sent : 0.0, c->unexpected, c->untyped, left);
    fc_close(&s.p);
    for (int i = 0; i < 4; i++) th_proc_stop(&s.workers[i], SIGTERM);
    for (int b = 0; b < 2; b++) th_proc_stop(&s.brokers[b], SIGTERM);
    th_redis_stop(&s.redis);
    fc_free(&r);
    return ok ? 0 : 1;
}
