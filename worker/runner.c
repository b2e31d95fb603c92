/* The runner: the loop a pool slot (child process or thread) runs, and the task context that
 * implements celeriac/task.h. It reads one task frame at a time from its end of a socketpair,
 * runs the handler and writes back an ack or fail frame. While a task runs, the pool may write
 * an abort frame (of that task: the task sees it through celeriac_task_cancelled) and, when it
 * pipelines, the next task with its own abort should it be cancelled before it starts. */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "json.h"
#include "worker.h"

struct celeriac_task_ctx {
    const cel_handler *handler;
    char id[CEL_ID_MAX + 1], name[CEL_NAME_MAX + 1], queue[CEL_NAME_MAX + 1];
    unsigned attempt;
    const msgpack_object *args;
    msgpack_object nil; /* args of a task enqueued without any */
    cel_buf result;     /* reused from task to task */
    bool has_result;
    char error[1024];
    long long soft_deadline_ms; /* 0: none */
    bool cancelled;
    int progress; /* last logged percentage, -1: none yet */
    int fd;
    uint64_t token; /* the running task's, to tell its abort from another's */
    /* A task frame the pool wrote behind the running one (pipelined pool), read by a cancel
     * check and left for the loop; aborted: an abort of it came too. */
    cel_buf next;
    bool has_next, next_aborted;
    /* Reused for frames read while a task runs: an abort read while next is taken, and the
     * decoding that tells what a frame is (no allocation per frame once warm). */
    cel_buf ctl;
    msgpack_zone peek;
    char next_id[CEL_ID_MAX + 1];
    uint64_t next_token;
    /* Bytes read from fd but not yet taken: one read() brings a task's header and body (and
     * whatever follows), where reading them apart took two system calls per task. */
    size_t in_off, in_len;
    uint8_t in[8192];
};

static volatile sig_atomic_t log_reopen_wanted;

void runner_on_sighup(int sig) {
    (void)sig;
    log_reopen_wanted = 1;
}

static void reopen_log_if_asked(void) {
    if (!log_reopen_wanted) return;
    log_reopen_wanted = 0;
    cel_log_reopen();
}

/* ---- the task ABI ------------------------------------------------------------------------ */

const char *celeriac_task_id(const celeriac_task_ctx *c) {
    return c->id;
}
const char *celeriac_task_name(const celeriac_task_ctx *c) {
    return c->name;
}
const char *celeriac_task_queue(const celeriac_task_ctx *c) {
    return c->queue;
}
unsigned celeriac_task_attempt(const celeriac_task_ctx *c) {
    return c->attempt;
}
const msgpack_object *celeriac_task_args(const celeriac_task_ctx *c) {
    return c->args;
}
void *celeriac_task_data(const celeriac_task_ctx *c) {
    return c->handler->data;
}

int celeriac_task_result(celeriac_task_ctx *c, const void *msgpack, size_t len) {
    /* Checked here so that a bad result fails this task, not the frame that carries it. */
    if (!msgpack || cel_mp_check(msgpack, len, CEL_DEFAULT_MAX_DEPTH, NULL) != CEL_OK) return -1;
    cel_buf_reset(&c->result);
    c->has_result = cel_buf_append(&c->result, msgpack, len);
    return c->has_result ? 0 : -1;
}

int celeriac_task_result_json(celeriac_task_ctx *c, const char *text) {
    json_error_t jerr;
    json_t *j = text ? json_loads(text, JSON_DECODE_ANY, &jerr) : NULL;
    if (!j) return -1;
    cel_buf_reset(&c->result);
    c->has_result = cel_json_to_msgpack(j, &c->result);
    json_decref(j);
    return c->has_result ? 0 : -1;
}

void celeriac_task_error(celeriac_task_ctx *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->error, sizeof c->error, fmt, ap);
    va_end(ap);
}

/* Reads exactly n bytes; false at EOF or on an error. */
static bool read_full(int fd, void *p, size_t n) {
    while (n) {
        ssize_t r = read(fd, p, n);
        if (r < 0 && errno == EINTR) {
            reopen_log_if_asked();
            continue;
        }
        if (r <= 0) return false;
        p = (char *)p + r, n -= (size_t)r;
    }
    return true;
}

/* Takes exactly n bytes of the pool's input: first what an earlier read() brought, then one
 * read() of as much as the socket holds; a rest larger than the buffer goes straight to p. */
static bool take(celeriac_task_ctx *c, void *p, size_t n) {
    while (n) {
        if (c->in_off == c->in_len) {
            if (n >= sizeof c->in) return read_full(c->fd, p, n);
            c->in_off = c->in_len = 0;
            ssize_t r = read(c->fd, c->in, sizeof c->in);
            if (r < 0 && errno == EINTR) {
                reopen_log_if_asked();
                continue;
            }
            if (r <= 0) return false;
            c->in_len = (size_t)r;
        }
        size_t k = c->in_len - c->in_off < n ? c->in_len - c->in_off : n;
        memcpy(p, c->in + c->in_off, k);
        c->in_off += k, p = (char *)p + k, n -= k;
    }
    return true;
}

/* The next frame's body into body (its own buffer: a decoded task points into it while it
 * runs, whatever is read meanwhile). */
static bool read_frame(celeriac_task_ctx *c, cel_buf *body) {
    uint8_t hdr[CEL_FRAME_HEADER];
    uint32_t len;
    if (!take(c, hdr, sizeof hdr) || cel_frame_header_parse(hdr, UINT32_MAX, &len, NULL) != CEL_OK)
        return false;
    cel_buf_reset(body);
    if (!cel_buf_reserve(body, len)) return false;
    body->len = len;
    return take(c, body->data, len);
}

/* The op and the task a frame from the pool names (its decoding is not kept). */
static bool frame_names(celeriac_task_ctx *c, const cel_buf *f, cel_op *op, char *id, size_t cap,
                        uint64_t *token) {
    cel_msg m;
    msgpack_zone_clear(&c->peek);
    if (cel_msg_decode(f->data, f->len, &c->peek, CEL_HARD_MAX_DEPTH, &m, NULL) != CEL_OK)
        return false;
    *op = m.op, *token = m.token;
    snprintf(id, cap, "%.*s", (int)m.id.len, m.id.ptr ? m.id.ptr : "");
    return true;
}

/* Reads one frame the pool wrote while a task ran or was about to start: an abort of that task
 * (cancelled), the task queued behind it (kept in next), or an abort of that one. Anything else
 * of ours is not sent here; what cannot be read counts as the pool giving up: false. */
static bool read_control(celeriac_task_ctx *c) {
    /* Into next while it is free: a task frame then stays where the loop takes it from. */
    cel_buf *f = c->has_next ? &c->ctl : &c->next;
    cel_op op;
    char id[CEL_ID_MAX + 1];
    uint64_t token;
    if (!read_frame(c, f) || !frame_names(c, f, &op, id, sizeof id, &token)) return false;
    if (op == CEL_OP_TASK && !c->has_next) {
        c->has_next = true, c->next_aborted = false, c->next_token = token;
        snprintf(c->next_id, sizeof c->next_id, "%s", id);
        return true;
    }
    if (op != CEL_OP_ABORT) return false;
    if (token == c->token && !strcmp(id, c->id)) c->cancelled = true;
    if (c->has_next && token == c->next_token && !strcmp(id, c->next_id)) c->next_aborted = true;
    return true;
}

static bool readable(int fd) {
    struct pollfd p = {fd, POLLIN, 0};
    return poll(&p, 1, 0) == 1;
}

bool celeriac_task_cancelled(celeriac_task_ctx *c) {
    if (c->cancelled || c->fd < 0) return c->cancelled;
    /* EOF or a frame that is neither a task nor an abort: the pool gave up on this task (or is
     * going away). Either way nobody waits for its result any more. */
    while (!c->cancelled && (c->in_off < c->in_len || readable(c->fd)))
        if (!read_control(c)) c->cancelled = true;
    return c->cancelled;
}

bool celeriac_task_should_stop(celeriac_task_ctx *c) {
    return celeriac_task_cancelled(c) ||
           (c->soft_deadline_ms && cel_now_ms() >= c->soft_deadline_ms);
}

void celeriac_task_progress(celeriac_task_ctx *c, unsigned percent) {
    int p = percent > 100 ? 100 : (int)percent;
    if (p == c->progress) return;
    c->progress = p;
    log_info("task %s (%s): %d%% done", c->id, c->name, p);
}

void celeriac_task_log(celeriac_task_ctx *c, const char *fmt, ...) {
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    log_info("task %s (%s): %s", c->id, c->name, line);
}

/* ---- the loop ---------------------------------------------------------------------------- */

static void copy_str(char *dst, size_t cap, cel_str s) {
    snprintf(dst, cap, "%.*s", (int)s.len, s.ptr ? s.ptr : "");
}

/* The context of task t, before it runs (or is skipped). */
static void begin_task(celeriac_task_ctx *ctx, const cel_msg *t) {
    copy_str(ctx->id, sizeof ctx->id, t->id);
    copy_str(ctx->name, sizeof ctx->name, t->task);
    copy_str(ctx->queue, sizeof ctx->queue, t->queue);
    ctx->attempt = (unsigned)t->attempt;
    ctx->token = t->token;
    ctx->nil.type = MSGPACK_OBJECT_NIL;
    ctx->args = t->args.obj ? t->args.obj : &ctx->nil;
    ctx->has_result = false, ctx->cancelled = false, ctx->error[0] = 0, ctx->progress = -1;
    ctx->soft_deadline_ms = 0;
}

static int run_one(celeriac_task_ctx *ctx, const celeriac_registry *r, const cel_msg *t) {
    if (ctx->cancelled) {
        celeriac_task_error(ctx, "cancelled before it started");
        return CELERIAC_TASK_FATAL;
    }
    ctx->soft_deadline_ms = t->soft_ms ? cel_now_ms() + (long long)t->soft_ms : 0;
    ctx->handler = registry_find(r, t->task.ptr, t->task.len);
    if (!ctx->handler) {
        celeriac_task_error(ctx, "unknown task '%s': no handler registered on this worker",
                            ctx->name);
        return CELERIAC_TASK_FATAL;
    }
    int rc = ctx->handler->fn(ctx);
    if (rc != CELERIAC_TASK_OK && rc != CELERIAC_TASK_ERROR && rc != CELERIAC_TASK_FATAL) {
        celeriac_task_error(ctx, "handler returned %d, not a CELERIAC_TASK_* code", rc);
        rc = CELERIAC_TASK_FATAL;
    }
    if (rc != CELERIAC_TASK_OK && !ctx->error[0]) celeriac_task_error(ctx, "task failed");
    return rc;
}

static const char *fail_reason(const celeriac_task_ctx *ctx) {
    if (ctx->cancelled) return "cancelled";
    if (ctx->soft_deadline_ms && cel_now_ms() >= ctx->soft_deadline_ms) return "timeout";
    return "error";
}

static void set_failure(cel_msg *o, const char *error, bool retry, const char *reason) {
    o->op = CEL_OP_FAIL;
    o->present &= ~(1ull << CEL_F_RESULT);
    o->result = (cel_raw){0};
    o->error = cel_str_c(error);
    if (!cel_utf8_valid(o->error.ptr, o->error.len)) o->error = cel_str_c("(error not UTF-8)");
    o->retry = retry, o->reason = cel_str_c(reason);
    cel_msg_set(o, CEL_F_ERROR), cel_msg_set(o, CEL_F_RETRY), cel_msg_set(o, CEL_F_REASON);
}

static void write_all(int fd, const uint8_t *p, size_t n) {
    while (n) {
        /* MSG_NOSIGNAL: a pool that abandoned this runner must not kill the process. */
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return;
        p += w, n -= (size_t)w;
    }
}

/* The ack or fail frame for a task that ran; its result stays in ctx until the next task. */
static void make_outcome(cel_msg *o, celeriac_task_ctx *ctx, const cel_msg *t, int rc) {
    memset(o, 0, sizeof *o);
    o->op = CEL_OP_ACK;
    o->id = t->id, o->token = t->token;
    cel_msg_set(o, CEL_F_SEQ), cel_msg_set(o, CEL_F_ID), cel_msg_set(o, CEL_F_TOKEN);
    if (rc == CELERIAC_TASK_OK && ctx->has_result) {
        o->result.bytes = ctx->result.data, o->result.len = (uint32_t)ctx->result.len;
        cel_msg_set(o, CEL_F_RESULT);
    }
    if (rc != CELERIAC_TASK_OK)
        set_failure(o, ctx->error, rc == CELERIAC_TASK_ERROR && !ctx->cancelled, fail_reason(ctx));
}

static void write_outcome(int fd, cel_buf *out, celeriac_task_ctx *ctx, const cel_msg *t, int rc) {
    cel_msg o;
    make_outcome(&o, ctx, t, rc);
    cel_error err;
    cel_buf_reset(out);
    if (cel_msg_encode(out, &o, UINT32_MAX, &err) != CEL_OK) {
        cel_buf_reset(out);
        set_failure(&o, err.msg, false, "error");
        cel_msg_encode(out, &o, UINT32_MAX, NULL);
    }
    write_all(fd, out->data, out->len);
}

/* A task frame decoded into t (in zone); false for anything else, such as a late abort. */
static bool decode_task(const uint8_t *frame, size_t len, msgpack_zone *zone, cel_msg *t) {
    msgpack_zone_clear(zone);
    return cel_msg_decode(frame, len, zone, CEL_HARD_MAX_DEPTH, t, NULL) == CEL_OK &&
           t->op == CEL_OP_TASK;
}

void runner_loop(int fd, const celeriac_registry *r) {
    celeriac_task_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.fd = fd;
    cel_buf frame, out;
    cel_buf_init(&frame), cel_buf_init(&out), cel_buf_init(&ctx.result), cel_buf_init(&ctx.next);
    cel_buf_init(&ctx.ctl);
    msgpack_zone_init(&ctx.peek, 1024);
    msgpack_zone zone;
    msgpack_zone_init(&zone, 4096);
    for (;;) {
        reopen_log_if_asked();
        bool aborted = false;
        if (ctx.has_next) {
            cel_buf spare = frame;
            frame = ctx.next, ctx.next = spare;
            ctx.has_next = false, aborted = ctx.next_aborted;
        } else if (!read_frame(&ctx, &frame)) {
            break;
        }
        cel_msg t;
        if (!decode_task(frame.data, frame.len, &zone, &t)) continue;
        begin_task(&ctx, &t);
        /* An abort of it written before this runner read it is behind it, often in the same
         * read: such a task is not started (looked for in what was read, never waited for). */
        while (!aborted && !ctx.cancelled && ctx.in_off < ctx.in_len)
            if (!read_control(&ctx)) ctx.cancelled = true;
        ctx.cancelled |= aborted;
        int rc = run_one(&ctx, r, &t);
        write_outcome(fd, &out, &ctx, &t, rc);
    }
    cel_buf_free(&frame), cel_buf_free(&out), cel_buf_free(&ctx.result), cel_buf_free(&ctx.next);
    cel_buf_free(&ctx.ctl);
    msgpack_zone_destroy(&zone), msgpack_zone_destroy(&ctx.peek);
}

/* ---- in the caller's own thread (the solo pool) ------------------------------------------ */

struct cel_runner {
    celeriac_task_ctx ctx;
    const celeriac_registry *reg;
    msgpack_zone zone;
};

cel_runner *runner_new(const celeriac_registry *r) {
    cel_runner *rn = calloc(1, sizeof *rn);
    if (!rn) return NULL;
    rn->reg = r;
    rn->ctx.fd = -1; /* no pool end to hear an abort from: see celeriac_task_cancelled */
    cel_buf_init(&rn->ctx.result);
    msgpack_zone_init(&rn->zone, 4096);
    return rn;
}

bool runner_run(cel_runner *rn, const uint8_t *frame, size_t len, cel_msg *outcome) {
    uint32_t body;
    cel_msg t;
    if (len < CEL_FRAME_HEADER ||
        cel_frame_header_parse(frame, UINT32_MAX, &body, NULL) != CEL_OK ||
        body != len - CEL_FRAME_HEADER ||
        !decode_task(frame + CEL_FRAME_HEADER, body, &rn->zone, &t))
        return false;
    begin_task(&rn->ctx, &t);
    int rc = run_one(&rn->ctx, rn->reg, &t);
    make_outcome(outcome, &rn->ctx, &t, rc);
    return true;
}

void runner_free(cel_runner *rn) {
    if (!rn) return;
    cel_buf_free(&rn->ctx.result);
    msgpack_zone_destroy(&rn->zone);
    free(rn);
}
