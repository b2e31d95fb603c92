/* The task every fault scenario runs: faults.record appends "ID ATTEMPT WORKER\n" to the file
 * named by CELERIAC_FAULTS_LOG (one write with O_APPEND, so lines from concurrent workers never
 * interleave), then sleeps for its args in ms (an integer, or none). The line is written before
 * the sleep, so a worker killed during the sleep has done its side effect without acking it:
 * the checker sees the delivery and must see the redelivery too. WORKER is
 * CELERIAC_FAULTS_WORKER when set, else the pid. */
#include <celeriac/task.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static int record(celeriac_task_ctx *ctx) {
    const char *path = getenv("CELERIAC_FAULTS_LOG");
    const char *who = getenv("CELERIAC_FAULTS_WORKER");
    char line[256];
    int n = who ? snprintf(line, sizeof line, "%s %u %s\n", celeriac_task_id(ctx),
                           celeriac_task_attempt(ctx), who)
                : snprintf(line, sizeof line, "%s %u %d\n", celeriac_task_id(ctx),
                           celeriac_task_attempt(ctx), (int)getpid());
    if (path && n > 0 && n < (int)sizeof line) {
        int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd < 0 || write(fd, line, (size_t)n) != n) {
            celeriac_task_error(ctx, "cannot append to %s", path);
            if (fd >= 0) close(fd);
            return CELERIAC_TASK_FATAL;
        }
        close(fd);
    }
    const msgpack_object *a = celeriac_task_args(ctx);
    long long ms = a->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? (long long)a->via.u64 : 0;
    for (long long left = ms; left > 0 && !celeriac_task_should_stop(ctx); left -= 10) {
        struct timespec step = {0, (left < 10 ? left : 10) * 1000000L};
        nanosleep(&step, NULL);
    }
    return CELERIAC_TASK_OK;
}

int celeriac_plugin_init(celeriac_registry *r) {
    return celeriac_register(r, "faults.record", record, NULL);
}
