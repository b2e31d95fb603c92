/* celeriac-bench-producer: the benchmark producer, same contract as the peers' producers
 * (bench/peers/c/common.h).
 *   celeriac-bench-producer BROKER QUEUE SEQ0 COUNT RATE [WINDOW]
 * Enqueues COUNT bench.record tasks with args [seq, enq_ns, pad] (pad = $PAYLOAD bytes, default
 * 100). WINDOW 0 or absent: one at a time, each waiting for its durable OK (the sync API); WINDOW
 * > 0: up to WINDOW enqueues in flight on one connection (the async API). RATE > 0 paces the
 * calls (tasks/s). $BENCH_WINDOW stands for an absent WINDOW. Prints
 * "ENQ count first_call_ns last_ok_ns". */
#include <celeriac/celeriac.h>
#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static long long clock_ns(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* With rate > 0, call i is due at t0 + i / rate (an absolute schedule: no drift). */
static void pace(long long t0, long long i, double rate) {
    if (rate <= 0) return;
    long long due = t0 + (long long)((double)i * 1e9 / rate);
    struct timespec ts = {due / 1000000000LL, due % 1000000000LL};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
}

static void pack_u64(unsigned char *b, size_t *n, unsigned long long v) {
    b[(*n)++] = 0xcf;
    for (int i = 7; i >= 0; i--) b[(*n)++] = (unsigned char)(v >> (8 * i));
}

/* [seq, enq_ns, pad] as msgpack into buf (room for pad + 32 bytes). */
static size_t make_args(unsigned char *buf, long long seq, long long enq, size_t pad) {
    size_t n = 0;
    buf[n++] = 0x93;
    pack_u64(buf, &n, (unsigned long long)seq);
    pack_u64(buf, &n, (unsigned long long)enq);
    buf[n++] = 0xdb; /* str32 */
    for (int i = 3; i >= 0; i--) buf[n++] = (unsigned char)(pad >> (8 * i));
    memset(buf + n, 'x', pad);
    return n + pad;
}

typedef struct run {
    const char *queue;
    long long seq0, count, sent, done, first, last, t0;
    int window, failed;
    double rate;
    size_t pad;
    unsigned char *args;
    celeriac_async *a;
    struct event_base *base;
    struct event *timer;
} run;

static void send_more(run *r);

static void on_ok(int status, const char *id, const celeriac_task_info *info, void *arg) {
    (void)id, (void)info;
    run *r = arg;
    r->done++;
    r->last = clock_ns(CLOCK_REALTIME);
    if (status != CELERIAC_OK && r->failed++ == 0)
        fprintf(stderr, "enqueue: %s\n", celeriac_strerror(status));
    if (r->done == r->count) return (void)event_base_loopbreak(r->base);
    send_more(r);
}

static void on_timer(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    send_more(arg);
}

static void send_more(run *r) {
    while (r->sent < r->count && r->sent - r->done < r->window) {
        if (r->rate > 0) {
            long long due = r->t0 + (long long)((double)r->sent * 1e9 / r->rate);
            long long wait = due - clock_ns(CLOCK_MONOTONIC);
            if (wait > 0) {
                struct timeval tv = {wait / 1000000000LL, (wait % 1000000000LL) / 1000};
                evtimer_add(r->timer, &tv);
                return;
            }
        }
        long long enq = clock_ns(CLOCK_REALTIME);
        if (r->sent == 0) r->first = enq;
        size_t len = make_args(r->args, r->seq0 + r->sent, enq, r->pad);
        r->sent++;
        if (celeriac_async_enqueue(r->a, r->queue, "bench.record", r->args, len, NULL, on_ok, r) !=
            CELERIAC_OK)
            r->failed++, r->done++;
    }
}

static int run_async(run *r, const char *broker) {
    r->base = event_base_new();
    r->a = celeriac_async_new(r->base, broker);
    r->timer = evtimer_new(r->base, on_timer, r);
    if (!r->base || !r->a || !r->timer) return fprintf(stderr, "cannot start\n"), 1;
    r->t0 = clock_ns(CLOCK_MONOTONIC);
    send_more(r);
    event_base_dispatch(r->base);
    event_free(r->timer);
    celeriac_async_free(r->a);
    event_base_free(r->base);
    return 0;
}

static int run_sync(run *r, const char *broker) {
    char err[256];
    celeriac *c = celeriac_connect(broker, 5000, err, sizeof err);
    if (!c) return fprintf(stderr, "%s\n", err), 1;
    long long t0 = clock_ns(CLOCK_MONOTONIC);
    for (long long i = 0; i < r->count; i++) {
        pace(t0, i, r->rate);
        long long enq = clock_ns(CLOCK_REALTIME);
        if (i == 0) r->first = enq;
        size_t len = make_args(r->args, r->seq0 + i, enq, r->pad);
        if (celeriac_enqueue(c, r->queue, "bench.record", r->args, len, NULL, NULL) != CELERIAC_OK &&
            r->failed++ == 0)
            fprintf(stderr, "enqueue: %s\n", celeriac_last_error(c));
        r->last = clock_ns(CLOCK_REALTIME);
    }
    celeriac_close(c);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: celeriac-bench-producer BROKER QUEUE SEQ0 COUNT RATE [WINDOW]\n");
        return 2;
    }
    const char *payload = getenv("PAYLOAD"), *window = getenv("BENCH_WINDOW");
    run r = {.queue = argv[2],
             .seq0 = atoll(argv[3]),
             .count = atoll(argv[4]),
             .rate = atof(argv[5]),
             .window = argc > 6 ? atoi(argv[6]) : 0,
             .pad = payload && *payload ? (size_t)atol(payload) : 100};
    if (argc <= 6 && window && *window) r.window = atoi(window);
    r.args = malloc(r.pad + 32);
    if (!r.args || r.count <= 0) return 2;
    int rc = r.window > 0 ? run_async(&r, argv[1]) : run_sync(&r, argv[1]);
    free(r.args);
    if (rc) return rc;
    printf("ENQ %lld %lld %lld\n", r.count, r.first, r.last);
    return r.failed ? 1 : 0;
}
