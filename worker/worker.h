/* celeriac-worker internals: the task registry, the runner that executes one task at a time in
 * a pool child or thread, the pool, and the daemon that connects them to brokers. */
#ifndef CELERIAC_WORKER_H
#define CELERIAC_WORKER_H

#include <celeriac/conn.h>
#include <celeriac/proto.h>
#include <celeriac/task.h>
#include <event2/event.h>
#include <sys/types.h>

#include "log.h"

/* ---- registry.c ---- */
typedef struct cel_handler {
    char name[CEL_NAME_MAX + 1];
    celeriac_task_fn fn;
    void *data;
} cel_handler;

struct celeriac_registry {
    cel_handler *items;
    size_t n, cap;
};

void registry_init(celeriac_registry *r);
void registry_free(celeriac_registry *r);
const cel_handler *registry_find(const celeriac_registry *r, const char *name, size_t len);
/* dlopen + celeriac_plugin_init; false with a message on failure. */
bool registry_load_plugin(celeriac_registry *r, const char *path, char *why, size_t cap);
void builtin_register(celeriac_registry *r);

/* ---- runner.c: one task at a time over a socketpair end ---- */
/* Reads task frames from fd, runs them, writes ack/fail frames back; returns at EOF. */
void runner_loop(int fd, const celeriac_registry *r);

/* ---- pool.c ---- */
typedef enum cel_pool_kind { POOL_PREFORK, POOL_THREADS } cel_pool_kind;

typedef struct cel_pool cel_pool;
/* Outcome of one task: an ack or fail message (valid during the call). */
typedef void (*cel_pool_outcome_cb)(const cel_msg *outcome, void *arg);

cel_pool *pool_new(struct event_base *base, cel_pool_kind kind, int size,
                   const celeriac_registry *r, cel_pool_outcome_cb cb, void *arg);
void pool_free(cel_pool *p);
int pool_idle(const cel_pool *p);
int pool_busy(const cel_pool *p);
/* Hands a task to an idle slot; false if none is idle. */
bool pool_run(cel_pool *p, const cel_msg *task, uint64_t soft_ms, uint64_t hard_ms);
/* Tells the slot running id to stop (cancelled); killed after grace_ms if it does not. */
void pool_abort(cel_pool *p, const char *id, size_t len, int grace_ms);

#endif
