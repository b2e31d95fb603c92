/* Connects a hiredis async context to the broker's libevent loop. Unlike hiredis's own libevent
 * adapter, a command is not written by arming the write event and waiting a loop turn: every
 * command queued during a turn leaves in one write() at the end of that turn's callbacks, and
 * the write event is armed only while connecting or when the socket does not take it all. */
#include <event2/event.h>
#include <hiredis/async.h>
#include <stdlib.h>

#include "redis.h"

typedef struct redis_io {
    redisAsyncContext *ac;
    struct event *rev, *wev, *flush;
} redis_io;

/* The context being flushed: hiredis may free it (and call cleanup) inside the flush, so this
 * is compared, never dereferenced, after the call. */
static redis_io *flushing;

static void on_readable(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    cel_loop_inputs++;
    redisAsyncHandleRead(((redis_io *)arg)->ac);
}

static void on_writable(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    redisAsyncHandleWrite(((redis_io *)arg)->ac);
}

static void on_flush(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    redis_io *io = arg;
    flushing = io;
    redisAsyncHandleWrite(io->ac);
    flushing = NULL;
}

static void add_read(void *arg) {
    event_add(((redis_io *)arg)->rev, NULL);
}

static void del_read(void *arg) {
    event_del(((redis_io *)arg)->rev);
}

/* hiredis asks to write: while connecting (the socket turning writable means connected) or
 * when a flush could not write everything, wait for the socket; otherwise flush this turn. */
static void add_write(void *arg) {
    redis_io *io = arg;
    if (io == flushing || !(io->ac->c.flags & REDIS_CONNECTED))
        event_add(io->wev, NULL);
    else
        event_active(io->flush, EV_WRITE, 1);
}

static void del_write(void *arg) {
    event_del(((redis_io *)arg)->wev);
}

static void cleanup(void *arg) {
    redis_io *io = arg;
    event_free(io->rev);
    event_free(io->wev);
    event_free(io->flush);
    free(io);
}

int cel_redis_attach(redisAsyncContext *ac, struct event_base *base) {
    if (ac->ev.data) return REDIS_ERR;
    redis_io *io = calloc(1, sizeof *io);
    if (!io) return REDIS_ERR;
    io->ac = ac;
    io->rev = event_new(base, ac->c.fd, EV_READ | EV_PERSIST, on_readable, io);
    io->wev = event_new(base, ac->c.fd, EV_WRITE | EV_PERSIST, on_writable, io);
    io->flush = event_new(base, -1, 0, on_flush, io);
    if (!io->rev || !io->wev || !io->flush) {
        if (io->rev) event_free(io->rev);
        if (io->wev) event_free(io->wev);
        if (io->flush) event_free(io->flush);
        free(io);
        return REDIS_ERR;
    }
    ac->ev.data = io;
    ac->ev.addRead = add_read, ac->ev.delRead = del_read;
    ac->ev.addWrite = add_write, ac->ev.delWrite = del_write;
    ac->ev.cleanup = cleanup;
    /* Reads from the start; the write event tells when the connect completes. */
    event_add(io->rev, NULL);
    event_add(io->wev, NULL);
    return REDIS_OK;
}
