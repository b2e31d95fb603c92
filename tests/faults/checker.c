/* The fault-suite checker (see checker.h). */
#include "checker.h"

#include <CUnit/Basic.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

static const char *const terminal[] = {"succeeded", "failed", "dead", "cancelled", "expired"};

static bool is_terminal(const char *s) {
    for (size_t i = 0; i < sizeof terminal / sizeof *terminal; i++)
        if (!strcmp(s, terminal[i])) return true;
    return false;
}

void fc_init(fc_run *r, const char *name, int n, const char *log_path) {
    memset(r, 0, sizeof *r);
    snprintf(r->name, sizeof r->name, "%s", name);
    r->n = n;
    r->enq = calloc((size_t)n, 1);
    r->delivered = calloc((size_t)n, sizeof *r->delivered);
    r->acks_ok = calloc((size_t)n, sizeof *r->acks_ok);
    r->state = calloc((size_t)n, sizeof *r->state);
    if (log_path) {
        snprintf(r->log, sizeof r->log, "%s", log_path);
        FILE *f = fopen(log_path, "w");
        if (f) fclose(f);
        setenv("CELERIAC_FAULTS_LOG", log_path, 1);
    }
}

void fc_free(fc_run *r) {
    free(r->enq), free(r->delivered), free(r->acks_ok), free(r->state);
    r->enq = NULL, r->delivered = r->acks_ok = NULL, r->state = NULL;
}

const char *fc_id(const fc_run *r, int i) {
    static char bufs[8][64];
    static int slot;
    char *b = bufs[slot++ % 8];
    snprintf(b, sizeof bufs[0], "%s-%d", r->name, i);
    return b;
}

int fc_index(const fc_run *r, const char *id, size_t len) {
    size_t nl = strlen(r->name);
    if (len <= nl + 1 || memcmp(id, r->name, nl) != 0 || id[nl] != '-') return -1;
    long v = 0;
    for (size_t k = nl + 1; k < len; k++) {
        if (id[k] < '0' || id[k] > '9' || v > 100000000) return -1;
        v = v * 10 + (id[k] - '0');
    }
    return v < r->n ? (int)v : -1;
}

static void note_code(fc_run *r, const char *code) {
    char pad[40];
    snprintf(pad, sizeof pad, " %s ", code);
    char hay[260];
    snprintf(hay, sizeof hay, " %s ", r->codes);
    if (!strstr(hay, pad) && strlen(r->codes) + strlen(code) + 2 < sizeof r->codes)
        snprintf(r->codes + strlen(r->codes), sizeof r->codes - strlen(r->codes), "%s%s",
                 r->codes[0] ? " " : "", code);
}

/* faults.record's args: the sleep in ms as a msgpack uint. */
static size_t pack_ms(uint8_t *out, unsigned ms) {
    if (ms < 128) return out[0] = (uint8_t)ms, 1;
    out[0] = 0xce, out[1] = (uint8_t)(ms >> 24), out[2] = (uint8_t)(ms >> 16);
    out[3] = (uint8_t)(ms >> 8), out[4] = (uint8_t)ms;
    return 5;
}

static void outcome(fc_run *r, int i, const cel_msg *m) {
    if (!m) {
        if (r->enq[i] != FC_ACKED) r->enq[i] = FC_NO_REPLY;
    } else if (m->op == CEL_OP_OK) {
        /* Stored by an earlier attempt whose reply was lost or turned into an error. */
        if (m->existed && (r->enq[i] == FC_NO_REPLY || r->enq[i] == FC_REFUSED))
            r->recovered_on_retry++;
        r->enq[i] = FC_ACKED;
    } else {
        r->refusals++;
        if (r->enq[i] != FC_ACKED) r->enq[i] = FC_REFUSED;
        if (m->op == CEL_OP_ERROR && m->code.len)
            note_code(r, tc_s(m->code));
        else
            r->untyped++;
    }
}

/* retry: only tasks sent before without an OK. */
static int fc_enqueue_only(fc_run *r, tc *p, const char *queue, const char *task, unsigned ms,
                           int from, int to, int window, bool retry) {
    int *sent = malloc(sizeof *sent * (size_t)(to - from + 1));
    uint8_t *answered = calloc((size_t)(to - from + 1), 1);
    uint64_t first = p->seq + 1;
    int nsent = 0, outstanding = 0, got = 0, ok = 0;
    uint8_t args[8];
    size_t alen = pack_ms(args, ms);
    bool broken = p->fd < 0;
    for (int i = from; i < to || outstanding > 0;) {
        if (!broken && i < to && outstanding < window) {
            if (r->enq[i] == FC_ACKED || (retry && r->enq[i] == FC_UNSENT)) {
                i++;
                continue;
            }
            cel_msg m;
            tc_msg(&m, CEL_OP_ENQUEUE);
            m.queue = cel_str_c(queue), m.task = cel_str_c(task), m.id = cel_str_c(fc_id(r, i));
            m.args.bytes = args, m.args.len = (uint32_t)alen;
            cel_msg_set(&m, CEL_F_QUEUE), cel_msg_set(&m, CEL_F_TASK), cel_msg_set(&m, CEL_F_ID);
            cel_msg_set(&m, CEL_F_ARGS);
            tc_send(p, &m);
            sent[nsent++] = i++;
            outstanding++;
            continue;
        }
        if (broken) break;
        const cel_msg *m = tc_recv(p, 10000);
        if (!m) {
            broken = true;
            break;
        }
        if (m->op == CEL_OP_TASK || m->op == CEL_OP_ABORT) continue;
        long k = (long)(m->seq - first);
        if (m->seq < first || k >= nsent) continue;
        if (answered[k]) continue;
        answered[k] = 1;
        outcome(r, sent[k], m);
        ok += m->op == CEL_OP_OK;
        outstanding--, got++;
    }
    /* Whatever got no reply (a dead connection) is ambiguous: it may or may not be stored. */
    for (int k = 0; k < nsent; k++) {
        if (answered[k]) continue;
        r->no_replies++;
        if (r->enq[sent[k]] != FC_ACKED) r->enq[sent[k]] = FC_NO_REPLY;
    }
    (void)got;
    free(sent), free(answered);
    return broken ? -1 - ok : ok;
}

void fc_close(tc *p) {
    if (p->zone.chunk_list.head)
        tc_close(p);
    else if (p->fd >= 0)
        close(p->fd);
    memset(p, 0, sizeof *p);
    p->fd = -1;
}

bool fc_connect(tc *p, int port, const char *role) {
    if (tc_connect(p, port, role)) return true;
    fc_close(p);
    return false;
}

int fc_enqueue(fc_run *r, tc *p, const char *queue, const char *task, unsigned ms, int from, int to,
               int window) {
    return fc_enqueue_only(r, p, queue, task, ms, from, to, window, false);
}

int fc_enqueue_retry(fc_run *r, tc *p, int port, const char *queue, const char *task, unsigned ms,
                     int timeout_ms) {
    long long end = th_now_ms() + timeout_ms;
    for (;;) {
        int left = 0, lo = r->n, hi = 0;
        for (int i = 0; i < r->n; i++) {
            if (r->enq[i] != FC_NO_REPLY && r->enq[i] != FC_REFUSED) continue;
            left++, hi = i + 1;
            if (i < lo) lo = i;
        }
        if (!left || th_now_ms() > end) return left;
        if (p->fd < 0 && !fc_connect(p, port, "producer")) {
            th_sleep_ms(50);
            continue;
        }
        if (fc_enqueue_only(r, p, queue, task, ms, lo, hi, 256, true) < 0) fc_close(p);
        th_sleep_ms(20);
    }
}

void fc_ack(fc_run *r, const char *id, bool ok) {
    int i = fc_index(r, id, strlen(id));
    if (i >= 0 && ok) r->acks_ok[i]++;
}

/* Asks the broker for the state of every task in todo (pipelined); false if the connection
 * failed. */
static bool query_states(fc_run *r, tc *t, const int *todo, int n) {
    enum { BATCH = 500 };
    for (int b = 0; b < n; b += BATCH) {
        int m = n - b < BATCH ? n - b : BATCH;
        uint64_t first = t->seq + 1;
        for (int k = 0; k < m; k++) {
            cel_msg q;
            tc_msg(&q, CEL_OP_STATUS);
            q.id = cel_str_c(fc_id(r, todo[b + k]));
            cel_msg_set(&q, CEL_F_ID);
            tc_send(t, &q);
        }
        for (int got = 0; got < m;) {
            const cel_msg *rep = tc_recv(t, 10000);
            if (!rep) return false;
            if (rep->seq < first || rep->seq >= first + (uint64_t)m) continue;
            int i = todo[b + (int)(rep->seq - first)];
            if (rep->op == CEL_OP_TASK_INFO)
                snprintf(r->state[i], sizeof r->state[i], "%s", tc_s(rep->state));
            else if (rep->op == CEL_OP_ERROR && cel_str_eq(rep->code, "NOT_FOUND"))
                snprintf(r->state[i], sizeof r->state[i], "missing");
            got++;
        }
    }
    return true;
}

static int read_log(fc_run *r) {
    FILE *f = r->log[0] ? fopen(r->log, "r") : NULL;
    if (!f) return -1;
    char line[512], id[256];
    int lines = 0;
    unsigned attempt;
    while (fgets(line, sizeof line, f)) {
        lines++;
        bool parsed = sscanf(line, "%255s %u", id, &attempt) == 2;
        size_t nl = strlen(r->name);
        /* Another run sharing the log (its ids have another prefix) is not ours to judge. */
        if (parsed && (strncmp(id, r->name, nl) != 0 || id[nl] != '-')) continue;
        int i = parsed ? fc_index(r, id, strlen(id)) : -1;
        if (i < 0 || r->enq[i] == FC_UNSENT)
            r->c.unexpected++;
        else if (r->delivered[i] < UINT16_MAX)
            r->delivered[i]++;
    }
    fclose(f);
    return lines;
}

const fc_counts *fc_collect(fc_run *r, tc *t, int timeout_ms, long long acked_total) {
    long long start = th_now_ms(), end = start + timeout_ms;
    int *todo = malloc(sizeof *todo * (size_t)r->n);
    for (;;) {
        int n = 0;
        for (int i = 0; i < r->n; i++)
            if (r->enq[i] != FC_UNSENT && !is_terminal(r->state[i]) &&
                (r->enq[i] == FC_ACKED || strcmp(r->state[i], "missing") != 0))
                todo[n++] = i;
        if (!n || th_now_ms() > end) break;
        if (!query_states(r, t, todo, n)) break;
        int left = 0;
        for (int k = 0; k < n; k++) left += !is_terminal(r->state[todo[k]]);
        if (left) th_sleep_ms(50);
    }
    free(todo);
    memset(&r->c, 0, sizeof r->c);
    int lines = read_log(r);
    fc_counts *c = &r->c;
    c->tasks = r->n;
    c->untyped = r->untyped;
    for (int i = 0; i < r->n; i++) {
        bool exists = r->state[i][0] && strcmp(r->state[i], "missing") != 0;
        c->acked_enqueues += r->enq[i] == FC_ACKED;
        c->refused += r->enq[i] == FC_REFUSED;
        c->no_reply += r->enq[i] == FC_NO_REPLY;
        c->lost += r->enq[i] == FC_ACKED && !is_terminal(r->state[i]);
        c->recovered += (r->enq[i] == FC_REFUSED || r->enq[i] == FC_NO_REPLY) && exists;
        c->double_ack += r->acks_ok[i] > 1;
        c->redelivered += r->delivered[i] > 1 ? r->delivered[i] - 1 : 0;
        c->succeeded += !strcmp(r->state[i], "succeeded");
        c->dead += !strcmp(r->state[i], "dead");
        if (lines > 0 && !strcmp(r->state[i], "succeeded") && r->delivered[i] == 0) c->unexpected++;
    }
    if (acked_total >= 0 && acked_total > c->succeeded)
        c->double_ack += (int)(acked_total - c->succeeded);
    printf("\n    checker %s: tasks=%d acked_enqueues=%d refusals=%d [%s] unanswered=%d "
           "(still unacked: refused=%d no_reply=%d) lost=%d "
           "double_ack=%d redelivered=%d unexpected=%d recovered=%d (on retry %d) untyped=%d "
           "succeeded=%d "
           "dead=%d (checked in %lld ms)\n",
           r->name, c->tasks, c->acked_enqueues, r->refusals, r->codes, r->no_replies, c->refused,
           c->no_reply, c->lost, c->double_ack, c->redelivered, c->unexpected, c->recovered,
           r->recovered_on_retry, c->untyped, c->succeeded, c->dead, th_now_ms() - start);
    if (c->lost)
        for (int i = 0, shown = 0; i < r->n && shown < 10; i++)
            if (r->enq[i] == FC_ACKED && !is_terminal(r->state[i]))
                printf("    lost: %s state=%s deliveries=%u\n", fc_id(r, i),
                       r->state[i][0] ? r->state[i] : "?", r->delivered[i]),
                    shown++;
    return c;
}

void fc_assert(const fc_run *r, int max_redelivered) {
    CU_ASSERT_EQUAL(r->c.lost, 0);
    CU_ASSERT_EQUAL(r->c.double_ack, 0);
    CU_ASSERT(r->c.redelivered <= max_redelivered);
    CU_ASSERT_EQUAL(r->c.untyped, 0);
    CU_ASSERT_EQUAL(r->c.unexpected, 0);
    if (r->c.redelivered > max_redelivered)
        printf("    %s: %d redelivered, bound %d\n", r->name, r->c.redelivered, max_redelivered);
}

long fc_rss_kb(int pid) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) kb = strtol(line + 6, NULL, 10);
    if (f) fclose(f);
    return kb;
}

int fc_fds(int pid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", pid);
    DIR *d = opendir(path);
    if (!d) return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

long long fc_stat(tc *t, const char *name) {
    return tc_stat(t, name);
}
