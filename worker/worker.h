/* celeriac-worker internals, one header for the whole folder: the task registry (registry.c,
 * builtin.c), the runner that executes tasks in a pool child or thread (runner.c), the pool
 * (pool.c with pool_prefork.c / pool_threads.c) and the daemon core (worker.c, main.c). */
#ifndef CELERIAC_WORKER_INTERNAL_H
#define CELERIAC_WORKER_INTERNAL_H

#include <celeriac/proto.h>
#include <celeriac/task.h>
#include <event2/event.h>
#include <signal.h>

#include "log.h"

/* ---- registry.c: task names → handlers ----------------------------------------------------- */

typedef struct cel_handler {
    char name[CEL_NAME_MAX + 1];
    celeriac_task_fn fn;
    void *data;
    const char *origin; /* the plugin path that registered it, "the built-ins" or "the program" */
} cel_handler;

/* Filled before the pool starts and only read afterwards, so prefork children inherit it and
 * pool threads share it without locks. */
struct celeriac_registry {
    cel_handler *items;
    size_t n, cap;
    const char *origin; /* who registers now (see cel_handler.origin) */
    char refused[200];  /* why the last registration was refused */
};

void registry_init(celeriac_registry *r);
void registry_free(celeriac_registry *r);
const cel_handler *registry_find(const celeriac_registry *r, const char *name, size_t len);
/* The only way to register a "celeriac." name (celeriac_register refuses them). */
int registry_add_builtin(celeriac_registry *r, const char *name, celeriac_task_fn fn);
/* dlopen + celeriac_plugin_init; false with a message in why on failure. */
bool registry_load_plugin(celeriac_registry *r, const char *path, char *why, size_t cap);

/* ---- builtin.c ---------------------------------------------------------------------------- */

/* celeriac.noop, celeriac.echo, celeriac.sleep, celeriac.fail, celeriac.crash */
int builtin_register(celeriac_registry *r);

/* ---- runner.c: runs one task at a time for a pool slot -------------------------------------- */

/* Reads task frames from fd, runs their handlers and writes ack/fail frames back, until fd
 * reaches EOF. An abort frame of the running task sets its cancelled flag; a task frame read
 * meanwhile (a pipelining pool) runs next, unless an abort of it came too. */
void runner_loop(int fd, const celeriac_registry *r);
/* SIGHUP handler for prefork children: the runner reopens the log between tasks. */
void runner_on_sighup(int sig);
/* A runner in the caller's own thread (the solo pool): runner_run runs the task in one whole
 * frame (header and body) and fills outcome (valid until the next run); false if the frame is
 * not a task. */
typedef struct cel_runner cel_runner;
cel_runner *runner_new(const celeriac_registry *r);
bool runner_run(cel_runner *rn, const uint8_t *frame, size_t len, cel_msg *outcome);
void runner_free(cel_runner *rn);

/* ---- pool.c: where tasks run --------------------------------------------------------------- */

typedef enum cel_pool_kind { CEL_POOL_PREFORK, CEL_POOL_THREADS, CEL_POOL_SOLO } cel_pool_kind;

const char *cel_pool_kind_name(cel_pool_kind k);

typedef struct cel_pool cel_pool;
/* The outcome of one task: an ack or fail message, valid only during the call. Exactly one per
 * task handed to pool_run*, unless the pool is freed first. */
typedef void (*cel_pool_outcome_cb)(const cel_msg *outcome, void *arg);

cel_pool *pool_new(struct event_base *base, cel_pool_kind kind, int size,
                   const celeriac_registry *r, cel_pool_outcome_cb cb, void *arg);
/* Stops every runner: idle ones see EOF and exit, busy ones are killed (prefork) or abandoned
 * (threads). Reports no outcomes. */
void pool_free(cel_pool *p);
/* Pipelining (prefork only; false for the other kinds): a runner busy with one task may also be
 * written the next, which it starts without waiting for the pool between the two. A task so
 * queued waits for the one ahead of it even when another runner goes idle first. */
bool pool_set_pipeline(cel_pool *p, bool on);
/* Draining: tasks queued behind running ones go back (their runners skip them; one that started
 * anyway and stops when told is not reported, and one that finishes is). */
void pool_withdraw_queued(cel_pool *p);
/* How many more tasks the pool takes now (idle runners, and with pipelining, busy ones with
 * nothing queued behind); and how many it holds (running or queued). */
int pool_idle(const cel_pool *p);
int pool_busy(const cel_pool *p);
/* Hands a task to an idle slot, or with pipelining queues it behind a busy one; false if
 * neither can take it. task->soft_ms / hard_ms are the limits that apply (flags already merged
 * in); a hard limit runs from when the runner starts the task. */
bool pool_run(cel_pool *p, const cel_msg *task);
/* Same with the task already encoded as a whole frame. */
bool pool_run_frame(cel_pool *p, const uint8_t *frame, size_t len, cel_str id, uint64_t token,
                    uint64_t hard_ms);
/* The task id/token is running, or queued to run? */
bool pool_running(const cel_pool *p, cel_str id, uint64_t token);
/* Tells the task its run is cancelled; if it has not returned grace_ms later its child is
 * killed (or its thread abandoned). Its outcome is then fail {reason "cancelled", retry false}
 * whatever the handler returns. */
void pool_abort(cel_pool *p, cel_str id, uint64_t token, int grace_ms);
/* Prefork: sends sig to every child (SIGHUP for log reopening). Threads: nothing. */
void pool_signal(cel_pool *p, int sig);

/* ---- worker.c: the daemon core ---------------------------------------------------------- */

#define CEL_WORKER_MAX_LIST 32

typedef struct cel_worker_config {
    const char *brokers[CEL_WORKER_MAX_LIST];
    size_t nbrokers;
    const char *plugins[CEL_WORKER_MAX_LIST];
    size_t nplugins;
    cel_str queues[CEL_WORKER_MAX_LIST];
    size_t nqueues;
    cel_pool_kind pool;
    int concurrency, prefetch;
    bool pipeline;     /* prefork: write a busy child its next task (see pool_set_pipeline) */
    int pipeline_mode; /* as given: 1 on, 0 off, -1 auto (on with concurrency 1) */
    uint64_t soft_limit_ms, hard_limit_ms; /* defaults for tasks that carry none; 0: none */
    int drain_timeout_ms, heartbeat_ms, abort_grace_ms;
    cel_log_level log_level;
    char log_file[256];
    char name[128];
} cel_worker_config;

/* Runs until drained (SIGTERM/SIGINT) or stopped (SIGQUIT, a second SIGTERM). Returns the
 * process exit code. */
int worker_run(const cel_worker_config *cfg, const celeriac_registry *reg);

#endif
