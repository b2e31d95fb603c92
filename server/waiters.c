/* Blocking waits for results, held in the broker (no client polling). A finish seen by this
 * broker wakes its waiters at once; each waiter also re-checks Redis every second, which
 * covers tasks finished through another broker. */
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "broker.h"

#define RECHECK_MS 1000
#define FIRST_BUCKETS 64u

/* Waiters are found by task id (every task that ends looks for its own) and by client (one
 * that leaves ends its waits): both in O(1), however many waits are pending. A walk of every
 * waiter per finished task made 10,000 pending waits cut the broker's rate sevenfold. */
typedef struct waiter {
    LIST_ENTRY(waiter) by_id, by_client;
    bool linked;
    cel_server *srv;
    cel_client *client;
    uint64_t seq;
    long long deadline_ms;
    struct event *timer;
    bool checking; /* a status call is in flight */
    bool done;
    size_t idlen;
    char id[CEL_ID_MAX + 1];
} waiter;

LIST_HEAD(waiter_list, waiter);

struct cel_waiters {
    struct waiter_list *buckets;
    size_t nbuckets, count; /* nbuckets: a power of two */
};

cel_waiters *waiters_new(cel_server *s) {
    (void)s;
    cel_waiters *ws = calloc(1, sizeof *ws);
    if (ws && !(ws->buckets = calloc(FIRST_BUCKETS, sizeof *ws->buckets))) free(ws), ws = NULL;
    if (ws) ws->nbuckets = FIRST_BUCKETS;
    return ws;
}

static struct waiter_list *bucket_of(cel_waiters *ws, const char *id, size_t len) {
    return &ws->buckets[cel_hash(id, len) & (ws->nbuckets - 1)];
}

/* Doubles the buckets once they average two waiters; without memory it keeps the old ones. */
static void maybe_grow(cel_waiters *ws) {
    if (ws->count < 2 * ws->nbuckets) return;
    size_t n = ws->nbuckets * 2;
    struct waiter_list *b = calloc(n, sizeof *b);
    if (!b) return;
    for (size_t i = 0; i < ws->nbuckets; i++) {
        waiter *w;
        while ((w = LIST_FIRST(&ws->buckets[i]))) {
            LIST_REMOVE(w, by_id);
            LIST_INSERT_HEAD(&b[cel_hash(w->id, w->idlen) & (n - 1)], w, by_id);
        }
    }
    free(ws->buckets);
    ws->buckets = b, ws->nbuckets = n;
}

static void waiter_unlink(cel_waiters *ws, waiter *w) {
    if (!w->linked) return;
    LIST_REMOVE(w, by_id);
    LIST_REMOVE(w, by_client);
    w->linked = false;
    ws->count--;
}

static void waiter_free(waiter *w) {
    if (w->timer) event_free(w->timer);
    client_unref(w->client);
    free(w);
}

void waiters_free(cel_waiters *ws) {
    for (size_t i = 0; ws && i < ws->nbuckets; i++) {
        waiter *w;
        while ((w = LIST_FIRST(&ws->buckets[i]))) {
            waiter_unlink(ws, w);
            if (!w->checking)
                waiter_free(w);
            else
                w->done = true, w->srv = NULL;
        }
    }
    if (ws) free(ws->buckets);
    free(ws);
}

static void waiter_finish(waiter *w) {
    w->done = true;
    if (w->srv) waiter_unlink(w->srv->waiters, w);
    if (!w->checking) waiter_free(w);
}

static void waiter_check(waiter *w);

static void rearm(waiter *w, long long now) {
    long long next = w->deadline_ms - now < RECHECK_MS ? w->deadline_ms - now : RECHECK_MS;
    struct timeval tv = {next / 1000, (next % 1000) * 1000};
    evtimer_add(w->timer, &tv);
}

static void check_done(const redisReply *rep, const cel_error *err, void *arg) {
    waiter *w = arg;
    w->checking = false;
    if (w->done) return waiter_free(w);
    cel_client *c = w->client;
    if (!rep || rep->type == REDIS_REPLY_ERROR) {
        conn_send_error(c, w->seq, err ? err->code : CEL_E_INTERNAL, err ? err->msg : rep->str);
        return waiter_finish(w);
    }
    const char *st = NULL;
    size_t stlen = 0;
    for (size_t i = 0; rep->type == REDIS_REPLY_ARRAY && i + 1 < rep->elements; i += 2)
        if (rep->element[i]->len == 2 && !memcmp(rep->element[i]->str, "st", 2))
            st = rep->element[i + 1]->str, stlen = rep->element[i + 1]->len;
    if (rep->type != REDIS_REPLY_ARRAY || (st && state_is_terminal(st, stlen))) {
        status_reply(c, w->seq, w->id, w->idlen, rep);
        return waiter_finish(w);
    }
    long long now = cel_now_ms();
    if (now >= w->deadline_ms) {
        conn_send_error(c, w->seq, CEL_E_TIMEOUT, "the task did not finish in time");
        return waiter_finish(w);
    }
    rearm(w, now);
}

static void waiter_check(waiter *w) {
    if (w->checking || w->done) return;
    cel_server *s = w->srv;
    const char *argv[] = {s->cfg->prefix, w->id};
    size_t lens[] = {strlen(s->cfg->prefix), w->idlen};
    cel_error err;
    w->checking = true;
    if (cel_redis_script(s->redis, s->script[SCRIPT_STATUS], 2, argv, lens, check_done, w, &err) !=
        CEL_OK)
        check_done(NULL, &err, w);
}

/* The periodic re-check (for a task that ends through another broker) reads only the task's
 * state, with a plain HGET: a status script call per wait and second made 10,000 pending waits
 * cost a fifth of the pipelined rate. The whole status is read once the state says it ended
 * (or the task is gone, or the deadline passed), by the same check that answers the wait. */
static void peek_done(const redisReply *rep, const cel_error *err, void *arg) {
    (void)err;
    waiter *w = arg;
    w->checking = false;
    if (w->done) return waiter_free(w);
    long long now = cel_now_ms();
    if (rep && rep->type == REDIS_REPLY_STRING && !state_is_terminal(rep->str, rep->len) &&
        now < w->deadline_ms)
        return rearm(w, now);
    waiter_check(w);
}

static void on_timer(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    waiter *w = arg;
    if (w->checking || w->done) return;
    cel_server *s = w->srv;
    /* The task's key, as tk() in scripts/prelude.lua names it (docs/delivery.md: P:t:ID). */
    char key[CEL_NAME_MAX + CEL_ID_MAX + 8];
    int klen = snprintf(key, sizeof key, "%s:t:%.*s", s->cfg->prefix, (int)w->idlen, w->id);
    const char *argv[] = {"HGET", key, "st"};
    size_t lens[] = {4, (size_t)klen, 2};
    cel_error err;
    w->checking = true;
    if (cel_redis_command(s->redis, 3, argv, lens, peek_done, w, &err) != CEL_OK)
        peek_done(NULL, &err, w);
}

void waiters_add(cel_server *s, cel_client *c, uint64_t seq, const char *id, size_t idlen,
                 uint64_t timeout_ms) {
    waiter *w = calloc(1, sizeof *w);
    if (!w) return conn_send_error(c, seq, CEL_E_INTERNAL, "out of memory");
    w->srv = s, w->client = c, w->seq = seq;
    w->deadline_ms = cel_now_ms() + (long long)timeout_ms;
    memcpy(w->id, id, idlen);
    w->idlen = idlen;
    w->timer = evtimer_new(s->base, on_timer, w);
    client_ref(c);
    cel_waiters *ws = s->waiters;
    LIST_INSERT_HEAD(bucket_of(ws, id, idlen), w, by_id);
    LIST_INSERT_HEAD(&c->waiters, w, by_client);
    w->linked = true;
    ws->count++;
    maybe_grow(ws);
    waiter_check(w);
}

void waiters_notify(cel_server *s, const char *id, size_t idlen) {
    waiter *w, *next;
    /* A check may end its waiter (an error reply): take the next one first. */
    for (w = LIST_FIRST(bucket_of(s->waiters, id, idlen)); w; w = next) {
        next = LIST_NEXT(w, by_id);
        if (w->idlen == idlen && memcmp(w->id, id, idlen) == 0) waiter_check(w);
    }
}

size_t waiters_pending(const cel_server *s) {
    return s->waiters->count;
}

void waiters_client_gone(cel_server *s, cel_client *c) {
    (void)s;
    waiter *w;
    while ((w = LIST_FIRST(&c->waiters))) waiter_finish(w);
}
