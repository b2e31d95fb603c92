/* Redis connection state machine: DOWN → CONNECTING → INIT (auth, select, checks, script loads)
 * → READY, back to DOWN on error, timeout or close, then CONNECTING again after a jittered
 * exponential backoff. Commands are only accepted in READY, so nothing is ever buffered for a
 * Redis that is not there: callers get UNAVAILABLE at once and their clients can retry. */
#include "redis.h"

#include <hiredis/async.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include "clock.h"
#include "log.h"

#define MAX_SCRIPTS 32

typedef enum rstate { R_DOWN, R_CONNECTING, R_INIT, R_READY } rstate;

typedef struct rreq {
    TAILQ_ENTRY(rreq) link;
    cel_redis *owner;
    cel_redis_cb cb;
    void *arg;
    long long sent_us;
    long long deadline_ms;
    char *cmd; /* the formatted command, kept for a NOSCRIPT resend */
    int cmdlen;
    int script; /* -1 if not a script call */
    bool resent;
    bool init;    /* part of the connect sequence: sent before READY */
    bool lenient; /* an init command whose error reply is not fatal */
} rreq;

TAILQ_HEAD(rreq_list, rreq);

struct cel_redis {
    struct event_base *base;
    const cel_config *cfg;
    redisAsyncContext *ac;
    rstate state;
    struct rreq_list pending;
    size_t inflight;
    struct event *tick;
    struct event *retry;
    long long connect_deadline_ms;
    int backoff_ms;
    bool checked_persistence;
    void (*on_ready)(void *);
    void *ready_arg;
    cel_redis_stats stats;
};

static struct {
    const char *name, *source;
    char sha[41];
} scripts[MAX_SCRIPTS];
static int nscripts;

int cel_redis_script_register(const char *name, const char *source) {
    if (nscripts >= MAX_SCRIPTS) return -1;
    scripts[nscripts].name = name;
    scripts[nscripts].source = source;
    return nscripts++;
}

static void redis_reset(cel_redis *r, const char *why);

static void req_finish(rreq *q, const redisReply *reply, const cel_error *err) {
    cel_redis *r = q->owner;
    TAILQ_REMOVE(&r->pending, q, link);
    r->inflight--;
    if (reply)
        r->stats.last_latency_us = cel_now_us() - q->sent_us;
    else
        r->stats.failures++;
    if (q->cb) q->cb(reply, err, q->arg);
    free(q->cmd);
    free(q);
}

static bool is_error(const redisReply *reply, const char *prefix) {
    return reply && reply->type == REDIS_REPLY_ERROR &&
           strncmp(reply->str, prefix, strlen(prefix)) == 0;
}

static bool req_send(cel_redis *r, rreq *q);

/* NOSCRIPT: the script cache was flushed (Redis restarted without us noticing, or SCRIPT
 * FLUSH). Loading it and resending on the same connection is ordered, so the resend finds it. */
static bool req_retry_noscript(rreq *q) {
    cel_redis *r = q->owner;
    if (q->resent || q->script < 0) return false;
    const char *argv[] = {"SCRIPT", "LOAD", scripts[q->script].source};
    if (redisAsyncCommandArgv(r->ac, NULL, NULL, 3, argv, NULL) != REDIS_OK) return false;
    TAILQ_REMOVE(&r->pending, q, link);
    TAILQ_INSERT_TAIL(&r->pending, q, link);
    q->resent = true;
    return req_send(r, q);
}

static void on_reply(redisAsyncContext *ac, void *reply_v, void *privdata) {
    rreq *q = privdata;
    cel_redis *r = q->owner;
    redisReply *reply = reply_v;
    cel_error err = {CEL_OK, ""};
    if (!reply) {
        cel_fail(&err, CEL_E_UNAVAILABLE, "redis connection lost");
        req_finish(q, NULL, &err);
        return;
    }
    if (is_error(reply, "NOSCRIPT") && r->state == R_READY && req_retry_noscript(q)) return;
    if (is_error(reply, "LOADING") ||
        (q->init && !q->lenient && reply->type == REDIS_REPLY_ERROR)) {
        cel_fail(&err, CEL_E_UNAVAILABLE, "redis: %.150s", reply->str);
        bool init = q->init;
        req_finish(q, NULL, &err);
        if (init || r->state == R_READY) redis_reset(r, err.msg);
        return;
    }
    (void)ac;
    req_finish(q, reply, NULL);
}

static bool req_send(cel_redis *r, rreq *q) {
    q->sent_us = cel_now_us();
    q->deadline_ms = q->sent_us / 1000 + r->cfg->redis_timeout_ms;
    return redisAsyncFormattedCommand(r->ac, on_reply, q, q->cmd, (size_t)q->cmdlen) == REDIS_OK;
}

/* Formats and sends; the request is tracked from here until its callback. */
typedef enum submit_mode { SUBMIT_NORMAL, SUBMIT_INIT, SUBMIT_INIT_LENIENT } submit_mode;

static cel_err submit(cel_redis *r, int script, submit_mode mode, int argc, const char **argv,
                      const size_t *lens, cel_redis_cb cb, void *arg, cel_error *err) {
    bool init = mode != SUBMIT_NORMAL;
    if (!init && r->state != R_READY) return cel_fail(err, CEL_E_UNAVAILABLE, "redis not ready");
    if (!init && r->inflight >= (size_t)r->cfg->max_redis_inflight)
        return cel_fail(err, CEL_E_BUSY, "too many redis commands in flight (%zu)", r->inflight);
    rreq *q = calloc(1, sizeof *q);
    if (!q) return cel_fail(err, CEL_E_INTERNAL, "out of memory");
    q->cmdlen = cel_resp_format(&q->cmd, argc, argv, lens);
    if (q->cmdlen < 0) {
        free(q);
        return cel_fail(err, CEL_E_INTERNAL, "cannot format redis command");
    }
    q->owner = r, q->cb = cb, q->arg = arg, q->script = script, q->init = init;
    q->lenient = mode == SUBMIT_INIT_LENIENT;
    TAILQ_INSERT_TAIL(&r->pending, q, link);
    r->inflight++;
    r->stats.commands++;
    if (!req_send(r, q)) {
        TAILQ_REMOVE(&r->pending, q, link);
        r->inflight--;
        free(q->cmd);
        free(q);
        return cel_fail(err, CEL_E_UNAVAILABLE, "redis send failed");
    }
    return CEL_OK;
}

cel_err cel_redis_command(cel_redis *r, int argc, const char **argv, const size_t *lens,
                          cel_redis_cb cb, void *arg, cel_error *err) {
    return submit(r, -1, SUBMIT_NORMAL, argc, argv, lens, cb, arg, err);
}

cel_err cel_redis_script(cel_redis *r, int id, int argc, const char **argv, const size_t *lens,
                         cel_redis_cb cb, void *arg, cel_error *err) {
    enum { STACK_ARGS = 64 };
    const char *sargv[STACK_ARGS];
    size_t slens[STACK_ARGS];
    const char **av = sargv;
    size_t *al = slens;
    if (argc + 3 > STACK_ARGS) {
        av = malloc(sizeof *av * (size_t)(argc + 3));
        al = malloc(sizeof *al * (size_t)(argc + 3));
        if (!av || !al) {
            free(av), free(al);
            return cel_fail(err, CEL_E_INTERNAL, "out of memory");
        }
    }
    av[0] = "EVALSHA", al[0] = 7;
    av[1] = scripts[id].sha, al[1] = 40;
    av[2] = "0", al[2] = 1;
    for (int i = 0; i < argc; i++) {
        av[i + 3] = argv[i];
        al[i + 3] = lens ? lens[i] : strlen(argv[i]);
    }
    cel_err rc = submit(r, id, SUBMIT_NORMAL, argc + 3, av, al, cb, arg, err);
    if (av != sargv) free(av), free(al);
    return rc;
}

/* ---- connect sequence -------------------------------------------------------------------- */

static void init_command(cel_redis *r, cel_redis_cb cb, int argc, const char **argv) {
    cel_error err;
    if (submit(r, -1, SUBMIT_INIT, argc, argv, NULL, cb, r, &err) != CEL_OK)
        redis_reset(r, err.msg);
}

static void check_config_reply(const redisReply *rep, const cel_error *err, void *arg) {
    (void)arg;
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements < 2) return;
    for (size_t i = 0; i + 1 < rep->elements; i += 2) {
        const char *k = rep->element[i]->str, *v = rep->element[i + 1]->str;
        if (!k || !v) continue;
        if (!strcmp(k, "appendonly") && strcmp(v, "yes") != 0)
            log_warn("redis has appendonly=%s: acknowledged tasks can be lost if redis "
                     "crashes (RDB snapshots only); set appendonly yes",
                     v);
        if (!strcmp(k, "appendfsync") && !strcmp(v, "no"))
            log_warn("redis has appendfsync=no: the OS decides when tasks reach disk");
        if (!strcmp(k, "maxmemory-policy") && strcmp(v, "noeviction") != 0)
            log_warn("redis maxmemory-policy is %s: redis may evict tasks under memory "
                     "pressure; set noeviction",
                     v);
    }
    (void)err;
}

static void ready_reply(const redisReply *rep, const cel_error *err, void *arg) {
    cel_redis *r = arg;
    if (!rep || r->state != R_INIT) return;
    r->state = R_READY;
    r->stats.ready = true;
    r->backoff_ms = 0;
    log_info("redis ready (%d scripts loaded)", nscripts);
    (void)err;
    if (r->on_ready) r->on_ready(r->ready_arg);
}

static void script_loaded(const redisReply *rep, const cel_error *err, void *arg) {
    (void)arg, (void)err;
    if (!rep || rep->type != REDIS_REPLY_STRING || rep->len != 40) return;
    for (int i = 0; i < nscripts; i++) {
        /* SCRIPT LOAD replies arrive in order; fill the first empty sha slot. */
        if (scripts[i].sha[0] == 0) {
            memcpy(scripts[i].sha, rep->str, 40);
            scripts[i].sha[40] = 0;
            return;
        }
    }
}

static void run_init(cel_redis *r) {
    r->state = R_INIT;
    if (r->cfg->redis_password[0]) {
        const char *a[] = {"AUTH", r->cfg->redis_password};
        init_command(r, NULL, 2, a);
    }
    char db[16];
    snprintf(db, sizeof db, "%d", r->cfg->redis_db);
    const char *sel[] = {"SELECT", db};
    if (r->state == R_INIT) init_command(r, NULL, 2, sel);
    if (!r->checked_persistence && r->state == R_INIT) {
        r->checked_persistence = true;
        /* Lenient: a Redis with CONFIG renamed away must still be usable. */
        const char *cfgget[] = {"CONFIG", "GET", "appendonly", "appendfsync", "maxmemory-policy"};
        cel_error e;
        submit(r, -1, SUBMIT_INIT_LENIENT, 5, cfgget, NULL, check_config_reply, r, &e);
    }
    for (int i = 0; i < nscripts; i++) scripts[i].sha[0] = 0;
    for (int i = 0; i < nscripts && r->state == R_INIT; i++) {
        const char *a[] = {"SCRIPT", "LOAD", scripts[i].source};
        init_command(r, script_loaded, 3, a);
    }
    const char *ping[] = {"PING"};
    if (r->state == R_INIT) init_command(r, ready_reply, 1, ping);
}

static void schedule_connect(cel_redis *r) {
    /* Full jitter: brokers that lost the same Redis do not come back in lockstep. */
    int cap = r->backoff_ms ? r->backoff_ms * 2 : 50;
    if (cap > 5000) cap = 5000;
    r->backoff_ms = cap;
    int delay = cap / 2 + (int)(random() % (cap / 2 + 1));
    struct timeval tv = {delay / 1000, (delay % 1000) * 1000};
    evtimer_add(r->retry, &tv);
}

static void on_connect(const redisAsyncContext *ac, int status) {
    cel_redis *r = ac->data;
    if (status != REDIS_OK) {
        log_warn("redis connect failed: %s", ac->errstr);
        /* hiredis frees the context after this callback. */
        r->ac = NULL;
        r->state = R_DOWN;
        schedule_connect(r);
        return;
    }
    log_info("redis connected");
    run_init(r);
}

static void on_disconnect(const redisAsyncContext *ac, int status) {
    cel_redis *r = ac->data;
    if (!r || r->ac != ac) return;
    r->ac = NULL;
    r->state = R_DOWN;
    r->stats.ready = false;
    if (status != REDIS_OK) log_warn("redis connection lost: %s", ac->errstr);
    schedule_connect(r);
}

static void start_connect(cel_redis *r) {
    const cel_config *c = r->cfg;
    r->ac = c->redis_socket[0] ? redisAsyncConnectUnix(c->redis_socket)
                               : redisAsyncConnect(c->redis_host, c->redis_port);
    if (!r->ac || r->ac->err) {
        log_warn("redis connect: %s", r->ac ? r->ac->errstr : "out of memory");
        if (r->ac) redisAsyncFree(r->ac);
        r->ac = NULL;
        schedule_connect(r);
        return;
    }
    r->ac->data = r;
    r->state = R_CONNECTING;
    r->stats.reconnects++;
    r->connect_deadline_ms = cel_now_us() / 1000 + c->redis_timeout_ms;
    if (cel_redis_attach(r->ac, r->base) != REDIS_OK) {
        log_warn("redis connect: out of memory");
        redisAsyncFree(r->ac);
        r->ac = NULL;
        schedule_connect(r);
        return;
    }
    redisAsyncSetConnectCallback(r->ac, on_connect);
    redisAsyncSetDisconnectCallback(r->ac, on_disconnect);
}

static void on_retry(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    start_connect(arg);
}

/* Drops the connection: hiredis fails every pending callback (ours report UNAVAILABLE once),
 * then a reconnect is scheduled. */
static void redis_reset(cel_redis *r, const char *why) {
    if (!r->ac) return;
    log_warn("redis reset: %s", why);
    redisAsyncContext *ac = r->ac;
    r->ac = NULL;
    r->state = R_DOWN;
    r->stats.ready = false;
    ac->data = NULL;
    redisAsyncFree(ac);
    schedule_connect(r);
}

/* hiredis 0.14 has no command timeouts: replies come back in order, so only the oldest
 * pending command needs watching. */
static void on_tick(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    cel_redis *r = arg;
    long long now = cel_now_us() / 1000;
    if (r->state == R_CONNECTING && now > r->connect_deadline_ms) {
        redis_reset(r, "connect timed out");
        return;
    }
    rreq *head = TAILQ_FIRST(&r->pending);
    if (head && now > head->deadline_ms) {
        r->stats.timeouts++;
        redis_reset(r, "command timed out");
    }
}

cel_redis *cel_redis_new(struct event_base *base, const cel_config *cfg,
                         void (*on_ready)(void *arg), void *arg) {
    cel_redis *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->base = base, r->cfg = cfg, r->on_ready = on_ready, r->ready_arg = arg;
    TAILQ_INIT(&r->pending);
    r->tick = event_new(base, -1, EV_PERSIST, on_tick, r);
    r->retry = evtimer_new(base, on_retry, r);
    int ms = cfg->redis_timeout_ms / 4 < 100 ? cfg->redis_timeout_ms / 4 : 100;
    if (ms < 5) ms = 5;
    struct timeval tv = {0, ms * 1000};
    event_add(r->tick, &tv);
    start_connect(r);
    return r;
}

void cel_redis_free(cel_redis *r) {
    if (!r) return;
    if (r->ac) {
        redisAsyncContext *ac = r->ac;
        r->ac = NULL;
        ac->data = NULL;
        redisAsyncFree(ac);
    }
    event_free(r->tick);
    event_free(r->retry);
    free(r);
}

bool cel_redis_ready(const cel_redis *r) {
    return r->state == R_READY;
}

size_t cel_redis_inflight(const cel_redis *r) {
    return r->inflight;
}

void cel_redis_get_stats(const cel_redis *r, cel_redis_stats *out) {
    *out = r->stats;
}
