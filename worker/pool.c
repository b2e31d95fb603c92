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

/* The task's outcome as the pool reports it: a cancelled task fails as cancelled whatever its
 * handler returned, because the broker has already settled it that way. */
void pool_report(cel_slot *s, cel_msg *o) {
    cel_pool *p = s->pool;
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
    p->cb(o, p->arg);
}

/* Reads a runner's outcomes with recv() straight into the decoder. At EOF reading stops; the
 * runner's end is reported by its kind (SIGCHLD for a child). */
static void slot_readable(evutil_socket_t fd, short what, void *arg) {
    (void)what;
    cel_slot *s = arg;
    cel_pool *p = s->pool;
    uint8_t buf[16384];
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) {
        if (n == 0 || (errno != EAGAIN && errno != EINTR)) event_del(s->rev);
        return;
    }
    if (!cel_decoder_feed(&s->dec, buf, (size_t)n)) return;
    const uint8_t *body;
    uint32_t len;
    while (cel_decoder_next(&s->dec, &body, &len, NULL) == CEL_OK && body) {
        cel_msg o;
        msgpack_zone_clear(&p->zone);
        /* Not busy: the outcome of a task the pool already reported (its hard limit). */
        if (cel_msg_decode(body, len, &p->zone, 0, &o, NULL) != CEL_OK || !s->busy) continue;
        pool_report(s, &o);
    }
}

/* The failure of a task whose runner is gone, worded after why it went. */
static void report_lost(cel_pool *p, const cel_slot *task, const char *how) {
    char why[300];
    cel_msg o;
    memset(&o, 0, sizeof o);
    o.op = CEL_OP_FAIL, o.id = cel_str_c(task->id), o.token = task->token;
    if (task->end == SLOT_END_TIMEOUT) {
        snprintf(why, sizeof why, "hard time limit of %llu ms exceeded: %s %s",
                 (unsigned long long)task->hard_ms, p->ops->what, how);
        o.reason = cel_str_c("timeout"), o.retry = true;
    } else if (task->end == SLOT_END_CANCEL) {
        snprintf(why, sizeof why, "cancelled: %s %s", p->ops->what, how);
        o.reason = cel_str_c("cancelled"), o.retry = false;
    } else {
        snprintf(why, sizeof why, "worker %s %s while running the task", p->ops->what, how);
        o.reason = cel_str_c("worker_lost"), o.retry = true;
    }
    log_warn("task %s: %s", task->id, why);
    o.error = cel_str_c(why);
    cel_msg_set(&o, CEL_F_ID), cel_msg_set(&o, CEL_F_TOKEN), cel_msg_set(&o, CEL_F_ERROR);
    cel_msg_set(&o, CEL_F_RETRY), cel_msg_set(&o, CEL_F_REASON);
    p->cb(&o, p->arg);
}

void pool_slot_lost(cel_slot *s, const char *how) {
    cel_pool *p = s->pool;
    slot_release(s);
    cel_slot task = *s; /* what it was running, before the slot is reused */
    s->busy = false, s->end = SLOT_END_NONE;
    /* A new runner first, so the outcome callback can already hand this slot a task. */
    if (!slot_start(s)) {
        log_error("pool: cannot start a new %s for slot %d: %s", p->ops->what, s->index,
                  strerror(errno));
        arm_ms(p->retry, POOL_RESTART_RETRY_MS);
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
        if (p->slots[i].fd >= 0 || slot_start(&p->slots[i])) continue;
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

int pool_busy(const cel_pool *p) {
    int n = 0;
    for (int i = 0; i < p->n; i++) n += p->slots[i].busy;
    return n;
}

int pool_idle(const cel_pool *p) {
    int n = 0;
    for (int i = 0; i < p->n; i++) n += !p->slots[i].busy && (p->slots[i].fd >= 0 || p->solo);
    return n;
}

bool pool_run_frame(cel_pool *p, const uint8_t *frame, size_t len, cel_str id, uint64_t token,
                    uint64_t hard_ms) {
    for (int i = 0; i < p->n; i++) {
        cel_slot *s = &p->slots[i];
        if (s->busy || (s->fd < 0 && !p->solo)) continue;
        if (p->solo && !solo_run(s, frame, len)) return false;
        if (!p->solo) slot_send(s, frame, len);
        snprintf(s->id, sizeof s->id, "%.*s", (int)id.len, id.ptr);
        s->token = token, s->hard_ms = hard_ms;
        s->busy = true, s->end = SLOT_END_NONE;
        s->hard_deadline_ms = hard_ms ? cel_now_ms() + (long long)hard_ms : 0;
        /* A solo task cannot be interrupted: its hard limit is not enforced (documented). */
        if (hard_ms && !p->solo) arm_ms(s->timer, (long long)hard_ms);
        return true;
    }
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

static cel_slot *slot_running(const cel_pool *p, cel_str id, uint64_t token) {
    for (int i = 0; i < p->n; i++) {
        cel_slot *s = &p->slots[i];
        if (s->busy && s->token == token && strlen(s->id) == id.len &&
            memcmp(s->id, id.ptr, id.len) == 0)
            return s;
    }
    return NULL;
}

bool pool_running(const cel_pool *p, cel_str id, uint64_t token) {
    return slot_running(p, id, token) != NULL;
}

void pool_abort(cel_pool *p, cel_str id, uint64_t token, int grace_ms) {
    cel_slot *s = slot_running(p, id, token);
    if (!s || s->end != SLOT_END_NONE) return;
    if (p->solo) {
        /* The event loop runs only between solo tasks: this one has not started, and will not. */
        s->end = SLOT_END_CANCEL;
        return;
    }
    cel_msg a;
    memset(&a, 0, sizeof a);
    a.op = CEL_OP_ABORT, a.id = id, a.token = token, a.reason = cel_str_c("cancelled");
    cel_msg_set(&a, CEL_F_ID), cel_msg_set(&a, CEL_F_TOKEN), cel_msg_set(&a, CEL_F_REASON);
    cel_buf_reset(&p->out);
    if (cel_msg_encode(&p->out, &a, UINT32_MAX, NULL) == CEL_OK)
        slot_send(s, p->out.data, p->out.len);
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
