/* The sync API in one page: enqueue a task with JSON args and wait for its result, enqueue a
 * bulk of three, and cancel a delayed task before it runs. Each call blocks until the broker
 * has answered (an enqueue: until the task is stored in Redis).
 *
 *     celeriac-example-sync [HOST:PORT]     (default: $CELERIAC_BROKER, then 127.0.0.1:7878)
 *
 * Needs a broker and a worker serving the "default" queue (celeriac.echo is built in). */
#include <celeriac/celeriac.h>
#include <stdio.h>
#include <string.h>

static int fail(celeriac *c, const char *what, int rc) {
    fprintf(stderr, "%s: %s: %s\n", what, celeriac_errname(rc), celeriac_last_error(c));
    celeriac_close(c);
    return 1;
}

int main(int argc, char **argv) {
    char err[256];
    celeriac *c = celeriac_connect(argc > 1 ? argv[1] : NULL, 5000, err, sizeof err);
    if (!c) return fprintf(stderr, "%s\n", err), 1;

    /* One task: the id is generated (32 hex chars) unless opts->id gives one. */
    char id[CELERIAC_ID_SIZE];
    int rc =
        celeriac_enqueue_json(c, "default", "celeriac.echo", "{\"greeting\": \"hello\"}", NULL, id);
    if (rc != CELERIAC_OK) return fail(c, "enqueue", rc);
    celeriac_task_info t;
    rc = celeriac_wait(c, id, 10000, &t); /* blocks in the broker, no polling */
    if (rc != CELERIAC_OK) return fail(c, "wait", rc);
    printf("task %s %s: echo returned %s\n", id, t.state, t.result_json ? t.result_json : "null");
    celeriac_task_info_free(&t);

    /* Bulk: one request, all stored or none; a higher priority runs first. */
    celeriac_bulk_item items[3] = {
        {"default", "celeriac.echo", "[1]", {.priority = 5}},
        {"default", "celeriac.echo", "[2]", {.max_retries = 3}},
        {"default", "celeriac.noop", NULL, {0}},
    };
    char ids[3][CELERIAC_ID_SIZE];
    rc = celeriac_enqueue_bulk(c, items, 3, ids);
    if (rc != CELERIAC_OK) return fail(c, "bulk enqueue", rc);
    int succeeded = 0;
    for (int i = 0; i < 3; i++) {
        if ((rc = celeriac_wait(c, ids[i], 10000, &t)) != CELERIAC_OK) return fail(c, "wait", rc);
        succeeded += strcmp(t.state, "succeeded") == 0;
        celeriac_task_info_free(&t);
    }
    printf("bulk: 3 tasks, %d succeeded\n", succeeded);

    /* Delayed by a minute, then cancelled while it waits. */
    celeriac_opts later = {.delay_ms = 60000};
    if ((rc = celeriac_enqueue_json(c, "default", "celeriac.noop", NULL, &later, id)))
        return fail(c, "enqueue", rc);
    if ((rc = celeriac_cancel(c, id)) != CELERIAC_OK) return fail(c, "cancel", rc);
    if ((rc = celeriac_status(c, id, &t)) != CELERIAC_OK) return fail(c, "status", rc);
    printf("delayed task %s\n", t.state);
    celeriac_task_info_free(&t);

    celeriac_close(c);
    return 0;
}
