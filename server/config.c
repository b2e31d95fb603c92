/* Flags and config file for celeriacd. One table describes every option: its name, help text
 * and where it is stored, so the command line, the config file and --help cannot drift apart. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum opt_type { O_STR, O_INT, O_SIZE, O_U32, O_LOG, O_TEXT } opt_type;

typedef struct opt_desc {
    const char *name;
    opt_type type;
    size_t offset;
    size_t size; /* for strings */
    long min, max;
    const char *help;
} opt_desc;

#define S(n, m, h)                                                                                 \
    { n, O_STR, offsetof(cel_config, m), sizeof(((cel_config *)0)->m), 0, 0, h }
#define I(n, m, lo, hi, h)                                                                         \
    { n, O_INT, offsetof(cel_config, m), 0, lo, hi, h }

static const opt_desc opts[] = {
    S("listen", listen, "address to listen on (default 127.0.0.1)"),
    I("port", port, 1, 65535, "TCP port for the binary and text protocols (default 7878)"),
    S("redis-host", redis_host, "Redis host (default 127.0.0.1)"),
    I("redis-port", redis_port, 1, 65535, "Redis port (default 6379)"),
    I("redis-db", redis_db, 0, 1000, "Redis database number (default 0)"),
    S("redis-password", redis_password, "Redis password (default none; prefer --config)"),
    S("redis-socket", redis_socket, "Redis unix socket path (overrides host and port)"),
    S("prefix", prefix, "prefix of every Redis key (default cel)"),
    {"max-frame", O_U32, offsetof(cel_config, max_frame), 0, 64, 64 << 20,
     "largest binary frame in bytes (default 1048576)"},
    I("max-connections", max_connections, 1, 1000000, "connection limit (default 10000)"),
    {"output-soft", O_SIZE, offsetof(cel_config, output_soft), 0, 1024, LONG_MAX,
     "stop reading a client whose unsent replies exceed this many bytes (default 4 MiB)"},
    {"output-hard", O_SIZE, offsetof(cel_config, output_hard), 0, 4096, LONG_MAX,
     "drop a client whose unsent replies exceed this many bytes (default 64 MiB)"},
    I("idle-timeout", idle_timeout_s, 0, 86400 * 30,
      "close connections silent for this many seconds, 0 = never (default 0)"),
    I("hello-timeout-ms", hello_timeout_ms, 10, 600000,
      "a binary connection must complete hello within this (default 5000)"),
    I("lease-ms", lease_ms, 10, 86400000, "default task lease (default 30000)"),
    I("reaper-ms", reaper_ms, 10, 600000, "how often expired leases are requeued (default 1000)"),
    I("redis-timeout-ms", redis_timeout_ms, 10, 600000,
      "a Redis command slower than this fails and the connection is reset (default 2000)"),
    I("max-redis-inflight", max_redis_inflight, 1, 10000000,
      "Redis commands in flight before clients get BUSY (default 20000)"),
    I("result-ttl", result_ttl_s, 1, 86400 * 365, "seconds results are kept (default 86400)"),
    I("dispatch-batch", dispatch_batch, 1, 10000,
      "most tasks leased, or enqueued, per Redis call (default 64)"),
    I("poll-ms", poll_ms, 10, 60000,
      "re-check queues that idle workers wait on, for tasks enqueued via other brokers "
      "(default 200)"),
    I("retry-base-ms", retry_base_ms, 1, 86400000,
      "first retry delay; doubles per attempt, jittered to 50-100% (default 1000)"),
    I("retry-cap-ms", retry_cap_ms, 1, 86400000 * 7, "longest retry delay (default 3600000)"),
    I("poison-limit", poison_limit, 1, 1000,
      "deliveries that killed their worker before a task goes dead (default 3)"),
    I("dead-max", dead_max, 1, 100000000,
      "dead tasks kept per queue; beyond it the oldest are deleted (default 10000)"),
    I("busy-poll-us", busy_poll_us, 0, 100000,
      "after input, poll this many microseconds before sleeping: lower latency for the CPU "
      "it burns (default 0: off)"),
    {"text", O_TEXT, offsetof(cel_config, text_mode), 0, 0, 0,
     "text protocol: off, loopback (default) or on"},
    {"log-level", O_LOG, offsetof(cel_config, log_level), 0, 0, 0,
     "debug, info (default), warn or error"},
    S("log-file", log_file, "log file, reopened on SIGHUP (default stderr)"),
    S("name", server_name, "server name shown to clients (default celeriacd)"),
};
#define NOPTS (sizeof opts / sizeof opts[0])

void cel_config_defaults(cel_config *c) {
    memset(c, 0, sizeof *c);
    strcpy(c->listen, "127.0.0.1");
    c->port = 7878;
    strcpy(c->redis_host, "127.0.0.1");
    c->redis_port = 6379;
    strcpy(c->prefix, "cel");
    c->max_frame = 1u << 20;
    c->max_connections = 10000;
    c->output_soft = 4u << 20;
    c->output_hard = 64u << 20;
    c->hello_timeout_ms = 5000;
    c->lease_ms = 30000;
    c->reaper_ms = 1000;
    c->redis_timeout_ms = 2000;
    c->max_redis_inflight = 20000;
    c->result_ttl_s = 86400;
    c->dispatch_batch = 64;
    c->poll_ms = 200;
    c->retry_base_ms = 1000;
    c->retry_cap_ms = 3600000;
    c->poison_limit = 3;
    c->dead_max = 10000;
    c->text_mode = CEL_TEXT_LOOPBACK;
    c->log_level = CEL_LOG_INFO;
    strcpy(c->server_name, "celeriacd");
}

static int set_number(const opt_desc *o, void *dst, const char *val) {
    char *end;
    errno = 0;
    long long v = strtoll(val, &end, 10);
    if (errno || end == val || *end || v < o->min || v > o->max) {
        fprintf(stderr, "celeriacd: --%s wants a number from %ld to %ld, got '%s'\n", o->name,
                o->min, o->max, val);
        return -1;
    }
    if (o->type == O_INT) *(int *)dst = (int)v;
    if (o->type == O_U32) *(uint32_t *)dst = (uint32_t)v;
    if (o->type == O_SIZE) *(size_t *)dst = (size_t)v;
    return 0;
}

static int set_option(cel_config *c, const opt_desc *o, const char *val) {
    void *dst = (char *)c + o->offset;
    switch (o->type) {
    case O_STR:
        if (strlen(val) >= o->size) {
            fprintf(stderr, "celeriacd: --%s is longer than %zu bytes\n", o->name, o->size - 1);
            return -1;
        }
        strcpy(dst, val);
        return 0;
    case O_LOG:
        if (cel_log_level_parse(val, dst)) return 0;
        fprintf(stderr, "celeriacd: --log-level wants debug, info, warn or error\n");
        return -1;
    case O_TEXT:
        if (!strcmp(val, "off"))
            *(cel_text_mode *)dst = CEL_TEXT_OFF;
        else if (!strcmp(val, "loopback"))
            *(cel_text_mode *)dst = CEL_TEXT_LOOPBACK;
        else if (!strcmp(val, "on"))
            *(cel_text_mode *)dst = CEL_TEXT_ON;
        else {
            fprintf(stderr, "celeriacd: --text wants off, loopback or on\n");
            return -1;
        }
        return 0;
    default:
        return set_number(o, dst, val);
    }
}

static const opt_desc *find_option(const char *name) {
    for (size_t i = 0; i < NOPTS; i++)
        if (strcmp(opts[i].name, name) == 0) return &opts[i];
    return NULL;
}

static void print_help(void) {
    printf("usage: celeriacd [options]\n\n"
           "The celeriac broker: durable task queues in Redis, pushed to workers.\n\n");
    printf("  %-24s %s\n", "--config FILE", "read options from FILE (lines: name value)");
    for (size_t i = 0; i < NOPTS; i++) {
        char flag[64];
        snprintf(flag, sizeof flag, "--%s %s", opts[i].name,
                 opts[i].type == O_STR   ? "STR"
                 : opts[i].type <= O_U32 ? "N"
                                         : "WORD");
        printf("  %-24s %s\n", flag, opts[i].help);
    }
    printf("  %-24s %s\n", "--help", "this text");
    printf("\nSignals: SIGTERM/SIGINT stop cleanly, SIGHUP reopens the log file.\n");
}

static int parse_file(cel_config *c, const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "celeriacd: cannot read %s: %s\n", path, strerror(errno));
        return -1;
    }
    char line[1024];
    int lineno = 0, rc = 0;
    while (rc == 0 && fgets(line, sizeof line, f)) {
        lineno++;
        char name[64], val[900];
        line[strcspn(line, "\r\n")] = 0;
        char *p = line + strspn(line, " \t");
        if (*p == '#' || *p == 0) continue;
        if (sscanf(p, "%63s %899[^\n]", name, val) != 2) {
            fprintf(stderr, "celeriacd: %s:%d: expected 'name value'\n", path, lineno);
            rc = -1;
        } else {
            const opt_desc *o = find_option(name);
            rc = o ? set_option(c, o, val) : -1;
            if (!o) fprintf(stderr, "celeriacd: %s:%d: unknown option '%s'\n", path, lineno, name);
        }
    }
    fclose(f);
    return rc;
}

int cel_config_parse(cel_config *c, int argc, char **argv) {
    static struct option longopts[NOPTS + 3];
    for (size_t i = 0; i < NOPTS; i++)
        longopts[i] = (struct option){opts[i].name, required_argument, NULL, (int)i};
    longopts[NOPTS] = (struct option){"config", required_argument, NULL, 1000};
    longopts[NOPTS + 1] = (struct option){"help", no_argument, NULL, 1001};
    longopts[NOPTS + 2] = (struct option){0};
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        if (ch == 1001) return print_help(), 1;
        if (ch == 1000 && parse_file(c, optarg) != 0) return -1;
        if (ch == '?') return -1;
        if (ch >= 0 && (size_t)ch < NOPTS && set_option(c, &opts[ch], optarg) != 0) return -1;
    }
    if (optind < argc) {
        fprintf(stderr, "celeriacd: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (c->output_hard < c->output_soft) c->output_hard = c->output_soft;
    return 0;
}
