/* The test TCP proxy (see proxy.h): one thread, poll(2), a fixed table of connection pairs. */
#include "proxy.h"

#include "tclient.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define FP_MAX_PAIRS 128
#define FP_BUF 65536

typedef struct fp_dir {
    int from, to;
    char buf[FP_BUF];
    size_t len, off;
    bool eof; /* from hit EOF: shut `to` down for writing once buf is flushed */
} fp_dir;

typedef struct fp_pair {
    bool used;
    fp_dir d[2]; /* client → target, target → client */
} fp_pair;

struct fp_proxy {
    int listen_fd, port, target;
    _Atomic int mode;
    _Atomic bool stop;
    _Atomic int open;
    pthread_t thread;
    fp_pair pairs[FP_MAX_PAIRS];
};


static void pair_close(fp_proxy *p, fp_pair *pr) {
    close(pr->d[0].from);
    close(pr->d[0].to);
    pr->used = false;
    p->open--;
}

static void accept_one(fp_proxy *p, int mode) {
    int c = accept(p->listen_fd, NULL, NULL);
    if (c < 0) return;
    int t = mode == FP_CUT ? -1 : tc_raw_connect(p->target);
    fp_pair *pr = NULL;
    for (int i = 0; i < FP_MAX_PAIRS && t >= 0; i++)
        if (!p->pairs[i].used) pr = &p->pairs[i], i = FP_MAX_PAIRS;
    if (!pr) {
        close(c);
        if (t >= 0) close(t);
        return;
    }
    memset(pr, 0, sizeof *pr);
    pr->used = true;
    pr->d[0].from = c, pr->d[0].to = t;
    pr->d[1].from = t, pr->d[1].to = c;
    p->open++;
}

/* One direction's turn: read when its buffer is empty, write out what it holds. Returns false
 * when the pair is finished (an error, or both sides done). */
static bool dir_step(fp_dir *d, short rev_from, short rev_to, int mode) {
    if ((rev_from & (POLLIN | POLLHUP | POLLERR)) && d->len == 0 && !d->eof) {
        ssize_t n = recv(d->from, d->buf, sizeof d->buf, 0);
        if (n == 0) {
            d->eof = true;
        } else if (n < 0) {
            if (errno != EINTR && errno != EAGAIN) return false;
        } else if (mode == FP_PASS) {
            d->len = (size_t)n, d->off = 0;
        }
    }
    if ((rev_to & POLLOUT) && d->len > 0) {
        ssize_t n = send(d->to, d->buf + d->off, d->len - d->off, MSG_NOSIGNAL);
        if (n < 0 && errno != EINTR && errno != EAGAIN) return false;
        if (n > 0) d->off += (size_t)n;
        if (d->off == d->len) d->len = d->off = 0;
    }
    if (d->eof && d->len == 0) shutdown(d->to, SHUT_WR);
    return true;
}

static void *proxy_main(void *arg) {
    fp_proxy *p = arg;
    struct pollfd pfd[1 + 2 * FP_MAX_PAIRS];
    while (!p->stop) {
        int mode = p->mode;
        if (mode == FP_CUT)
            for (int i = 0; i < FP_MAX_PAIRS; i++)
                if (p->pairs[i].used) pair_close(p, &p->pairs[i]);
        int n = 0;
        pfd[n++] = (struct pollfd){p->listen_fd, mode == FP_HOLD ? 0 : POLLIN, 0};
        for (int i = 0; i < FP_MAX_PAIRS; i++) {
            fp_pair *pr = &p->pairs[i];
            for (int k = 0; k < 2; k++) {
                short ev = 0;
                if (pr->used && mode != FP_HOLD) {
                    if (pr->d[k].len == 0 && !pr->d[k].eof) ev |= POLLIN;
                    if (pr->d[1 - k].len > 0) ev |= POLLOUT;
                }
                pfd[n++] = (struct pollfd){pr->used ? pr->d[k].from : -1, ev, 0};
            }
        }
        if (poll(pfd, (nfds_t)n, 10) <= 0) continue;
        if (pfd[0].revents & POLLIN) accept_one(p, mode);
        for (int i = 0; i < FP_MAX_PAIRS; i++) {
            fp_pair *pr = &p->pairs[i];
            if (!pr->used || mode == FP_HOLD) continue;
            short r0 = pfd[1 + 2 * i].revents, r1 = pfd[2 + 2 * i].revents;
            bool ok = dir_step(&pr->d[0], r0, r1, mode) && dir_step(&pr->d[1], r1, r0, mode);
            bool done = pr->d[0].eof && pr->d[1].eof && !pr->d[0].len && !pr->d[1].len;
            if (!ok || done) pair_close(p, pr);
        }
    }
    for (int i = 0; i < FP_MAX_PAIRS; i++)
        if (p->pairs[i].used) pair_close(p, &p->pairs[i]);
    return NULL;
}

fp_proxy *fp_start(int target_port) {
    fp_proxy *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->target = target_port;
    p->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int one = 1;
    setsockopt(p->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(p->listen_fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(p->listen_fd, 64) != 0 ||
        getsockname(p->listen_fd, (struct sockaddr *)&a, &len) != 0 ||
        pthread_create(&p->thread, NULL, proxy_main, p) != 0) {
        close(p->listen_fd);
        free(p);
        return NULL;
    }
    p->port = ntohs(a.sin_port);
    return p;
}

int fp_port(const fp_proxy *p) {
    return p->port;
}

void fp_set(fp_proxy *p, fp_mode mode) {
    p->mode = (int)mode;
}

int fp_connections(fp_proxy *p) {
    return p->open;
}

void fp_stop(fp_proxy *p) {
    if (!p) return;
    p->stop = true;
    pthread_join(p->thread, NULL);
    close(p->listen_fd);
    free(p);
}
