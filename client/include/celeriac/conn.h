/* cel_conn: one logical connection to a celeriac broker on a libevent event_base, shared by
 * libceleriac (sync and async producer APIs) and celeriac-worker. It frames requests with
 * proto/, matches replies to requests by sequence number (many in flight), delivers pushes
 * (task, abort), sends hello on every (re)connect, and reconnects with jittered exponential
 * backoff, rotating through the configured broker addresses. */
#ifndef CELERIAC_CONN_H
#define CELERIAC_CONN_H

#include <celeriac/proto.h>
#include <event2/event.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cel_conn cel_conn;

/* A reply to one request: reply is NULL when the request failed locally (connection lost,
 * request timeout, encoding error); err then says why (e.g. CEL_E_UNAVAILABLE, CEL_E_TIMEOUT).
 * An "error" frame from the broker arrives as reply->op == CEL_OP_ERROR with err->code set from
 * its code. The message is valid only during the callback. Called exactly once per request. */
typedef void (*cel_conn_reply_cb)(cel_conn *c, const cel_msg *reply, const cel_error *err,
                                  void *arg);
/* A push from the broker (CEL_OP_TASK, CEL_OP_ABORT); valid only during the callback. */
typedef void (*cel_conn_push_cb)(cel_conn *c, const cel_msg *push, void *arg);
/* up = true once hello/welcome completed on a new connection; false when it was lost. */
typedef void (*cel_conn_state_cb)(cel_conn *c, bool up, void *arg);

typedef struct cel_conn_opts {
    const char *const *brokers; /* "host:port" strings; tried in turn */
    size_t nbrokers;
    const char *role;        /* "producer", "worker" or "admin" */
    const char *client_name; /* free text shown in broker stats, may be NULL */
    int connect_timeout_ms;  /* 0: 5000 */
    int request_timeout_ms;  /* 0: none (a wait request carries its own timeout) */
    int backoff_min_ms;      /* 0: 50 */
    int backoff_max_ms;      /* 0: 5000 */
    uint32_t max_frame;      /* 0: CEL_DEFAULT_MAX_FRAME */
    cel_conn_push_cb on_push;
    cel_conn_state_cb on_state;
    void *arg; /* passed to on_push and on_state */
} cel_conn_opts;

/* Starts connecting at once; never blocks. Returns NULL only on bad options or no memory. */
cel_conn *cel_conn_new(struct event_base *base, const cel_conn_opts *opts);
/* Fails every outstanding request with CEL_E_UNAVAILABLE, closes, frees. */
void cel_conn_free(cel_conn *c);
/* Assigns req->seq, encodes and queues the request (sent at once when connected, otherwise after
 * the next successful hello). Returns non-OK (and does not call cb) only when the request cannot
 * be encoded (e.g. CEL_E_TOO_BIG, CEL_E_BAD_FIELD). */
cel_err cel_conn_send(cel_conn *c, cel_msg *req, cel_conn_reply_cb cb, void *arg, cel_error *err);
bool cel_conn_is_up(const cel_conn *c);
/* The welcome's max_frame once connected (else the configured one). */
uint32_t cel_conn_max_frame(const cel_conn *c);

#ifdef __cplusplus
}
#endif
#endif
