/* celeriac: the command line for people and scripts. JSON in, JSON out; errors are one line on
 * stderr with a non-zero exit (1: the task failed or the wait timed out, 2: bad usage,
 * 3: the broker refused or could not be reached). */
#include <celeriac/celeriac.h>
#include <getopt.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *usage_main =
    "usage: celeriac [--broker HOST:PORT[,HOST:PORT]] COMMAND [options]\n\n"
    "commands:\n"
    "  enqueue [--queue Q] [--priority P] [--delay SECONDS] [--retries N] [--id ID]\n"
    "          [--soft-limit MS] [--hard-limit MS] [--unique KEY] TASK [ARGS-JSON]\n"
    "                          enqueue a task, print its id\n"
    "  wait ID [--timeout S]   wait for the task to end, print its result as JSON\n"
    "  status ID               print the task's state as JSON\n"
    "  cancel ID               cancel a queued, scheduled or running task\n"
    "  stats                   broker counters and queues as JSON\n"
    "  queues                  queues with their depths as JSON\n"
    "  pause Q | resume Q      stop / restart dispatching a queue (enqueues still accepted)\n"
    "  purge Q --yes           delete a queue's ready and scheduled tasks\n"
    "  dead list Q [--count N] ids in the queue's dead set, oldest first\n"
    "  dead requeue Q [ID]     dead tasks (one, or all) back to ready\n"
    "  dead purge Q --yes      delete the dead tasks\n\n"
    "The broker defaults to $CELERIAC_BROKER, then 127.0.0.1:7878. `celeriac COMMAND --help`\n"
    "shows one command.\n";

static int die(int code, const char *fmt, const char *arg) {
    fprintf(stderr, "celeriac: ");
    fprintf(stderr, fmt, arg);
    fputc('\n', stderr);
    return code;
}

static celeriac *connect_or_die(const char *broker) {
    char err[256];
    celeriac *c = celeriac_connect(broker, 5000, err, sizeof err);
    if (!c) die(3, "%s", err);
    return c;
}

static void print_info(const celeriac_task_info *t) {
    json_t *o = json_pack("{ss ss ss ss si sI sI sI}", "id", t->id, "state", t->state, "queue",
                          t->queue, "task", t->task, "attempt", (int)t->attempt, "created_ms",
                          (json_int_t)t->created_ms, "started_ms", (json_int_t)t->started_ms,
                          "finished_ms", (json_int_t)t->finished_ms);
    if (t->reason[0]) json_object_set_new(o, "reason", json_string(t->reason));
    if (t->error) json_object_set_new(o, "error", json_string(t->error));
    if (t->result_json)
        json_object_set_new(o, "result", json_loads(t->result_json, JSON_DECODE_ANY, NULL));
    char *s = json_dumps(o, JSON_COMPACT);
    puts(s);
    free(s);
    json_decref(o);
}

static bool num(const char *s, double lo, double hi, double *out) {
    char *end;
    *out = strtod(s, &end);
    return *s && !*end && *out >= lo && *out <= hi;
}

static int cmd_enqueue(const char *broker, int argc, char **argv) {
    static const struct option lo[] = {{"queue", 1, 0, 'q'},      {"priority", 1, 0, 'p'},
                                       {"delay", 1, 0, 'd'},      {"retries", 1, 0, 'r'},
                                       {"id", 1, 0, 'i'},         {"soft-limit", 1, 0, 's'},
                                       {"hard-limit", 1, 0, 'H'}, {"unique", 1, 0, 'u'},
                                       {"help", 0, 0, 'h'},       {0, 0, 0, 0}};
    celeriac_opts o;
    memset(&o, 0, sizeof o);
    const char *queue = "default";
    int ch;
    double v;
    while ((ch = getopt_long(argc, argv, "+", lo, NULL)) != -1) {
        bool ok = true;
        switch (ch) {
        case 'q':
            queue = optarg;
            break;
        case 'p':
            ok = num(optarg, 0, 255, &v), o.priority = (int)v;
            break;
        case 'd':
            ok = num(optarg, 0, 2592000, &v), o.delay_ms = (uint64_t)(v * 1000);
            break;
        case 'r':
            ok = num(optarg, 0, 1000000, &v), o.max_retries = (uint32_t)v;
            break;
        case 's':
            ok = num(optarg, 0, 2592000000.0, &v), o.soft_ms = (uint64_t)v;
            break;
        case 'H':
            ok = num(optarg, 0, 2592000000.0, &v), o.hard_ms = (uint64_t)v;
            break;
        case 'i':
            o.id = optarg;
            break;
        case 'u':
            o.unique_key = optarg;
            break;
        case 'h':
            return fputs(usage_main, stdout), 0;
        default:
            return 2;
        }
        if (!ok) return die(2, "bad number '%s'", optarg);
    }
    if (optind >= argc) return die(2, "%s", "enqueue needs a TASK (see --help)");
    const char *task = argv[optind];
    const char *args = optind + 1 < argc ? argv[optind + 1] : NULL;
    celeriac *c = connect_or_die(broker);
    if (!c) return 3;
    char id[CELERIAC_ID_SIZE];
    int rc = celeriac_enqueue_json(c, queue, task, args, &o, id);
    if (rc != CELERIAC_OK) {
        fprintf(stderr, "celeriac: enqueue failed: %s: %s\n", celeriac_strerror(rc),
                celeriac_last_error(c));
        celeriac_close(c);
        return rc == CELERIAC_E_ARGS ? 2 : 3;
    }
    puts(id);
    celeriac_close(c);
    return 0;
}

static bool terminal_ok(const celeriac_task_info *t) {
    return strcmp(t->state, "succeeded") == 0;
}

static int cmd_id(const char *broker, const char *what, int argc, char **argv) {
    static const struct option lo[] = {{"timeout", 1, 0, 't'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    double timeout = 30;
    int ch;
    while ((ch = getopt_long(argc, argv, "+", lo, NULL)) != -1) {
        if (ch == 'h') return fputs(usage_main, stdout), 0;
        if (ch != 't' || !num(optarg, 0, 86400, &timeout))
            return die(2, "%s", "bad option (see --help)");
    }
    if (optind >= argc) return die(2, "%s needs a task ID", what);
    celeriac *c = connect_or_die(broker);
    if (!c) return 3;
    celeriac_task_info t;
    int rc;
    if (!strcmp(what, "cancel"))
        rc = celeriac_cancel(c, argv[optind]);
    else if (!strcmp(what, "status"))
        rc = celeriac_status(c, argv[optind], &t);
    else
        rc = celeriac_wait(c, argv[optind], (int)(timeout * 1000), &t);
    int exit_code = 0;
    if (rc != CELERIAC_OK) {
        fprintf(stderr, "celeriac: %s %s: %s: %s\n", what, argv[optind], celeriac_strerror(rc),
                celeriac_last_error(c));
        exit_code = rc == CELERIAC_E_TIMEOUT ? 1 : rc == CELERIAC_E_ARGS ? 2 : 3;
    } else if (!strcmp(what, "cancel")) {
        puts("cancelled");
    } else {
        print_info(&t);
        if (!strcmp(what, "wait") && !terminal_ok(&t)) {
            fprintf(stderr, "celeriac: task %s %s: %s\n", t.id, t.state, t.error ? t.error : "");
            exit_code = 1;
        }
        celeriac_task_info_free(&t);
    }
    celeriac_close(c);
    return exit_code;
}

static int cmd_stats(const char *broker, bool queues_only) {
    celeriac *c = connect_or_die(broker);
    if (!c) return 3;
    char *json = NULL;
    int rc = celeriac_stats(c, &json);
    if (rc != CELERIAC_OK) {
        fprintf(stderr, "celeriac: stats: %s: %s\n", celeriac_strerror(rc), celeriac_last_error(c));
        celeriac_close(c);
        return 3;
    }
    json_t *j = json_loads(json, 0, NULL);
    json_t *show = queues_only ? json_object_get(j, "queues") : j;
    char *s = json_dumps(show ? show : j, JSON_INDENT(2));
    puts(s);
    free(s), free(json);
    json_decref(j);
    celeriac_close(c);
    return 0;
}

/* pause, resume, purge and the dead-letter commands. */
static int cmd_admin(const char *broker, int argc, char **argv) {
    bool dead = !strcmp(argv[0], "dead");
    const char *sub = dead && argc > 1 ? argv[1] : NULL;
    int qi = dead ? 2 : 1;
    if (argc <= qi || (dead && !sub)) return die(2, "%s needs a queue (see --help)", argv[0]);
    const char *queue = argv[qi], *extra = argc > qi + 1 ? argv[qi + 1] : NULL;
    bool destructive = !strcmp(argv[0], "purge") || (dead && !strcmp(sub, "purge"));
    if (destructive && (!extra || strcmp(extra, "--yes") != 0))
        return die(2, "%s deletes tasks: repeat with --yes", argv[0]);
    celeriac *c = connect_or_die(broker);
    if (!c) return 3;
    int rc;
    uint64_t count = 0;
    if (dead && !strcmp(sub, "list")) {
        char **ids;
        size_t n;
        long max = extra && !strcmp(extra, "--count") && argc > qi + 2 ? atol(argv[qi + 2]) : 100;
        rc = celeriac_dead_list(c, queue, max > 0 ? (size_t)max : 100, &ids, &n);
        for (size_t i = 0; rc == CELERIAC_OK && i < n; i++) puts(ids[i]);
        celeriac_ids_free(ids, n);
    } else {
        const char *action = !dead                     ? argv[0]
                             : !strcmp(sub, "requeue") ? "dead_requeue"
                             : !strcmp(sub, "purge")   ? "dead_purge"
                                                       : NULL;
        if (!action) return celeriac_close(c), die(2, "unknown dead command '%s'", sub);
        rc = celeriac_queue_admin(c, action, queue,
                                  dead && extra && strcmp(extra, "--yes") ? extra : NULL, &count);
        if (rc == CELERIAC_OK && strcmp(action, "pause") && strcmp(action, "resume"))
            printf("%llu\n", (unsigned long long)count);
    }
    if (rc != CELERIAC_OK)
        fprintf(stderr, "celeriac: %s: %s: %s\n", argv[0], celeriac_strerror(rc),
                celeriac_last_error(c));
    celeriac_close(c);
    return rc == CELERIAC_OK ? 0 : rc == CELERIAC_E_ARGS ? 2 : 3;
}

int main(int argc, char **argv) {
    const char *broker = NULL;
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
            return fputs(usage_main, stdout), 0;
        if (!strcmp(argv[i], "--broker") && i + 1 < argc)
            broker = argv[++i];
        else
            return die(2, "unknown option %s (see --help)", argv[i]);
    }
    if (i >= argc) return fputs(usage_main, stderr), 2;
    const char *cmd = argv[i];
    int sub_argc = argc - i;
    char **sub_argv = argv + i;
    optind = 1;
    if (!strcmp(cmd, "enqueue")) return cmd_enqueue(broker, sub_argc, sub_argv);
    if (!strcmp(cmd, "wait") || !strcmp(cmd, "status") || !strcmp(cmd, "cancel"))
        return cmd_id(broker, cmd, sub_argc, sub_argv);
    if (!strcmp(cmd, "stats")) return cmd_stats(broker, false);
    if (!strcmp(cmd, "queues")) return cmd_stats(broker, true);
    if (!strcmp(cmd, "pause") || !strcmp(cmd, "resume") || !strcmp(cmd, "purge") ||
        !strcmp(cmd, "dead"))
        return cmd_admin(broker, sub_argc, sub_argv);
    return die(2, "unknown command '%s' (see --help)", cmd);
}
