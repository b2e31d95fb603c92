/* The celeriac CLI's commands: each parses its own options (and --help) before connecting,
 * makes its calls through libceleriac's sync API and prints JSON on stdout. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

/* The protocol's limit on durations. */
#define MAX_SECONDS (30.0 * 24 * 3600)
/* celeriac_wait takes an int of milliseconds. */
#define MAX_WAIT_SECONDS (2147483.0)
/* ARGS-JSON read from stdin: far above any frame the broker accepts, yet bounded. */
#define STDIN_ARGS_MAX (64u << 20)
#define NAME_RULE "want 1..128 bytes of [A-Za-z0-9_.:-]"

static int bad_value(const cli *g, const char *option, const char *value, const char *want) {
    return cli_usage_error(g, "bad value '%s' for %s: want %s", value, option, want);
}

static int positional(const cli *g, int argc, char **argv, int min, int max, const char *what) {
    int n = argc - optind;
    if (n < min) return cli_usage_error(g, "missing %s", what);
    if (n > max) return cli_usage_error(g, "unexpected argument '%s'", argv[optind + max]);
    return CLI_OK;
}

static int check_id(const cli *g, const char *id) {
    if (cel_id_valid(id, strlen(id))) return CLI_OK;
    return cli_usage_error(g, "bad task id '%.64s': " NAME_RULE, id);
}

static int check_queue(const cli *g, const char *queue) {
    if (cel_name_valid(queue, strlen(queue))) return CLI_OK;
    return cli_usage_error(g, "bad queue '%.64s': " NAME_RULE, queue);
}

/* ---- enqueue ------------------------------------------------------------------------------ */

static const struct option enqueue_options[] = {{"queue", required_argument, NULL, 'q'},
                                                {"priority", required_argument, NULL, 'p'},
                                                {"delay", required_argument, NULL, 'd'},
                                                {"eta", required_argument, NULL, 'e'},
                                                {"retries", required_argument, NULL, 'r'},
                                                {"id", required_argument, NULL, 'i'},
                                                {"unique", required_argument, NULL, 'u'},
                                                {"soft-limit", required_argument, NULL, 's'},
                                                {"hard-limit", required_argument, NULL, 'H'},
                                                {"result-ttl", required_argument, NULL, 't'},
                                                {"expires", required_argument, NULL, 'x'},
                                                {"help", no_argument, NULL, 'h'},
                                                {NULL, 0, NULL, 0}};

static int64_t unix_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int duration_option(const cli *g, const char *name, uint64_t *ms) {
    return cli_seconds(optarg, MAX_SECONDS, ms)
               ? CLI_OK
               : bad_value(g, name, optarg, "seconds, up to 30 days");
}

static int enqueue_option(const cli *g, int ch, celeriac_opts *o, const char **queue) {
    unsigned long long n;
    uint64_t ms = 0;
    int rc = CLI_OK;
    switch (ch) {
    case 'q':
        *queue = optarg;
        return check_queue(g, optarg);
    case 'p':
        if (!cli_uint(optarg, 255, &n)) return bad_value(g, "--priority", optarg, "0..255");
        o->priority = (int)n;
        return CLI_OK;
    case 'r':
        if (!cli_uint(optarg, 1000000, &n)) return bad_value(g, "--retries", optarg, "0..1000000");
        o->max_retries = (uint32_t)n;
        return CLI_OK;
    case 'e':
        if (!cli_seconds(optarg, 1e11, &ms)) return bad_value(g, "--eta", optarg, "Unix seconds");
        o->eta_ms = (int64_t)ms;
        return CLI_OK;
    case 'i':
        o->id = optarg;
        return check_id(g, optarg);
    case 'u':
        o->unique_key = optarg;
        if (cel_id_valid(optarg, strlen(optarg))) return CLI_OK;
        return cli_usage_error(g, "bad unique key '%.64s': " NAME_RULE, optarg);
    case 'd':
        return duration_option(g, "--delay", &o->delay_ms);
    case 's':
        return duration_option(g, "--soft-limit", &o->soft_ms);
    case 'H':
        return duration_option(g, "--hard-limit", &o->hard_ms);
    case 't':
        rc = duration_option(g, "--result-ttl", &ms);
        o->result_ttl_s = (uint32_t)((ms + 999) / 1000);
        return rc;
    case 'x':
        rc = duration_option(g, "--expires", &ms);
        o->expires_ms = unix_ms() + (int64_t)ms;
        return rc;
    }
    return CLI_USAGE;
}

/* ARGS-JSON "-": the whole of stdin. */
static char *read_stdin(const cli *g) {
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    for (size_t n; buf && (n = fread(buf + len, 1, cap - len - 1, stdin)) > 0;) {
        len += n;
        if (len + 1 < cap) continue;
        char *more = cap < STDIN_ARGS_MAX ? realloc(buf, cap * 2) : NULL;
        if (!more) {
            cli_usage_error(g, "ARGS-JSON on stdin is larger than %u bytes", STDIN_ARGS_MAX);
            free(buf);
            return NULL;
        }
        buf = more, cap *= 2;
    }
    if (buf) buf[len] = 0;
    return buf;
}

/* Refuses bad JSON before connecting, with where it went wrong. */
static int check_json(const cli *g, const char *text) {
    json_error_t jerr;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &jerr);
    if (j) return json_decref(j), CLI_OK;
    return cli_usage_error(g, "ARGS-JSON is not JSON: %s (line %d, column %d)", jerr.text,
                           jerr.line, jerr.column);
}

static int enqueue_send(const cli *g, const char *queue, const char *task, const char *args,
                        const celeriac_opts *o) {
    celeriac *c;
    int connected = cli_connect(g, &c);
    if (connected != CLI_OK) return connected;
    char id[CELERIAC_ID_SIZE];
    int rc = celeriac_enqueue_json(c, queue, task, args, o, id);
    int exit_code = rc == CELERIAC_OK ? CLI_OK : cli_failed(g, c, NULL, rc);
    if (rc == CELERIAC_OK) puts(id);
    celeriac_close(c);
    return exit_code;
}

static int cmd_enqueue(cli *g, int argc, char **argv) {
    celeriac_opts o;
    memset(&o, 0, sizeof o);
    const char *queue = "default";
    int ch, rc;
    while ((ch = cli_next_opt(g, argc, argv, enqueue_options)) != -1) {
        if (ch == 'h') return cli_help(g);
        if (ch == '?' || (rc = enqueue_option(g, ch, &o, &queue)) != CLI_OK) return CLI_USAGE;
    }
    if ((rc = positional(g, argc, argv, 1, 2, "TASK")) != CLI_OK) return rc;
    const char *task = argv[optind], *args = argc - optind == 2 ? argv[optind + 1] : NULL;
    if (!cel_name_valid(task, strlen(task)))
        return cli_usage_error(g, "bad task name '%.64s': " NAME_RULE, task);
    char *from_stdin = args && !strcmp(args, "-") ? read_stdin(g) : NULL;
    if (args && !strcmp(args, "-") && !(args = from_stdin)) return CLI_USAGE;
    rc = args ? check_json(g, args) : CLI_OK;
    if (rc == CLI_OK) rc = enqueue_send(g, queue, task, args, &o);
    free(from_stdin);
    return rc;
}

/* ---- wait, status, cancel ------------------------------------------------------------------ */

static json_t *task_json(const celeriac_task_info *t) {
    json_t *o =
        json_pack("{ss ss ss ss si sI}", "id", t->id, "state", t->state, "queue", t->queue, "task",
                  t->task, "attempt", (int)t->attempt, "created_ms", (json_int_t)t->created_ms);
    if (!o) return json_null();
    json_object_set_new(o, "started_ms", t->started_ms ? json_integer(t->started_ms) : json_null());
    json_object_set_new(o, "finished_ms",
                        t->finished_ms ? json_integer(t->finished_ms) : json_null());
    if (t->worker[0]) json_object_set_new(o, "worker", json_string(t->worker));
    if (t->reason[0]) json_object_set_new(o, "reason", json_string(t->reason));
    if (t->error) json_object_set_new(o, "error", json_string(t->error));
    json_t *result = t->result_json ? json_loads(t->result_json, JSON_DECODE_ANY, NULL) : NULL;
    if (result) json_object_set_new(o, "result", result);
    return o;
}

static void print_task(const celeriac_task_info *t) {
    json_t *o = task_json(t);
    cli_print_json(o, false);
    json_decref(o);
}

static void print_result(const celeriac_task_info *t) {
    json_t *r = t->result_json ? json_loads(t->result_json, JSON_DECODE_ANY, NULL) : NULL;
    cli_print_json(r ? r : json_null(), false);
    json_decref(r);
}

static int wait_report(const cli *g, celeriac *c, const char *id, int rc, celeriac_task_info *t,
                       bool info) {
    if (rc == CELERIAC_E_TIMEOUT) {
        cli_error(g, "%s: TIMEOUT: %s", id, celeriac_last_error(c));
        return CLI_TASK_FAILED;
    }
    if (rc != CELERIAC_OK) return cli_failed(g, c, id, rc);
    bool ok = !strcmp(t->state, "succeeded");
    if (info)
        print_task(t);
    else if (ok)
        print_result(t);
    if (!ok)
        cli_error(g, "task %s %s%s%s", id, t->state, t->error ? ": " : "",
                  t->error ? t->error : "");
    return ok ? CLI_OK : CLI_TASK_FAILED;
}

static int cmd_wait(cli *g, int argc, char **argv) {
    static const struct option lo[] = {{"timeout", required_argument, NULL, 't'},
                                       {"info", no_argument, NULL, 'i'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
    uint64_t timeout_ms = 30000;
    bool info = false;
    int ch, rc;
    while ((ch = cli_next_opt(g, argc, argv, lo)) != -1) {
        if (ch == 'h') return cli_help(g);
        if (ch == 'i') info = true;
        if (ch == '?') return CLI_USAGE;
        if (ch == 't' && !cli_seconds(optarg, MAX_WAIT_SECONDS, &timeout_ms))
            return bad_value(g, "--timeout", optarg, "seconds, up to 24 days");
    }
    if ((rc = positional(g, argc, argv, 1, 1, "task ID")) != CLI_OK) return rc;
    const char *id = argv[optind];
    if ((rc = check_id(g, id)) != CLI_OK) return rc;
    celeriac *c;
    int connected = cli_connect(g, &c);
    if (connected != CLI_OK) return connected;
    celeriac_task_info t;
    rc = wait_report(g, c, id, celeriac_wait(c, id, (int)timeout_ms, &t), &t, info);
    celeriac_task_info_free(&t);
    celeriac_close(c);
    return rc;
}

/* Parses a command taking exactly one task id and no options. */
static int one_id(cli *g, int argc, char **argv, const char **id) {
    int rc = cli_no_options(g, argc, argv);
    if (rc == CLI_OK) rc = positional(g, argc, argv, 1, 1, "task ID");
    if (rc == CLI_OK) rc = check_id(g, *id = argv[optind]);
    return rc;
}

/* one_id, then the connection: the shared start of status and cancel. */
static int one_id_connected(cli *g, int argc, char **argv, const char **id, celeriac **c) {
    int rc = one_id(g, argc, argv, id);
    return rc == CLI_OK ? cli_connect(g, c) : rc;
}

static int cmd_status(cli *g, int argc, char **argv) {
    const char *id;
    celeriac *c;
    int rc = one_id_connected(g, argc, argv, &id, &c);
    if (rc != CLI_OK) return rc;
    celeriac_task_info t;
    int r = celeriac_status(c, id, &t);
    rc = r == CELERIAC_OK ? CLI_OK : cli_failed(g, c, id, r);
    if (r == CELERIAC_OK) print_task(&t);
    celeriac_task_info_free(&t);
    celeriac_close(c);
    return rc;
}

static int cmd_cancel(cli *g, int argc, char **argv) {
    const char *id;
    celeriac *c;
    int rc = one_id_connected(g, argc, argv, &id, &c);
    if (rc != CLI_OK) return rc;
    int r = celeriac_cancel(c, id);
    rc = r == CELERIAC_OK ? CLI_OK : cli_failed(g, c, id, r);
    if (r == CELERIAC_OK) {
        json_t *o = json_pack("{ss ss}", "id", id, "state", "cancelled");
        cli_print_json(o, false);
        json_decref(o);
    }
    celeriac_close(c);
    return rc;
}

/* ---- stats and queues ---------------------------------------------------------------------- */

static int stats_show(cli *g, int argc, char **argv, bool queues_only) {
    int rc = cli_no_options(g, argc, argv);
    if (rc == CLI_OK) rc = positional(g, argc, argv, 0, 0, "");
    if (rc != CLI_OK) return rc;
    celeriac *c;
    int connected = cli_connect(g, &c);
    if (connected != CLI_OK) return connected;
    char *text = NULL;
    int r = celeriac_stats(c, &text);
    json_t *j = r == CELERIAC_OK ? json_loads(text, 0, NULL) : NULL;
    json_t *show = queues_only ? json_object_get(j, "queues") : j;
    if (r != CELERIAC_OK) {
        rc = cli_failed(g, c, NULL, r);
    } else if (!json_is_object(show)) {
        cli_error(g, "the broker's stats carry no %s", queues_only ? "queues" : "object");
        rc = CLI_BROKER;
    } else {
        cli_print_json(show, true);
    }
    json_decref(j);
    free(text);
    celeriac_close(c);
    return rc;
}

static int cmd_stats(cli *g, int argc, char **argv) {
    return stats_show(g, argc, argv, false);
}

/* The binary protocol has no queues operation: the broker's stats carry every queue's depths,
 * so this shows that part of them. */
static int cmd_queues(cli *g, int argc, char **argv) {
    return stats_show(g, argc, argv, true);
}

/* ---- operator commands ---------------------------------------------------------------------- */

static int queue_action(const cli *g, const char *action, const char *queue, const char *id,
                        const char *key) {
    celeriac *c;
    int connected = cli_connect(g, &c);
    if (connected != CLI_OK) return connected;
    uint64_t count = 0;
    int r = celeriac_queue_admin(c, action, queue, id, &count);
    int rc = r == CELERIAC_OK ? CLI_OK : cli_failed(g, c, queue, r);
    if (r == CELERIAC_OK) {
        json_t *o = json_pack("{ss}", "queue", queue);
        if (!strcmp(action, "pause") || !strcmp(action, "resume"))
            json_object_set_new(o, "paused", json_boolean(!strcmp(action, "pause")));
        else
            json_object_set_new(o, key, json_integer((json_int_t)count));
        cli_print_json(o, false);
        json_decref(o);
    }
    celeriac_close(c);
    return rc;
}

/* QUEUE [ID], with --yes demanded by destructive commands. */
static int queue_args(cli *g, int argc, char **argv, bool destructive, bool takes_id,
                      const char **queue, const char **id) {
    static const struct option lo[] = {
        {"yes", no_argument, NULL, 'y'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    bool yes = false;
    int ch, rc;
    while ((ch = cli_next_opt(g, argc, argv, lo)) != -1) {
        if (ch == 'h') return cli_help(g), CLI_HELPED;
        if (ch == '?' || (ch == 'y' && !destructive))
            return ch == '?' ? CLI_USAGE : cli_usage_error(g, "--yes is not needed here");
        yes = true;
    }
    if ((rc = positional(g, argc, argv, 1, takes_id ? 2 : 1, "QUEUE")) != CLI_OK) return rc;
    *queue = argv[optind];
    *id = takes_id && argc - optind == 2 ? argv[optind + 1] : NULL;
    if ((rc = check_queue(g, *queue)) != CLI_OK || (*id && (rc = check_id(g, *id)) != CLI_OK))
        return rc;
    if (destructive && !yes) return cli_usage_error(g, "this deletes tasks: add --yes");
    return CLI_OK;
}

static int cmd_pause_resume(cli *g, int argc, char **argv) {
    const char *queue, *id;
    int rc = queue_args(g, argc, argv, false, false, &queue, &id);
    return rc != CLI_OK ? rc : queue_action(g, g->cmd->name, queue, NULL, NULL);
}

static int cmd_purge(cli *g, int argc, char **argv) {
    const char *queue, *id;
    int rc = queue_args(g, argc, argv, true, false, &queue, &id);
    return rc != CLI_OK ? rc : queue_action(g, "purge", queue, NULL, "purged");
}

static int dead_list(cli *g, int argc, char **argv) {
    static const struct option lo[] = {{"count", required_argument, NULL, 'c'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
    unsigned long long max = 100;
    int ch, rc;
    while ((ch = cli_next_opt(g, argc, argv, lo)) != -1) {
        if (ch == 'h') return cli_help(g);
        if (ch == '?') return CLI_USAGE;
        if (!cli_uint(optarg, 100000, &max) || max == 0)
            return bad_value(g, "--count", optarg, "1..100000");
    }
    if ((rc = positional(g, argc, argv, 1, 1, "QUEUE")) != CLI_OK) return rc;
    const char *queue = argv[optind];
    if ((rc = check_queue(g, queue)) != CLI_OK) return rc;
    celeriac *c;
    int connected = cli_connect(g, &c);
    if (connected != CLI_OK) return connected;
    char **ids;
    size_t n;
    int r = celeriac_dead_list(c, queue, (size_t)max, &ids, &n);
    rc = r == CELERIAC_OK ? CLI_OK : cli_failed(g, c, queue, r);
    json_t *a = json_array();
    for (size_t i = 0; r == CELERIAC_OK && i < n; i++)
        json_array_append_new(a, json_string(ids[i]));
    if (r == CELERIAC_OK) cli_print_json(a, false);
    json_decref(a);
    celeriac_ids_free(ids, n);
    celeriac_close(c);
    return rc;
}

/* `dead list|requeue|purge QUEUE ...`: the sub-command shifts the arguments by one. */
static int cmd_dead(cli *g, int argc, char **argv) {
    const char *sub = argc > 1 ? argv[1] : NULL;
    if (!sub || !strcmp(sub, "--help") || !strcmp(sub, "-h"))
        return sub ? cli_help(g) : cli_usage_error(g, "missing list, requeue or purge");
    const char *queue, *id;
    int rc;
    if (!strcmp(sub, "list")) return dead_list(g, argc - 1, argv + 1);
    if (!strcmp(sub, "requeue")) {
        rc = queue_args(g, argc - 1, argv + 1, false, true, &queue, &id);
        return rc != CLI_OK ? rc : queue_action(g, "dead_requeue", queue, id, "requeued");
    }
    if (!strcmp(sub, "purge")) {
        rc = queue_args(g, argc - 1, argv + 1, true, false, &queue, &id);
        return rc != CLI_OK ? rc : queue_action(g, "dead_purge", queue, NULL, "purged");
    }
    return cli_usage_error(g, "unknown dead command '%s'", sub);
}

/* ---- the table --------------------------------------------------------------------------------
 */

static const char enqueue_help[] =
    "Enqueues TASK with ARGS-JSON (any JSON value; '-' reads it from stdin; none: no args) and\n"
    "prints the task's id once the broker has stored the task durably.\n\n"
    "  --queue Q         queue (default: default)\n"
    "  --priority P      0..255, higher runs first (default 0)\n"
    "  --delay S         run no sooner than S seconds from now\n"
    "  --eta T           run at Unix time T (seconds)\n"
    "  --retries N       retry up to N times after failures, with backoff (default 0)\n"
    "  --id ID           the task's id (default: 32 random hex chars); enqueueing an id again\n"
    "                    returns the task that has it\n"
    "  --unique KEY      while a task with KEY exists, return it instead of a new one\n"
    "  --soft-limit S    the task is told to stop after S seconds\n"
    "  --hard-limit S    the task is killed after S seconds\n"
    "  --result-ttl S    keep the result S seconds (default: the broker's)\n"
    "  --expires S       never start the task later than S seconds from now\n\n"
    "Options may also follow TASK; JSON args that start with '-' go after '--'.\n";

static const char wait_help[] =
    "Waits in the broker (no polling) until the task has ended, then prints its result as JSON\n"
    "(null when it has none) and exits 0 if it succeeded. If it failed, died, was cancelled or\n"
    "expired, or the wait timed out, says so on stderr and exits 1.\n\n"
    "  --timeout S   give up after S seconds (default 30)\n"
    "  --info        print the whole task as `status` does, instead of the result\n";

static const char status_help[] =
    "Prints the task as JSON: id, state, queue, task, attempt, created_ms, started_ms,\n"
    "finished_ms, and when known worker, reason, error and result.\n";

static const char cancel_help[] =
    "Cancels a scheduled, queued or running task (a running one is stopped by its worker) and\n"
    "prints {\"id\": ID, \"state\": \"cancelled\"}. A task that has already ended cannot be\n"
    "cancelled (STATE, exit 3).\n";

static const char stats_help[] =
    "Prints the broker's counters, rates and per-queue depths as JSON.\n";

static const char queues_help[] =
    "Prints each queue with its ready, active, delayed and dead counts and whether it is\n"
    "paused, as JSON. (The binary protocol has no queues operation yet: this is the \"queues\"\n"
    "part of `stats`.)\n";

static const char pause_help[] =
    "Stops dispatching QUEUE's tasks to workers; enqueues are still accepted.\n";

static const char resume_help[] = "Dispatches a paused QUEUE's tasks again.\n";

static const char purge_help[] =
    "Deletes QUEUE's ready and scheduled tasks (not running ones) and prints how many.\n\n"
    "  --yes   required: this deletes tasks\n";

static const char dead_help[] =
    "The dead-letter set of QUEUE: tasks that exhausted their retries or kept killing their\n"
    "worker.\n\n"
    "  dead list QUEUE [--count N]   their ids as a JSON array, oldest first (default 100)\n"
    "  dead requeue QUEUE [ID]       one, or all, back to ready; prints how many\n"
    "  dead purge QUEUE --yes        delete them; prints how many\n";

const cli_command cli_commands[] = {
    {"enqueue", cmd_enqueue, "enqueue [options] TASK [ARGS-JSON]", enqueue_help},
    {"wait", cmd_wait, "wait ID [--timeout S] [--info]", wait_help},
    {"status", cmd_status, "status ID", status_help},
    {"cancel", cmd_cancel, "cancel ID", cancel_help},
    {"stats", cmd_stats, "stats", stats_help},
    {"queues", cmd_queues, "queues", queues_help},
    {"pause", cmd_pause_resume, "pause QUEUE", pause_help},
    {"resume", cmd_pause_resume, "resume QUEUE", resume_help},
    {"purge", cmd_purge, "purge QUEUE --yes", purge_help},
    {"dead", cmd_dead, "dead list|requeue|purge QUEUE ...", dead_help},
    {NULL, NULL, NULL, NULL}};
