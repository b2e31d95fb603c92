/* One client connection's life: accept, sniff the first byte (binary or text), cut frames,
 * enforce the per-connection limits (frame size, hello deadline, idle timeout, output buffer),
 * and close. Protocol meaning lives in ops.c and text.c; this file only moves bytes. */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "broker.h"

static void conn_free(cel_client *c) {
    log_debug("client %llu freed", (unsigned long long)c->id);
    free(c->queues);
    free(c->leases);
    free(c);
}

void client_ref(cel_client *c) {
    c->refs++;
}

bool client_unref(cel_client *c) {
    if (--c->refs > 0 || c->state != CS_CLOSED) return c->state != CS_CLOSED;
    conn_free(c);
    return false;
}

bool client_alive(const cel_client *c) {
    return c->state != CS_CLOSED;
}

void conn_close(cel_client *c, const char *why) {
    if (c->state == CS_CLOSED) return;
    cel_server *s = c->srv;
    log_debug("client %llu (%s) closed: %s", (unsigned long long)c->id, c->addr, why);
    client_ref(c); /* the callbacks below may drop other references */
    text_monitor_stop(c);
    c->state = CS_CLOSED;
    dispatch_client_gone(c);
    waiters_client_gone(s, c);
    if (c->timer) event_free(c->timer);
    c->timer = NULL;
    event_free(c->rev);
    if (c->wev) event_free(c->wev);
    c->rev = c->wev = NULL;
    evbuffer_free(c->in);
    evbuffer_free(c->out);
    c->in = c->out = NULL;
    evutil_closesocket(c->fd);
    TAILQ_REMOVE(&s->clients, c, link);
    s->nclients--;
    if (s->listener && s->nclients < s->cfg->max_connections && !s->stopping)
        evconnlistener_enable(s->listener);
    client_unref(c);
}

/* Stops reading a client whose replies pile up (it pipelines and never reads), resumes once
 * they drain, and drops it past the hard cap: memory per client stays bounded. */
static void output_check(cel_client *c) {
    size_t queued = evbuffer_get_length(c->out);
    const cel_config *cfg = c->srv->cfg;
    if (queued > cfg->output_hard) {
        c->srv->counters.dropped_slow++;
        log_warn("client %llu (%s) dropped: %zu bytes of unread replies", (unsigned long long)c->id,
                 c->addr, queued);
        conn_close(c, "output buffer over hard limit");
        return;
    }
    if (queued > cfg->output_soft && !c->read_paused) {
        c->read_paused = true;
        event_del(c->rev);
    }
}

void conn_send(cel_client *c, const cel_msg *m) {
    if (c->state == CS_CLOSED) return;
    if (c->state == CS_TEXT) {
        text_render(c, m);
        output_check(c);
        return;
    }
    cel_server *s = c->srv;
    cel_error err;
    cel_buf_reset(&s->out);
    if (cel_msg_encode(&s->out, m, UINT32_MAX, &err) != CEL_OK) {
        log_error("cannot encode %s reply: %s", cel_op_name(m->op), err.msg);
        cel_buf_reset(&s->out);
        cel_encode_error(&s->out, m->seq, CEL_E_INTERNAL, err.msg);
    }
    evbuffer_add(c->out, s->out.data, s->out.len);
    output_check(c);
}

void conn_send_error(cel_client *c, uint64_t seq, cel_err code, const char *msg) {
    if (c->state == CS_CLOSED) return;
    cel_server *s = c->srv;
    if (code == CEL_E_PROTOCOL || code == CEL_E_TOO_BIG || code == CEL_E_TOO_DEEP)
        s->counters.protocol_errors++;
    if (c->state == CS_TEXT) {
        evbuffer_add_printf(c->out, "ERR %s %s\r\n", cel_err_name(code), msg);
        output_check(c);
        if (c->state == CS_TEXT) text_reply_done(c);
        return;
    }
    cel_buf_reset(&s->out);
    cel_encode_error(&s->out, seq, code, msg);
    evbuffer_add(c->out, s->out.data, s->out.len);
    output_check(c);
}

/* Closes once the replies already queued are written (the error that explains the close). */
void conn_close_after_write(cel_client *c) {
    if (c->state == CS_CLOSED || c->closing) return;
    c->closing = true;
    event_del(c->rev);
    if (evbuffer_get_length(c->out) == 0) conn_close(c, "closed");
}

/* Sends a protocol error and closes: after it the stream cannot be trusted. */
static void conn_fatal(cel_client *c, uint64_t seq, cel_err code, const char *msg) {
    conn_send_error(c, seq, code, msg);
    conn_close_after_write(c);
}

static void handle_frame(cel_client *c, const uint8_t *body, uint32_t len) {
    cel_server *s = c->srv;
    cel_msg m;
    cel_error err;
    msgpack_zone_clear(&s->zone);
    if (cel_msg_decode(body, len, &s->zone, CEL_DEFAULT_MAX_DEPTH, &m, &err) != CEL_OK) {
        if (err.code == CEL_E_PROTOCOL || c->state == CS_HELLO)
            conn_fatal(c, m.seq, err.code, err.msg);
        else
            conn_send_error(c, m.seq, err.code, err.msg);
        return;
    }
    if (c->state == CS_HELLO && m.op != CEL_OP_HELLO) {
        conn_fatal(c, m.seq, CEL_E_PROTOCOL, "the first message must be hello");
        return;
    }
    ops_handle(c, &m);
}

/* Reads whole frames straight out of the socket buffer: a frame is made contiguous only when
 * it is complete, and an oversize one is refused from its header alone. */
static void read_binary(cel_client *c) {
    struct evbuffer *in = c->in;
    while ((c->state == CS_BINARY || c->state == CS_HELLO) && !c->closing) {
        uint8_t hdr[CEL_FRAME_HEADER];
        if (evbuffer_copyout(in, hdr, sizeof hdr) < (ev_ssize_t)sizeof hdr) break;
        uint32_t len;
        cel_error err;
        if (cel_frame_header_parse(hdr, c->srv->cfg->max_frame, &len, &err) != CEL_OK) {
            conn_fatal(c, 0, err.code, err.msg);
            break;
        }
        /* Incomplete: the input bound (input_cap) lets at most the rest of it be buffered. */
        if (evbuffer_get_length(in) < CEL_FRAME_HEADER + (size_t)len) break;
        const uint8_t *frame = evbuffer_pullup(in, CEL_FRAME_HEADER + (ssize_t)len);
        /* Only a whole request counts as activity: bytes dribbled slower than the idle timeout
         * never keep a connection open. */
        c->last_read_ms = cel_now_ms();
        handle_frame(c, frame + CEL_FRAME_HEADER, len);
        if (c->state == CS_CLOSED) break;
        evbuffer_drain(in, CEL_FRAME_HEADER + (size_t)len);
    }
    /* Requests read before an error still run; replies to a closed client are dropped. */
    ops_flush_read(c);
    conn_input_drained(c);
}

/* Handles what the input buffer holds: the first byte picks the protocol, then text lines or
 * binary frames. */
static void process_input(cel_client *c) {
    if (c->closing) return;
    if (c->state == CS_SNIFF) {
        uint8_t first;
        if (evbuffer_copyout(c->in, &first, 1) < 1) return;
        cel_sniff_kind k = cel_sniff(first);
        if (k == CEL_SNIFF_BINARY) {
            c->state = CS_HELLO;
        } else if (k == CEL_SNIFF_TEXT && c->srv->cfg->text_mode != CEL_TEXT_OFF &&
                   (c->loopback || c->srv->cfg->text_mode == CEL_TEXT_ON)) {
            c->state = CS_TEXT;
            conn_session_started(c);
        } else {
            evbuffer_add_printf(c->out, k == CEL_SNIFF_REJECT ? "ERR PROTOCOL unknown protocol\r\n"
                                        : c->srv->cfg->text_mode == CEL_TEXT_OFF
                                            ? "ERR PROTOCOL text protocol disabled (--text)\r\n"
                                            : "ERR PROTOCOL text protocol allowed on loopback only "
                                              "until auth exists (--text on)\r\n");
            conn_close_after_write(c);
            return;
        }
    }
    if (c->state == CS_TEXT)
        text_input(c);
    else
        read_binary(c);
}

static void on_writable(evutil_socket_t fd, short what, void *arg);

/* After output was written: back to direct flushes once it is all out, close a closing
 * connection, resume reading a paused one once its replies drained to half the soft limit. */
static void output_written(cel_client *c) {
    size_t left = evbuffer_get_length(c->out);
    if (left == 0 && c->wev) event_del(c->wev);
    if (c->closing && left == 0) {
        conn_close(c, "closed after error");
        return;
    }
    if (c->read_paused && !c->closing && left <= c->srv->cfg->output_soft / 2) {
        c->read_paused = false;
        if (!c->input_full) event_add(c->rev, NULL);
        process_input(c); /* frames may be waiting already */
    }
}

/* Writes a client's output straight to its socket; only what the socket does not take waits
 * for the write event. A reply then costs one write(), not an epoll_ctl to arm the write
 * event, a loop turn and another epoll_ctl to disarm it. */
static void conn_flush(cel_client *c) {
    if (evbuffer_get_length(c->out) > 0) {
        int n = evbuffer_write(c->out, c->fd);
        if (n < 0 && errno != EAGAIN && errno != EINTR) {
            conn_close(c, "socket error");
            return;
        }
    }
    if (evbuffer_get_length(c->out) == 0) return output_written(c);
    if (!c->wev) c->wev = event_new(c->srv->base, c->fd, EV_WRITE | EV_PERSIST, on_writable, c);
    if (!c->wev) return conn_close(c, "out of memory");
    event_add(c->wev, NULL);
}

static void on_writable(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    cel_client *c = arg;
    client_ref(c);
    conn_flush(c);
    client_unref(c);
}

/* Runs once per loop turn in which replies were queued, after the callbacks that queued them:
 * all of a turn's replies to one client leave in one write. */
void conn_flush_all(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    cel_server *s = arg;
    cel_client *c;
    while ((c = TAILQ_FIRST(&s->to_flush))) {
        TAILQ_REMOVE(&s->to_flush, c, flush_link);
        c->flush_queued = false;
        if (client_alive(c)) conn_flush(c);
        client_unref(c);
    }
}

/* Output was added: unless the write event already waits to write it, queue the client for
 * this loop turn's flush. */
static void on_output_added(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg) {
    (void)buf;
    cel_client *c = arg;
    if (info->n_added == 0 || c->flush_queued || !client_alive(c) ||
        (c->wev && event_pending(c->wev, EV_WRITE, NULL)))
        return;
    c->flush_queued = true;
    client_ref(c);
    TAILQ_INSERT_TAIL(&c->srv->to_flush, c, flush_link);
    event_active(c->srv->flush, EV_TIMEOUT, 1);
}

/* The peer closed its side. */
static void input_ended(cel_client *c) {
    event_del(c->rev);
    if (c->state == CS_TEXT && !c->closing) {
        /* `printf 'CMD\n' | nc host port` half-closes at once: answer what was sent first. */
        c->text_eof = true;
        text_input(c);
        return;
    }
    conn_close(c, "peer closed");
}

enum { READ_CHUNK = 64 << 10, READ_MAX = 4 * READ_CHUNK };

/* Input held unhandled is bounded by a maximal frame, and never below a chunk: a text line
 * (up to 4 KiB) must fit whatever --max-frame says. */
static size_t input_cap(const cel_client *c) {
    size_t frame = (size_t)c->srv->cfg->max_frame + CEL_FRAME_HEADER;
    return frame > READ_CHUNK ? frame : READ_CHUNK;
}

/* Reads the socket straight into the input buffer, up to READ_MAX bytes a turn in 64 KiB
 * recv() calls, then handles it all at once: a pipelining client's requests fill whole
 * script calls, not one per 4 KiB read (libevent 2.1's bufferevents read that much a turn, and ask
 * FIONREAD first: a second system call, and the socket's lock, per read). Never more than one
 * maximal frame ahead of what was handled. */
static void on_readable(evutil_socket_t fd, short what, void *arg) {
    (void)what;
    static char chunk[READ_CHUNK];
    cel_client *c = arg;
    cel_loop_inputs++;
    size_t cap = input_cap(c), got = 0;
    bool eof = false;
    int err = 0;
    while (got < READ_MAX) {
        size_t have = evbuffer_get_length(c->in);
        size_t want = cap > have ? cap - have : 0;
        if (want > sizeof chunk) want = sizeof chunk;
        if (want == 0) {
            /* Full, and waiting for a reply before it is handled (text): read on once the
             * input drained (conn_input_drained). */
            event_del(c->rev);
            c->input_full = true;
            break;
        }
        ssize_t n = recv(fd, chunk, want, 0);
        if (n <= 0) {
            eof = n == 0, err = n < 0 && errno != EAGAIN && errno != EINTR ? errno : 0;
            break;
        }
        evbuffer_add(c->in, chunk, (size_t)n);
        got += (size_t)n;
        if ((size_t)n < want) break;
    }
    client_ref(c); /* handling the input may close the connection */
    if (got) process_input(c);
    if (client_alive(c) && eof)
        input_ended(c);
    else if (client_alive(c) && err)
        conn_close(c, "socket error");
    client_unref(c);
}

void conn_input_drained(cel_client *c) {
    if (!c->input_full || c->closing || c->read_paused || !client_alive(c)) return;
    if (evbuffer_get_length(c->in) >= input_cap(c)) return;
    c->input_full = false;
    event_add(c->rev, NULL);
}

static void on_timer(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    cel_client *c = arg;
    const cel_config *cfg = c->srv->cfg;
    if (c->state == CS_HELLO || c->state == CS_SNIFF) {
        conn_close(c, "no hello before the deadline");
        return;
    }
    if (cfg->idle_timeout_s == 0) return conn_session_started(c);
    long long idle = cel_now_ms() - c->last_read_ms;
    if (cfg->idle_timeout_s > 0 && !c->worker && c->nleases == 0 &&
        idle > (long long)cfg->idle_timeout_s * 1000) {
        conn_close(c, "idle timeout");
        return;
    }
    struct timeval tv = {cfg->idle_timeout_s, 0};
    evtimer_add(c->timer, &tv);
}

/* Hello done (or a text session begun): without an idle timeout the connection needs no timer
 * any more, and 10,000 idle connections keep 10,000 fewer events. */
void conn_session_started(cel_client *c) {
    if (c->srv->cfg->idle_timeout_s > 0 || !c->timer) return;
    event_free(c->timer);
    c->timer = NULL;
}

static void describe_peer(cel_client *c, struct sockaddr *sa) {
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (sa->sa_family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        port = ntohs(in->sin_port);
        c->loopback = (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    } else if (sa->sa_family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        port = ntohs(in6->sin6_port);
        c->loopback = IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
    }
    snprintf(c->addr, sizeof c->addr, "%s:%d", host, port);
}

static void conn_free_parts(cel_client *c) {
    if (c->rev) event_free(c->rev);
    if (c->wev) event_free(c->wev);
    if (c->in) evbuffer_free(c->in);
    if (c->out) evbuffer_free(c->out);
    free(c);
}

void conn_accept(cel_server *s, evutil_socket_t fd, struct sockaddr *sa, int salen) {
    (void)salen;
    cel_client *c = calloc(1, sizeof *c);
    if (c) {
        c->rev = event_new(s->base, fd, EV_READ | EV_PERSIST, on_readable, c);
        c->in = evbuffer_new(), c->out = evbuffer_new();
    }
    if (!c || !c->rev || !c->in || !c->out || !evbuffer_add_cb(c->out, on_output_added, c)) {
        if (c) conn_free_parts(c);
        evutil_closesocket(fd);
        log_error("out of memory accepting a connection");
        return;
    }
    evutil_make_socket_nonblocking(fd);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->srv = s, c->fd = fd, c->id = ++s->next_client_id, c->state = CS_SNIFF;
    c->last_read_ms = cel_now_ms();
    describe_peer(c, sa);
    TAILQ_INSERT_TAIL(&s->clients, c, link);
    s->counters.connections_total++;
    if (++s->nclients >= s->cfg->max_connections) {
        log_warn("connection limit %d reached; not accepting until one closes",
                 s->cfg->max_connections);
        evconnlistener_disable(s->listener);
    }
    event_add(c->rev, NULL);
    c->timer = evtimer_new(s->base, on_timer, c);
    struct timeval tv = {s->cfg->hello_timeout_ms / 1000, (s->cfg->hello_timeout_ms % 1000) * 1000};
    evtimer_add(c->timer, &tv);
    log_debug("client %llu connected from %s", (unsigned long long)c->id, c->addr);
}
