/* The execution pool: N slots, each a runner in a child process (prefork: a task that crashes
 * takes only its child down) or a thread (threads: cheaper, no isolation), connected to the
 * daemon by a socketpair. The pool enforces hard time limits, replaces dead children and turns
 * a death into the task's failure with the signal named. */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "worker.h"

typedef struct slot {
    cel_pool *pool;
    int index;
    struct bufferevent *bev;
    pid_t pid;
    pthread_t thread;
    int child_fd; /* threads: the runner's end */
    cel_decoder dec;
    bool busy;
    char id[CEL_ID_MAX + 1];
    uint64_t token;
    long long hard_deadline_ms, abort_deadline_ms;
    bool timed_out, aborted;
} slot;

struct cel_pool {
    struct event_base *base;
    cel_pool_kind kind;
    const celeriac_registry *reg;
    cel_pool_outcome_cb cb;
    void *arg;
    slot *slots;
    int n;
    struct event *tick, *sigchld;
    msgpack_zone zone;
    cel_buf out;
};

static void slot_read(struct bufferevent *bev, void *arg);

static void *thread_main(void *arg) {
    slot *s = arg;
    runner_loop(s->child_fd, s->pool->reg);
    return NULL;
}

/* In a forked child only the runner's socket, stdout and stderr stay open. */
static void child_close_fds(int keep) {
    long max = sysconf(_SC_OPEN_MAX);
    for (int fd = 3; fd < (max > 0 && max < 65536 ? max : 65536); fd++)
        if (fd != keep) close(fd);
}

static bool slot_start(slot *s) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return false;
    cel_pool *p = s->pool;
    if (p->kind == POOL_PREFORK) {
        pid_t pid = fork();
        if (pid < 0) return close(sv[0]), close(sv[1]), false;
        if (pid == 0) {
            signal(SIGTERM, SIG_DFL), signal(SIGINT, SIG_IGN), signal(SIGQUIT, SIG_DFL);
            child_close_fds(sv[1]);
            runner_loop(sv[1], p->reg);
            _exit(0);
        }
        close(sv[1]);
        s->pid = pid;
    } else {
        s->child_fd = sv[1];
        if (pthread_create(&s->thread, NULL, thread_main, s) != 0) return false;
    }
    evutil_make_socket_nonblocking(sv[0]);
    cel_decoder_init(&s->dec, UINT32_MAX);
    s->bev = bufferevent_socket_new(p->base, sv[0], BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(s->bev, slot_read, NULL, NULL, s);
    bufferevent_enable(s->bev, EV_READ | EV_WRITE);
    s->busy = false;
    return true;
}

static void emit_fail(cel_pool *p, slot *s, const char *reason, bool retry, const char *error) {
    cel_msg o;
    memset(&o, 0, sizeof o);
    o.op = CEL_OP_FAIL;
    o.id = cel_str_c(s->id), o.token = s->token;
    o.error = cel_str_c(error), o.retry = retry, o.reason = cel_str_c(reason);
    o.present = 1u << CEL_F_SEQ | 1u << CEL_F_ID | 1u << CEL_F_TOKEN | 1u << CEL_F_ERROR |
                1u << CEL_F_RETRY | 1u << CEL_F_REASON;
    s->busy = false;
    p->cb(&o, p->arg);
}

static void slot_read(struct bufferevent *bev, void *arg) {
    slot *s = arg;
    cel_pool *p = s->pool;
    char buf[16384];
    size_t n;
    while ((n = evbuffer_remove(bufferevent_get_input(bev), buf, sizeof buf)) > 0) {
        cel_decoder_feed(&s->dec, buf, n);
        const uint8_t *body;
        uint32_t len;
        while (cel_decoder_next(&s->dec, &body, &len, NULL) == CEL_OK && body) {
            cel_msg o;
            msgpack_zone_clear(&p->zone);
            if (cel_msg_decode(body, len, &p->zone, 0, &o, NULL) != CEL_OK || !s->busy) continue;
            s->busy = false;
            p->cb(&o, p->arg);
        }
    }
}

/* A child is gone: the task it ran fails with the cause named, and a new child takes over. */
static void slot_died(cel_pool *p, slot *s, int status) {
    bufferevent_free(s->bev);
    s->bev = NULL;
    cel_decoder_free(&s->dec);
    s->pid = 0;
    if (s->busy) {
        char why[160];
        if (s->timed_out)
            snprintf(why, sizeof why, "hard time limit exceeded: killed");
        else if (WIFSIGNALED(status))
            snprintf(why, sizeof why, "worker child killed by signal %d (SIG%s)", WTERMSIG(status),
                     sigabbrev_np(WTERMSIG(status)) ? sigabbrev_np(WTERMSIG(status)) : "?");
        else
            snprintf(why, sizeof why, "worker child exited with status %d", WEXITSTATUS(status));
        log_warn("task %s: %s", s->id, why);
        const char *reason = s->timed_out ? "timeout" : s->aborted ? "cancelled" : "worker_lost";
        emit_fail(p, s, reason, !s->aborted, why);
    }
    s->timed_out = s->aborted = false;
    if (!slot_start(s)) log_error("cannot replace pool child %d", s->index);
}

static void on_sigchld(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    cel_pool *p = arg;
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
        for (int i = 0; i < p->n; i++)
            if (p->slots[i].pid == pid) slot_died(p, &p->slots[i], status);
}

/* Hard limits and abort grace periods: kill the child (threads cannot be killed safely). */
static void on_tick(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    cel_pool *p = arg;
    long long now = cel_now_ms();
    for (int i = 0; i < p->n; i++) {
        slot *s = &p->slots[i];
        if (!s->busy || !s->pid) continue;
        if (s->hard_deadline_ms && now > s->hard_deadline_ms && !s->timed_out) {
            s->timed_out = true;
            kill(s->pid, SIGKILL);
        } else if (s->abort_deadline_ms && now > s->abort_deadline_ms) {
            s->abort_deadline_ms = 0;
            kill(s->pid, SIGKILL);
        }
    }
}

cel_pool *pool_new(struct event_base *base, cel_pool_kind kind, int size,
                   const celeriac_registry *r, cel_pool_outcome_cb cb, void *arg) {
    cel_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->base = base, p->kind = kind, p->reg = r, p->cb = cb, p->arg = arg, p->n = size;
    p->slots = calloc((size_t)size, sizeof *p->slots);
    msgpack_zone_init(&p->zone, 4096);
    cel_buf_init(&p->out);
    if (kind == POOL_PREFORK) {
        p->sigchld = evsignal_new(base, SIGCHLD, on_sigchld, p);
        event_add(p->sigchld, NULL);
    }
    p->tick = event_new(base, -1, EV_PERSIST, on_tick, p);
    struct timeval tv = {0, 50000};
    event_add(p->tick, &tv);
    for (int i = 0; i < size; i++) {
        p->slots[i].pool = p, p->slots[i].index = i;
        if (!slot_start(&p->slots[i])) {
            log_error("cannot start pool slot %d: %s", i, strerror(errno));
            return pool_free(p), NULL;
        }
    }
    return p;
}

void pool_free(cel_pool *p) {
    if (!p) return;
    for (int i = 0; i < p->n; i++) {
        slot *s = &p->slots[i];
        /* shutdown, not just close: libevent may close the fd only later, and the runner must
         * see EOF now to exit. */
        if (s->bev) shutdown(bufferevent_getfd(s->bev), SHUT_RDWR);
        if (s->bev) bufferevent_free(s->bev);
        s->bev = NULL;
        if (s->pid) {
            if (s->busy) kill(s->pid, SIGKILL);
            waitpid(s->pid, NULL, 0);
        } else if (p->kind == POOL_THREADS && s->thread) {
            if (!s->busy)
                pthread_join(s->thread, NULL);
            else
                pthread_detach(s->thread);
            if (!s->busy) close(s->child_fd);
        }
        cel_decoder_free(&s->dec);
    }
    if (p->sigchld) event_free(p->sigchld);
    event_free(p->tick);
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
    for (int i = 0; i < p->n; i++) n += !p->slots[i].busy && p->slots[i].bev;
    return n;
}

bool pool_run(cel_pool *p, const cel_msg *task, uint64_t soft_ms, uint64_t hard_ms) {
    for (int i = 0; i < p->n; i++) {
        slot *s = &p->slots[i];
        if (s->busy || !s->bev) continue;
        cel_msg t = *task;
        t.soft_ms = soft_ms, t.hard_ms = hard_ms;
        if (soft_ms) cel_msg_set(&t, CEL_F_SOFT_MS);
        if (hard_ms) cel_msg_set(&t, CEL_F_HARD_MS);
        cel_buf_reset(&p->out);
        if (cel_msg_encode(&p->out, &t, UINT32_MAX, NULL) != CEL_OK) return false;
        snprintf(s->id, sizeof s->id, "%.*s", (int)task->id.len, task->id.ptr);
        s->token = task->token;
        s->busy = true;
        s->hard_deadline_ms = hard_ms ? cel_now_ms() + (long long)hard_ms : 0;
        s->abort_deadline_ms = 0;
        bufferevent_write(s->bev, p->out.data, p->out.len);
        return true;
    }
    return false;
}

void pool_abort(cel_pool *p, const char *id, size_t len, int grace_ms) {
    for (int i = 0; i < p->n; i++) {
        slot *s = &p->slots[i];
        if (!s->busy || strlen(s->id) != len || memcmp(s->id, id, len) != 0) continue;
        cel_msg a;
        memset(&a, 0, sizeof a);
        a.op = CEL_OP_ABORT, a.id = cel_str_c(s->id), a.token = s->token;
        a.present = 1u << CEL_F_ID | 1u << CEL_F_TOKEN;
        cel_buf_reset(&p->out);
        if (cel_msg_encode(&p->out, &a, UINT32_MAX, NULL) == CEL_OK)
            bufferevent_write(s->bev, p->out.data, p->out.len);
        s->aborted = true;
        s->abort_deadline_ms = cel_now_ms() + grace_ms;
    }
}
