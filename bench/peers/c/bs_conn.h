/* A minimal beanstalkd text-protocol connection: blocking TCP socket, buffered line reads. */
#ifndef PEERS_BS_CONN_H
#define PEERS_BS_CONN_H
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include "common.h"

typedef struct {
    int fd;
    char buf[65536];
    size_t off, len; /* unread bytes are buf[off, len) */
} bs_conn;

static void bs_die(const char *what) { perror(what); exit(1); }

static void bs_connect(bs_conn *c, const char *host, int port) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1) { fprintf(stderr, "bad host %s\n", host); exit(2); }
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd < 0) bs_die("socket");
    if (connect(c->fd, (struct sockaddr *)&a, sizeof a) < 0) bs_die("connect");
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->off = c->len = 0;
}

static void bs_send(bs_conn *c, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(c->fd, p, n);
        if (w < 0) { if (errno == EINTR) continue; bs_die("send"); }
        p += w, n -= (size_t)w;
    }
}

/* Makes sure at least `need` unread bytes are buffered. */
static void bs_fill(bs_conn *c, size_t need) {
    if (c->len - c->off >= need) return;
    if (c->off > 0) {
        memmove(c->buf, c->buf + c->off, c->len - c->off);
        c->len -= c->off, c->off = 0;
    }
    if (need > sizeof c->buf) { fprintf(stderr, "beanstalk reply too large\n"); exit(1); }
    while (c->len < need) {
        ssize_t r = read(c->fd, c->buf + c->len, sizeof c->buf - c->len);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) { fprintf(stderr, "beanstalkd closed the connection\n"); exit(1); }
        c->len += (size_t)r;
    }
}

/* Returns the next "\r\n"-terminated line (NUL-terminated in place, without the CRLF). */
static char *bs_line(bs_conn *c) {
    for (;;) {
        char *s = c->buf + c->off;
        char *e = memmem(s, c->len - c->off, "\r\n", 2);
        if (e) {
            *e = 0;
            c->off = (size_t)(e + 2 - c->buf);
            return s;
        }
        bs_fill(c, c->len - c->off + 1);
    }
}

/* Sends a command line and checks that the reply line starts with `expect`. */
static char *bs_cmd(bs_conn *c, const char *cmd, const char *expect) {
    bs_send(c, cmd, strlen(cmd));
    char *r = bs_line(c);
    if (strncmp(r, expect, strlen(expect)) != 0) {
        fprintf(stderr, "beanstalkd: '%.*s' -> '%s'\n", (int)strcspn(cmd, "\r"), cmd, r);
        exit(1);
    }
    return r;
}
#endif
