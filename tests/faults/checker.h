/* The fault-suite checker, after Jepsen's queue checkers: it tracks every task of a run from
 * the producer's side (was its enqueue acknowledged, refused with a typed error, or left
 * without a reply?), reads the deliveries that faults.record appended to the run's log, asks
 * the broker for every task's final state, and reports
 *   lost         enqueue answered OK, but the task never reached a terminal state;
 *   double_ack   more than one successful ACK for a task (seen by a test-driven worker, or the
 *                broker's "acked" counter beyond the tasks that succeeded);
 *   redelivered  deliveries beyond the first (the at-least-once duplicates);
 *   unexpected   a delivery of an id this run never sent, or a succeeded task never delivered;
 *   recovered    an enqueue that got no OK (error or no reply) whose task exists anyway (or
 *                whose retry was answered existed=true);
 *   untyped      a request refused without a typed error code.
 * Ids are "<run>-<n>", n in [0, count); runs may share one log (lines of other runs are
 * skipped), so run names must not be prefixes of one another followed by '-'. */
#ifndef CELERIAC_TEST_CHECKER_H
#define CELERIAC_TEST_CHECKER_H

#include <stdbool.h>
#include <stdint.h>

#include "tclient.h"

enum { FC_UNSENT, FC_NO_REPLY, FC_REFUSED, FC_ACKED };

typedef struct fc_counts {
    int tasks, acked_enqueues, refused, no_reply, lost, double_ack, redelivered, unexpected,
        recovered, untyped, succeeded, dead;
} fc_counts;

typedef struct fc_run {
    char name[48];
    int n;
    uint8_t *enq;        /* FC_* per task */
    uint16_t *delivered; /* lines in the delivery log */
    uint16_t *acks_ok;   /* successful acks reported with fc_ack */
    char (*state)[16];   /* final state from the broker ("" unknown, "missing" NOT_FOUND) */
    char codes[256];     /* error codes seen on refused enqueues, space separated, each once */
    int untyped;
    int refusals, no_replies; /* events over all attempts, retries included */
    int recovered_on_retry;   /* a retry answered existed=true: an earlier attempt had stored it */
    char log[512];
    fc_counts c;
} fc_run;

/* A run of n tasks whose deliveries go to log_path (truncated; CELERIAC_FAULTS_LOG is set to
 * it, so workers started afterwards inherit it). */
void fc_init(fc_run *r, const char *name, int n, const char *log_path);
void fc_free(fc_run *r);
/* The id of task i (one of 8 rotating buffers), and back; -1 if not this run's. */
const char *fc_id(const fc_run *r, int i);
int fc_index(const fc_run *r, const char *id, size_t len);

/* Enqueues tasks [from, to) of `task` with args ms (faults.record sleeps that long; 0 none) on
 * queue, pipelined `window` at a time; tasks already acknowledged are skipped, so calling it
 * again is the client's retry with the same ids. Records each outcome; returns how many got OK
 * now. A connection lost mid-way leaves the rest FC_NO_REPLY. */
int fc_enqueue(fc_run *r, tc *p, const char *queue, const char *task, unsigned ms, int from, int to,
               int window);
/* Retries every task sent but not yet acknowledged until all are, or timeout_ms passes; reconnects
 * the producer (to port) when its connection drops. Returns the tasks still unacknowledged. */
int fc_enqueue_retry(fc_run *r, tc *p, int port, const char *queue, const char *task, unsigned ms,
                     int timeout_ms);
/* tc_connect that leaves p closed (fd -1) on failure, and a tc_close safe to repeat. */
bool fc_connect(tc *p, int port, const char *role);
void fc_close(tc *p);
/* A test-driven worker's ack outcome for id. */
void fc_ack(fc_run *r, const char *id, bool ok);

/* Waits (up to timeout_ms) until every task the broker has is terminal, then reads final states
 * and the delivery log. acked_total: the broker's "acked" counter for this run's tasks, or -1
 * when unknown (e.g. a broker restarted). Fills and returns r->c, and prints one line. */
const fc_counts *fc_collect(fc_run *r, tc *t, int timeout_ms, long long acked_total);
/* Asserts I1 (0 lost), I2 (0 double ack), I3 (redelivered <= max_redelivered), I4 (0 untyped)
 * and 0 unexpected. */
void fc_assert(const fc_run *r, int max_redelivered);

/* /proc readings of a process: resident set in KiB, open descriptors. */
long fc_rss_kb(int pid);
int fc_fds(int pid);
/* A counter from the broker's stats reply, -1 if missing. */
long long fc_stat(tc *t, const char *name);

#endif
