/* The runner: the loop a pool child (or thread) runs. It reads one task frame at a time from
 * its socketpair end, runs the handler, and writes back an ack or fail frame. The parent may
 * write an abort frame while a task runs; the task sees it through celeriac_task_cancelled. */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "json.h"
#include "clock.h"
#include "worker.h"

struct celeriac_task_ctx {
    const cel_handler *handler;
    char id[CEL_ID_MAX + 1], name[CEL_NAME_MAX + 1], queue[CEL_NAME_MAX + 1];
    unsigned attempt;
    const msgpack_object *args;
    cel_buf result;
    bool has_result;
    char error[1024];
    long long soft_deadline_ms; /* 0: none */
    bool cancelled;
    int fd;
};

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
    if (cel_mp_check(msgpack, len, CEL_DEFAULT_MAX_DEPTH, NULL) != CEL_OK) return -1;
    cel_buf_reset(&c->result);
    c->has_result = cel_buf_append(&c->result, msgpack, len);
    return c->has_result ? 0 : -1;
}

int celeriac_task_result_json(celeriac_task_ctx *c, const char *text) {
    json_error_t jerr;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &jerr);
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

/* Reads exactly n bytes; false at EOF or error. */
static bool read_full(int fd, void *p, size_t n) {
    while (n) {
        ssize_t r = read(fd, p, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return false;
        p = (char *)p + r, n -= (size_t)r;
    }
    return true;
}

static bool read_frame(int fd, cel_buf *body) {
    uint8_t hdr[CEL_FRAME_HEADER];
    uint32_t len;
    if (!read_full(fd, hdr, sizeof hdr) ||
        cel_frame_header_parse(hdr, UINT32_MAX, &len, NULL) != CEL_OK)
        return false;
    cel_buf_reset(body);
    if (!cel_buf_reserve(body, len)) return false;
    body->len = len;
    return read_full(fd, body->data, len);
}

bool celeriac_task_cancelled(celeriac_task_ctx *c) {
    struct pollfd p = {c->fd, POLLIN, 0};
    if (!c->cancelled && poll(&p, 1, 0) == 1) {
        /* The parent only writes to a busy runner to abort its task. */
        cel_buf b;
        cel_buf_init(&b);
        if (read_frame(c->fd, &b)) c->cancelled = true;
        cel_buf_free(&b);
    }
    return c->cancelled;
}

bool celeriac_task_should_stop(celeriac_task_ctx *c) {
    return celeriac_task_cancelled(c) ||
           (c->soft_deadline_ms && cel_now_ms() >= c->soft_deadline_ms);
}

void celeriac_task_progress(celeriac_task_ctx *c, unsigned percent) {
    log_debug("task %s (%s): %u%%", c->id, c->name, percent > 100 ? 100 : percent);
}

void celeriac_task_log(celeriac_task_ctx *c, const char *fmt, ...) {
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    log_info("task %s (%s): %s", c->id, c->name, line);
}

static void copy_str(char *dst, size_t cap, cel_str s) {
    snprintf(dst, cap, "%.*s", (int)s.len, s.ptr ? s.ptr : "");
}

static int run_one(celeriac_task_ctx *ctx, const celeriac_registry *r, const cel_msg *t) {
    copy_str(ctx->id, sizeof ctx->id, t->id);
    copy_str(ctx->name, sizeof ctx->name, t->task);
    copy_str(ctx->queue, sizeof ctx->queue, t->queue);
    ctx->attempt = (unsigned)t->attempt;
    ctx->args = t->args.obj;
    ctx->has_result = false, ctx->cancelled = false, ctx->error[0] = 0;
    ctx->soft_deadline_ms = t->soft_ms ? cel_now_ms() + (long long)t->soft_ms : 0;
    ctx->handler = registry_find(r, t->task.ptr, t->task.len);
    if (!ctx->handler) {
        celeriac_task_error(ctx, "unknown task '%s' (no handler registered on this worker)",
                            ctx->name);
        return CELERIAC_TASK_FATAL;
    }
    int rc = ctx->handler->fn(ctx);
    if (rc != CELERIAC_TASK_OK && !ctx->error[0]) celeriac_task_error(ctx, "task returned %d", rc);
    return rc;
}

static void write_outcome(int fd, celeriac_task_ctx *ctx, const cel_msg *t, int rc) {
    cel_msg o;
    memset(&o, 0, sizeof o);
    o.op = rc == CELERIAC_TASK_OK ? CEL_OP_ACK : CEL_OP_FAIL;
    o.id = t->id, o.token = t->token;
    o.present = 1u << CEL_F_SEQ | 1u << CEL_F_ID | 1u << CEL_F_TOKEN;
    if (rc == CELERIAC_TASK_OK && ctx->has_result) {
        o.result.bytes = ctx->result.data, o.result.len = (uint32_t)ctx->result.len;
        cel_msg_set(&o, CEL_F_RESULT);
    }
    if (rc != CELERIAC_TASK_OK) {
        o.error = cel_str_c(ctx->error);
        if (!cel_utf8_valid(o.error.ptr, o.error.len))
            o.error = cel_str_c("(error text not UTF-8)");
        o.retry = rc == CELERIAC_TASK_ERROR && !ctx->cancelled;
        o.reason = cel_str_c(ctx->cancelled ? "cancelled" : "error");
        cel_msg_set(&o, CEL_F_ERROR), cel_msg_set(&o, CEL_F_RETRY), cel_msg_set(&o, CEL_F_REASON);
    }
    cel_buf b;
    cel_buf_init(&b);
    cel_error err;
    if (cel_msg_encode(&b, &o, UINT32_MAX, &err) != CEL_OK) {
        /* e.g. a result too large: report it as the task's failure instead. */
        cel_buf_reset(&b);
        o.op = CEL_OP_FAIL, o.present &= ~(1ull << CEL_F_RESULT);
        o.error = cel_str_c(err.msg), o.retry = false, o.reason = cel_str_c("error");
        cel_msg_set(&o, CEL_F_ERROR), cel_msg_set(&o, CEL_F_RETRY), cel_msg_set(&o, CEL_F_REASON);
        cel_msg_encode(&b, &o, UINT32_MAX, NULL);
    }
    for (size_t off = 0; off < b.len;) {
        ssize_t w = write(fd, b.data + off, b.len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;
        off += (size_t)w;
    }
    cel_buf_free(&b);
}

void runner_loop(int fd, const celeriac_registry *r) {
    celeriac_task_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.fd = fd;
    cel_buf frame;
    cel_buf_init(&frame);
    msgpack_zone zone;
    msgpack_zone_init(&zone, 4096);
    while (read_frame(fd, &frame)) {
        cel_msg t;
        msgpack_zone_clear(&zone);
        if (cel_msg_decode(frame.data, frame.len, &zone, 0, &t, NULL) != CEL_OK ||
            t.op != CEL_OP_TASK)
            continue; /* a late abort for a task already finished */
        int rc = run_one(&ctx, r, &t);
        write_outcome(fd, &ctx, &t, rc);
    }
    cel_buf_free(&frame);
    cel_buf_free(&ctx.result);
    msgpack_zone_destroy(&zone);
}
