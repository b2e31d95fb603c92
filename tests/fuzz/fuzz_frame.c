/* Fuzz target: the frame decoder fed one input whole, byte by byte and in splits derived from
 * the input must yield the same frames and errors; every frame that decodes re-encodes to one
 * that decodes again. */
#include <celeriac/proto.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FRAMES 64

typedef struct outcome {
    int n;
    int dead; /* a fatal error was seen: the stream is over */
    uint32_t len[MAX_FRAMES];
    int err[MAX_FRAMES];
} outcome;

static void drain(cel_decoder *d, outcome *o) {
    while (!o->dead) {
        const uint8_t *body;
        uint32_t len;
        cel_error err;
        cel_err rc = cel_decoder_next(d, &body, &len, &err);
        if (rc == CEL_OK && !body) return;
        if (o->n == MAX_FRAMES) return;
        o->len[o->n] = rc == CEL_OK ? len : 0;
        o->err[o->n++] = rc;
        if (rc == CEL_E_PROTOCOL) o->dead = 1; /* fatal: nothing more comes out */
        if (rc != CEL_OK) continue;
        msgpack_zone zone;
        msgpack_zone_init(&zone, 1024);
        cel_msg m;
        if (cel_msg_decode(body, len, &zone, 0, &m, &err) == CEL_OK) {
            cel_buf again;
            cel_buf_init(&again);
            if (cel_msg_encode(&again, &m, UINT32_MAX, &err) == CEL_OK) {
                msgpack_zone z2;
                msgpack_zone_init(&z2, 1024);
                cel_msg m2;
                if (cel_msg_decode(again.data + CEL_FRAME_HEADER, again.len - CEL_FRAME_HEADER, &z2,
                                   0, &m2, &err) != CEL_OK ||
                    m2.op != m.op || m2.present != m.present)
                    abort();
                msgpack_zone_destroy(&z2);
            }
            cel_buf_free(&again);
        }
        msgpack_zone_destroy(&zone);
    }
}

static void run(const uint8_t *data, size_t size, size_t step, outcome *o) {
    cel_decoder d;
    cel_decoder_init(&d, 4096);
    memset(o, 0, sizeof *o);
    for (size_t pos = 0; pos < size; pos += step) {
        size_t k = size - pos < step ? size - pos : step;
        cel_decoder_feed(&d, data + pos, k);
        drain(&d, o);
    }
    cel_decoder_free(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    outcome whole, bytes, split;
    run(data, size, size ? size : 1, &whole);
    run(data, size, 1, &bytes);
    run(data, size, size ? 1 + data[0] % 13 : 1, &split);
    if (memcmp(&whole, &bytes, sizeof whole) != 0) abort();
    if (memcmp(&whole, &split, sizeof whole) != 0) abort();
    return 0;
}
