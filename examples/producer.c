/* An example producer using both faces of libceleriac: the sync API enqueues a batch of
 * word-count and echo tasks, the async API then waits for all of them at once on one
 * connection, printing progress; finally a few results and a summary.
 *
 *     celeriac-demo-producer HOST:PORT COUNT FILE...
 */
#include <celeriac/celeriac.h>
#include <event2/event.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct progress {
    int total, done, ok, failed, shown;
    struct event_base *base;
} progress;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void on_done(int status, const char *id, const celeriac_task_info *info, void *arg) {
    progress *p = arg;
    p->done++;
    bool ok = status == CELERIAC_OK && info && !strcmp(info->state, "succeeded");
    if (ok)
        p->ok++;
    else
        p->failed++;
    if (ok && info->result_json && p->shown < 5 && !strcmp(info->task, "wc.count")) {
        printf("\r  %-10s %s\n", info->task, info->result_json);
        fflush(stdout);
        p->shown++;
    } else if (!ok) {
        printf("\r  task %s: %s %s\n", id, info ? info->state : celeriac_strerror(status),
               info && info->error ? info->error : "");
    }
    if (p->done % 50 == 0 || p->done == p->total) {
        printf("\r  finished %d/%d", p->done, p->total);
        fflush(stdout);
    }
    if (p->done == p->total) event_base_loopbreak(p->base);
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s HOST:PORT COUNT FILE...\n", argv[0]);
        return 2;
    }
    int count = atoi(argv[2]);
    char err[256];
    celeriac *c = celeriac_connect(argv[1], 5000, err, sizeof err);
    if (!c) return fprintf(stderr, "%s\n", err), 1;
    char(*ids)[CELERIAC_ID_SIZE] = calloc((size_t)count, CELERIAC_ID_SIZE);
    double t0 = now_s();
    for (int i = 0; i < count; i++) {
        char args[4200];
        const char *task = "celeriac.echo";
        if (i % 2 == 0) {
            task = "wc.count";
            snprintf(args, sizeof args, "{\"path\": \"%s\"}", argv[3 + (i / 2) % (argc - 3)]);
        } else {
            snprintf(args, sizeof args, "{\"n\": %d, \"square\": %d}", i, i * i);
        }
        int rc = celeriac_enqueue_json(c, "demo", task, args, NULL, ids[i]);
        if (rc != CELERIAC_OK) {
            fprintf(stderr, "enqueue: %s: %s\n", celeriac_strerror(rc), celeriac_last_error(c));
            return 1;
        }
        if (i % 50 == 49 || i == count - 1)
            printf("\r  enqueued %d/%d", i + 1, count), fflush(stdout);
    }
    double t1 = now_s();
    printf("  (%.0f tasks/s, each acknowledged only once durable in Redis)\n", count / (t1 - t0));
    celeriac_close(c);

    progress p = {.total = count, .base = event_base_new()};
    celeriac_async *a = celeriac_async_new(p.base, argv[1]);
    for (int i = 0; i < count; i++) celeriac_async_wait(a, ids[i], 60000, on_done, &p);
    event_base_dispatch(p.base);
    double t2 = now_s();
    printf("\n  %d succeeded, %d failed; all results in %.2f s\n", p.ok, p.failed, t2 - t0);
    celeriac_async_free(a);
    event_base_free(p.base);
    free(ids);
    return p.failed ? 1 : 0;
}
