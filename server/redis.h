/* The broker's Redis connection: hiredis async on the broker's event base, with what hiredis
 * 0.14 lacks — per-command timeouts (libevent timer), a bound on commands in flight, reconnect
 * with jittered backoff, script loading with a NOSCRIPT fallback, and persistence warnings. */
#ifndef CELERIAC_REDIS_H
#define CELERIAC_REDIS_H

#include <celeriac/proto.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "config.h"

/* Decimal digits of v, right-aligned in buf[24]; returns the first. Several numbers go into
 * every task's script arguments, and snprintf was a tenth of the broker's time in a pipelined
 * profile. */
static inline char *cel_u64_digits(char buf[24], uint64_t v) {
    char *p = buf + 24;
    do *--p = (char)('0' + v % 10);
    while (v /= 10);
    return p;
}

/* The command in Redis's wire format in one malloc'd buffer, freed with free(). Not hiredis's
 * redisFormatCommandArgv: it sprintf()s every argument's length, and a script call carries
 * about ten arguments per task (a tenth of the broker's time in a pipelined profile). lens
 * NULL: the arguments are C strings. Returns the length, or -1 without memory. */
int cel_resp_format(char **out, int argc, const char **argv, const size_t *lens);

typedef struct cel_redis cel_redis;

/* Called exactly once per command. On failure reply is NULL and err says why
 * (CEL_E_UNAVAILABLE: down, timed out, reset; CEL_E_BUSY never arrives here, it is returned at
 * submit time). Redis error replies other than NOSCRIPT and LOADING arrive as replies. */
typedef void (*cel_redis_cb)(const redisReply *reply, const cel_error *err, void *arg);

typedef struct cel_redis_stats {
    unsigned long long commands, timeouts, reconnects, failures;
    long long last_latency_us; /* latency of the last command answered */
    bool ready;
} cel_redis_stats;

/* on_ready runs each time the connection becomes usable (first connect and every reconnect). */
cel_redis *cel_redis_new(struct event_base *base, const cel_config *cfg,
                         void (*on_ready)(void *arg), void *arg);
/* redis_io.c: runs a hiredis async context on base, one write per loop turn (REDIS_OK/ERR). */
struct redisAsyncContext;
int cel_redis_attach(struct redisAsyncContext *ac, struct event_base *base);
/* Fails everything in flight with CEL_E_UNAVAILABLE and closes. */
void cel_redis_free(cel_redis *r);
bool cel_redis_ready(const cel_redis *r);
size_t cel_redis_inflight(const cel_redis *r);
void cel_redis_get_stats(const cel_redis *r, cel_redis_stats *out);

/* Script sources are registered once at start-up, before cel_redis_new; the index is the id. */
int cel_redis_script_register(const char *name, const char *source);

/* Runs script `id` (EVALSHA with no keys; the scripts derive their keys from the prefix in
 * their first argument). Returns CEL_E_UNAVAILABLE or CEL_E_BUSY without calling cb when the
 * command cannot be sent now. */
/* A plain command (argv[0] its name), for what needs no script. */
cel_err cel_redis_command(cel_redis *r, int argc, const char **argv, const size_t *lens,
                          cel_redis_cb cb, void *arg, cel_error *err);
cel_err cel_redis_script(cel_redis *r, int id, int argc, const char **argv, const size_t *lens,
                         cel_redis_cb cb, void *arg, cel_error *err);

/* Reads from clients and from Redis seen by the broker's one event loop: --busy-poll-us keeps
 * polling while this keeps moving (server.c). */
extern unsigned long cel_loop_inputs;

#endif
