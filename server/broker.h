/* celeriacd's shared types: the server, its client connections, queues with their consuming
 * workers, and the operations each part offers the others. One header, as the broker is one
 * process with one event loop and no locks. */
#ifndef CELERIAC_BROKER_H
#define CELERIAC_BROKER_H

#include <celeriac/proto.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <sys/queue.h>

#include "clock.h"
#include "config.h"
#include "log.h"
#include "redis.h"

typedef struct cel_server cel_server;
typedef struct cel_client cel_client;
typedef struct cel_queue cel_queue;

typedef enum cel_client_state {
    CS_SNIFF,  /* nothing read yet: the first byte picks binary or text */
    CS_HELLO,  /* binary, waiting for hello */
    CS_BINARY, /* binary, hello done */
    CS_TEXT,   /* text protocol */
    CS_CLOSED  /* socket gone; freed when the last Redis callback holding it returns */
} cel_client_state;

/* A task leased to a worker over this connection: requeued at once if the connection drops. */
typedef struct cel_lease {
    cel_queue *queue;
    char id[CEL_ID_MAX + 1];
    uint64_t token;
} cel_lease;

struct cel_client {
    TAILQ_ENTRY(cel_client) link;
    cel_server *srv;
    evutil_socket_t fd;
    /* wev exists once output was ever left unsent, and is armed only while the socket takes no
     * more: most connections never need it. */
    struct event *rev, *wev;
    struct evbuffer *in, *out;
    uint64_t id;
    cel_client_state state;
    int refs; /* Redis callbacks in flight that point here */
    char addr[64];
    bool loopback;
    char name[128];
    bool worker;
    bool read_paused;    /* output backed up past --output-soft */
    bool input_full;     /* a maximal frame's worth of input waits to be handled */
    bool closing;        /* an error was sent; close once it is written */
    bool text_discard;   /* text: dropping the rest of an over-long line */
    bool monitor;        /* text: streaming task events (and in the server's monitors list) */
    char *monitor_queue; /* NULL: every queue */
    TAILQ_ENTRY(cel_client) monitor_link;
    uint64_t text_seq;
    bool text_busy;     /* text: a command's reply is still to come */
    bool text_eof;      /* text: the peer half-closed; close after the last reply */
    bool text_in_input; /* text: inside text_input (replies must not re-enter it) */
    bool flush_queued;  /* output waits for this loop turn's flush (see conn_flush_all) */
    TAILQ_ENTRY(cel_client) flush_link;
    uint32_t credits;
    uint32_t reserved; /* credits asked for by lease calls still in flight */
    cel_queue **queues;
    size_t nqueues, next_queue; /* next_queue: where the next kick starts (round-robin) */
    cel_lease *leases;
    size_t nleases, cap_leases;
    /* Worker outcomes: while one settle call of this client is in flight, new outcomes gather
     * in settle_open and go as the next call when it returns, so a busy worker's acks share
     * script calls instead of costing one each. */
    struct batch *settle_open;
    int settle_inflight;
    struct event *timer; /* hello deadline, then idle timeout (none when that is off) */
    long long last_read_ms;
    LIST_HEAD(, waiter) waiters; /* this client's pending waits (waiters.c) */
};

struct cel_queue {
    cel_queue *next;  /* every queue, for the walks of them all */
    cel_queue *hnext; /* the same hash bucket of the server's queue index */
    size_t len;
    char name[CEL_NAME_MAX + 1];
    cel_client **workers;
    size_t nworkers, cap_workers, rr;
    bool dispatching; /* a dispatch script is in flight */
    bool maybe_ready; /* tasks may be waiting in Redis */
};

/* FNV-1a, for the broker's small hash tables (queues by name, waits by task id). */
static inline size_t cel_hash(const char *p, size_t len) {
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < len; i++) h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
    return (size_t)h;
}

typedef struct cel_counters {
    unsigned long long connections_total, enqueued, dispatched, acked, failed, requeued,
        protocol_errors, dropped_slow;
} cel_counters;

/* Per-second rates over the last RATE_WINDOW_MS, refreshed by a timer. */
#define RATE_WINDOW_MS 5000
typedef struct cel_rates {
    cel_counters last;
    double enqueued, dispatched, acked, failed;
} cel_rates;

typedef struct cel_waiters cel_waiters;

struct cel_server {
    struct event_base *base;
    cel_config *cfg;
    cel_redis *redis;
    struct evconnlistener *listener;
    TAILQ_HEAD(, cel_client) clients;
    int nclients;
    uint64_t next_client_id;
    char broker_id[17];
    cel_queue *queues;
    /* The same queues by name: a queued task looks its queue up, and a walk of the list for it
     * made the cost per task grow with the queues a broker serves. */
    cel_queue **qindex;
    size_t qbuckets, nqueues;
    cel_waiters *waiters;
    cel_buf out;       /* scratch for encoding one reply */
    msgpack_zone zone; /* scratch for decoding one frame */
    struct event *reaper, *poll, *accept_retry;
    struct event *sig_term, *sig_int, *sig_hup;
    cel_counters counters;
    cel_rates rates;
    struct event *rate_timer;
    struct event *reap_soon; /* one-shot: the next delayed task's due time */
    struct event *flush;     /* active when clients have output to write this loop turn */
    TAILQ_HEAD(, cel_client) to_flush;
    /* MONITOR clients, apart: every task event is offered to them, and walking every client
     * for it made each event cost as much as the connections open (10,000 idle producers cut
     * the broker's rate tenfold). */
    TAILQ_HEAD(, cel_client) monitors;
    long long started_ms;
    bool stopping;
    int script[16];
};

enum {
    SCRIPT_ENQUEUE,
    SCRIPT_DISPATCH,
    SCRIPT_SETTLE,
    SCRIPT_REAP,
    SCRIPT_STATUS,
    SCRIPT_CANCEL,
    SCRIPT_STATS,
    SCRIPT_ADMIN,
    SCRIPT_PEEK,
    SCRIPT__COUNT
};

/* server.c */
int server_run(cel_config *cfg);
/* Runs the reaper soon: a task was scheduled or is retrying, and may fall due before the
 * next tick. */
void reaper_kick(cel_server *s);
void server_stop(cel_server *s);

/* conn.c: connections */
void conn_accept(cel_server *s, evutil_socket_t fd, struct sockaddr *sa, int salen);
void conn_send(cel_client *c, const cel_msg *m);
void conn_send_error(cel_client *c, uint64_t seq, cel_err code, const char *msg);
void conn_close(cel_client *c, const char *why);
void conn_close_after_write(cel_client *c);
/* Input was handled: reading resumes if a full input buffer had stopped it. */
void conn_input_drained(cel_client *c);
void conn_session_started(cel_client *c);
void conn_flush_all(evutil_socket_t fd, short what, void *arg);
void client_ref(cel_client *c);
/* Drops a reference; returns false (and frees c) when c is closed and this was the last. */
bool client_unref(cel_client *c);
bool client_alive(const cel_client *c);

/* ops.c: what each binary request does */
void ops_handle(cel_client *c, const cel_msg *m);
/* Sends the batches of enqueues/settles that c's frames produced so far, so that a request
 * handled next runs after them in Redis. */
void ops_flush(cel_client *c);
/* At the end of a read: like ops_flush, but c's outcomes wait while an earlier settle call of c
 * is in flight (they go when it returns). */
void ops_flush_read(cel_client *c);
/* Puts tasks leased over a lost connection back in their queues (fenced by token). */
void ops_requeue_leases(cel_server *s, const cel_lease *leases, size_t n);

/* dispatch.c: credits and fairness */
typedef struct lease_call lease_call;
struct batch;
/* A lease carried by another script call (the enqueue of tasks for that queue): when a worker
 * of the queue has free credits, reserves up to want of them (the call's tasks for the queue:
 * a backlog in Redis is the dispatch calls' work) and fills argv with the lease arguments (queue,
 * n, lease_ms, worker); NULL otherwise. Unlike a dispatch call it does not wait for a dispatch
 * of the queue in flight: Redis runs the calls in order, and reserved credits are not offered
 * twice. The call's reply goes to dispatch_leased (elems: LEASE_FIELDS per leased task), which
 * returns true when the queue may still hold ready tasks. A task the call itself created comes
 * back without its body, only its index in the call: from, the call's batch, still holds it. */
lease_call *dispatch_reserve(cel_server *s, const char *queue, size_t len, uint32_t want,
                             const char *argv[4]);
bool dispatch_leased(lease_call *lc, redisReply *const *elems, size_t n, bool ok,
                     const struct batch *from);
cel_queue *queue_get(cel_server *s, const char *name, size_t len);
/* The queue of that name, or NULL when this broker has none. */
cel_queue *queue_find(cel_server *s, const char *name, size_t len);
void dispatch_set_consumer(cel_client *c, const cel_msg *consume);
void dispatch_kick(cel_server *s, cel_queue *q);
void dispatch_kick_client(cel_client *c);
void dispatch_client_gone(cel_client *c);
/* Forgets a lease (ack/fail/expired); returns true if c held it. */
bool dispatch_lease_done(cel_client *c, const char *id, size_t idlen);
void dispatch_mark_ready(cel_server *s, const char *queue, size_t len);
void dispatch_abort(cel_server *s, const char *worker, const char *id, uint64_t token);
void dispatch_poll(cel_server *s);

/* waiters.c: blocking wait for results */
cel_waiters *waiters_new(cel_server *s);
void waiters_free(cel_waiters *w);
void waiters_add(cel_server *s, cel_client *c, uint64_t seq, const char *id, size_t idlen,
                 uint64_t timeout_ms);
void waiters_notify(cel_server *s, const char *id, size_t idlen);
void waiters_client_gone(cel_server *s, cel_client *c);
/* Waits pending now (the stats' "waits"). */
size_t waiters_pending(const cel_server *s);

/* status.c: task_info replies from a status script reply, and the task body: what of a task
 * only the broker reads, kept in one field ('d') of its Redis hash so that the scripts write and
 * propagate one value instead of six. Layout: the msgpack array [name, priority, soft_ms,
 * hard_ms, created_ms] followed by the args, one msgpack value. */
/* Arguments per task of an enqueue call, and values per leased task in a lease reply (see
 * scripts/enqueue.lua and scripts/prelude.lua). */
#define ENQUEUE_HEAD 3 /* prefix, default TTL, count */
#define ENQUEUE_FIELDS 10
#define LEASE_FIELDS 5
/* A settle call's arguments: SETTLE_HEAD (prefix, backoff base and cap, poison limit, dead max,
 * count), then SETTLE_FIELDS per outcome (scripts/settle.lua). */
#define SETTLE_HEAD 6
#define SETTLE_FIELDS 8
typedef struct task_body {
    cel_str name;
    int64_t priority, created_ms;
    uint64_t soft_ms, hard_ms;
    const uint8_t *args; /* inside the unpacked bytes */
    uint32_t args_len;
} task_body;
/* Appends the head of a body (all but the args, which the caller appends) to out. */
void task_body_pack_head(cel_buf *out, const task_body *b);
/* False when p is not a well-formed body (its strings then point into p). */
bool task_body_unpack(const char *p, size_t len, task_body *b);
/* True when n leased tasks (LEASE_FIELDS values each: id, body, attempt, token, lease_ms) have
 * the types the scripts give them; the broker refuses anything else whole. A body is a string,
 * or the index of a task of the same enqueue call (see dispatch_leased). */
bool lease_reply_valid(redisReply *const *elems, size_t n);
bool state_is_terminal(const char *st, size_t len);
void status_reply(cel_client *c, uint64_t seq, const char *id, size_t idlen,
                  const redisReply *hash);

/* text.c: the line protocol */
void text_input(cel_client *c);
void text_render(cel_client *c, const cel_msg *m);
/* A text command's reply was written: read the next line. */
void text_reply_done(cel_client *c);
/* Tells MONITOR clients about a task event (detail may be NULL). */
void text_monitor_event(cel_server *s, const char *event, const char *queue, size_t qlen,
                        const char *id, size_t idlen, const char *detail);
/* Whether any client monitors: callers skip formatting an event's detail when none does. */
static inline bool text_monitoring(const cel_server *s) {
    return !TAILQ_EMPTY(&s->monitors);
}
/* Ends c's MONITOR, if on. */
void text_monitor_stop(cel_client *c);

#endif
