/* Inside the pool: a slot is one runner (a child process or a thread) and the pool's end of the
 * socketpair it is driven through. pool.c owns what both kinds share (handing out tasks,
 * reading outcomes, hard limits, abort grace periods, replacing a lost runner); a cel_pool_ops
 * (pool_prefork.c, pool_threads.c) starts and ends runners of its kind. */
#ifndef CELERIAC_WORKER_POOL_H
#define CELERIAC_WORKER_POOL_H

#include <pthread.h>
#include <sys/types.h>

#include "worker.h"

/* Why the pool itself is ending the task in a slot, if it is. */
typedef enum cel_slot_end { SLOT_END_NONE, SLOT_END_TIMEOUT, SLOT_END_CANCEL } cel_slot_end;

typedef struct cel_slot {
    cel_pool *pool;
    int index;
    int fd; /* the pool's end of the socketpair; -1 while the slot has no runner */
    struct event *rev, *wev;
    cel_buf pend; /* what the socketpair did not take yet (wev is armed meanwhile) */
    size_t pend_off;
    cel_decoder dec;
    struct event *timer; /* the hard limit, then the end of an abort's grace period */
    pid_t pid;           /* prefork */
    pthread_t thread;    /* threads */
    bool busy;
    char id[CEL_ID_MAX + 1];
    uint64_t token, hard_ms;
    long long hard_deadline_ms; /* 0: none */
    int grace_ms;
    cel_slot_end end;
    /* Pipelining (prefork): the task written to the runner behind the one it runs, which the
     * runner starts as soon as it has written that one's outcome. Its frame is kept until then:
     * if the child dies first, the task never started and a new child gets it. */
    bool queued, queued_cancel;
    /* Given back when the worker began to drain (the runner is told to skip it): a "cancelled"
     * outcome of it is not reported, it goes back to the broker with the other waiting tasks. */
    bool queued_withdrawn, withdrawn;
    char qid[CEL_ID_MAX + 1];
    uint64_t qtoken, qhard_ms;
    int qgrace_ms;
    cel_buf qframe;
    bool dying; /* its runner is gone and its last outcomes are being read: takes no task */
} cel_slot;

typedef struct cel_pool_ops {
    const char *what; /* "child" or "thread", for messages */
    /* Once per pool, before any runner starts / after the last one ended. */
    bool (*init)(cel_pool *p);
    void (*fini)(cel_pool *p);
    /* Starts a runner on fd, its end of the socketpair, which it then owns. */
    bool (*start)(cel_slot *s, int fd);
    /* Ends the runner now, for a hard limit or an abort's grace period. The runner must be
     * reported with pool_slot_lost, at once or when it is gone. */
    void (*kill)(cel_slot *s);
    /* At pool_free, after the pool's end was shut down: wait for (or let go of) the runner. */
    void (*reap)(cel_slot *s);
} cel_pool_ops;

extern const cel_pool_ops pool_prefork_ops, pool_threads_ops;

/* The solo pool (pool_solo.c) has one slot and no runner process or thread: the task runs in
 * the daemon's own event loop, from an event activated when the slot is handed a task. */
bool solo_init(cel_pool *p);
void solo_fini(cel_pool *p);
bool solo_run(cel_slot *s, const uint8_t *frame, size_t len);

struct cel_pool {
    struct event_base *base;
    const cel_pool_ops *ops;
    const celeriac_registry *reg;
    cel_pool_outcome_cb cb;
    void *arg;
    cel_slot *slots;
    int n;
    struct event *sigchld; /* prefork */
    struct event *retry;   /* restarts runners that could not be started */
    msgpack_zone zone;
    cel_buf out;
    bool pipeline; /* a busy runner may be written its next task (pool_set_pipeline) */
    /* solo */
    bool solo;
    cel_runner *runner;
    struct event *solo_ev;
    cel_buf solo_frame;
};

/* The runner of s is gone (how: "killed by signal 11 (SIGSEGV)", "abandoned", ...): fails the
 * task it was running, if any, and starts a new runner. */
void pool_slot_lost(cel_slot *s, const char *how);
/* Reports the outcome of the task in s and frees the slot. */
void pool_report(cel_slot *s, cel_msg *o);

#endif
