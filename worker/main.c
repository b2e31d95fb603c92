/* celeriac-worker's flags and wiring: celeriac_worker_main, which the celeriac-worker binary
 * (cli_main.c) and programs embedding libceleriac-worker call. Parses flags, fills the registry
 * (built-ins, the embedder's tasks, plugins), then hands over to worker_run. */
#include <celeriac/conn.h>
#include <celeriac/worker.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "worker.h"

static void usage(void) {
    printf(
        "usage: celeriac-worker [options]\n"
        "\n"
        "Runs tasks from celeriac brokers: built-in tasks, plugin tasks (--plugin) and, in a\n"
        "program embedding libceleriac-worker, its own.\n"
        "\n"
        "Brokers and queues:\n"
        "  --broker HOST:PORT       broker to connect to (default 127.0.0.1:7878); repeat to\n"
        "                           fail over: reconnects rotate through them with jittered\n"
        "                           backoff, and unsent acks/fails are resent after reconnecting\n"
        "  --queues A,B             queues to take tasks from (default: default)\n"
        "  --name NAME              shown in the broker's WORKERS list (default host:pid)\n"
        "\n"
        "Tasks and pool:\n"
        "  --plugin PATH.so         load task handlers (celeriac_plugin_init); repeatable\n"
        "  --pool prefork|threads|solo\n"
        "                           prefork (default): a child process per slot; a task that\n"
        "                           crashes kills only its child (task fails, reason worker_lost)\n"
        "                           and a new child takes over. threads: cheaper, no isolation; a\n"
        "                           crash kills the worker, and at a hard limit the thread is\n"
        "                           abandoned, not killed. solo: tasks run one at a time in the\n"
        "                           worker's own loop (fastest for short tasks; concurrency 1,\n"
        "                           no hard limit, heartbeats and touches wait while one runs)\n"
        "  --concurrency N          tasks run at once (default: number of CPUs)\n"
        "  --prefetch M             tasks held ready beyond those running (default 1); the worker\n"
        "                           asks the broker for concurrency + prefetch tasks at a time\n"
        "  --pool-pipeline auto|on|off\n"
        "                           prefork: write a busy child its next prefetched task, which\n"
        "                           it starts without waiting for the worker (faster for short\n"
        "                           tasks); but that task waits for the one ahead of it even if\n"
        "                           another child goes idle first. auto (default): on with\n"
        "                           --concurrency 1, where a prefetched task waits for the one\n"
        "                           child anyway\n"
        "\n"
        "Time limits (a task's own soft_ms/hard_ms win over these):\n"
        "  --soft-limit-ms N        the task is told to stop (celeriac_task_should_stop);\n"
        "                           default none\n"
        "  --hard-limit-ms N        the task's child is killed and it fails, reason timeout;\n"
        "                           default none\n"
        "  --abort-grace-ms N       a cancelled running task is killed after this (default 2000)\n"
        "\n"
        "Lifecycle:\n"
        "  --drain-timeout-ms N     SIGTERM/SIGINT: take no new tasks, wait this long for running\n"
        "                           ones (default 30000), then stop; tasks not finished by then\n"
        "                           and prefetched ones go back to the broker at once\n"
        "  --heartbeat-ms N         ping the broker this often (default 5000). Leases are touched\n"
        "                           at a third of their length while tasks run or wait. While\n"
        "                           no broker answers, a warning says so (then every 30 s)\n"
        "  --log-level L            debug, info (default), warn, error\n"
        "  --log-file PATH          log file, reopened on SIGHUP (default stderr)\n"
        "  --help                   this text\n"
        "\n"
        "Signals: SIGTERM/SIGINT drain; a second one, or SIGQUIT, stops at once (running tasks "
        "are\n"
        "killed and go back to the broker); SIGHUP reopens the log file. Pool children ignore\n"
        "SIGTERM/SIGINT/SIGQUIT (the parent stops them) and die with their parent.\n"
        "\n"
        "Built-in tasks: celeriac.noop; celeriac.echo (returns its args); celeriac.sleep (args:\n"
        "seconds or [seconds]; stops early when cancelled or at its soft limit); celeriac.fail\n"
        "(always fails, retryable); celeriac.crash (segfaults its child).\n"
        "\n"
        "Exit status: 0 after a clean stop, 1 when start-up failed, 2 on a bad flag.\n");
}

static bool split_queues(cel_worker_config *c, char *list) {
    c->nqueues = 0;
    for (char *save, *q = strtok_r(list, ",", &save); q; q = strtok_r(NULL, ",", &save)) {
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
    c->queues[0] = cel_str_c("default"), c->nqueues = 1;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    c->concurrency = cpus > 0 ? (int)cpus : 2;
    c->prefetch = 1;
    c->pipeline_mode = -1;
    c->drain_timeout_ms = 30000, c->heartbeat_ms = 5000, c->abort_grace_ms = 2000;
    c->log_level = CEL_LOG_INFO;
    char host[64] = "worker";
    gethostname(host, sizeof host - 1);
    snprintf(c->name, sizeof c->name, "%s:%d", host, (int)getpid());
}

enum {
    OPT_BROKER = 1,
    OPT_QUEUES,
    OPT_PLUGIN,
    OPT_POOL,
    OPT_CONCURRENCY,
    OPT_PREFETCH,
    OPT_PIPELINE,
    OPT_SOFT,
    OPT_HARD,
    OPT_DRAIN,
    OPT_GRACE,
    OPT_HEARTBEAT,
    OPT_NAME,
    OPT_LOG_LEVEL,
    OPT_LOG_FILE,
    OPT_HELP
};

static const struct option longopts[] = {{"broker", 1, 0, OPT_BROKER},
                                         {"queues", 1, 0, OPT_QUEUES},
                                         {"plugin", 1, 0, OPT_PLUGIN},
                                         {"pool", 1, 0, OPT_POOL},
                                         {"concurrency", 1, 0, OPT_CONCURRENCY},
                                         {"prefetch", 1, 0, OPT_PREFETCH},
                                         {"pool-pipeline", 1, 0, OPT_PIPELINE},
                                         {"soft-limit-ms", 1, 0, OPT_SOFT},
                                         {"hard-limit-ms", 1, 0, OPT_HARD},
                                         {"drain-timeout-ms", 1, 0, OPT_DRAIN},
                                         {"abort-grace-ms", 1, 0, OPT_GRACE},
                                         {"heartbeat-ms", 1, 0, OPT_HEARTBEAT},
                                         {"name", 1, 0, OPT_NAME},
                                         {"log-level", 1, 0, OPT_LOG_LEVEL},
                                         {"log-file", 1, 0, OPT_LOG_FILE},
                                         {"help", 0, 0, OPT_HELP},
                                         {0, 0, 0, 0}};

/* Checked now so that a typo is a flag error, not an endless reconnect loop. */
static bool broker_ok(const char *addr) {
    char host[256];
    int port;
    return cel_conn_parse_addr(addr, host, sizeof host, &port);
}

#define MONTH_MS (86400000L * 31)

/* One flag; false when its value is bad. */
static bool apply(cel_worker_config *c, int opt, char *val) {
    long v = 0;
    bool ok = true;
    switch (opt) {
    case OPT_BROKER:
        ok = c->nbrokers < CEL_WORKER_MAX_LIST && broker_ok(val);
        if (ok) c->brokers[c->nbrokers++] = val;
        return ok;
    case OPT_PLUGIN:
        ok = c->nplugins < CEL_WORKER_MAX_LIST;
        if (ok) c->plugins[c->nplugins++] = val;
        return ok;
    case OPT_QUEUES:
        return split_queues(c, val);
    case OPT_POOL:
        c->pool = !strcmp(val, "threads") ? CEL_POOL_THREADS
                  : !strcmp(val, "solo")  ? CEL_POOL_SOLO
                                          : CEL_POOL_PREFORK;
        return !strcmp(val, "prefork") || !strcmp(val, "threads") || !strcmp(val, "solo");
    case OPT_PIPELINE:
        c->pipeline_mode = !strcmp(val, "on") ? 1 : !strcmp(val, "off") ? 0 : -1;
        return !strcmp(val, "on") || !strcmp(val, "off") || !strcmp(val, "auto");
    case OPT_NAME:
        snprintf(c->name, sizeof c->name, "%s", val);
        return cel_utf8_valid(val, strlen(val)) && strlen(val) < sizeof c->name;
    case OPT_LOG_LEVEL:
        return cel_log_level_parse(val, &c->log_level);
    case OPT_LOG_FILE:
        snprintf(c->log_file, sizeof c->log_file, "%s", val);
        return strlen(val) < sizeof c->log_file;
    }
    static const long range[][2] = {
        [OPT_CONCURRENCY] = {1, 1024},    [OPT_PREFETCH] = {0, 100000}, [OPT_SOFT] = {0, MONTH_MS},
        [OPT_HARD] = {0, MONTH_MS},       [OPT_DRAIN] = {0, 86400000L}, [OPT_GRACE] = {0, 3600000L},
        [OPT_HEARTBEAT] = {10, 3600000L},
    };
    ok = number(val, range[opt][0], range[opt][1], &v);
    if (opt == OPT_CONCURRENCY) c->concurrency = (int)v;
    if (opt == OPT_PREFETCH) c->prefetch = (int)v;
    if (opt == OPT_SOFT) c->soft_limit_ms = (uint64_t)v;
    if (opt == OPT_HARD) c->hard_limit_ms = (uint64_t)v;
    if (opt == OPT_DRAIN) c->drain_timeout_ms = (int)v;
    if (opt == OPT_GRACE) c->abort_grace_ms = (int)v;
    if (opt == OPT_HEARTBEAT) c->heartbeat_ms = (int)v;
    return ok;
}

/* Returns 0 to run, 1 after --help, 2 on a bad flag. */
static int parse(cel_worker_config *c, int argc, char **argv) {
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        if (opt == OPT_HELP) return usage(), 1;
        if (opt < OPT_BROKER || opt > OPT_HELP) {
            fprintf(stderr, "celeriac-worker: see --help\n");
            return 2;
        }
        if (!apply(c, opt, optarg)) {
            fprintf(stderr, "celeriac-worker: bad value for --%s: '%s' (see --help)\n",
                    longopts[opt - 1].name, optarg);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "celeriac-worker: unexpected argument '%s' (see --help)\n", argv[optind]);
        return 2;
    }
    if (c->nbrokers == 0) c->brokers[c->nbrokers++] = "127.0.0.1:7878";
    if (c->pool == CEL_POOL_SOLO) c->concurrency = 1; /* one loop, one task at a time */
    if (c->pipeline_mode == 1 && c->pool != CEL_POOL_PREFORK) {
        fprintf(stderr, "celeriac-worker: --pool-pipeline on needs --pool prefork\n");
        return 2;
    }
    c->pipeline = c->pool == CEL_POOL_PREFORK &&
                  (c->pipeline_mode == 1 || (c->pipeline_mode < 0 && c->concurrency == 1));
    return 0;
}

static int fill_registry(celeriac_registry *reg, const cel_worker_config *cfg,
                         celeriac_plugin_init_fn init) {
    reg->origin = "the built-ins";
    if (builtin_register(reg) != 0) return log_error("cannot register the built-in tasks"), 1;
    reg->origin = "the program", reg->refused[0] = 0;
    if (init && init(reg) != 0) {
        log_error("task registration failed%s%s", reg->refused[0] ? ": " : "", reg->refused);
        return 1;
    }
    for (size_t i = 0; i < cfg->nplugins; i++) {
        char why[600];
        if (!registry_load_plugin(reg, cfg->plugins[i], why, sizeof why)) {
            log_error("cannot load plugin: %s", why);
            return 1;
        }
    }
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
    rc = fill_registry(&reg, &cfg, init);
    if (rc == 0) rc = worker_run(&cfg, &reg);
    registry_free(&reg);
    return rc;
}
