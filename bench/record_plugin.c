/* bench.record: the benchmark task, same contract as the peers' workers (bench/peers/c/common.h).
 * args [seq, enq_ns, pad]; appends "seq enq_ns start_ns\n" (CLOCK_REALTIME ns) with one write to
 * $BENCH_REC_DIR/rec.celeriac.<pid>, so the peers' analysis reads celeriac's records unchanged.
 * Each pool child (or the worker, with --pool threads) opens its own file on first use. */
#include <celeriac/task.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static int rec_fd = -1;
static pthread_mutex_t rec_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t rec_once = PTHREAD_ONCE_INIT;

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* A prefork child must not write into its parent's file: it forgets the fd at fork (getpid()
 * per task, to notice a fork, was a system call in every task this benchmark times). */
static void forget_fd(void) {
    rec_fd = -1;
}
static void watch_forks(void) {
    pthread_atfork(NULL, NULL, forget_fd);
}

/* The file of this process. */
static int record_fd(void) {
    pthread_once(&rec_once, watch_forks);
    pthread_mutex_lock(&rec_lock);
    if (rec_fd < 0) {
        const char *dir = getenv("BENCH_REC_DIR");
        char path[4096];
        snprintf(path, sizeof path, "%s/rec.celeriac.%d", dir ? dir : ".", (int)getpid());
        rec_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    }
    int fd = rec_fd;
    pthread_mutex_unlock(&rec_lock);
    return fd;
}

static long long int_at(const msgpack_object *a, uint32_t i) {
    if (a->type != MSGPACK_OBJECT_ARRAY || a->via.array.size <= i) return -1;
    const msgpack_object *o = &a->via.array.ptr[i];
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) return (long long)o->via.u64;
    return -1;
}

static int record(celeriac_task_ctx *ctx) {
    long long start = now_ns();
    const msgpack_object *args = celeriac_task_args(ctx);
    long long seq = int_at(args, 0), enq = int_at(args, 1);
    if (seq < 0 || enq < 0) {
        celeriac_task_error(ctx, "args must be [seq, enq_ns, pad]");
        return CELERIAC_TASK_FATAL;
    }
    int fd = record_fd();
    char line[80];
    int n = snprintf(line, sizeof line, "%lld %lld %lld\n", seq, enq, start);
    if (fd < 0 || write(fd, line, (size_t)n) != n) {
        celeriac_task_error(ctx, "cannot write the record");
        return CELERIAC_TASK_FATAL;
    }
    return CELERIAC_TASK_OK;
}

int celeriac_plugin_init(celeriac_registry *r) {
    return celeriac_register(r, "bench.record", record, NULL);
}
