/* Blocking waits for results, held in the broker (no client polling). A finish seen by this
 * broker wakes its waiters at once; once a second the broker also re-checks every pending wait
 * in Redis, which covers tasks finished through another broker. */
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "broker.h"

#define RECHECK_MS 1000
#define PEEK_CHUNK 1000 /* waits re-checked per script call */
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
    struct event *timer; /* at the deadline */
    bool checking;       /* a status or peek call is in flight */
    bool again; /* asked to check while one was in flight, which may have read the state before
                   the task ended: check once more when it returns */
    bool done;
    size_t idlen;
    char id[CEL_ID_MAX + 1];
} waiter;

LIST_HEAD(waiter_list, waiter);

struct cel_waiters {
    struct waiter_list *buckets;
    size_t nbuckets, count; /* nbuckets: a power of two */
    cel_server *srv;
    struct event *sweep; /* the re-check, every RECHECK_MS while waits are pending */
};

static void on_sweep(evutil_socket_t fd, short what, void *arg);

cel_waiters *waiters_new(cel_server *s) {
    cel_waiters *ws = calloc(1, sizeof *ws);
    if (!ws) return NULL;
    ws->srv = s, ws->nbuckets = FIRST_BUCKETS;
    ws->buckets = calloc(FIRST_BUCKETS, sizeof *ws->buckets);
    ws->sweep = evtimer_new(s->base, on_sweep, ws);
    if (!ws->buckets || !ws->sweep) {
        if (ws->sweep) event_free(ws->sweep);
        free(ws->buckets), free(ws);
        return NULL;
    }
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
    if (ws) event_free(ws->sweep), free(ws->buckets);
    free(ws);
}

static void waiter_finish(waiter *w) {
    w->done = true;
    if (w->srv) waiter_unlink(w->srv->waiters, w);
    if (!w->checking) waiter_free(w);
}

static void waiter_check(waiter *w);

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
    if (cel_now_ms() >= w->deadline_ms) {
        conn_send_error(c, w->seq, CEL_E_TIMEOUT, "the task did not finish in time");
        return waiter_finish(w);
    }
    if (w->again) waiter_check(w);
}

static void waiter_check(waiter *w) {
    if (w->done) return;
    if (w->checking) {
        w->again = true;
        return;
    }
    w->again = false;
    cel_server *s = w->srv;
    const char *argv[] = {s->cfg->prefix, w->id};
    size_t lens[] = {strlen(s->cfg->prefix), w->idlen};
    cel_error err;
    w->checking = true;
    if (cel_redis_script(s->redis, s->script[SCRIPT_STATUS], 2, argv, lens, check_done, w, &err) !=
        CEL_OK)
        check_done(NULL, &err, w);
}

/* The periodic re-check (for a task that ends through another broker) reads only the waits'
 * task states, many in one peek call: an HGET per wait, each sent from its own timer, made
 * 10,000 pending waits cost 10,000 round trips a second. The whole status is read once a state
 * says the task ended (or it is gone, or the deadline passed), by the same check that answers
 * the wait. */
typedef struct peek_call {
    size_t n;
    waiter *w[]; /* marked checking, so that none is freed while the call is out */
} peek_call;

/* Ends a peek's hold on w; false if w was finished meanwhile (it is freed now). */
static bool peek_release(waiter *w) {
    w->checking = false;
    if (!w->done) return true;
    waiter_free(w);
    return false;
}

static void peek_done(const redisReply *rep, const cel_error *err, void *arg) {
    (void)err;
    peek_call *pc = arg;
    long long now = cel_now_ms();
    bool ok = rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == pc->n;
    for (size_t i = 0; i < pc->n; i++) {
        waiter *w = pc->w[i];
        if (!peek_release(w)) continue;
        const redisReply *st = ok ? rep->element[i] : NULL;
        if (st && st->type == REDIS_REPLY_STRING && !state_is_terminal(st->str, st->len) &&
            now < w->deadline_ms && !w->again)
            continue;
        waiter_check(w);
    }
    free(pc);
}

/* One peek call for n waiters (already marked checking). */
static void peek_send(cel_server *s, waiter **w, size_t n) {
    peek_call *pc = malloc(sizeof *pc + n * sizeof *w);
    const char **argv = malloc((n + 1) * sizeof *argv);
    size_t *lens = malloc((n + 1) * sizeof *lens);
    if (!pc || !argv || !lens) { /* out of memory: the next sweep tries again */
        for (size_t i = 0; i < n; i++) peek_release(w[i]);
        free(pc), free(argv), free(lens);
        return;
    }
    memcpy(pc->w, w, n * sizeof *w), pc->n = n;
    argv[0] = s->cfg->prefix, lens[0] = strlen(s->cfg->prefix);
    for (size_t i = 0; i < n; i++) argv[i + 1] = w[i]->id, lens[i + 1] = w[i]->idlen;
    cel_error err;
    int rc = cel_redis_script(s->redis, s->script[SCRIPT_PEEK], (int)n + 1, argv, lens, peek_done,
                              pc, &err);
    free(argv), free(lens);
    if (rc != CEL_OK) peek_done(NULL, &err, pc);
}

static void arm_sweep(cel_waiters *ws) {
    struct timeval tv = {RECHECK_MS / 1000, (RECHECK_MS % 1000) * 1000};
    evtimer_add(ws->sweep, &tv);
}

/* Every pending wait not being checked already, in calls of PEEK_CHUNK. All are marked first:
 * answering one wait may close its client and end its other waits. */
static void on_sweep(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    cel_waiters *ws = arg;
    waiter **due = ws->count ? malloc(ws->count * sizeof *due) : NULL;
    size_t n = 0;
    for (size_t i = 0; due && i < ws->nbuckets; i++) {
        waiter *w;
        LIST_FOREACH(w, &ws->buckets[i], by_id) {
            if (w->checking) continue;
            w->checking = true;
            due[n++] = w;
        }
    }
    for (size_t i = 0; i < n; i += PEEK_CHUNK)
        peek_send(ws->srv, due + i, n - i < PEEK_CHUNK ? n - i : PEEK_CHUNK);
    free(due);
    if (ws->count > 0) arm_sweep(ws);
}

/* The deadline: a last full check, which answers TIMEOUT unless the task ended. A check in
 * flight answers the same way when it returns. */
static void on_timer(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    waiter_check(arg);
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
    if (!w->timer) {
        free(w);
        return conn_send_error(c, seq, CEL_E_INTERNAL, "out of memory");
    }
    struct timeval tv = {(time_t)(timeout_ms / 1000), (suseconds_t)(timeout_ms % 1000) * 1000};
    evtimer_add(w->timer, &tv);
    client_ref(c);
    cel_waiters *ws = s->waiters;
    LIST_INSERT_HEAD(bucket_of(ws, id, idlen), w, by_id);
    LIST_INSERT_HEAD(&c->waiters, w, by_client);
    w->linked = true;
    ws->count++;
    maybe_grow(ws);
    if (!evtimer_pending(ws->sweep, NULL)) arm_sweep(ws);
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
