/* The broker process: event base, listener, Redis, timers (lease reaper, queue poll) and
 * signals. Everything runs on one thread; a clean stop stops accepting, lets Redis work in
 * flight finish, and closes. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "broker.h"
#include "scripts.h"

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
                      void *arg) {
    (void)l;
    conn_accept(arg, fd, sa, len);
}

static void on_accept_retry(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    cel_server *s = arg;
    if (!s->stopping && s->nclients < s->cfg->max_connections) evconnlistener_enable(s->listener);
}

/* Out of file descriptors: pause accepting for a moment instead of spinning on a listener
 * that stays readable. */
static void on_accept_error(struct evconnlistener *l, void *arg) {
    cel_server *s = arg;
    int e = EVUTIL_SOCKET_ERROR();
    if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
        log_warn("accept: %s; pausing the listener for 100 ms", strerror(e));
        evconnlistener_disable(l);
        struct timeval tv = {0, 100000};
        evtimer_add(s->accept_retry, &tv);
        return;
    }
    log_warn("accept: %s", strerror(e));
}

/* A delayed task falls due before the next tick: reap exactly then, so delays are kept to the
 * millisecond rather than to --reaper-ms. */
static void reap_at(cel_server *s, long long in_ms) {
    if (in_ms < 0 || in_ms >= s->cfg->reaper_ms) return;
    struct timeval tv = {0, (suseconds_t)(in_ms + 1) * 1000};
    evtimer_add(s->reap_soon, &tv);
}

void reaper_kick(cel_server *s) {
    if (!evtimer_pending(s->reap_soon, NULL)) {
        struct timeval now = {0, 0};
        evtimer_add(s->reap_soon, &now);
    }
}

static void reap_done(const redisReply *rep, const cel_error *err, void *arg) {
    cel_server *s = arg;
    (void)err;
    if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements % 2 == 1)
        reap_at(s, rep->element[rep->elements - 1]->integer);
    for (size_t i = 0; rep && rep->type == REDIS_REPLY_ARRAY && i + 1 < rep->elements; i += 2) {
        log_debug("reaper: %lld tasks of %s back to ready", rep->element[i + 1]->integer,
                  rep->element[i]->str);
        dispatch_mark_ready(s, rep->element[i]->str, rep->element[i]->len);
    }
}

static void on_reaper(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    cel_server *s = arg;
    if (!cel_redis_ready(s->redis)) return;
    const char *argv[] = {s->cfg->prefix, "1000"};
    cel_error err;
    cel_redis_script(s->redis, s->script[SCRIPT_REAP], 2, argv, NULL, reap_done, s, &err);
}

static void on_poll(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    dispatch_poll(arg);
}

static void on_rates(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    cel_server *s = arg;
    cel_rates *r = &s->rates;
    double secs = RATE_WINDOW_MS / 1000.0;
    r->enqueued = (double)(s->counters.enqueued - r->last.enqueued) / secs;
    r->dispatched = (double)(s->counters.dispatched - r->last.dispatched) / secs;
    r->acked = (double)(s->counters.acked - r->last.acked) / secs;
    r->failed = (double)(s->counters.failed - r->last.failed) / secs;
    r->last = s->counters;
}

static void on_redis_ready(void *arg) {
    cel_server *s = arg;
    on_reaper(-1, 0, s);
    dispatch_poll(s);
}

static void on_stop_check(evutil_socket_t fd, short what, void *arg);

void server_stop(cel_server *s) {
    if (s->stopping) return;
    s->stopping = true;
    log_info("stopping: no new connections; finishing redis work in flight");
    evconnlistener_disable(s->listener);
    on_stop_check(-1, 0, s);
}

/* Stops once Redis has answered everything in flight (or after 5 s). */
static void on_stop_check(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    cel_server *s = arg;
    static long long deadline;
    if (!deadline) deadline = cel_now_ms() + 5000;
    if (cel_redis_inflight(s->redis) == 0 || cel_now_ms() > deadline) {
        event_base_loopexit(s->base, NULL);
        return;
    }
    struct timeval tv = {0, 10000};
    event_base_once(s->base, -1, EV_TIMEOUT, on_stop_check, s, &tv);
}

static void on_signal(evutil_socket_t sig, short what, void *arg) {
    (void)what;
    if (sig == SIGHUP) {
        cel_log_reopen();
        log_info("log reopened");
        return;
    }
    server_stop(arg);
}

static void register_scripts(cel_server *s) {
    static const char *const names[SCRIPT__COUNT] = {
        "enqueue", "dispatch", "settle", "reap", "status", "cancel", "stats", "admin", "peek"};
    for (int i = 0; i < SCRIPT__COUNT; i++) {
        const char *body = cel_script_source(names[i]);
        s->script[i] = cel_redis_script_register(names[i], body);
    }
}

static void broker_id_init(cel_server *s) {
    uint8_t raw[8];
    if (getrandom(raw, sizeof raw, 0) != sizeof raw) {
        uint64_t t = (uint64_t)time(NULL) ^ (uint64_t)getpid() << 32;
        memcpy(raw, &t, sizeof raw);
    }
    for (int i = 0; i < 8; i++) sprintf(s->broker_id + 2 * i, "%02x", raw[i]);
    srandom((unsigned)(raw[0] | raw[1] << 8 | raw[2] << 16 | (unsigned)raw[3] << 24));
}

static bool listen_on(cel_server *s) {
    struct evutil_addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = EVUTIL_AI_PASSIVE};
    struct evutil_addrinfo *ai = NULL;
    char port[16];
    snprintf(port, sizeof port, "%d", s->cfg->port);
    if (evutil_getaddrinfo(s->cfg->listen, port, &hints, &ai) != 0 || !ai) {
        log_error("cannot resolve listen address %s", s->cfg->listen);
        return false;
    }
    s->listener =
        evconnlistener_new_bind(s->base, on_accept, s, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE,
                                1024, ai->ai_addr, (int)ai->ai_addrlen);
    evutil_freeaddrinfo(ai);
    if (!s->listener) {
        log_error("cannot listen on %s:%d: %s", s->cfg->listen, s->cfg->port, strerror(errno));
        return false;
    }
    evconnlistener_set_error_cb(s->listener, on_accept_error);
    return true;
}

unsigned long cel_loop_inputs;

/* The event loop. With --busy-poll-us, after any input the loop keeps polling without sleeping
 * for that long: the next message (a Redis reply, a producer's next enqueue) is often due within
 * tens of microseconds, and on a VM, waking a sleeping process costs about as much. */
static void run_loop(cel_server *s, long spin_us) {
    if (spin_us <= 0) {
        event_base_dispatch(s->base);
        return;
    }
    unsigned long seen = cel_loop_inputs - 1;
    long long last = 0;
    while (!event_base_got_exit(s->base) && !event_base_got_break(s->base)) {
        long long now = cel_now_us();
        if (cel_loop_inputs != seen) seen = cel_loop_inputs, last = now;
        event_base_loop(s->base, now - last < spin_us ? EVLOOP_NONBLOCK : EVLOOP_ONCE);
    }
}

static struct event *timer_every(cel_server *s, int ms, event_callback_fn fn) {
    struct event *ev = event_new(s->base, -1, EV_PERSIST, fn, s);
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    event_add(ev, &tv);
    return ev;
}

static void server_free(cel_server *s) {
    cel_client *c;
    while ((c = TAILQ_FIRST(&s->clients))) conn_close(c, "broker stopping");
    conn_flush_all(-1, 0, s); /* drops the closed clients still queued for a flush */
    cel_redis_free(s->redis);
    waiters_free(s->waiters);
    while (s->queues) {
        cel_queue *q = s->queues;
        s->queues = q->next;
        free(q->workers);
        free(q);
    }
    free(s->qindex);
    if (s->listener) evconnlistener_free(s->listener);
    struct event *evs[] = {s->reaper,  s->poll,       s->accept_retry, s->sig_term, s->sig_int,
                           s->sig_hup, s->rate_timer, s->reap_soon,    s->flush};
    for (size_t i = 0; i < sizeof evs / sizeof *evs; i++)
        if (evs[i]) event_free(evs[i]);
    cel_buf_free(&s->out);
    msgpack_zone_destroy(&s->zone);
    event_base_free(s->base);
}

int server_run(cel_config *cfg) {
    cel_server srv, *s = &srv;
    memset(s, 0, sizeof *s);
    s->cfg = cfg;
    s->started_ms = cel_now_ms();
    TAILQ_INIT(&s->clients);
    TAILQ_INIT(&s->monitors);
    TAILQ_INIT(&s->to_flush);
    msgpack_zone_init(&s->zone, 4096);
    broker_id_init(s);
    signal(SIGPIPE, SIG_IGN);
    s->base = event_base_new();
    s->waiters = waiters_new(s);
    if (!s->base || !s->waiters) return 1;
    register_scripts(s);
    if (!listen_on(s)) return server_free(s), 1;
    s->accept_retry = evtimer_new(s->base, on_accept_retry, s);
    s->sig_term = evsignal_new(s->base, SIGTERM, on_signal, s);
    s->sig_int = evsignal_new(s->base, SIGINT, on_signal, s);
    s->sig_hup = evsignal_new(s->base, SIGHUP, on_signal, s);
    event_add(s->sig_term, NULL), event_add(s->sig_int, NULL), event_add(s->sig_hup, NULL);
    s->redis = cel_redis_new(s->base, cfg, on_redis_ready, s);
    s->reaper = timer_every(s, cfg->reaper_ms, on_reaper);
    s->poll = timer_every(s, cfg->poll_ms, on_poll);
    s->rate_timer = timer_every(s, RATE_WINDOW_MS, on_rates);
    s->reap_soon = evtimer_new(s->base, on_reaper, s);
    s->flush = event_new(s->base, -1, 0, conn_flush_all, s);
    log_info("celeriacd %s listening on %s:%d, redis %s:%d, prefix '%s'", s->broker_id, cfg->listen,
             cfg->port, cfg->redis_socket[0] ? cfg->redis_socket : cfg->redis_host, cfg->redis_port,
             cfg->prefix);
    run_loop(s, cfg->busy_poll_us);
    server_free(s);
    log_info("stopped");
    return 0;
}
