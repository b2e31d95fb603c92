/* The line protocol on the broker's port, for people with telnet or nc and for scripts:
 * "COMMAND args\r\n" in, "OK ..." or "ERR CODE message" out. Lines are capped (the rest of an
 * over-long line is discarded up to its newline) and telnet IAC sequences are skipped. */
#include <event2/buffer.h>
#include <string.h>
#include <strings.h>

#include "broker.h"

#define TEXT_LINE_MAX 4096

static void text_reply(cel_client *c, const char *line) {
    evbuffer_add_printf(bufferevent_get_output(c->bev), "%s\r\n", line);
}

static void text_command(cel_client *c, char *line) {
    char *cmd = strtok(line, " \t");
    if (!cmd) return;
    if (!strcasecmp(cmd, "PING")) return text_reply(c, "OK PONG");
    if (!strcasecmp(cmd, "QUIT")) {
        text_reply(c, "OK bye");
        return conn_close_after_write(c);
    }
    if (!strcasecmp(cmd, "HELP"))
        return text_reply(c, "OK commands: HELP, PING, QUIT\r\n"
                             "HELP    this list\r\nPING    liveness check\r\n"
                             "QUIT    close the connection\r\n.");
    conn_send_error(c, 0, CEL_E_UNKNOWN_OP, "unknown command (try HELP)");
}

/* Removes telnet IAC negotiation (IAC cmd opt, or IAC IAC for a literal 0xFF). */
static size_t strip_iac(char *s, size_t n) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] != 0xFF) {
            s[o++] = s[i];
            continue;
        }
        unsigned char cmd = i + 1 < n ? (unsigned char)s[i + 1] : 0;
        i += cmd >= 251 && cmd <= 254 ? 2 : 1;
    }
    return o;
}

void text_input(cel_client *c) {
    struct evbuffer *in = bufferevent_get_input(c->bev);
    while (!c->closing && c->state == CS_TEXT) {
        struct evbuffer_ptr eol = evbuffer_search(in, "\n", 1, NULL);
        size_t avail = evbuffer_get_length(in);
        if (eol.pos < 0) {
            if (avail > TEXT_LINE_MAX) {
                evbuffer_drain(in, avail);
                c->text_discard = true;
            }
            return;
        }
        size_t n = (size_t)eol.pos;
        if (c->text_discard || n > TEXT_LINE_MAX) {
            evbuffer_drain(in, n + 1);
            c->text_discard = false;
            conn_send_error(c, 0, CEL_E_TOO_BIG, "line longer than 4096 bytes");
            continue;
        }
        char line[TEXT_LINE_MAX + 1];
        evbuffer_remove(in, line, n + 1);
        n = strip_iac(line, n);
        if (n && line[n - 1] == '\r') n--;
        line[n] = 0;
        if (memchr(line, 0, n)) {
            conn_send_error(c, 0, CEL_E_PROTOCOL, "NUL byte in line");
            continue;
        }
        text_command(c, line);
    }
}
