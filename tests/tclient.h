/* A blocking protocol client for tests: frames through proto/, real sockets, timeouts. It
 * speaks the raw protocol (including deliberately broken bytes) where libceleriac would not. */
#ifndef CELERIAC_TCLIENT_H
#define CELERIAC_TCLIENT_H

#include <celeriac/proto.h>
#include <stdbool.h>

typedef struct tc {
    int fd;
    cel_decoder dec;
    msgpack_zone zone;
    uint64_t seq;
    cel_msg last; /* the last message received; valid until the next receive */
    cel_error err;
} tc;

/* Connects to 127.0.0.1:port; with role != NULL also does hello and checks the welcome. */
bool tc_connect(tc *t, int port, const char *role);
void tc_close(tc *t);
bool tc_send_raw(tc *t, const void *data, size_t len);
/* Assigns a seq (if the op takes one) and sends. Returns the seq. */
uint64_t tc_send(tc *t, cel_msg *m);
/* Receives the next message within timeout_ms; NULL on timeout, EOF or a bad frame. */
const cel_msg *tc_recv(tc *t, int timeout_ms);
/* Receives until a reply with this seq arrives (pushes in between are skipped unless keep). */
const cel_msg *tc_reply(tc *t, uint64_t seq, int timeout_ms);
/* True when the broker closed the connection within timeout_ms. */
bool tc_wait_closed(tc *t, int timeout_ms);

/* Builders for the common requests. */
void tc_msg(cel_msg *m, cel_op op);
uint64_t tc_enqueue(tc *t, const char *queue, const char *task, const char *id);
/* Enqueue and wait for its reply; returns the reply (op OK or ERROR). */
const cel_msg *tc_enqueue_sync(tc *t, const char *queue, const char *task, const char *id);
const cel_msg *tc_consume(tc *t, const char *queue, unsigned credits);
/* A consume of n queues, sent without waiting for its reply (tasks may come before it). */
uint64_t tc_consume_send(tc *t, const cel_str *queues, uint32_t n, unsigned credits);
const cel_msg *tc_ack(tc *t, const cel_msg *task);
/* An ack sent without waiting for its reply (pushes in between would be skipped). */
uint64_t tc_ack_send(tc *t, const cel_msg *task);
const cel_msg *tc_status(tc *t, const char *id);
const cel_msg *tc_wait(tc *t, const char *id, unsigned timeout_ms);
/* A plain TCP connection to 127.0.0.1:port (no hello); -1 on failure. */
int tc_raw_connect(int port);
/* A counter from the broker's stats ("acked", "failed", ...); -1 if missing. */
long long tc_stat(tc *t, const char *name);
/* The broker listens before its Redis connection is up and its scripts are loaded (requests
 * meanwhile get UNAVAILABLE): waits until a request that needs Redis (STATS) is answered. */
bool tc_wait_ready(int port, int timeout_ms);
/* Copies a cel_str into a NUL-terminated static buffer (one of 8 rotating). */
const char *tc_s(cel_str s);

#endif
