/* celeriac-bench: enqueue N no-op tasks and time them until the last one finished.
 *   celeriac-bench BROKER N MODE [WINDOW]
 * MODE sync: one enqueue at a time, each waiting for its durable OK (what an ordinary client
 * does); MODE pipelined: up to WINDOW enqueues in flight on one connection (async API).
 * Prints one line: mode, N, enqueue rate, end-to-end rate (first enqueue → last task acked, read
 * from the broker's acked counter). Args are ~100 bytes, as in the peers' baseline. */
#include <celeriac/celeriac.h>
#include <event2/event.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static long long acked(celeriac *c) {
    char *json = NULL;
    if (celeriac_stats(c, &json) != CELERIAC_OK) return -1;
    json_t *j = json_loads(json, 0, NULL);
    long long n = (long long)json_integer_value(json_object_get(j, "acked"));
    json_decref(j);
    free(json);
    return n;
}

/* [seq, a 92-byte string]: about 100 bytes of msgpack, like the peers' baseline. */
static size_t make_args(unsigned char *buf, int seq) {
    size_t n = 0;
    buf[n++] = 0x92;
    buf[n++] = 0xce;
    for (int i = 3; i >= 0; i--) buf[n++] = (unsigned char)((unsigned)seq >> (8 * i));
    buf[n++] = 0xd9, buf[n++] = 92;
    memset(buf + n, 'x', 92);
    return n + 92;
}

typedef struct pipe_state {
    celeriac_async *a;
    struct event_base *base;
    int n, sent, done, failed, window;
} pipe_state;

static void send_more(pipe_state *p);

static void on_enqueued(int status, const char *id, const celeriac_task_info *info, void *arg) {
    (void)id, (void)info;
    pipe_state *p = arg;
    p->done++;
    p->failed += status != CELERIAC_OK;
    if (p->done == p->n)
        event_base_loopbreak(p->base);
    else
        send_more(p);
}

static void send_more(pipe_state *p) {
    unsigned char args[128];
    while (p->sent < p->n && p->sent - p->done < p->window) {
        size_t len = make_args(args, p->sent);
        if (celeriac_async_enqueue(p->a, "bench", "celeriac.noop", args, len, NULL, on_enqueued,
                                   p) != CELERIAC_OK)
            p->failed++, p->done++;
        p->sent++;
    }
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: celeriac-bench BROKER N sync|pipelined [WINDOW]\n");
        return 2;
    }
    const char *broker = argv[1];
    int n = atoi(argv[2]);
    bool pipelined = !strcmp(argv[3], "pipelined");
    char err[256];
    celeriac *c = celeriac_connect(broker, 5000, err, sizeof err);
    if (!c) return fprintf(stderr, "%s\n", err), 1;
    long long before = acked(c);
    double t0 = now_s();
    int failed = 0;
    if (!pipelined) {
        unsigned char args[128];
        for (int i = 0; i < n; i++) {
            size_t len = make_args(args, i);
            failed +=
                celeriac_enqueue(c, "bench", "celeriac.noop", args, len, NULL, NULL) != CELERIAC_OK;
        }
    } else {
        pipe_state p = {.n = n, .window = argc > 4 ? atoi(argv[4]) : 256, .base = event_base_new()};
        p.a = celeriac_async_new(p.base, broker);
        send_more(&p);
        event_base_dispatch(p.base);
        failed = p.failed;
        celeriac_async_free(p.a);
        event_base_free(p.base);
    }
    double t1 = now_s();
    while (acked(c) - before < n - failed) {
        struct timespec ts = {0, 2 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    double t2 = now_s();
    printf("%s n=%d enqueue=%.0f/s e2e=%.0f/s failed=%d\n", argv[3], n, n / (t1 - t0),
           n / (t2 - t0), failed);
    celeriac_close(c);
    return failed ? 1 : 0;
}
