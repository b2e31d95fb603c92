/* Which brokers a producer talks to: the caller's list, else $CELERIAC_BROKER, else the default
 * 127.0.0.1:7878; every address checked before any connection is tried. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static bool add_addr(cel_brokers *b, const char *s, size_t len, char *why, size_t cap) {
    char addr[300], host[256];
    int port;
    if (len == 0 || len >= sizeof addr) {
        snprintf(why, cap, "empty or overlong broker address in the list");
        return false;
    }
    memcpy(addr, s, len);
    addr[len] = 0;
    if (!cel_conn_parse_addr(addr, host, sizeof host, &port)) {
        snprintf(why, cap, "bad broker address '%s' (want HOST:PORT)", addr);
        return false;
    }
    if (b->n == CEL_MAX_BROKERS) {
        snprintf(why, cap, "more than %d broker addresses", CEL_MAX_BROKERS);
        return false;
    }
    if (!(b->addrs[b->n] = strdup(addr))) {
        snprintf(why, cap, "out of memory");
        return false;
    }
    b->n++;
    return true;
}

bool cel_brokers_parse(const char *list, cel_brokers *out, char *why, size_t cap) {
    const char *src = list && *list ? list : getenv("CELERIAC_BROKER");
    if (!src || !*src) src = "127.0.0.1:7878";
    out->n = 0;
    out->addrs = calloc(CEL_MAX_BROKERS, sizeof *out->addrs);
    if (!out->addrs) {
        snprintf(why, cap, "out of memory");
        return false;
    }
    for (const char *p = src;; p++) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (!add_addr(out, p, len, why, cap)) {
            cel_brokers_free(out);
            return false;
        }
        if (!comma) return true;
        p = comma;
    }
}

void cel_brokers_free(cel_brokers *b) {
    for (size_t i = 0; b->addrs && i < b->n; i++) free(b->addrs[i]);
    free(b->addrs);
    b->addrs = NULL, b->n = 0;
}

cel_conn_opts cel_brokers_conn_opts(const cel_brokers *b, const char *client_name) {
    cel_conn_opts o;
    memset(&o, 0, sizeof o);
    o.brokers = (const char *const *)b->addrs;
    o.nbrokers = b->n;
    o.role = "producer";
    o.client_name = client_name;
    return o;
}
