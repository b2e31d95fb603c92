/* The worker daemon's configuration and entry point (see daemon.c, main.c). */
#ifndef CELERIAC_WORKER_DAEMON_H
#define CELERIAC_WORKER_DAEMON_H

#include "worker.h"

#define CEL_WORKER_MAX_LIST 32

typedef struct cel_worker_config {
    char *brokers[CEL_WORKER_MAX_LIST];
    size_t nbrokers;
    char *plugins[CEL_WORKER_MAX_LIST];
    size_t nplugins;
    cel_str queues[CEL_WORKER_MAX_LIST];
    size_t nqueues;
    cel_pool_kind pool;
    int concurrency, prefetch;
    uint64_t soft_limit_ms, hard_limit_ms;
    int drain_timeout_ms, heartbeat_ms, abort_grace_ms;
    cel_log_level log_level;
    char log_file[256];
    char name[128];
} cel_worker_config;

int worker_run(const cel_worker_config *cfg, const celeriac_registry *reg);

#endif
