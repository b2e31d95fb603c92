/* cel_conn: one logical broker connection on a libevent base (see celeriac/conn.h). States:
 * IDLE (waiting to reconnect) → CONNECTING → HELLO (sent, awaiting welcome) → UP. Requests made
 * while not UP wait in a queue and go out after the next welcome; requests in flight when the
 * connection drops fail once with CEL_E_UNAVAILABLE (the caller decides whether to retry). */
#include "celeriac/conn.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

typedef enum cstate { C_IDLE, C_CONNECTING, C_HELLO, C_UP } cstate;

typedef struct creq {
    TAILQ_ENTRY(creq) link;
    uint64_t seq;
    cel_conn_reply_cb cb;
    void *arg;
    bool sent;
    cel_buf frame;
} creq;

TAILQ_HEAD(creq_list, creq);

struct cel_conn {
    struct event_base *base;
    cel_conn_opts o;
    char **brokers;
    size_t next_broker;
    struct bufferevent *bev;
    cstate state;
    struct creq_list reqs; /* in seq order: sent ones first */
    uint64_t seq, hello_seq;
    cel_decoder dec;
    msgpack_zone zone;
    struct event *retry;
    struct event *timeout;
    int backoff_ms;
    uint32_t server_max_frame;
};

static void conn_connect(cel_conn *c);

static void req_finish(cel_conn *c, creq *q, const cel_msg *reply, const cel_error *err) {
    TAILQ_REMOVE(&c->reqs, q, link);
    if (q->cb) q->cb(c, reply, err, q->arg);
    cel_buf_free(&q->frame);
    free(q);
}

static void fail_sent(cel_conn *c, const char *why) {
    cel_error err;
    cel_fail(&err, CEL_E_UNAVAILABLE, "%s", why);
    creq *q, *next;
    for (q = TAILQ_FIRST(&c->reqs); q; q = next) {
        next = TAILQ_NEXT(q, link);
        if (q->sent) req_finish(c, q, NULL, &err);
    }
}

static void schedule_reconnect(cel_conn *c) {
    int lo = c->o.backoff_min_ms ? c->o.backoff_min_ms : 50;
    int hi = c->o.backoff_max_ms ? c->o.backoff_max_ms : 5000;
    c->backoff_ms = c->backoff_ms ? c->backoff_ms * 2 : lo;
    if (c->backoff_ms > hi) c->backoff_ms = hi;
    /* Full jitter, so a crowd of clients that lost one broker does not return in step. */
    int delay = c->backoff_ms / 2 + (int)(random() % (c->backoff_ms / 2 + 1));
    struct timeval tv = {delay / 1000, (delay % 1000) * 1000};
    evtimer_add(c->retry, &tv);
}

static void conn_drop(cel_conn *c, const char *why) {
    bool was_up = c->state == C_UP;
    if (c->bev) bufferevent_free(c->bev);
    c->bev = NULL;
    c->state = C_IDLE;
    evtimer_del(c->timeout);
    cel_decoder_free(&c->dec);
    fail_sent(c, why);
    if (was_up && c->o.on_state) c->o.on_state(c, false, c->o.arg);
    schedule_reconnect(c);
}

static void send_frame(cel_conn *c, creq *q) {
    bufferevent_write(c->bev, q->frame.data, q->frame.len);
    q->sent = true;
}

static void on_welcome(cel_conn *c, const cel_msg *m) {
    if (m->op != CEL_OP_WELCOME) {
        conn_drop(c, m->op == CEL_OP_ERROR ? "broker refused hello" : "no welcome");
        return;
    }
    c->server_max_frame = (uint32_t)m->max_frame;
    c->state = C_UP;
    c->backoff_ms = 0;
    evtimer_del(c->timeout);
    creq *q;
    TAILQ_FOREACH(q, &c->reqs, link) if (!q->sent) send_frame(c, q);
    if (c->o.on_state) c->o.on_state(c, true, c->o.arg);
}

static void on_message(cel_conn *c, const cel_msg *m) {
    if (c->state == C_HELLO) {
        if (m->seq == c->hello_seq) on_welcome(c, m);
        return;
    }
    if (m->op == CEL_OP_TASK || m->op == CEL_OP_ABORT) {
        if (c->o.on_push) c->o.on_push(c, m, c->o.arg);
        return;
    }
    creq *q;
    TAILQ_FOREACH(q, &c->reqs, link) {
        if (q->seq != m->seq || !q->sent) continue;
        cel_error err = {CEL_OK, ""};
        if (m->op == CEL_OP_ERROR) {
            cel_err code = cel_err_from_name(m->code.ptr, m->code.len);
            cel_fail(&err, code == CEL_E__COUNT ? CEL_E_INTERNAL : code, "%.*s", (int)m->msg.len,
                     m->msg.ptr);
        }
        req_finish(c, q, m, &err);
        return;
    }
}

static void on_read(struct bufferevent *bev, void *arg) {
    cel_conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    char buf[16384];
    size_t n;
    while ((n = evbuffer_remove(in, buf, sizeof buf)) > 0 && c->bev == bev) {
        cel_decoder_feed(&c->dec, buf, n);
        for (;;) {
            const uint8_t *body;
            uint32_t len;
            cel_error err;
            if (cel_decoder_next(&c->dec, &body, &len, &err) != CEL_OK)
                return conn_drop(c, err.msg);
            if (!body) break;
            cel_msg m;
            msgpack_zone_clear(&c->zone);
            if (cel_msg_decode(body, len, &c->zone, 0, &m, &err) != CEL_OK)
                return conn_drop(c, err.msg);
            on_message(c, &m);
            if (c->bev != bev) return; /* a callback dropped or freed the connection */
        }
    }
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
    if (cel_msg_encode(&b, &h, UINT32_MAX, NULL) == CEL_OK)
        bufferevent_write(c->bev, b.data, b.len);
    cel_buf_free(&b);
    c->state = C_HELLO;
}

static void on_event(struct bufferevent *bev, short what, void *arg) {
    cel_conn *c = arg;
    (void)bev;
    if (what & BEV_EVENT_CONNECTED) {
        int one = 1;
        setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        send_hello(c);
        return;
    }
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) conn_drop(c, "connection to broker lost");
}

static void on_timeout(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    cel_conn *c = arg;
    if (c->state == C_CONNECTING || c->state == C_HELLO) conn_drop(c, "connect timed out");
}

static void on_retry(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    conn_connect(arg);
}

static void conn_connect(cel_conn *c) {
    const char *addr = c->brokers[c->next_broker++ % c->o.nbrokers];
    char host[256];
    int port = 7878;
    const char *colon = strrchr(addr, ':');
    size_t hl = colon ? (size_t)(colon - addr) : strlen(addr);
    snprintf(host, sizeof host, "%.*s", (int)hl, addr);
    if (colon) port = atoi(colon + 1);
    cel_decoder_init(&c->dec, 0);
    c->bev = bufferevent_socket_new(c->base, -1, BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(c->bev, on_read, NULL, on_event, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    c->state = C_CONNECTING;
    int ms = c->o.connect_timeout_ms ? c->o.connect_timeout_ms : 5000;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(c->timeout, &tv);
    if (bufferevent_socket_connect_hostname(c->bev, NULL, AF_UNSPEC, host, port) != 0)
        conn_drop(c, "cannot connect");
}

cel_conn *cel_conn_new(struct event_base *base, const cel_conn_opts *opts) {
    if (!base || !opts || !opts->brokers || opts->nbrokers == 0) return NULL;
    cel_conn *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->base = base, c->o = *opts;
    c->brokers = calloc(opts->nbrokers, sizeof *c->brokers);
    for (size_t i = 0; c->brokers && i < opts->nbrokers; i++)
        c->brokers[i] = strdup(opts->brokers[i]);
    c->o.brokers = NULL;
    TAILQ_INIT(&c->reqs);
    msgpack_zone_init(&c->zone, 4096);
    cel_decoder_init(&c->dec, 0);
    c->retry = evtimer_new(base, on_retry, c);
    c->timeout = evtimer_new(base, on_timeout, c);
    conn_connect(c);
    return c;
}

void cel_conn_free(cel_conn *c) {
    if (!c) return;
    if (c->bev) bufferevent_free(c->bev);
    c->bev = NULL;
    cel_error err;
    cel_fail(&err, CEL_E_UNAVAILABLE, "connection closed");
    while (!TAILQ_EMPTY(&c->reqs)) req_finish(c, TAILQ_FIRST(&c->reqs), NULL, &err);
    event_free(c->retry);
    event_free(c->timeout);
    cel_decoder_free(&c->dec);
    msgpack_zone_destroy(&c->zone);
    for (size_t i = 0; i < c->o.nbrokers; i++) free(c->brokers[i]);
    free(c->brokers);
    free(c);
}

cel_err cel_conn_send(cel_conn *c, cel_msg *req, cel_conn_reply_cb cb, void *arg, cel_error *err) {
    creq *q = calloc(1, sizeof *q);
    if (!q) return cel_fail(err, CEL_E_INTERNAL, "out of memory");
    req->seq = q->seq = ++c->seq;
    cel_msg_set(req, CEL_F_SEQ);
    cel_buf_init(&q->frame);
    uint32_t max = c->server_max_frame ? c->server_max_frame
                   : c->o.max_frame    ? c->o.max_frame
                                       : CEL_DEFAULT_MAX_FRAME;
    cel_err rc = cel_msg_encode(&q->frame, req, max, err);
    if (rc != CEL_OK) {
        cel_buf_free(&q->frame);
        free(q);
        return rc;
    }
    q->cb = cb, q->arg = arg;
    TAILQ_INSERT_TAIL(&c->reqs, q, link);
    if (c->state == C_UP) send_frame(c, q);
    return CEL_OK;
}

bool cel_conn_is_up(const cel_conn *c) {
    return c->state == C_UP;
}

uint32_t cel_conn_max_frame(const cel_conn *c) {
    return c->server_max_frame ? c->server_max_frame
           : c->o.max_frame    ? c->o.max_frame
                               : CEL_DEFAULT_MAX_FRAME;
}
