/* A non-allocating walk over one msgpack object, run before msgpack-c unpacks it. msgpack-c
 * reserves count × 16 bytes as soon as it reads an array or map header, so a 5-byte header in a
 * small frame could ask for gigabytes; here every declared count and length is held against the
 * bytes that remain before any of that happens. */
#include "celeriac/proto.h"

typedef struct mp_cursor {
    const uint8_t *p;
    size_t left;
} mp_cursor;

static uint64_t be(const uint8_t *p, unsigned n) {
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++) v = v << 8 | p[i];
    return v;
}

/* Classifies the object at the cursor. On return *hdr is its header size, *payload the bytes
 * that follow the header directly (str/bin/ext/number bodies) and *children the number of
 * nested objects (array items, or 2 × map pairs). */
static cel_err mp_head(const mp_cursor *c, size_t *hdr, uint64_t *payload, uint64_t *children,
                       cel_error *err) {
    uint8_t b = c->p[0];
    *hdr = 1, *payload = 0, *children = 0;
    if (b <= 0x7f || b >= 0xe0 || (b >= 0xc2 && b <= 0xc3) || b == 0xc0) return CEL_OK;
    if (b >= 0x80 && b <= 0x8f) return *children = 2u * (b & 0x0f), CEL_OK;
    if (b >= 0x90 && b <= 0x9f) return *children = b & 0x0f, CEL_OK;
    if (b >= 0xa0 && b <= 0xbf) return *payload = b & 0x1f, CEL_OK;
    static const uint8_t fixed[] = {[0xca - 0xc4] = 4, [0xcb - 0xc4] = 8, [0xcc - 0xc4] = 1,
                                    [0xcd - 0xc4] = 2, [0xce - 0xc4] = 4, [0xcf - 0xc4] = 8,
                                    [0xd0 - 0xc4] = 1, [0xd1 - 0xc4] = 2, [0xd2 - 0xc4] = 4,
                                    [0xd3 - 0xc4] = 8, [0xd4 - 0xc4] = 2, [0xd5 - 0xc4] = 3,
                                    [0xd6 - 0xc4] = 5, [0xd7 - 0xc4] = 9, [0xd8 - 0xc4] = 17};
    if (b >= 0xca && b <= 0xd8) return *payload = fixed[b - 0xc4], CEL_OK;
    unsigned lenbytes;
    switch (b) {
    case 0xc4:
    case 0xd9:
        lenbytes = 1;
        break; /* bin8, str8 */
    case 0xc5:
    case 0xda:
        lenbytes = 2;
        break; /* bin16, str16 */
    case 0xc6:
    case 0xdb:
        lenbytes = 4;
        break; /* bin32, str32 */
    case 0xc7:
        lenbytes = 1;
        break; /* ext8 */
    case 0xc8:
        lenbytes = 2;
        break; /* ext16 */
    case 0xc9:
        lenbytes = 4;
        break; /* ext32 */
    case 0xdc:
    case 0xde:
        lenbytes = 2;
        break; /* array16, map16 */
    case 0xdd:
    case 0xdf:
        lenbytes = 4;
        break; /* array32, map32 */
    default:
        return cel_fail(err, CEL_E_PROTOCOL, "reserved msgpack byte 0x%02x", b);
    }
    if (c->left < 1 + lenbytes) return cel_fail(err, CEL_E_PROTOCOL, "truncated msgpack header");
    uint64_t n = be(c->p + 1, lenbytes);
    *hdr = 1 + lenbytes;
    if (b >= 0xc7 && b <= 0xc9) {
        *hdr += 1; /* ext type byte */
        *payload = n;
    } else if (b == 0xdc || b == 0xdd) {
        *children = n;
    } else if (b == 0xde || b == 0xdf) {
        *children = 2 * n;
    } else {
        *payload = n;
    }
    return CEL_OK;
}

/* More declared than remains: a size beyond the whole message is a lie about size (TOO_BIG);
 * one within it means the message was cut short (PROTOCOL). */
static cel_err declared_too_much(uint64_t n, size_t total, size_t left, const char *what,
                                 cel_error *err) {
    if (n > total)
        return cel_fail(err, CEL_E_TOO_BIG,
                        "declared %s %llu exceeds the whole message (%zu bytes)", what,
                        (unsigned long long)n, total);
    return cel_fail(err, CEL_E_PROTOCOL, "truncated msgpack: %s %llu, %zu bytes left", what,
                    (unsigned long long)n, left);
}

cel_err cel_mp_check(const uint8_t *data, size_t len, unsigned max_depth, cel_error *err) {
    if (max_depth == 0 || max_depth > CEL_HARD_MAX_DEPTH) max_depth = CEL_HARD_MAX_DEPTH;
    /* pending[d] = objects still to read at depth d; depth 0 holds the single root. */
    uint64_t pending[CEL_HARD_MAX_DEPTH + 2];
    unsigned depth = 0;
    pending[0] = 1;
    mp_cursor c = {data, len};
    for (;;) {
        while (depth > 0 && pending[depth] == 0) depth--;
        if (pending[depth] == 0) break;
        pending[depth]--;
        if (c.left == 0) return cel_fail(err, CEL_E_PROTOCOL, "truncated msgpack");
        size_t hdr;
        uint64_t payload, children;
        cel_err rc = mp_head(&c, &hdr, &payload, &children, err);
        if (rc) return rc;
        if (hdr > c.left) return cel_fail(err, CEL_E_PROTOCOL, "truncated msgpack header");
        c.p += hdr, c.left -= hdr;
        if (payload > c.left) return declared_too_much(payload, len, c.left, "length", err);
        c.p += payload, c.left -= (size_t)payload;
        if (children == 0) continue;
        /* Each child takes at least one byte, so a count above the bytes left is a lie. */
        if (children > c.left) return declared_too_much(children, len, c.left, "items", err);
        if (depth + 1 > max_depth)
            return cel_fail(err, CEL_E_TOO_DEEP, "nesting deeper than %u", max_depth);
        pending[++depth] = children;
    }
    if (c.left)
        return cel_fail(err, CEL_E_PROTOCOL, "%zu trailing bytes after the message", c.left);
    return CEL_OK;
}
