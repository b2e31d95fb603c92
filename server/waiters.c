/* Blocking waits for results, held in the broker (no client polling). A finish seen by this
 * broker wakes its waiters at once; each waiter also re-checks Redis every second, which
 * covers tasks finished through another broker. */
#include <stdlib.h>
#include <string.h>

#include "broker.h"

#define RECHECK_MS 1000

typedef struct waiter {
    struct waiter *next;
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

struct cel_waiters {
    waiter *head;
};

cel_waiters *waiters_new(cel_server *s) {
    (void)s;
    return calloc(1, sizeof(cel_waiters));
}

static void waiter_unlink(cel_server *s, waiter *w) {
    for (waiter **p = &s->waiters->head; *p; p = &(*p)->next) {
        if (*p != w) continue;
        *p = w->next;
        return;
    }
}

static void waiter_free(waiter *w) {
    if (w->timer) event_free(w->timer);
    client_unref(w->client);
    free(w);
}

void waiters_free(cel_waiters *ws) {
    while (ws && ws->head) {
        waiter *w = ws->head;
        ws->head = w->next;
        if (!w->checking)
            waiter_free(w);
        else
            w->done = true, w->srv = NULL;
    }
    free(ws);
}

static void waiter_finish(waiter *w) {
    w->done = true;
    if (w->srv) waiter_unlink(w->srv, w);
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
    long long now = cel_now_ms();
    if (now >= w->deadline_ms) {
        conn_send_error(c, w->seq, CEL_E_TIMEOUT, "the task did not finish in time");
        return waiter_finish(w);
    }
    long long next = w->deadline_ms - now < RECHECK_MS ? w->deadline_ms - now : RECHECK_MS;
    struct timeval tv = {next / 1000, (next % 1000) * 1000};
    evtimer_add(w->timer, &tv);
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
    client_ref(c);
    w->next = s->waiters->head;
    s->waiters->head = w;
    waiter_check(w);
}

void waiters_notify(cel_server *s, const char *id, size_t idlen) {
    for (waiter *w = s->waiters->head; w; w = w->next)
        if (w->idlen == idlen && memcmp(w->id, id, idlen) == 0) waiter_check(w);
}

void waiters_client_gone(cel_server *s, cel_client *c) {
    waiter *w = s->waiters->head;
    while (w) {
        waiter *next = w->next;
        if (w->client == c) waiter_finish(w);
        w = next;
    }
}
