/* Blocking test client over real sockets (see tclient.h). */
#include "tclient.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

int tc_raw_connect(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0) return fd;
    if (fd >= 0) close(fd);
    return -1;
}

long long tc_stat(tc *t, const char *name) {
    cel_msg m;
    tc_msg(&m, CEL_OP_STATS);
    const cel_msg *r = tc_reply(t, tc_send(t, &m), 5000);
    if (!r || r->op != CEL_OP_STATS_INFO || !r->stats.obj) return -1;
    const msgpack_object *o = r->stats.obj;
    for (uint32_t i = 0; o->type == MSGPACK_OBJECT_MAP && i < o->via.map.size; i++) {
        const msgpack_object *k = &o->via.map.ptr[i].key, *v = &o->via.map.ptr[i].val;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == strlen(name) &&
            !memcmp(k->via.str.ptr, name, k->via.str.size) &&
            v->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
            return (long long)v->via.u64;
    }
    return -1;
}

bool tc_wait_ready(int port, int timeout_ms) {
    tc t;
    if (!tc_connect(&t, port, "producer")) return false;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long long deadline = now.tv_sec * 1000LL + now.tv_nsec / 1000000 + timeout_ms;
    bool ready;
    while (!(ready = tc_stat(&t, "enqueued") >= 0)) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec * 1000LL + now.tv_nsec / 1000000 > deadline) break;
        struct timespec pause = {0, 20 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    tc_close(&t);
    return ready;
}

bool tc_connect(tc *t, int port, const char *role) {
    memset(t, 0, sizeof *t);
    t->fd = tc_raw_connect(port);
    if (t->fd < 0) return false;
    int one = 1;
    setsockopt(t->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    cel_decoder_init(&t->dec, 64u << 20);
    msgpack_zone_init(&t->zone, 4096);
    if (!role) return true;
    cel_msg m;
    tc_msg(&m, CEL_OP_HELLO);
    m.role = cel_str_c(role), m.version = CEL_PROTO_VERSION, m.client = cel_str_c("test");
    cel_msg_set(&m, CEL_F_ROLE), cel_msg_set(&m, CEL_F_VERSION), cel_msg_set(&m, CEL_F_CLIENT);
    const cel_msg *r = tc_reply(t, tc_send(t, &m), 5000);
    return r && r->op == CEL_OP_WELCOME;
}

void tc_close(tc *t) {
    if (t->fd >= 0) close(t->fd);
    t->fd = -1;
    cel_decoder_free(&t->dec);
    msgpack_zone_destroy(&t->zone);
}

bool tc_send_raw(tc *t, const void *data, size_t len) {
    const char *p = data;
    while (len) {
        ssize_t n = send(t->fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        p += n, len -= (size_t)n;
    }
    return true;
}

void tc_msg(cel_msg *m, cel_op op) {
    memset(m, 0, sizeof *m);
    m->op = op;
}

uint64_t tc_send(tc *t, cel_msg *m) {
    if (m->op != CEL_OP_TASK && m->op != CEL_OP_ABORT) {
        m->seq = ++t->seq;
        cel_msg_set(m, CEL_F_SEQ);
    }
    cel_buf b;
    cel_buf_init(&b);
    cel_error err;
    if (cel_msg_encode(&b, m, UINT32_MAX, &err) == CEL_OK)
        tc_send_raw(t, b.data, b.len);
    else
        fprintf(stderr, "tc_send: %s\n", err.msg);
    cel_buf_free(&b);
    return m->seq;
}

const cel_msg *tc_recv(tc *t, int timeout_ms) {
    long long end = th_now_ms() + timeout_ms;
    for (;;) {
        const uint8_t *body;
        uint32_t len;
        if (cel_decoder_next(&t->dec, &body, &len, &t->err) != CEL_OK) return NULL;
        if (body) {
            msgpack_zone_clear(&t->zone);
            if (cel_msg_decode(body, len, &t->zone, 0, &t->last, &t->err) != CEL_OK) return NULL;
            return &t->last;
        }
        long long left = end - th_now_ms();
        struct pollfd p = {t->fd, POLLIN, 0};
        if (left <= 0 || poll(&p, 1, (int)left) <= 0) return NULL;
        char buf[65536];
        ssize_t n = recv(t->fd, buf, sizeof buf, 0);
        if (n <= 0) return NULL;
        cel_decoder_feed(&t->dec, buf, (size_t)n);
    }
}

const cel_msg *tc_reply(tc *t, uint64_t seq, int timeout_ms) {
    long long end = th_now_ms() + timeout_ms;
    for (;;) {
        long long left = end - th_now_ms();
        const cel_msg *m = left > 0 ? tc_recv(t, (int)left) : NULL;
        if (!m) return NULL;
        if (m->op != CEL_OP_TASK && m->op != CEL_OP_ABORT && m->seq == seq) return m;
    }
}

bool tc_wait_closed(tc *t, int timeout_ms) {
    long long end = th_now_ms() + timeout_ms;
    while (th_now_ms() < end) {
        struct pollfd p = {t->fd, POLLIN, 0};
        if (poll(&p, 1, 50) <= 0) continue;
        char buf[4096];
        ssize_t n = recv(t->fd, buf, sizeof buf, 0);
        if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) return true;
    }
    return false;
}

uint64_t tc_enqueue(tc *t, const char *queue, const char *task, const char *id) {
    cel_msg m;
    tc_msg(&m, CEL_OP_ENQUEUE);
    m.queue = cel_str_c(queue), m.task = cel_str_c(task);
    cel_msg_set(&m, CEL_F_QUEUE), cel_msg_set(&m, CEL_F_TASK);
    if (id) m.id = cel_str_c(id), cel_msg_set(&m, CEL_F_ID);
    return tc_send(t, &m);
}

const cel_msg *tc_enqueue_sync(tc *t, const char *queue, const char *task, const char *id) {
    return tc_reply(t, tc_enqueue(t, queue, task, id), 5000);
}

uint64_t tc_consume_send(tc *t, const cel_str *queues, uint32_t n, unsigned credits) {
    cel_msg m;
    tc_msg(&m, CEL_OP_CONSUME);
    m.queues.strs = queues, m.queues.n = n, m.credits = credits;
    cel_msg_set(&m, CEL_F_QUEUES), cel_msg_set(&m, CEL_F_CREDITS);
    return tc_send(t, &m);
}

const cel_msg *tc_consume(tc *t, const char *queue, unsigned credits) {
    cel_str q = cel_str_c(queue);
    return tc_reply(t, tc_consume_send(t, &q, 1, credits), 5000);
}

uint64_t tc_ack_send(tc *t, const cel_msg *task) {
    cel_msg m;
    tc_msg(&m, CEL_OP_ACK);
    char id[CEL_ID_MAX + 1];
    snprintf(id, sizeof id, "%s", tc_s(task->id));
    m.id = cel_str_c(id), m.token = task->token;
    cel_msg_set(&m, CEL_F_ID), cel_msg_set(&m, CEL_F_TOKEN);
    return tc_send(t, &m);
}

const cel_msg *tc_ack(tc *t, const cel_msg *task) {
    return tc_reply(t, tc_ack_send(t, task), 5000);
}

const cel_msg *tc_status(tc *t, const char *id) {
    cel_msg m;
    tc_msg(&m, CEL_OP_STATUS);
    m.id = cel_str_c(id);
    cel_msg_set(&m, CEL_F_ID);
    return tc_reply(t, tc_send(t, &m), 5000);
}

const cel_msg *tc_wait(tc *t, const char *id, unsigned timeout_ms) {
    cel_msg m;
    tc_msg(&m, CEL_OP_WAIT);
    m.id = cel_str_c(id), m.timeout_ms = timeout_ms;
    cel_msg_set(&m, CEL_F_ID), cel_msg_set(&m, CEL_F_TIMEOUT_MS);
    return tc_reply(t, tc_send(t, &m), (int)timeout_ms + 5000);
}

const char *tc_s(cel_str s) {
    static char bufs[8][512];
    static int slot;
    char *b = bufs[slot++ % 8];
    snprintf(b, sizeof bufs[0], "%.*s", (int)s.len, s.ptr ? s.ptr : "");
    return b;
}
