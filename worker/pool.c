/* The execution pool: N slots, each a runner (see runner.c) in a child process (prefork: a task
 * that crashes takes only its child down) or a thread (threads: cheaper, no isolation), driven
 * through a socketpair from the daemon's event loop. This file is what both kinds share: it
 * hands tasks to idle slots, reads their outcomes, enforces hard time limits and abort grace
 * periods, and turns a lost runner into its task's failure before starting a new one. */
#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "pool.h"

/* How long a slot whose runner could not be started waits before the next try. */
#define POOL_RESTART_RETRY_MS 1000

static void slot_release(cel_slot *s);
static void slot_promote(cel_slot *s);
static void slot_readable(evutil_socket_t fd, short what, void *arg);
static void slot_writable(evutil_socket_t fd, short what, void *arg);
static void slot_timer(evutil_socket_t fd, short what, void *arg);

const char *cel_pool_kind_name(cel_pool_kind k) {
    return k == CEL_POOL_THREADS ? "threads" : k == CEL_POOL_SOLO ? "solo" : "prefork";
}

static void arm_ms(struct event *ev, long long ms) {
    struct timeval tv = {ms > 0 ? ms / 1000 : 0, ms > 0 ? (ms % 1000) * 1000 : 0};
    evtimer_add(ev, &tv);
}

static bool slot_start(cel_slot *s) {
    cel_pool *p = s->pool;
    if (p->solo) return s->busy = false, s->end = SLOT_END_NONE, true;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return false;
    if (!p->ops->start(s, sv[1])) {
        close(sv[0]), close(sv[1]);
        return false;
    }
    evutil_make_socket_nonblocking(sv[0]);
    /* The runner is our own code: its frames are trusted to be well-formed, and a result too
     * large for the broker is refused when the worker sends it, not here. */
    cel_decoder_init(&s->dec, UINT32_MAX);
    s->fd = sv[0];
    s->rev = event_new(p->base, s->fd, EV_READ | EV_PERSIST, slot_readable, s);
    s->wev = event_new(p->base, s->fd, EV_WRITE | EV_PERSIST, slot_writable, s);
    if (!s->rev || !s->wev || event_add(s->rev, NULL) != 0) {
        slot_release(s); /* closes our end: the runner sees EOF and ends */
        s->busy = false;
        p->ops->reap(s);
        return false;
    }
    s->busy = false, s->end = SLOT_END_NONE;
    return true;
}

static void slot_release(cel_slot *s) {
    if (s->rev) event_free(s->rev);
    if (s->wev) event_free(s->wev);
    s->rev = s->wev = NULL;
    if (s->fd >= 0) close(s->fd);
    s->fd = -1;
    cel_buf_free(&s->pend);
    s->pend_off = 0;
    cel_decoder_free(&s->dec);
    if (s->timer) evtimer_del(s->timer);
}

/* The pool writes to a runner itself, never through libevent: a task costs one send(), not an
 * epoll_ctl to arm the write event, a loop turn and another to disarm it. Only what the
 * socketpair does not take waits for the write event. A runner gone away is not an error here:
 * its loss is reported with its task (pool_slot_lost). */
static void slot_send(cel_slot *s, const void *data, size_t len) {
    size_t done = 0;
    if (s->pend.len == 0) {
        ssize_t n = send(s->fd, data, len, MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN && errno != EINTR) return;
        done = n > 0 ? (size_t)n : 0;
    }
    if (done == len) return;
    cel_buf_append(&s->pend, (const uint8_t *)data + done, len - done);
    event_add(s->wev, NULL);
}

static void slot_writable(evutil_socket_t fd, short what, void *arg) {
    (void)what;
    cel_slot *s = arg;
    while (s->pend_off < s->pend.len) {
        ssize_t n = send(fd, s->pend.data + s->pend_off, s->pend.len - s->pend_off, MSG_NOSIGNAL);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
        if (n < 0) break; /* the runner is gone: dropped, as in slot_send */
        s->pend_off += (size_t)n;
    }
    cel_buf_free(&s->pend);
    s->pend_off = 0;
    event_del(s->wev);
}

/* The task now in s starts (or is about to): its hard limit runs from here, or, cancelled while
 * it waited, an abort's grace period. */
static void slot_begin(cel_slot *s, uint64_t hard_ms, bool cancelled, int grace_ms) {
    s->hard_ms = hard_ms, s->grace_ms = grace_ms;
    s->busy = true, s->end = cancelled ? SLOT_END_CANCEL : SLOT_END_NONE;
    s->hard_deadline_ms = hard_ms ? cel_now_ms() + (long long)hard_ms : 0;
    /* A solo task cannot be interrupted: its hard limit is not enforced (documented). */
    if (s->pool->solo) return;
    if (cancelled)
        arm_ms(s->timer, hard_ms && (long long)hard_ms < grace_ms ? (long long)hard_ms : grace_ms);
    else if (hard_ms)
        arm_ms(s->timer, (long long)hard_ms);
}

/* The runner goes on to the task queued behind the one whose outcome was just read: it starts
 * it as soon as it has written that outcome. */
static void slot_promote(cel_slot *s) {
    memcpy(s->id, s->qid, sizeof s->id);
    s->token = s->qtoken;
    s->withdrawn = s->queued_withdrawn;
    s->queued = s->queued_withdrawn = false;
    cel_buf_reset(&s->qframe);
    slot_begin(s, s->qhard_ms, s->queued_cancel, s->qgrace_ms);
}

/* The task's outcome as the pool reports it: a cancelled task fails as cancelled whatever its
 * handler returned, because the broker has already settled it that way. */
void pool_report(cel_slot *s, cel_msg *o) {
    cel_pool *p = s->pool;
    bool given_back = s->withdrawn && o->op == CEL_OP_FAIL && cel_str_eq(o->reason, "cancelled");
    s->withdrawn = false;
    if (s->end == SLOT_END_CANCEL) {
        o->op = CEL_OP_FAIL;
        o->present &= ~(1ull << CEL_F_RESULT);
        o->result = (cel_raw){0};
        if (!cel_msg_has(o, CEL_F_ERROR)) o->error = cel_str_c("cancelled");
        o->retry = false, o->reason = cel_str_c("cancelled");
        cel_msg_set(o, CEL_F_ERROR), cel_msg_set(o, CEL_F_RETRY), cel_msg_set(o, CEL_F_REASON);
    }
    s->busy = false, s->end = SLOT_END_NONE;
    evtimer_del(s->timer);
    if (s->queued) slot_promote(s);
    if (!given_back) p->cb(o, p->arg);
}

/* Reads a runner's outcomes with recv() straight into the decoder; false when nothing was
 * there. At EOF reading stops; the runner's end is reported by its kind (SIGCHLD for a child). */
static bool slot_read(cel_slot *s) {
    cel_pool *p = s->pool;
    uint8_t buf[16384];
    ssize_t n = recv(s->fd, buf, sizeof buf, 0);
    if (n <= 0) {
        if (n == 0 || (errno != EAGAIN && errno != EINTR)) event_del(s->rev);
        return false;
    }
    if (!cel_decoder_feed(&s->dec, buf, (size_t)n)) return false;
    const uint8_t *body;
    uint32_t len;
    while (cel_decoder_next(&s->dec, &body, &len, NULL) == CEL_OK && body) {
        cel_msg o;
        msgpack_zone_clear(&p->zone);
        /* Not busy: the outcome of a task the pool already reported (its hard limit). */
        if (cel_msg_decode(body, len, &p->zone, 0, &o, NULL) != CEL_OK || !s->busy) continue;
        pool_report(s, &o);
    }
    return true;
}

static void slot_readable(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    slot_read(arg);
}

/* Reports a failure the pool itself decided (the runner sent none). */
static void report_fail(cel_pool *p, const char *id, uint64_t token, const char *error,
                        const char *reason, bool retry) {
    cel_msg o;
    memset(&o, 0, sizeof o);
    o.op = CEL_OP_FAIL, o.id = cel_str_c(id), o.token = token;
    o.error = cel_str_c(error), o.reason = cel_str_c(reason), o.retry = retry;
    cel_msg_set(&o, CEL_F_ID), cel_msg_set(&o, CEL_F_TOKEN), cel_msg_set(&o, CEL_F_ERROR);
    cel_msg_set(&o, CEL_F_RETRY), cel_msg_set(&o, CEL_F_REASON);
    p->cb(&o, p->arg);
}

/* The failure of a task whose runner is gone, worded after why it went. */
static void report_lost(cel_pool *p, const cel_slot *task, const char *how) {
    char why[300];
    const char *reason = "worker_lost";
    if (task->end == SLOT_END_TIMEOUT) {
        snprintf(why, sizeof why, "hard time limit of %llu ms exceeded: %s %s",
                 (unsigned long long)task->hard_ms, p->ops->what, how);
        reason = "timeout";
    } else if (task->end == SLOT_END_CANCEL) {
        snprintf(why, sizeof why, "cancelled: %s %s", p->ops->what, how);
        reason = "cancelled";
    } else {
        snprintf(why, sizeof why, "worker %s %s while running the task", p->ops->what, how);
    }
    log_warn("task %s: %s", task->id, why);
    report_fail(p, task->id, task->token, why, reason, task->end != SLOT_END_CANCEL);
}

/* A queued task that was cancelled before its runner went: it never starts anywhere. */
static void report_unstarted_cancel(cel_slot *s) {
    s->queued = false;
    cel_buf_reset(&s->qframe);
    report_fail(s->pool, s->qid, s->qtoken, "cancelled before it started", "cancelled", false);
}

/* The task queued behind a runner that went never started: the slot's new runner gets it. */
static void slot_resume_queued(cel_slot *s) {
    if (!s->queued) return;
    if (s->queued_cancel) return report_unstarted_cancel(s);
    if (s->queued_withdrawn) {
        s->queued = s->queued_withdrawn = false;
        return;
    }
    slot_send(s, s->qframe.data, s->qframe.len);
    slot_promote(s);
}

/* A runner that died on its own (the pool did not end it) may have written outcomes and gone on
 * to its queued task before it died: those outcomes are read first, so that the task it was
 * really running is the one that counts as lost. The slot takes no task meanwhile. */
static void slot_read_last(cel_slot *s) {
    if (!s->queued || s->end != SLOT_END_NONE || s->fd < 0) return;
    s->dying = true;
    while (s->fd >= 0 && slot_read(s)) {
    }
    s->dying = false;
}

void pool_slot_lost(cel_slot *s, const char *how) {
    cel_pool *p = s->pool;
    slot_read_last(s);
    slot_release(s);
    cel_slot task = *s; /* what it was running, before the slot is reused */
    s->busy = s->withdrawn = false, s->end = SLOT_END_NONE;
    /* A new runner first, so the outcome callback can already hand this slot a task. */
    if (!slot_start(s)) {
        log_error("pool: cannot start a new %s for slot %d: %s", p->ops->what, s->index,
                  strerror(errno));
        arm_ms(p->retry, POOL_RESTART_RETRY_MS);
    } else {
        slot_resume_queued(s);
    }
    if (task.busy)
        report_lost(p, &task, how);
    else
        log_warn("pool: idle %s of slot %d %s", p->ops->what, s->index, how);
}

/* The hard limit ran out, or an abort's grace period did: end the runner. */
static void slot_timer(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    cel_slot *s = arg;
    if (!s->busy || s->fd < 0) return;
    if (s->end == SLOT_END_NONE) {
        s->end = SLOT_END_TIMEOUT;
        log_warn("task %s: hard time limit of %llu ms reached; ending its %s", s->id,
                 (unsigned long long)s->hard_ms, s->pool->ops->what);
    } else {
        log_warn("task %s: still running %d ms after its abort; ending its %s", s->id, s->grace_ms,
                 s->pool->ops->what);
    }
    s->pool->ops->kill(s);
}

static void pool_retry(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    cel_pool *p = arg;
    for (int i = 0; i < p->n; i++) {
        if (p->slots[i].fd >= 0) continue;
        if (slot_start(&p->slots[i])) {
            slot_resume_queued(&p->slots[i]);
            continue;
        }
        arm_ms(p->retry, POOL_RESTART_RETRY_MS);
        return;
    }
}

cel_pool *pool_new(struct event_base *base, cel_pool_kind kind, int size,
                   const celeriac_registry *r, cel_pool_outcome_cb cb, void *arg) {
    cel_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->base = base, p->reg = r, p->cb = cb, p->arg = arg;
    p->ops = kind == CEL_POOL_THREADS ? &pool_threads_ops : &pool_prefork_ops;
    p->solo = kind == CEL_POOL_SOLO;
    if (p->solo) size = 1;
    msgpack_zone_init(&p->zone, 4096);
    cel_buf_init(&p->out);
    p->retry = evtimer_new(base, pool_retry, p);
    p->slots = calloc((size_t)size, sizeof *p->slots);
    if (!p->retry || !p->slots || !(p->solo ? solo_init(p) : p->ops->init(p))) {
        log_error("pool: cannot set up a %s pool", cel_pool_kind_name(kind));
        return pool_free(p), NULL;
    }
    p->n = size;
    for (int i = 0; i < size; i++) {
        cel_slot *s = &p->slots[i];
        s->pool = p, s->index = i, s->fd = -1;
        s->timer = evtimer_new(base, slot_timer, s);
        if (!s->timer || !slot_start(s)) {
            log_error("pool: cannot start %s %d: %s", p->ops->what, i, strerror(errno));
            return pool_free(p), NULL;
        }
    }
    return p;
}

void pool_free(cel_pool *p) {
    if (!p) return;
    for (int i = 0; i < p->n; i++) {
        cel_slot *s = &p->slots[i];
        /* shutdown, not just close: children forked later may hold a copy of this end, and
         * the runner must see EOF now to exit. */
        if (s->fd >= 0) shutdown(s->fd, SHUT_RDWR);
        bool had_runner = s->fd >= 0;
        slot_release(s);
        if (had_runner) p->ops->reap(s);
        if (s->timer) event_free(s->timer);
        cel_buf_free(&s->qframe);
    }
    if (p->solo)
        solo_fini(p);
    else
        p->ops->fini(p);
    if (p->retry) event_free(p->retry);
    msgpack_zone_destroy(&p->zone);
    cel_buf_free(&p->out);
    free(p->slots);
    free(p);
}

bool pool_set_pipeline(cel_pool *p, bool on) {
    if (on && (p->solo || p->ops != &pool_prefork_ops)) return false;
    p->pipeline = on;
    return true;
}

int pool_busy(const cel_pool *p) {
    int n = 0;
    for (int i = 0; i < p->n; i++) n += p->slots[i].busy + p->slots[i].queued;
    return n;
}

static bool slot_idle(const cel_slot *s) {
    return !s->busy && !s->dying && (s->fd >= 0 || s->pool->solo);
}

/* Busy with a task it is not being made to end, and nothing queued behind it yet. */
static bool slot_queueable(const cel_slot *s) {
    return s->pool->pipeline && s->busy && !s->queued && !s->dying && s->fd >= 0 &&
           s->end == SLOT_END_NONE;
}

int pool_idle(const cel_pool *p) {
    int n = 0;
    for (int i = 0; i < p->n; i++) n += slot_idle(&p->slots[i]) || slot_queueable(&p->slots[i]);
    return n;
}

/* Writes the task behind the one s runs; its frame is kept until the runner starts it. */
static bool slot_queue(cel_slot *s, const uint8_t *frame, size_t len, cel_str id, uint64_t token,
                       uint64_t hard_ms) {
    cel_buf_reset(&s->qframe);
    if (!cel_buf_append(&s->qframe, frame, len)) return false;
    slot_send(s, frame, len);
    snprintf(s->qid, sizeof s->qid, "%.*s", (int)id.len, id.ptr);
    s->qtoken = token, s->qhard_ms = hard_ms;
    s->queued = true, s->queued_cancel = false;
    return true;
}

bool pool_run_frame(cel_pool *p, const uint8_t *frame, size_t len, cel_str id, uint64_t token,
                    uint64_t hard_ms) {
    for (int i = 0; i < p->n; i++) {
        cel_slot *s = &p->slots[i];
        if (!slot_idle(s)) continue;
        if (p->solo && !solo_run(s, frame, len)) return false;
        if (!p->solo) slot_send(s, frame, len);
        snprintf(s->id, sizeof s->id, "%.*s", (int)id.len, id.ptr);
        s->token = token;
        slot_begin(s, hard_ms, false, 0);
        return true;
    }
    for (int i = 0; i < p->n; i++)
        if (slot_queueable(&p->slots[i]))
            return slot_queue(&p->slots[i], frame, len, id, token, hard_ms);
    return false;
}

bool pool_run(cel_pool *p, const cel_msg *task) {
    cel_buf_reset(&p->out);
    cel_msg t = *task;
    if (t.soft_ms) cel_msg_set(&t, CEL_F_SOFT_MS);
    if (t.hard_ms) cel_msg_set(&t, CEL_F_HARD_MS);
    if (cel_msg_encode(&p->out, &t, UINT32_MAX, NULL) != CEL_OK) return false;
    return pool_run_frame(p, p->out.data, p->out.len, t.id, t.token, t.hard_ms);
}

static bool names(const char *sid, uint64_t stoken, cel_str id, uint64_t token) {
    return stoken == token && strlen(sid) == id.len && memcmp(sid, id.ptr, id.len) == 0;
}

static cel_slot *slot_running(const cel_pool *p, cel_str id, uint64_t token) {
    for (int i = 0; i < p->n; i++) {
        cel_slot *s = &p->slots[i];
        if (s->busy && names(s->id, s->token, id, token)) return s;
    }
    return NULL;
}

static cel_slot *slot_queued(const cel_pool *p, cel_str id, uint64_t token) {
    for (int i = 0; i < p->n; i++) {
        cel_slot *s = &p->slots[i];
        if (s->queued && names(s->qid, s->qtoken, id, token)) return s;
    }
    return NULL;
}

bool pool_running(const cel_pool *p, cel_str id, uint64_t token) {
    return slot_running(p, id, token) || slot_queued(p, id, token);
}

static void send_abort(cel_slot *s, cel_str id, uint64_t token) {
    cel_pool *p = s->pool;
    cel_msg a;
    memset(&a, 0, sizeof a);
    a.op = CEL_OP_ABORT, a.id = id, a.token = token, a.reason = cel_str_c("cancelled");
    cel_msg_set(&a, CEL_F_ID), cel_msg_set(&a, CEL_F_TOKEN), cel_msg_set(&a, CEL_F_REASON);
    cel_buf_reset(&p->out);
    if (cel_msg_encode(&p->out, &a, UINT32_MAX, NULL) == CEL_OK)
        slot_send(s, p->out.data, p->out.len);
}

/* A queued task is told too: its runner skips it, or if it starts it before reading the abort,
 * the abort reaches it running, and its grace period starts when it does. */
static void abort_queued(cel_pool *p, cel_str id, uint64_t token, int grace_ms) {
    cel_slot *s = slot_queued(p, id, token);
    if (!s || s->queued_cancel) return;
    send_abort(s, id, token);
    s->queued_cancel = true, s->qgrace_ms = grace_ms;
}

void pool_withdraw_queued(cel_pool *p) {
    for (int i = 0; i < p->n; i++) {
        cel_slot *s = &p->slots[i];
        if (!s->queued || s->queued_cancel || s->queued_withdrawn) continue;
        send_abort(s, cel_str_c(s->qid), s->qtoken);
        s->queued_withdrawn = true;
    }
}

void pool_abort(cel_pool *p, cel_str id, uint64_t token, int grace_ms) {
    cel_slot *s = slot_running(p, id, token);
    if (!s) return abort_queued(p, id, token, grace_ms);
    if (s->end != SLOT_END_NONE) return;
    if (p->solo) {
        /* The event loop runs only between solo tasks: this one has not started, and will not. */
        s->end = SLOT_END_CANCEL;
        return;
    }
    send_abort(s, id, token);
    s->end = SLOT_END_CANCEL;
    s->grace_ms = grace_ms;
    /* The hard limit still applies if it comes first. */
    long long left = s->hard_deadline_ms ? s->hard_deadline_ms - cel_now_ms() : grace_ms;
    arm_ms(s->timer, left < grace_ms ? left : grace_ms);
}

void pool_signal(cel_pool *p, int sig) {
    for (int i = 0; i < p->n; i++)
        if (p->slots[i].pid > 0) kill(p->slots[i].pid, sig);
}
