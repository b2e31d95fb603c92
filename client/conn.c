/* cel_conn: one logical broker connection on a libevent base (see celeriac/conn.h). States:
 * IDLE (waiting to reconnect) → CONNECTING → HELLO (sent, awaiting welcome) → UP. Requests made
 * while not UP wait in a queue and go out after the next welcome; requests in flight when the
 * connection drops fail once with CEL_E_UNAVAILABLE (the caller decides whether to resend). */
#include "celeriac/conn.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/util.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>

#define CONN_DEFAULT_PORT 7878
/* Replies may be larger than anything the broker accepts: a task_info wraps a result that
 * itself filled up to a whole frame. Twice the request limit leaves room for that. */
#define CONN_REPLY_FRAME_FACTOR 2u
#define CONN_FIRST_SLOTS 64u
/* An output buffer that grew past this (a burst of requests queued while disconnected) is
 * freed once written rather than kept for the connection's life. */
#define CONN_OUT_KEEP (1u << 20)

typedef enum conn_state { CONN_IDLE, CONN_CONNECTING, CONN_HELLO, CONN_UP } conn_state;

/* Why a request failed without a reply. */
typedef enum pending_fate {
    FATE_LOST,      /* sent, then the connection dropped */
    FATE_TIMED_OUT, /* sent, no reply by its deadline */
    FATE_UNREACHED, /* never sent: no broker answered by its deadline */
    FATE_CLOSED     /* cel_conn_free */
} pending_fate;

typedef struct pending {
    TAILQ_ENTRY(pending) link;
    pending_fate fate;
    struct pending *next_in_slot;
    uint64_t seq;
    long long deadline_ms; /* 0: none */
    cel_conn_reply_cb cb;
    void *arg;
    bool sent;
    cel_buf frame;
} pending;

TAILQ_HEAD(pending_list, pending);

struct cel_conn {
    struct event_base *base;
    cel_conn_opts o;
    char **brokers;
    size_t next_broker;
    char addr[300];          /* the broker tried or connected to now, for messages */
    struct bufferevent *bev; /* only connects: conn reads and writes the socket itself */
    struct event *rev;       /* the socket is readable (from the connect on) */
    conn_state state;
    cel_buf out; /* frames queued, written from out_off on */
    size_t out_off;
    bool out_failed;        /* a frame could not be queued (no memory): drop and resend */
    struct event *flush_ev; /* activated by the first frame queued in a loop turn */
    struct event *wev;      /* the socket takes more: armed only while output waits on it */
    /* Every pending request in seq order. Sent ones always precede unsent ones: requests are
     * only sent when UP (appended) or all at once at the welcome. */
    struct pending_list reqs;
    struct pending_list doomed; /* failed, their callbacks about to run (notify_doomed) */
    pending **slots;            /* the same requests by seq & (nslots - 1) */
    size_t nslots, nreqs;
    uint64_t seq, hello_seq;
    cel_decoder dec;
    msgpack_zone zone;
    struct event *retry, *connect_timer, *deadline_timer;
    long long deadline_armed_ms; /* when deadline_timer fires; 0: not armed */
    int backoff_ms;
    unsigned failed_attempts;
    uint64_t rng;
    uint32_t server_max_frame;
    int depth;   /* nesting of callbacks running on c's behalf */
    bool closed; /* cel_conn_free ran; memory goes when depth returns to 0 */
    char last_error[256];
};

static void conn_connect(cel_conn *c);
static void arm_deadline(cel_conn *c, long long at_ms);

static long long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct timeval ms_tv(long long ms) {
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    return tv;
}

/* ---- life and reentrancy ----------------------------------------------------------------- */

static void conn_destroy(cel_conn *c) {
    event_free(c->flush_ev);
    cel_buf_free(&c->out);
    event_free(c->retry);
    event_free(c->connect_timer);
    event_free(c->deadline_timer);
    cel_decoder_free(&c->dec);
    msgpack_zone_destroy(&c->zone);
    for (size_t i = 0; i < c->o.nbrokers; i++) free(c->brokers[i]);
    free(c->brokers);
    free(c->slots);
    free(c);
}

/* Every entry from libevent is bracketed by enter/leave, so that a user callback may free c
 * (the memory stays until the outermost entry returns). leave returns false when c is gone or
 * closing, and the caller must then stop touching it. */
static void conn_enter(cel_conn *c) {
    c->depth++;
}

static bool conn_leave(cel_conn *c) {
    if (--c->depth == 0 && c->closed) {
        conn_destroy(c);
        return false;
    }
    return !c->closed;
}

/* ---- the seq table ----------------------------------------------------------------------- */

static bool table_grow(cel_conn *c) {
    size_t cap = c->nslots ? c->nslots * 2 : CONN_FIRST_SLOTS;
    pending **slots = calloc(cap, sizeof *slots);
    if (!slots) return false;
    for (size_t i = 0; i < c->nslots; i++) {
        for (pending *q = c->slots[i], *next; q; q = next) {
            next = q->next_in_slot;
            q->next_in_slot = slots[q->seq & (cap - 1)];
            slots[q->seq & (cap - 1)] = q;
        }
    }
    free(c->slots);
    c->slots = slots, c->nslots = cap;
    return true;
}

static bool table_put(cel_conn *c, pending *q) {
    if (c->nreqs >= c->nslots && !table_grow(c)) return false;
    pending **slot = &c->slots[q->seq & (c->nslots - 1)];
    q->next_in_slot = *slot;
    *slot = q;
    c->nreqs++;
    return true;
}

static pending *table_find(cel_conn *c, uint64_t seq) {
    if (!c->nslots) return NULL;
    pending *q = c->slots[seq & (c->nslots - 1)];
    while (q && q->seq != seq) q = q->next_in_slot;
    return q;
}

static void table_remove(cel_conn *c, pending *q) {
    pending **p = &c->slots[q->seq & (c->nslots - 1)];
    while (*p != q) p = &(*p)->next_in_slot;
    *p = q->next_in_slot;
    c->nreqs--;
}

/* ---- finishing requests ------------------------------------------------------------------ */

static void pending_free(pending *q) {
    cel_buf_free(&q->frame);
    free(q);
}

static void detach(cel_conn *c, pending *q, pending_fate fate) {
    TAILQ_REMOVE(&c->reqs, q, link);
    table_remove(c, q);
    q->fate = fate;
    TAILQ_INSERT_TAIL(&c->doomed, q, link);
}

static void fate_error(const cel_conn *c, pending_fate fate, cel_error *err) {
    switch (fate) {
    case FATE_LOST:
        cel_fail(err, CEL_E_UNAVAILABLE, "%s", c->last_error);
        break;
    case FATE_TIMED_OUT:
        cel_fail(err, CEL_E_TIMEOUT, "no reply from the broker in time");
        break;
    case FATE_UNREACHED: /* what the caller needs to hear (with the reason), not a timeout */
        cel_fail(err, CEL_E_UNAVAILABLE, "no broker reachable: %s",
                 c->last_error[0] ? c->last_error : "still connecting");
        break;
    case FATE_CLOSED:
        cel_fail(err, CEL_E_UNAVAILABLE, "connection closed");
        break;
    }
}

/* Calls back every doomed request once. Requests are detached before any callback runs, so a
 * callback that sends or fails others cannot disturb the walk; one that frees c empties the
 * list itself (no callback runs after cel_conn_free returns). */
static void notify_doomed(cel_conn *c) {
    pending *q;
    while ((q = TAILQ_FIRST(&c->doomed))) {
        TAILQ_REMOVE(&c->doomed, q, link);
        cel_error err;
        fate_error(c, q->fate, &err);
        if (q->cb) q->cb(c, NULL, &err, q->arg);
        pending_free(q);
    }
}

static void fail_requests(cel_conn *c, bool sent_only, pending_fate fate) {
    pending *q;
    while ((q = TAILQ_FIRST(&c->reqs)) && (!sent_only || q->sent)) detach(c, q, fate);
    notify_doomed(c);
}

static void expire_requests(cel_conn *c) {
    long long now = now_ms(), next = 0;
    pending *q, *nq;
    for (q = TAILQ_FIRST(&c->reqs); q; q = nq) {
        nq = TAILQ_NEXT(q, link);
        if (!q->deadline_ms) continue;
        if (q->deadline_ms <= now)
            detach(c, q, q->sent ? FATE_TIMED_OUT : FATE_UNREACHED);
        else if (!next || q->deadline_ms < next)
            next = q->deadline_ms;
    }
    c->deadline_armed_ms = 0;
    if (next) arm_deadline(c, next);
    notify_doomed(c);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    cel_conn *c = arg;
    conn_enter(c);
    expire_requests(c);
    conn_leave(c);
}

static void arm_deadline(cel_conn *c, long long at_ms) {
    if (c->deadline_armed_ms && c->deadline_armed_ms <= at_ms) return;
    c->deadline_armed_ms = at_ms;
    long long left = at_ms - now_ms();
    struct timeval tv = ms_tv(left > 0 ? left : 0);
    evtimer_add(c->deadline_timer, &tv);
}

/* ---- connection states ------------------------------------------------------------------- */

/* Per-connection xorshift, seeded from the kernel: random() would give every process that
 * lost the same broker the same "random" delays, bringing them all back in step. */
static uint32_t conn_random(cel_conn *c) {
    c->rng ^= c->rng << 13, c->rng ^= c->rng >> 7, c->rng ^= c->rng << 17;
    return (uint32_t)(c->rng >> 32);
}

static void schedule_reconnect(cel_conn *c) {
    int lo = c->o.backoff_min_ms > 0 ? c->o.backoff_min_ms : 50;
    int hi = c->o.backoff_max_ms > 0 ? c->o.backoff_max_ms : 5000;
    c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : lo;
    if (c->backoff_ms > hi) c->backoff_ms = hi;
    /* Half fixed, half random: spreads a crowd of clients yet keeps the growth. */
    int delay = c->backoff_ms / 2 + (int)(conn_random(c) % (uint32_t)(c->backoff_ms / 2 + 1));
    struct timeval tv = ms_tv(delay);
    evtimer_add(c->retry, &tv);
}

static void close_socket(cel_conn *c) {
    if (c->wev) event_free(c->wev);
    if (c->rev) event_free(c->rev);
    c->wev = c->rev = NULL;
    event_del(c->flush_ev);
    cel_buf_reset(&c->out);
    c->out_off = 0, c->out_failed = false;
    if (c->bev) bufferevent_free(c->bev);
    c->bev = NULL;
    c->state = CONN_IDLE;
    evtimer_del(c->connect_timer);
    cel_decoder_free(&c->dec);
    cel_decoder_init(&c->dec, 0);
}

static void conn_drop(cel_conn *c, const char *why) {
    bool was_up = c->state == CONN_UP;
    if (!was_up) c->failed_attempts++;
    close_socket(c);
    snprintf(c->last_error, sizeof c->last_error, "%.120s: %.120s", c->addr, why);
    fail_requests(c, true, FATE_LOST);
    if (c->closed) return;
    if (was_up && c->o.on_state) c->o.on_state(c, false, c->o.arg);
    if (!c->closed) schedule_reconnect(c);
}

/* ---- output ------------------------------------------------------------------------------
 * conn writes its socket itself, never libevent: all the frames queued in a loop turn leave in
 * one send() at its end, without arming the write event (an epoll_ctl, a loop turn, another
 * epoll_ctl to disarm it), and with MSG_NOSIGNAL, so a broker gone away never raises SIGPIPE
 * in the caller's program. The write event is armed only while the socket takes no more. */

static void out_written(cel_conn *c) {
    if (c->out.cap > CONN_OUT_KEEP)
        cel_buf_free(&c->out);
    else
        cel_buf_reset(&c->out);
    c->out_off = 0;
}

static void out_write(cel_conn *c) {
    int fd = bufferevent_getfd(c->bev);
    while (c->out_off < c->out.len) {
        ssize_t n = send(fd, c->out.data + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
        if (n > 0) {
            c->out_off += (size_t)n;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            if (c->out_off >= c->out.len / 2) cel_buf_consume(&c->out, c->out_off), c->out_off = 0;
            event_add(c->wev, NULL);
            return;
        } else if (errno != EINTR) {
            conn_drop(c, evutil_socket_error_to_string(errno));
            return;
        }
    }
    out_written(c);
}

static void conn_flush(cel_conn *c) {
    if (!c->bev || !c->wev || event_pending(c->wev, EV_WRITE, NULL)) return;
    if (c->out_failed)
        conn_drop(c, "out of memory");
    else
        out_write(c);
}

/* This loop turn's write, and the socket taking more once it was full. */
static void on_flush(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    cel_conn *c = arg;
    conn_enter(c);
    conn_flush(c);
    conn_leave(c);
}

/* Queues bytes for this loop turn's write. A frame that does not fit in memory makes the
 * flush drop the connection, so that the requests are resent after the reconnect. */
static void out_queue(cel_conn *c, const void *p, size_t len) {
    if (!c->out_failed && !cel_buf_append(&c->out, p, len)) c->out_failed = true;
    if (!event_pending(c->wev, EV_WRITE, NULL)) event_active(c->flush_ev, EV_TIMEOUT, 1);
}

static void send_frame(cel_conn *c, pending *q) {
    out_queue(c, q->frame.data, q->frame.len);
    q->sent = true;
}

static uint32_t reply_limit(const cel_conn *c) {
    uint32_t max = cel_conn_max_frame(c);
    return max > UINT32_MAX / CONN_REPLY_FRAME_FACTOR ? UINT32_MAX : max * CONN_REPLY_FRAME_FACTOR;
}

static void on_welcome(cel_conn *c, const cel_msg *m) {
    if (m->op != CEL_OP_WELCOME) {
        char why[300];
        if (m->op == CEL_OP_ERROR)
            snprintf(why, sizeof why, "broker refused hello: %.*s", (int)m->msg.len,
                     m->msg.ptr ? m->msg.ptr : "");
        else
            snprintf(why, sizeof why, "expected welcome, got %s", cel_op_name(m->op));
        conn_drop(c, why);
        return;
    }
    c->server_max_frame = (uint32_t)m->max_frame;
    c->dec.max_frame = reply_limit(c);
    c->state = CONN_UP;
    c->backoff_ms = 0;
    c->failed_attempts = 0;
    c->last_error[0] = 0;
    evtimer_del(c->connect_timer);
    pending *q;
    TAILQ_FOREACH(q, &c->reqs, link) if (!q->sent) send_frame(c, q);
    if (c->o.on_state) c->o.on_state(c, true, c->o.arg);
}

static void on_reply(cel_conn *c, const cel_msg *m, cel_err decode_rc, const cel_error *derr) {
    pending *q = table_find(c, m->seq);
    if (!q || !q->sent) return; /* timed out already: its caller has been told */
    TAILQ_REMOVE(&c->reqs, q, link);
    table_remove(c, q);
    cel_error err = {CEL_OK, ""};
    if (decode_rc != CEL_OK) {
        err = *derr;
    } else if (m->op == CEL_OP_ERROR) {
        cel_err code = cel_err_from_name(m->code.ptr, m->code.len);
        cel_fail(&err, code == CEL_E__COUNT ? CEL_E_INTERNAL : code, "%.*s", (int)m->msg.len,
                 m->msg.ptr ? m->msg.ptr : "");
    }
    if (q->cb) q->cb(c, decode_rc == CEL_OK ? m : NULL, &err, q->arg);
    pending_free(q);
}

static void on_message(cel_conn *c, const cel_msg *m) {
    if (c->state == CONN_HELLO) {
        if (m->seq == c->hello_seq) on_welcome(c, m);
        return;
    }
    if (m->op == CEL_OP_TASK || m->op == CEL_OP_ABORT) {
        if (c->o.on_push) c->o.on_push(c, m, c->o.arg);
        return;
    }
    on_reply(c, m, CEL_OK, NULL);
}

/* One frame body. A body that does not decode fails only its own request when its seq could be
 * read (the frame boundary is intact); otherwise the stream is not ours to trust. */
static void on_body(cel_conn *c, const uint8_t *body, uint32_t len) {
    cel_msg m;
    cel_error err;
    msgpack_zone_clear(&c->zone);
    cel_err rc = cel_msg_decode(body, len, &c->zone, 0, &m, &err);
    if (rc == CEL_OK) {
        on_message(c, &m);
    } else if (c->state == CONN_UP && m.seq && table_find(c, m.seq)) {
        on_reply(c, &m, rc, &err);
    } else {
        char why[300];
        snprintf(why, sizeof why, "bad frame from broker: %s", err.msg);
        conn_drop(c, why);
    }
}

/* Handles every whole frame buffered; false once a callback dropped or freed the connection. */
static bool decode_frames(cel_conn *c, struct bufferevent *bev) {
    for (;;) {
        const uint8_t *body;
        uint32_t len;
        cel_error err;
        if (cel_decoder_next(&c->dec, &body, &len, &err) != CEL_OK) {
            conn_drop(c, err.msg);
            return false;
        }
        if (!body) return true;
        on_body(c, body, len);
        if (c->bev != bev || c->closed) return false;
    }
}

/* Reads what the socket holds (a few buffers at most per turn) and handles each whole frame;
 * recv() directly, as libevent's own reading asks the kernel for the byte count first. Stops as
 * soon as a callback dropped or freed the connection. */
#define CONN_READ_CHUNK 16384
#define CONN_READS_PER_TURN 4
static void on_readable(evutil_socket_t fd, short what, void *arg) {
    (void)what;
    cel_conn *c = arg;
    struct bufferevent *bev = c->bev;
    uint8_t buf[CONN_READ_CHUNK];
    conn_enter(c);
    for (int i = 0; i < CONN_READS_PER_TURN && c->bev == bev && !c->closed; i++) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n == 0) {
            conn_drop(c, "connection closed by broker");
        } else if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                conn_drop(c, evutil_socket_error_to_string(errno));
        } else if (!cel_decoder_feed(&c->dec, buf, (size_t)n)) {
            conn_drop(c, "out of memory");
        } else if (decode_frames(c, bev) && (size_t)n == sizeof buf) {
            continue;
        }
        break;
    }
    conn_leave(c);
}

static void send_hello(cel_conn *c) {
    cel_msg h;
    memset(&h, 0, sizeof h);
    h.op = CEL_OP_HELLO;
    h.seq = c->hello_seq = ++c->seq;
    h.role = cel_str_c(c->o.role ? c->o.role : "producer");
    h.version = CEL_PROTO_VERSION;
    cel_msg_set(&h, CEL_F_SEQ), cel_msg_set(&h, CEL_F_ROLE), cel_msg_set(&h, CEL_F_VERSION);
    if (c->o.client_name) h.client = cel_str_c(c->o.client_name), cel_msg_set(&h, CEL_F_CLIENT);
    cel_buf b;
    cel_buf_init(&b);
    cel_error err;
    if (cel_msg_encode(&b, &h, UINT32_MAX, &err) == CEL_OK) {
        out_queue(c, b.data, b.len);
        c->state = CONN_HELLO;
    } else {
        conn_drop(c, err.msg); /* e.g. a client name beyond the protocol's limit */
    }
    cel_buf_free(&b);
}

static void on_event(struct bufferevent *bev, short what, void *arg) {
    cel_conn *c = arg;
    conn_enter(c);
    if (what & BEV_EVENT_CONNECTED) {
        int one = 1, fd = bufferevent_getfd(bev);
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        c->wev = event_new(c->base, fd, EV_WRITE, on_flush, c);
        c->rev = event_new(c->base, fd, EV_READ | EV_PERSIST, on_readable, c);
        if (c->wev && c->rev && event_add(c->rev, NULL) == 0)
            send_hello(c);
        else
            conn_drop(c, "out of memory");
    } else if (what & BEV_EVENT_ERROR) {
        int dns = bufferevent_socket_get_dns_error(bev);
        conn_drop(c, dns ? evutil_gai_strerror(dns)
                         : evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
    }
    conn_leave(c);
}

static void on_connect_timeout(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    cel_conn *c = arg;
    conn_enter(c);
    if (c->state == CONN_CONNECTING || c->state == CONN_HELLO) conn_drop(c, "connect timed out");
    conn_leave(c);
}

static void on_retry(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    cel_conn *c = arg;
    conn_enter(c);
    conn_connect(c);
    conn_leave(c);
}

bool cel_conn_parse_addr(const char *addr, char *host, size_t host_cap, int *port) {
    if (!addr || !*addr) return false;
    const char *h = addr, *end, *rest;
    if (*addr == '[') { /* [v6]:port: the brackets keep the address's colons apart */
        h = addr + 1;
        end = strchr(h, ']');
        if (!end) return false;
        rest = end + 1;
        if (*rest && *rest != ':') return false;
    } else {
        end = strrchr(addr, ':');
        if (end && memchr(addr, ':', (size_t)(end - addr))) return false; /* bare v6 */
        rest = end ? end : addr + strlen(addr);
        end = rest;
    }
    size_t hl = (size_t)(end - h);
    if (hl == 0 || hl >= host_cap) return false;
    memcpy(host, h, hl);
    host[hl] = 0;
    *port = CONN_DEFAULT_PORT;
    if (*rest == ':') {
        char *stop;
        long p = strtol(rest + 1, &stop, 10);
        if (!rest[1] || *stop || p < 1 || p > 65535) return false;
        *port = (int)p;
    }
    return true;
}

static void conn_connect(cel_conn *c) {
    const char *addr = c->brokers[c->next_broker++ % c->o.nbrokers];
    char host[256];
    int port;
    cel_conn_parse_addr(addr, host, sizeof host, &port); /* checked by cel_conn_new */
    snprintf(c->addr, sizeof c->addr, "%s", addr);
    close_socket(c);
    c->bev = bufferevent_socket_new(c->base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev) {
        conn_drop(c, "out of memory");
        return;
    }
    /* Nothing enabled: connecting arms the bufferevent's write event by itself. */
    bufferevent_setcb(c->bev, NULL, NULL, on_event, c);
    c->dec.max_frame = reply_limit(c);
    c->state = CONN_CONNECTING;
    struct timeval tv = ms_tv(c->o.connect_timeout_ms > 0 ? c->o.connect_timeout_ms : 5000);
    evtimer_add(c->connect_timer, &tv);
    if (bufferevent_socket_connect_hostname(c->bev, NULL, AF_UNSPEC, host, port) != 0 &&
        c->state == CONN_CONNECTING)
        conn_drop(c, "cannot start connecting");
}

static bool opts_valid(const cel_conn_opts *o) {
    if (!o || !o->brokers || o->nbrokers == 0) return false;
    for (size_t i = 0; i < o->nbrokers; i++) {
        char host[256];
        int port;
        if (!cel_conn_parse_addr(o->brokers[i], host, sizeof host, &port)) return false;
    }
    return true;
}

static bool conn_init(cel_conn *c, struct event_base *base, const cel_conn_opts *opts) {
    c->base = base, c->o = *opts;
    c->o.brokers = NULL;
    TAILQ_INIT(&c->reqs);
    TAILQ_INIT(&c->doomed);
    msgpack_zone_init(&c->zone, 4096);
    cel_decoder_init(&c->dec, 0);
    if (getrandom(&c->rng, sizeof c->rng, GRND_NONBLOCK) != sizeof c->rng)
        c->rng = (uint64_t)now_ms() ^ (uint64_t)(uintptr_t)c;
    c->rng |= 1; /* xorshift never leaves 0 */
    c->brokers = calloc(opts->nbrokers, sizeof *c->brokers);
    c->retry = evtimer_new(base, on_retry, c);
    c->connect_timer = evtimer_new(base, on_connect_timeout, c);
    c->deadline_timer = evtimer_new(base, on_deadline, c);
    c->flush_ev = event_new(base, -1, 0, on_flush, c);
    if (!c->brokers || !c->retry || !c->connect_timer || !c->deadline_timer || !c->flush_ev)
        return false;
    for (size_t i = 0; i < opts->nbrokers; i++)
        if (!(c->brokers[i] = strdup(opts->brokers[i]))) return false;
    return true;
}

cel_conn *cel_conn_new(struct event_base *base, const cel_conn_opts *opts) {
    if (!base || !opts_valid(opts)) return NULL;
    cel_conn *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    if (!conn_init(c, base, opts)) {
        if (c->retry) event_free(c->retry);
        if (c->connect_timer) event_free(c->connect_timer);
        if (c->deadline_timer) event_free(c->deadline_timer);
        if (c->flush_ev) event_free(c->flush_ev);
        c->retry = c->connect_timer = c->deadline_timer = c->flush_ev = NULL;
        cel_decoder_free(&c->dec);
        msgpack_zone_destroy(&c->zone);
        for (size_t i = 0; c->brokers && i < opts->nbrokers; i++) free(c->brokers[i]);
        free(c->brokers);
        free(c);
        return NULL;
    }
    conn_enter(c);
    conn_connect(c);
    conn_leave(c);
    return c;
}

void cel_conn_free(cel_conn *c) {
    if (!c || c->closed) return;
    c->closed = true;
    conn_enter(c);
    close_socket(c);
    evtimer_del(c->retry);
    evtimer_del(c->deadline_timer);
    fail_requests(c, false, FATE_CLOSED);
    conn_leave(c);
}

cel_err cel_conn_send_timeout(cel_conn *c, cel_msg *req, int timeout_ms, cel_conn_reply_cb cb,
                              void *arg, cel_error *err) {
    if (c->closed) return cel_fail(err, CEL_E_UNAVAILABLE, "connection closed");
    pending *q = calloc(1, sizeof *q);
    if (!q) return cel_fail(err, CEL_E_INTERNAL, "out of memory");
    req->seq = q->seq = ++c->seq;
    cel_msg_set(req, CEL_F_SEQ);
    cel_buf_init(&q->frame);
    cel_err rc = cel_msg_encode(&q->frame, req, cel_conn_max_frame(c), err);
    if (rc == CEL_OK && !table_put(c, q)) rc = cel_fail(err, CEL_E_INTERNAL, "out of memory");
    if (rc != CEL_OK) {
        pending_free(q);
        return rc;
    }
    q->cb = cb, q->arg = arg;
    TAILQ_INSERT_TAIL(&c->reqs, q, link);
    if (timeout_ms > 0) {
        q->deadline_ms = now_ms() + timeout_ms;
        arm_deadline(c, q->deadline_ms);
    }
    if (c->state == CONN_UP) send_frame(c, q);
    return CEL_OK;
}

cel_err cel_conn_send(cel_conn *c, cel_msg *req, cel_conn_reply_cb cb, void *arg, cel_error *err) {
    long long ms = c->o.request_timeout_ms > 0 ? c->o.request_timeout_ms : 0;
    if (ms && req->op == CEL_OP_WAIT) ms += (long long)req->timeout_ms;
    return cel_conn_send_timeout(c, req, ms > INT32_MAX ? INT32_MAX : (int)ms, cb, arg, err);
}

void cel_conn_flush(cel_conn *c) {
    if (c->closed) return;
    conn_enter(c);
    event_del(c->flush_ev);
    conn_flush(c);
    conn_leave(c);
}

bool cel_conn_is_up(const cel_conn *c) {
    return c->state == CONN_UP;
}

uint32_t cel_conn_max_frame(const cel_conn *c) {
    return c->server_max_frame ? c->server_max_frame
           : c->o.max_frame    ? c->o.max_frame
                               : CEL_DEFAULT_MAX_FRAME;
}

const char *cel_conn_last_error(const cel_conn *c) {
    return c->last_error;
}

unsigned cel_conn_failed_attempts(const cel_conn *c) {
    return c->failed_attempts;
}
