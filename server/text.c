/* The line protocol on the broker's port, for people with telnet or nc and for scripts.
 * A line is parsed into the same cel_msg request the binary protocol carries and handed to
 * ops_handle, so both protocols share every operation; replies are rendered as one line:
 * "OK", "OK <json>" or "ERR <CODE> <message>". MONITOR streams "EVENT ..." lines. Lines are
 * capped at 4 KiB (the rest of a longer one is discarded up to its newline) and telnet IAC
 * sequences are skipped. */
#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "broker.h"
#include "json.h"

#define TEXT_LINE_MAX 4096
/* Replies to QUEUES are stats replies shown differently: the view rides in the seq. */
#define VIEW_QUEUES (1ull << 62)

typedef struct text_args {
    char *argv[16];
    int argc;
    char *rest; /* the unsplit remainder after argv[1] and argv[2] (ENQUEUE's JSON) */
} text_args;

typedef void (*text_fn)(cel_client *c, text_args *a, cel_msg *m);

typedef struct text_cmd {
    const char *name;
    int min, max; /* argument counts, not counting the command */
    text_fn fn;
    const char *usage;
} text_cmd;

static void out_line(cel_client *c, const char *s) {
    evbuffer_add_printf(c->out, "%s\r\n", s);
}

static void out_json(cel_client *c, const char *prefix, json_t *j) {
    char *s = json_dumps(j, JSON_COMPACT | JSON_ENSURE_ASCII);
    evbuffer_add_printf(c->out, "%s %s\r\n", prefix, s ? s : "{}");
    free(s);
    json_decref(j);
}

/* ---- rendering replies ------------------------------------------------------------------- */

static void json_set_str(json_t *o, cel_field f, cel_str s) {
    json_object_set_new(o, cel_field_name(f), json_stringn_nocheck(s.ptr ? s.ptr : "", s.len));
}

static json_t *msg_json(const cel_msg *m) {
    json_t *o = json_object();
    static const cel_field strs[] = {CEL_F_ID,    CEL_F_STATE,  CEL_F_QUEUE, CEL_F_TASK,
                                     CEL_F_ERROR, CEL_F_REASON, CEL_F_WORKER};
    const cel_str *sv[] = {&m->id,    &m->state,  &m->queue, &m->task,
                           &m->error, &m->reason, &m->worker};
    for (size_t i = 0; i < sizeof strs / sizeof *strs; i++)
        if (cel_msg_has(m, strs[i])) json_set_str(o, strs[i], *sv[i]);
    static const cel_field nums[] = {CEL_F_ATTEMPT,    CEL_F_MAX_RETRIES, CEL_F_PRIORITY,
                                     CEL_F_CREATED_MS, CEL_F_STARTED_MS,  CEL_F_FINISHED_MS,
                                     CEL_F_COUNT,      CEL_F_CURSOR};
    const long long nv[] = {(long long)m->attempt, (long long)m->max_retries,
                            m->priority,           m->created_ms,
                            m->started_ms,         m->finished_ms,
                            (long long)m->count,   (long long)m->cursor};
    for (size_t i = 0; i < sizeof nums / sizeof *nums; i++)
        if (cel_msg_has(m, nums[i]))
            json_object_set_new(o, cel_field_name(nums[i]), json_integer(nv[i]));
    if (cel_msg_has(m, CEL_F_EXISTED)) json_object_set_new(o, "existed", json_boolean(m->existed));
    if (cel_msg_has(m, CEL_F_RESULT))
        json_object_set_new(o, "result", cel_json_from_bytes(m->result.bytes, m->result.len));
    if (cel_msg_has(m, CEL_F_IDS)) {
        json_t *ids = json_array();
        for (uint32_t i = 0; i < m->ids.n; i++) {
            cel_str s = cel_list_str(&m->ids, i);
            json_array_append_new(ids, json_stringn_nocheck(s.ptr, s.len));
        }
        json_object_set_new(o, "ids", ids);
    }
    return o;
}

static void render(cel_client *c, const cel_msg *m) {
    if (m->op == CEL_OP_ERROR) {
        evbuffer_add_printf(c->out, "ERR %.*s %.*s\r\n", (int)m->code.len, m->code.ptr,
                            (int)m->msg.len, m->msg.ptr);
    } else if (m->op == CEL_OP_STATS_INFO) {
        json_t *j = cel_json_from_bytes(m->stats.bytes, m->stats.len);
        if (m->seq & VIEW_QUEUES) {
            json_t *q = json_incref(json_object_get(j, "queues"));
            json_decref(j);
            j = q ? q : json_object();
        }
        out_json(c, "OK", j);
    } else if (m->op == CEL_OP_OK && (m->present & ~(1ull << CEL_F_SEQ)) == 0) {
        out_line(c, "OK");
    } else {
        out_json(c, "OK", msg_json(m));
    }
}

void text_render(cel_client *c, const cel_msg *m) {
    render(c, m);
    text_reply_done(c);
}

/* ---- commands ---------------------------------------------------------------------------- */

static bool parse_u64(const char *s, uint64_t *out) {
    char *end;
    if (!s || !*s || *s == '-') return false;
    unsigned long long v = strtoull(s, &end, 10);
    *out = v;
    return *end == 0;
}

static void set_name(cel_msg *m, cel_field f, const char *v) {
    cel_str *dst = f == CEL_F_QUEUE ? &m->queue : f == CEL_F_ID ? &m->id : &m->state;
    *dst = cel_str_c(v);
    cel_msg_set(m, f);
}

static void cmd_id(cel_client *c, text_args *a, cel_msg *m) {
    (void)c;
    set_name(m, CEL_F_ID, a->argv[1]);
}

static void cmd_queue(cel_client *c, text_args *a, cel_msg *m) {
    (void)c;
    set_name(m, CEL_F_QUEUE, a->argv[1]);
}

static void cmd_none(cel_client *c, text_args *a, cel_msg *m) {
    (void)c, (void)a, (void)m;
}

static void cmd_wait(cel_client *c, text_args *a, cel_msg *m) {
    set_name(m, CEL_F_ID, a->argv[1]);
    m->timeout_ms = 30000;
    if (a->argc > 2 && !parse_u64(a->argv[2], &m->timeout_ms)) {
        m->op = CEL_OP_NONE;
        return conn_send_error(c, 0, CEL_E_BAD_FIELD, "timeout must be milliseconds");
    }
    cel_msg_set(m, CEL_F_TIMEOUT_MS);
}

static void cmd_peek(cel_client *c, text_args *a, cel_msg *m) {
    set_name(m, CEL_F_QUEUE, a->argv[1]);
    set_name(m, CEL_F_STATE, a->argc > 2 ? a->argv[2] : "queued");
    bool ok = (a->argc <= 3 || parse_u64(a->argv[3], &m->cursor)) &&
              (a->argc <= 4 || parse_u64(a->argv[4], &m->count));
    if (!ok) {
        m->op = CEL_OP_NONE;
        return conn_send_error(c, 0, CEL_E_BAD_FIELD, "cursor and count must be numbers");
    }
    cel_msg_set(m, CEL_F_CURSOR);
    if (m->count) cel_msg_set(m, CEL_F_COUNT);
}

static void cmd_dead(cel_client *c, text_args *a, cel_msg *m) {
    set_name(m, CEL_F_QUEUE, a->argv[1]);
    if (a->argc > 2 && !parse_u64(a->argv[2], &m->count)) {
        m->op = CEL_OP_NONE;
        return conn_send_error(c, 0, CEL_E_BAD_FIELD, "count must be a number");
    }
    if (a->argc > 2) cel_msg_set(m, CEL_F_COUNT);
}

static void cmd_dead_requeue(cel_client *c, text_args *a, cel_msg *m) {
    (void)c;
    set_name(m, CEL_F_QUEUE, a->argv[1]);
    if (a->argc > 2 && strcasecmp(a->argv[2], "ALL") != 0) set_name(m, CEL_F_ID, a->argv[2]);
}

/* Destructive verbs need the word CONFIRM, so a stray paste cannot empty a queue. */
static void cmd_confirmed(cel_client *c, text_args *a, cel_msg *m) {
    if (a->argc < 3 || strcmp(a->argv[2], "CONFIRM") != 0) {
        m->op = CEL_OP_NONE;
        return conn_send_error(c, 0, CEL_E_BAD_FIELD,
                               "destructive: repeat with CONFIRM at the end");
    }
    set_name(m, CEL_F_QUEUE, a->argv[1]);
}

static const struct {
    const char *key;
    cel_field field;
} enqueue_opts[] = {{"id", CEL_F_ID},
                    {"priority", CEL_F_PRIORITY},
                    {"delay_ms", CEL_F_DELAY_MS},
                    {"eta_ms", CEL_F_ETA_MS},
                    {"max_retries", CEL_F_MAX_RETRIES},
                    {"soft_ms", CEL_F_SOFT_MS},
                    {"hard_ms", CEL_F_HARD_MS},
                    {"result_ttl_s", CEL_F_RESULT_TTL_S},
                    {"unique_key", CEL_F_UNIQUE_KEY},
                    {"expires_ms", CEL_F_EXPIRES_MS}};

static bool enqueue_option(cel_msg *m, char *opt) {
    char *eq = strchr(opt, '=');
    if (!eq) return false;
    *eq = 0;
    const char *v = eq + 1;
    for (size_t i = 0; i < sizeof enqueue_opts / sizeof *enqueue_opts; i++) {
        if (strcmp(opt, enqueue_opts[i].key) != 0) continue;
        cel_field f = enqueue_opts[i].field;
        uint64_t n = 0;
        if (f == CEL_F_ID)
            m->id = cel_str_c(v);
        else if (f == CEL_F_UNIQUE_KEY)
            m->unique_key = cel_str_c(v);
        else if (!parse_u64(v, &n))
            return false;
        uint64_t *slots[] = {&m->delay_ms, &m->max_retries, &m->soft_ms, &m->hard_ms,
                             &m->result_ttl_s};
        cel_field sf[] = {CEL_F_DELAY_MS, CEL_F_MAX_RETRIES, CEL_F_SOFT_MS, CEL_F_HARD_MS,
                          CEL_F_RESULT_TTL_S};
        for (int k = 0; k < 5; k++)
            if (f == sf[k]) *slots[k] = n;
        if (f == CEL_F_PRIORITY) m->priority = (int64_t)n;
        if (f == CEL_F_ETA_MS) m->eta_ms = (int64_t)n;
        if (f == CEL_F_EXPIRES_MS) m->expires_ms = (int64_t)n;
        cel_msg_set(m, f);
        return true;
    }
    return false;
}

/* ENQUEUE queue task [json-args] [key=value ...]: the args are one JSON value, spaces and all. */
static void cmd_enqueue(cel_client *c, text_args *a, cel_msg *m) {
    static cel_buf args;
    set_name(m, CEL_F_QUEUE, a->argv[1]);
    m->task = cel_str_c(a->argv[2]), cel_msg_set(m, CEL_F_TASK);
    char *p = a->rest ? a->rest + strspn(a->rest, " \t") : NULL;
    bool has_json = p && *p && (strchr("{[\"", *p) || !memchr(p, '=', strcspn(p, " \t")));
    if (has_json) {
        json_error_t jerr;
        json_t *j = json_loads(p, JSON_DISABLE_EOF_CHECK | JSON_DECODE_ANY, &jerr);
        cel_buf_reset(&args);
        if (!j || !cel_json_to_msgpack(j, &args)) {
            json_decref(j);
            m->op = CEL_OP_NONE;
            char why[200];
            snprintf(why, sizeof why, "bad JSON args: %s", j ? "too deep" : jerr.text);
            return conn_send_error(c, 0, CEL_E_BAD_FIELD, why);
        }
        json_decref(j);
        m->args.bytes = args.data, m->args.len = (uint32_t)args.len;
        cel_msg_set(m, CEL_F_ARGS);
        p += jerr.position;
    }
    for (char *opt = p ? strtok(p, " \t") : NULL; opt; opt = strtok(NULL, " \t")) {
        if (enqueue_option(m, opt)) continue;
        m->op = CEL_OP_NONE;
        return conn_send_error(c, 0, CEL_E_BAD_FIELD,
                               "options are key=value: id, priority, "
                               "delay_ms, eta_ms, max_retries, soft_ms, hard_ms, result_ttl_s, "
                               "unique_key, expires_ms");
    }
}

static void cmd_workers(cel_client *c, text_args *a, cel_msg *m) {
    (void)a;
    m->op = CEL_OP_NONE;
    json_t *list = json_array();
    cel_client *w;
    TAILQ_FOREACH(w, &c->srv->clients, link) {
        if (!w->worker) continue;
        json_t *queues = json_array();
        for (size_t i = 0; i < w->nqueues; i++)
            json_array_append_new(queues, json_string(w->queues[i]->name));
        json_array_append_new(list, json_pack("{ss ss so si si sI}", "address", w->addr, "name",
                                              w->name, "queues", queues, "credits", (int)w->credits,
                                              "leased", (int)w->nleases, "idle_ms",
                                              (json_int_t)(cel_now_ms() - w->last_read_ms)));
    }
    out_json(c, "OK", list);
}

static void cmd_monitor(cel_client *c, text_args *a, cel_msg *m) {
    m->op = CEL_OP_NONE;
    if (!c->monitor) TAILQ_INSERT_TAIL(&c->srv->monitors, c, monitor_link);
    c->monitor = true;
    free(c->monitor_queue);
    c->monitor_queue = a->argc > 1 && a->argv[1][0] ? strdup(a->argv[1]) : NULL;
    out_line(c, "OK monitoring; send any line to stop");
}

static void cmd_help(cel_client *c, text_args *a, cel_msg *m);

static void cmd_ping(cel_client *c, text_args *a, cel_msg *m) {
    (void)a, m->op = CEL_OP_NONE;
    out_line(c, "OK PONG");
}

static void cmd_quit(cel_client *c, text_args *a, cel_msg *m) {
    (void)a, m->op = CEL_OP_NONE;
    out_line(c, "OK bye");
    conn_close_after_write(c);
}

static const text_cmd commands[] = {
    {"HELP", 0, 1, cmd_help, "HELP [COMMAND]  this list"},
    {"PING", 0, 0, cmd_ping, "PING  liveness check"},
    {"QUIT", 0, 0, cmd_quit, "QUIT  close the connection"},
    {"STATS", 0, 0, cmd_none, "STATS  server counters, Redis status and queues (JSON)"},
    {"QUEUES", 0, 0, cmd_none, "QUEUES  queues with ready/active/delayed/dead/paused (JSON)"},
    {"WORKERS", 0, 0, cmd_workers, "WORKERS  workers on this broker (JSON)"},
    {"TASK", 1, 1, cmd_id, "TASK ID  one task in full (JSON)"},
    {"WAIT", 1, 2, cmd_wait, "WAIT ID [TIMEOUT_MS]  block until the task ends (default 30000)"},
    {"PEEK", 1, 4, cmd_peek,
     "PEEK QUEUE [queued|scheduled|retrying|active|dead] [CURSOR] [COUNT]  task ids, paged"},
    {"ENQUEUE", 2, 15, cmd_enqueue,
     "ENQUEUE QUEUE TASK [JSON-ARGS] [id=.. priority=.. delay_ms=.. max_retries=.. ...]"},
    {"CANCEL", 1, 1, cmd_id, "CANCEL ID  cancel a queued, scheduled or running task"},
    {"PAUSE", 1, 1, cmd_queue, "PAUSE QUEUE  stop dispatching (enqueues still accepted)"},
    {"RESUME", 1, 1, cmd_queue, "RESUME QUEUE  dispatch again"},
    {"PURGE", 1, 2, cmd_confirmed, "PURGE QUEUE CONFIRM  delete all ready and scheduled tasks"},
    {"DEAD", 1, 2, cmd_dead, "DEAD QUEUE [COUNT]  ids in the dead set, oldest first"},
    {"DEAD-REQUEUE", 1, 2, cmd_dead_requeue, "DEAD-REQUEUE QUEUE [ID|ALL]  back to ready"},
    {"DEAD-PURGE", 1, 2, cmd_confirmed, "DEAD-PURGE QUEUE CONFIRM  delete the dead tasks"},
    {"MONITOR", 0, 1, cmd_monitor, "MONITOR [QUEUE]  stream task events until you send a line"},
};
#define NCOMMANDS (sizeof commands / sizeof *commands)

static const cel_op command_ops[NCOMMANDS] = {
    CEL_OP_NONE,         CEL_OP_NONE,       CEL_OP_NONE,   CEL_OP_STATS, CEL_OP_STATS,
    CEL_OP_NONE,         CEL_OP_STATUS,     CEL_OP_WAIT,   CEL_OP_PEEK,  CEL_OP_ENQUEUE,
    CEL_OP_CANCEL,       CEL_OP_PAUSE,      CEL_OP_RESUME, CEL_OP_PURGE, CEL_OP_DEAD_LIST,
    CEL_OP_DEAD_REQUEUE, CEL_OP_DEAD_PURGE, CEL_OP_NONE};

static void cmd_help(cel_client *c, text_args *a, cel_msg *m) {
    m->op = CEL_OP_NONE;
    struct evbuffer *out = c->out;
    evbuffer_add_printf(out, "OK commands (replies: OK [json] | ERR CODE message)\r\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (a->argc < 2 || !strcasecmp(a->argv[1], commands[i].name))
            evbuffer_add_printf(out, "%s\r\n", commands[i].usage);
    evbuffer_add_printf(out, ".\r\n");
}

/* Runs a request built from a line through the binary codec, so it is validated by exactly
 * the rules a binary client meets (names, ranges, UTF-8), then hands it to ops. */
static void text_submit(cel_client *c, cel_msg *m) {
    static cel_buf frame;
    static msgpack_zone zone;
    static bool zone_ready;
    if (!zone_ready) zone_ready = msgpack_zone_init(&zone, 1024);
    cel_error err;
    cel_msg checked;
    cel_buf_reset(&frame);
    msgpack_zone_clear(&zone);
    if (cel_msg_encode(&frame, m, c->srv->cfg->max_frame, &err) != CEL_OK ||
        cel_msg_decode(frame.data + CEL_FRAME_HEADER, frame.len - CEL_FRAME_HEADER, &zone,
                       CEL_DEFAULT_MAX_DEPTH, &checked, &err) != CEL_OK)
        return conn_send_error(c, 0, err.code, err.msg);
    c->text_busy = true;
    ops_handle(c, &checked);
}

static void text_command(cel_client *c, char *line) {
    text_args a = {.argc = 0, .rest = NULL};
    char *save = NULL;
    for (char *tok = strtok_r(line, " \t", &save); tok && a.argc < 16;
         tok = strtok_r(NULL, " \t", &save)) {
        a.argv[a.argc++] = tok;
        if (a.argc == 3 && !strcasecmp(a.argv[0], "ENQUEUE")) {
            a.rest = save;
            break;
        }
    }
    if (a.argc == 0) return;
    for (size_t i = 0; i < NCOMMANDS; i++) {
        if (strcasecmp(a.argv[0], commands[i].name) != 0) continue;
        if (a.argc - 1 < commands[i].min || a.argc - 1 > commands[i].max) {
            char why[300];
            snprintf(why, sizeof why, "usage: %s", commands[i].usage);
            return conn_send_error(c, 0, CEL_E_BAD_FIELD, why);
        }
        cel_msg m;
        memset(&m, 0, sizeof m);
        m.op = command_ops[i];
        m.seq = ++c->text_seq | (i == 4 ? VIEW_QUEUES : 0);
        cel_msg_set(&m, CEL_F_SEQ);
        commands[i].fn(c, &a, &m);
        if (m.op == CEL_OP_NONE) return;
        /* One command at a time: the next line waits for this reply, so a script's replies
         * come back in the order of its lines. */
        return text_submit(c, &m);
    }
    conn_send_error(c, 0, CEL_E_UNKNOWN_OP, "unknown command (try HELP)");
}

/* Removes telnet IAC negotiation (IAC cmd opt, or IAC IAC for a literal 0xFF). */
static size_t strip_iac(char *s, size_t n) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] != 0xFF) {
            s[o++] = s[i];
            continue;
        }
        unsigned char cmd = i + 1 < n ? (unsigned char)s[i + 1] : 0;
        i += cmd >= 251 && cmd <= 254 ? 2 : 1;
    }
    return o;
}

/* Takes the next whole line into buf; false when none is complete yet. */
static bool next_line(cel_client *c, char *buf, size_t *len) {
    struct evbuffer *in = c->in;
    struct evbuffer_ptr eol = evbuffer_search(in, "\n", 1, NULL);
    size_t avail = evbuffer_get_length(in);
    if (eol.pos < 0) {
        if (avail > TEXT_LINE_MAX) {
            evbuffer_drain(in, avail);
            c->text_discard = true;
        }
        return false;
    }
    size_t n = (size_t)eol.pos;
    if (c->text_discard || n > TEXT_LINE_MAX) {
        evbuffer_drain(in, n + 1);
        c->text_discard = false;
        conn_send_error(c, 0, CEL_E_TOO_BIG, "line longer than 4096 bytes, discarded");
        *len = SIZE_MAX;
        return true;
    }
    evbuffer_remove(in, buf, n + 1);
    n = strip_iac(buf, n);
    if (n && buf[n - 1] == '\r') n--;
    buf[n] = 0;
    *len = n;
    return true;
}

void text_input(cel_client *c) {
    char line[TEXT_LINE_MAX + 2];
    size_t n;
    c->text_in_input = true;
    while (!c->closing && c->state == CS_TEXT && !c->text_busy && next_line(c, line, &n)) {
        c->last_read_ms = cel_now_ms(); /* a whole line: activity (see read_binary) */
        if (n == SIZE_MAX) continue;
        if (c->monitor) {
            text_monitor_stop(c);
            out_line(c, "OK monitor off");
            continue;
        }
        if (memchr(line, 0, n)) {
            conn_send_error(c, 0, CEL_E_PROTOCOL, "NUL byte in line");
            continue;
        }
        text_command(c, line);
        ops_flush(c);
    }
    c->text_in_input = false;
    conn_input_drained(c);
    if (c->text_eof && !c->text_busy && !c->closing && c->state == CS_TEXT)
        conn_close_after_write(c);
}

void text_reply_done(cel_client *c) {
    c->text_busy = false;
    if (!c->text_in_input && c->state == CS_TEXT) text_input(c);
}

void text_monitor_stop(cel_client *c) {
    if (!c->monitor) return;
    TAILQ_REMOVE(&c->srv->monitors, c, monitor_link);
    c->monitor = false;
    free(c->monitor_queue);
    c->monitor_queue = NULL;
}

void text_monitor_event(cel_server *s, const char *event, const char *queue, size_t qlen,
                        const char *id, size_t idlen, const char *detail) {
    cel_client *c;
    TAILQ_FOREACH(c, &s->monitors, monitor_link) {
        if (c->state != CS_TEXT) continue;
        if (c->monitor_queue &&
            (strlen(c->monitor_queue) != qlen || memcmp(c->monitor_queue, queue, qlen) != 0))
            continue;
        evbuffer_add_printf(c->out, "EVENT %s %.*s %.*s %s\r\n", event, (int)qlen, queue,
                            (int)idlen, id, detail ? detail : "");
    }
}
