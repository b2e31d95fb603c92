/* The async API in one page: on your own libevent loop, enqueue N tasks at once (pipelined on
 * one connection), wait for each as soon as its enqueue is stored, and check every result.
 *
 *     celeriac-example-async [COUNT]        (broker: $CELERIAC_BROKER, then 127.0.0.1:7878)
 *
 * Needs a broker and a worker serving the "default" queue (celeriac.echo is built in). */
#include <celeriac/celeriac.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct run {
    celeriac_async *a;
    struct event_base *base;
    int count, enqueued, finished, right;
} run;

/* Each task echoes [i]; the expected result travels with the callback's arg. */
typedef struct job {
    run *r;
    char expect[32];
} job;

static void finish_one(run *r) {
    if (++r->finished == r->count) event_base_loopbreak(r->base);
}

static void on_result(int status, const char *id, const celeriac_task_info *info, void *arg) {
    job *j = arg;
    if (status != CELERIAC_OK)
        fprintf(stderr, "wait %s: %s\n", id, celeriac_errname(status));
    else if (!strcmp(info->state, "succeeded") && info->result_json &&
             !strcmp(info->result_json, j->expect))
        j->r->right++;
    finish_one(j->r);
    free(j);
}

static void on_stored(int status, const char *id, const celeriac_task_info *info, void *arg) {
    (void)info;
    job *j = arg;
    if (status == CELERIAC_OK) {
        j->r->enqueued++;
        /* Stored in Redis: now wait for it, on the same connection. */
        if (celeriac_async_wait(j->r->a, id, 30000, on_result, j) == CELERIAC_OK) return;
    }
    fprintf(stderr, "enqueue %s: %s\n", id, celeriac_errname(status));
    finish_one(j->r);
    free(j);
}

int main(int argc, char **argv) {
    run r = {.count = argc > 1 ? atoi(argv[1]) : 100};
    if (r.count <= 0) return fprintf(stderr, "usage: %s [COUNT]\n", argv[0]), 2;
    r.base = event_base_new();
    r.a = celeriac_async_new(r.base, NULL);
    if (!r.a) return fprintf(stderr, "bad $CELERIAC_BROKER\n"), event_base_free(r.base), 1;
    for (int i = 0; i < r.count; i++) {
        job *j = malloc(sizeof *j);
        j->r = &r;
        snprintf(j->expect, sizeof j->expect, "[%d]", i);
        /* Queued at once, sent as soon as the broker has answered hello. */
        if (celeriac_async_enqueue_json(r.a, "default", "celeriac.echo", j->expect, NULL, on_stored,
                                        j) != CELERIAC_OK)
            return fprintf(stderr, "enqueue refused\n"), 1;
    }
    event_base_dispatch(r.base);
    printf("%d enqueued, %d succeeded with the right result\n", r.enqueued, r.right);
    celeriac_async_free(r.a);
    event_base_free(r.base);
    return r.right == r.count ? 0 : 1;
}
