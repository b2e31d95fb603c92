/* Shared by the C peer drivers: the producer/worker contract of bench/peers.
 *  - task args: (seq, enq_ns, pad); enq_ns = CLOCK_REALTIME ns taken just before the enqueue call
 *  - a worker appends "seq enq_ns start_ns\n" to its own record file with one write(2), O_APPEND
 *  - a producer prints one line "ENQ count first_call_ns last_ack_ns" on stdout when done */
#ifndef PEERS_COMMON_H
#define PEERS_COMMON_H
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static inline long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Pacing: with rate > 0, call i is due at t0 + i / rate (absolute schedule, no drift). */
static inline void pace(long long t0_mono, long long i, double rate) {
    if (rate <= 0) return;
    long long due = t0_mono + (long long)((double)i * 1e9 / rate);
    struct timespec ts = {due / 1000000000LL, due % 1000000000LL};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {}
}

static inline long long mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Opens DIR/rec.<tag>.<pid> for appending. */
static inline int open_record(const char *dir, const char *tag) {
    char path[4096];
    snprintf(path, sizeof path, "%s/rec.%s.%d", dir, tag, (int)getpid());
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0) { perror(path); exit(1); }
    return fd;
}

static inline void write_record(int fd, long long seq, long long enq_ns, long long start_ns) {
    char rec[80];
    int n = snprintf(rec, sizeof rec, "%lld %lld %lld\n", seq, enq_ns, start_ns);
    if (write(fd, rec, (size_t)n) != n) { perror("write record"); exit(1); }
}

static inline int env_int(const char *name, int dflt) {
    const char *v = getenv(name);
    return v && *v ? atoi(v) : dflt;
}
#endif
