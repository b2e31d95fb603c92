/* celeriac-worker flags, and celeriac_worker_main for programs that embed the worker. */
#include <celeriac/worker.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon.h"

static void usage(void) {
    printf(
        "usage: celeriac-worker [options]\n\n"
        "Runs tasks from celeriac brokers.\n\n"
        "  --broker HOST:PORT       broker to connect to; repeat for failover (default "
        "127.0.0.1:7878)\n"
        "  --queues A,B             queues to consume (default: default)\n"
        "  --plugin PATH.so         load task handlers from a plugin; repeatable\n"
        "  --pool prefork|threads   prefork (default): a child process per slot, a crash kills\n"
        "                           only that child; threads: cheaper, no isolation, no hard "
        "limit\n"
        "  --concurrency N          tasks run at once (default: number of CPUs)\n"
        "  --prefetch M             extra tasks held ready beyond concurrency (default 1)\n"
        "  --soft-limit-ms N        default soft time limit: the task is told (default none)\n"
        "  --hard-limit-ms N        default hard time limit: the task is killed (default none)\n"
        "  --drain-timeout-ms N     on SIGTERM, wait this long for running tasks (default 30000)\n"
        "  --abort-grace-ms N       a cancelled task is killed after this (default 2000)\n"
        "  --heartbeat-ms N         ping the broker this often (default 5000)\n"
        "  --name NAME              shown in broker WORKERS (default host:pid)\n"
        "  --log-level L            debug, info (default), warn, error\n"
        "  --log-file PATH          log file, reopened on SIGHUP (default stderr)\n"
        "  --help                   this text\n\n"
        "Signals: SIGTERM/SIGINT drain (finish running tasks, return the rest), SIGQUIT stop now.\n"
        "Built-in tasks: celeriac.noop, celeriac.echo, celeriac.sleep, celeriac.fail, "
        "celeriac.crash.\n");
}

static bool split_queues(cel_worker_config *c, char *list) {
    c->nqueues = 0;
    for (char *q = strtok(list, ","); q; q = strtok(NULL, ",")) {
        if (c->nqueues == CEL_WORKER_MAX_LIST || !cel_name_valid(q, strlen(q))) return false;
        c->queues[c->nqueues++] = cel_str_c(q);
    }
    return c->nqueues > 0;
}

static bool number(const char *s, long lo, long hi, long *out) {
    char *end;
    long v = strtol(s, &end, 10);
    *out = v;
    return *s && !*end && v >= lo && v <= hi;
}

static void defaults(cel_worker_config *c) {
    memset(c, 0, sizeof *c);
    static char default_queue[] = "default";
    c->queues[0] = cel_str_c(default_queue), c->nqueues = 1;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    c->concurrency = cpus > 0 ? (int)cpus : 2;
    c->prefetch = 1;
    c->drain_timeout_ms = 30000, c->heartbeat_ms = 5000, c->abort_grace_ms = 2000;
    c->log_level = CEL_LOG_INFO;
    char host[64] = "worker";
    gethostname(host, sizeof host - 1);
    snprintf(c->name, sizeof c->name, "%s:%d", host, (int)getpid());
}

/* Returns 0 to run, 1 after --help, 2 on a bad flag. */
static int parse(cel_worker_config *c, int argc, char **argv) {
    enum {
        BROKER = 1,
        QUEUES,
        PLUGIN,
        POOL,
        CONC,
        PREFETCH,
        SOFT,
        HARD,
        DRAIN,
        GRACE,
        BEAT,
        NAME,
        LEVEL,
        FILE_,
        HELP
    };
    static const struct option longopts[] = {{"broker", 1, 0, BROKER},
                                             {"queues", 1, 0, QUEUES},
                                             {"plugin", 1, 0, PLUGIN},
                                             {"pool", 1, 0, POOL},
                                             {"concurrency", 1, 0, CONC},
                                             {"prefetch", 1, 0, PREFETCH},
                                             {"soft-limit-ms", 1, 0, SOFT},
                                             {"hard-limit-ms", 1, 0, HARD},
                                             {"drain-timeout-ms", 1, 0, DRAIN},
                                             {"abort-grace-ms", 1, 0, GRACE},
                                             {"heartbeat-ms", 1, 0, BEAT},
                                             {"name", 1, 0, NAME},
                                             {"log-level", 1, 0, LEVEL},
                                             {"log-file", 1, 0, FILE_},
                                             {"help", 0, 0, HELP},
                                             {0, 0, 0, 0}};
    int ch;
    long v;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        bool ok = true;
        switch (ch) {
        case BROKER:
            ok = c->nbrokers < CEL_WORKER_MAX_LIST;
            if (ok) c->brokers[c->nbrokers++] = optarg;
            break;
        case PLUGIN:
            ok = c->nplugins < CEL_WORKER_MAX_LIST;
            if (ok) c->plugins[c->nplugins++] = optarg;
            break;
        case QUEUES:
            ok = split_queues(c, optarg);
            break;
        case POOL:
            ok = !strcmp(optarg, "prefork") || !strcmp(optarg, "threads");
            c->pool = !strcmp(optarg, "threads") ? POOL_THREADS : POOL_PREFORK;
            break;
        case CONC:
            ok = number(optarg, 1, 1024, &v);
            c->concurrency = (int)v;
            break;
        case PREFETCH:
            ok = number(optarg, 0, 10000, &v);
            c->prefetch = (int)v;
            break;
        case SOFT:
            ok = number(optarg, 0, 86400000L * 30, &v);
            c->soft_limit_ms = (uint64_t)v;
            break;
        case HARD:
            ok = number(optarg, 0, 86400000L * 30, &v);
            c->hard_limit_ms = (uint64_t)v;
            break;
        case DRAIN:
            ok = number(optarg, 0, 86400000L, &v);
            c->drain_timeout_ms = (int)v;
            break;
        case GRACE:
            ok = number(optarg, 0, 3600000L, &v);
            c->abort_grace_ms = (int)v;
            break;
        case BEAT:
            ok = number(optarg, 10, 3600000L, &v);
            c->heartbeat_ms = (int)v;
            break;
        case NAME:
            snprintf(c->name, sizeof c->name, "%s", optarg);
            break;
        case LEVEL:
            ok = cel_log_level_parse(optarg, &c->log_level);
            break;
        case FILE_:
            snprintf(c->log_file, sizeof c->log_file, "%s", optarg);
            break;
        case HELP:
            usage();
            return 1;
        default:
            return 2;
        }
        if (!ok) {
            fprintf(stderr, "celeriac-worker: bad value for --%s: '%s' (see --help)\n",
                    longopts[ch - 1].name, optarg);
            return 2;
        }
    }
    static char default_broker[] = "127.0.0.1:7878";
    if (c->nbrokers == 0) c->brokers[c->nbrokers++] = default_broker;
    return 0;
}

int celeriac_worker_main(int argc, char **argv, celeriac_plugin_init_fn init) {
    cel_worker_config cfg;
    defaults(&cfg);
    int rc = parse(&cfg, argc, argv);
    if (rc) return rc == 1 ? 0 : 2;
    if (!cel_log_open(cfg.log_file, cfg.log_level)) {
        fprintf(stderr, "celeriac-worker: cannot open log file %s\n", cfg.log_file);
        return 2;
    }
    celeriac_registry reg;
    registry_init(&reg);
    builtin_register(&reg);
    if (init && init(&reg) != 0) {
        log_error("task registration failed");
        return 1;
    }
    for (size_t i = 0; i < cfg.nplugins; i++) {
        char why[512];
        if (!registry_load_plugin(&reg, cfg.plugins[i], why, sizeof why)) {
            log_error("cannot load plugin: %s", why);
            return 1;
        }
    }
    rc = worker_run(&cfg, &reg);
    registry_free(&reg);
    return rc;
}
