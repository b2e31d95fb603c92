/* cel_buf: the one growable byte buffer used by every part of celeriac. */
#include "celeriac/proto.h"

#include <stdlib.h>
#include <string.h>

void cel_buf_init(cel_buf *b) {
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void cel_buf_free(cel_buf *b) {
    free(b->data);
    cel_buf_init(b);
}

void cel_buf_reset(cel_buf *b) {
    b->len = 0;
}

bool cel_buf_reserve(cel_buf *b, size_t extra) {
    if (extra > SIZE_MAX - b->len) return false;
    size_t need = b->len + extra;
    if (need <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    uint8_t *p = realloc(b->data, cap);
    if (!p) return false;
    b->data = p;
    b->cap = cap;
    return true;
}

bool cel_buf_append(cel_buf *b, const void *data, size_t len) {
    if (len == 0) return true;
    if (!cel_buf_reserve(b, len)) return false;
    memcpy(b->data + b->len, data, len);
    b->len += len;
    return true;
}

void cel_buf_consume(cel_buf *b, size_t n) {
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

int cel_buf_msgpack_write(void *data, const char *buf, size_t len) {
    return cel_buf_append(data, buf, len) ? 0 : -1;
}
