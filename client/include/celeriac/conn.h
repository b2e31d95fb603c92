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
 * request timeout, a reply frame that did not decode); err then says why (e.g.
 * CEL_E_UNAVAILABLE, CEL_E_TIMEOUT).
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
    /* 0: none. Counted from cel_conn_send, time queued while disconnected included; a wait
     * request gets its own timeout_ms on top. A request that runs out fails with CEL_E_TIMEOUT
     * (sent, no reply yet) or CEL_E_UNAVAILABLE (never sent: no broker was reachable). */
    int request_timeout_ms;
    int backoff_min_ms; /* 0: 50 */
    int backoff_max_ms; /* 0: 5000 */
    uint32_t max_frame; /* 0: CEL_DEFAULT_MAX_FRAME */
    cel_conn_push_cb on_push;
    cel_conn_state_cb on_state;
    void *arg; /* passed to on_push and on_state */
} cel_conn_opts;

/* Starts connecting at once; never blocks (except for a name lookup: a host name is resolved
 * with getaddrinfo). Returns NULL only on bad options (no broker, an address that is not
 * host[:port]) or no memory. */
cel_conn *cel_conn_new(struct event_base *base, const cel_conn_opts *opts);
/* Fails every outstanding request with CEL_E_UNAVAILABLE (their callbacks run before it
 * returns; none runs after), closes, frees. Safe inside any of c's callbacks: the memory is then
 * released once that callback returns. */
void cel_conn_free(cel_conn *c);
/* Assigns req->seq, encodes and queues the request (written in this loop turn when connected,
 * otherwise after the next successful hello). Returns non-OK (and does not call cb) only when the
 * request cannot be encoded (e.g. CEL_E_TOO_BIG, CEL_E_BAD_FIELD) or c is being freed
 * (CEL_E_UNAVAILABLE). */
cel_err cel_conn_send(cel_conn *c, cel_msg *req, cel_conn_reply_cb cb, void *arg, cel_error *err);
/* Requests are written once per loop turn, after the callbacks that queued them. A caller that
 * sends outside the loop and then runs it to wait for the reply may write them now instead,
 * saving that turn. */
void cel_conn_flush(cel_conn *c);
bool cel_conn_is_up(const cel_conn *c);
/* The welcome's max_frame once connected (else the configured one). */
uint32_t cel_conn_max_frame(const cel_conn *c);

/* Like cel_conn_send, with this request's own timeout instead of opts.request_timeout_ms
 * (0: none; nothing is added for a wait). */
cel_err cel_conn_send_timeout(cel_conn *c, cel_msg *req, int timeout_ms, cel_conn_reply_cb cb,
                              void *arg, cel_error *err);
/* Why the last connection attempt or connection failed, e.g. "127.0.0.1:7878: Connection
 * refused"; "" once a broker has welcomed us. Valid until c next runs. */
const char *cel_conn_last_error(const cel_conn *c);
/* Connection attempts that failed in a row since the last welcome (0 while connected). */
unsigned cel_conn_failed_attempts(const cel_conn *c);
/* Splits "host", "host:port", "[v6addr]" or "[v6addr]:port" (default port 7878); false when
 * addr is none of these or the port is not 1..65535. */
bool cel_conn_parse_addr(const char *addr, char *host, size_t host_cap, int *port);

#ifdef __cplusplus
}
#endif
#endif
