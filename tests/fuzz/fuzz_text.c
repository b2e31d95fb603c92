/* Fuzz target: the text protocol (server/text.c) as the broker runs it, minus the socket and
 * Redis. The input is what a telnet client typed; it goes into a connection's input buffer in
 * up to three pieces (split where its first two bytes say), and text_input parses every line,
 * builds requests, checks them through the binary codec and renders replies. The connection
 * functions text.c calls are stubbed below the way conn.c and ops.c behave for a text client:
 * an error is one ERR line, and every request that reaches ops_handle is answered with a reply
 * echoing its fields, rendered through text_render. */
#include <event2/buffer.h>
#include <event2/event.h>
#include <string.h>

#include "broker.h"

void conn_send_error(cel_client *c, uint64_t seq, cel_err code, const char *msg) {
    (void)seq;
    evbuffer_add_printf(c->out, "ERR %s %s\r\n", cel_err_name(code), msg);
    if (c->state == CS_TEXT) text_reply_done(c);
}

void conn_close_after_write(cel_client *c) {
    c->closing = true;
}

void conn_input_drained(cel_client *c) {
    (void)c;
}

void ops_flush(cel_client *c) {
    (void)c;
}

/* A request that passed the codec's checks must be one a binary client could have sent. */
void ops_handle(cel_client *c, const cel_msg *m) {
    if (m->op == CEL_OP_NONE || !cel_msg_has(m, CEL_F_SEQ)) __builtin_trap();
    cel_msg r;
    memset(&r, 0, sizeof r);
    r.seq = m->seq;
    cel_msg_set(&r, CEL_F_SEQ);
    if (m->op == CEL_OP_STATUS || m->op == CEL_OP_WAIT) {
        r.op = CEL_OP_TASK_INFO;
        r.id = m->id, r.state = cel_str_c("queued");
        cel_msg_set(&r, CEL_F_ID), cel_msg_set(&r, CEL_F_STATE);
    } else if (m->op == CEL_OP_STATS) {
        r.op = CEL_OP_STATS_INFO;
        static const uint8_t stats[] = {0x81, 0xa6, 'q', 'u', 'e', 'u', 'e', 's', 0x80};
        r.stats.bytes = stats, r.stats.len = sizeof stats;
        cel_msg_set(&r, CEL_F_STATS);
    } else {
        r.op = CEL_OP_OK;
        if (cel_msg_has(m, CEL_F_ID)) r.id = m->id, cel_msg_set(&r, CEL_F_ID);
        if (cel_msg_has(m, CEL_F_ARGS)) {
            r.result = m->args;
            cel_msg_set(&r, CEL_F_RESULT);
        }
    }
    text_render(c, &r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static struct event_base *base;
    static cel_config cfg;
    static cel_server srv;
    if (!base) {
        base = event_base_new();
        cfg.max_frame = 1 << 20;
        srv.base = base, srv.cfg = &cfg;
        TAILQ_INIT(&srv.clients);
        TAILQ_INIT(&srv.monitors);
    }
    cel_client c;
    memset(&c, 0, sizeof c);
    c.srv = &srv, c.state = CS_TEXT, c.loopback = true;
    c.in = evbuffer_new();
    c.out = evbuffer_new();
    TAILQ_INSERT_TAIL(&srv.clients, &c, link);
    size_t cut1 = size > 2 ? data[0] % (size + 1) : size,
           cut2 = size > 2 ? data[1] % (size + 1) : size;
    if (cut2 < cut1) {
        size_t t = cut1;
        cut1 = cut2, cut2 = t;
    }
    const size_t cuts[] = {0, cut1, cut2, size};
    for (int i = 0; i < 3 && !c.closing; i++) {
        evbuffer_add(c.in, data + cuts[i], cuts[i + 1] - cuts[i]);
        text_input(&c);
    }
    c.text_eof = true;
    if (!c.closing) text_input(&c);
    text_monitor_stop(&c); /* as conn_close does */
    TAILQ_REMOVE(&srv.clients, &c, link);
    evbuffer_free(c.in);
    evbuffer_free(c.out);
    return 0;
}
