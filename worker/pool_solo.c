/* The solo pool: tasks run one at a time in the worker's own event loop, with no child process
 * or thread to hand them to. It saves the two context switches and the socketpair round trip a
 * prefork or thread slot costs per task, which is most of a short task's cost. The price: no
 * isolation (a crash ends the worker, whose leases the broker then hands out again), no hard
 * time limit (nothing can stop the handler; soft limits still work through
 * celeriac_task_should_stop), and while a handler runs the loop is blocked, so heartbeats,
 * lease touches and aborts wait for it: a task longer than its lease may be delivered again. */
#include <event2/event.h>
#include <string.h>

#include "clock.h"
#include "pool.h"

/* Tasks run back to back within one loop turn while they keep coming, up to this many or this
 * long, so their outcomes leave in one write; then the loop gets its turn. */
#define SOLO_TURN_TASKS 64
#define SOLO_TURN_MS 5

/* Ends the slot's task as failed without running it (retry false). */
static void solo_fail(cel_slot *s, const char *error, const char *reason) {
    cel_msg o;
    memset(&o, 0, sizeof o);
    o.op = CEL_OP_FAIL, o.id = cel_str_c(s->id), o.token = s->token;
    o.error = cel_str_c(error), o.reason = cel_str_c(reason);
    cel_msg_set(&o, CEL_F_ID), cel_msg_set(&o, CEL_F_TOKEN), cel_msg_set(&o, CEL_F_ERROR);
    cel_msg_set(&o, CEL_F_RETRY), cel_msg_set(&o, CEL_F_REASON);
    pool_report(s, &o);
}

static void solo_run_one(cel_pool *p, cel_slot *s) {
    if (s->end == SLOT_END_CANCEL) return solo_fail(s, "cancelled before it started", "cancelled");
    cel_msg o;
    if (runner_run(p->runner, p->solo_frame.data, p->solo_frame.len, &o)) return pool_report(s, &o);
    /* The daemon hands the pool only task frames; anything else still ends the slot's task. */
    solo_fail(s, "task frame could not be decoded", "error");
}

static void solo_event(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    cel_pool *p = arg;
    cel_slot *s = &p->slots[0];
    long long until = cel_now_ms() + SOLO_TURN_MS;
    /* Reporting an outcome may hand the slot its next task (solo_run activates this event
     * again); run it now unless the turn's budget is spent. */
    for (int i = 0; s->busy && i < SOLO_TURN_TASKS && cel_now_ms() < until; i++) solo_run_one(p, s);
}

bool solo_init(cel_pool *p) {
    p->runner = runner_new(p->reg);
    p->solo_ev = event_new(p->base, -1, 0, solo_event, p);
    cel_buf_init(&p->solo_frame);
    return p->runner && p->solo_ev;
}

void solo_fini(cel_pool *p) {
    if (p->solo_ev) event_free(p->solo_ev);
    runner_free(p->runner);
    cel_buf_free(&p->solo_frame);
}

bool solo_run(cel_slot *s, const uint8_t *frame, size_t len) {
    cel_pool *p = s->pool;
    cel_buf_reset(&p->solo_frame);
    if (!cel_buf_append(&p->solo_frame, frame, len)) return false;
    event_active(p->solo_ev, 0, 0);
    return true;
}
