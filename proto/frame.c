/* Framing of the binary protocol: a 6-byte header (magic, version, body length) before each
 * msgpack body, and the incremental decoder that cuts a byte stream into whole frames. */
#include "celeriac/proto.h"

cel_sniff_kind cel_sniff(uint8_t c) {
    if (c == CEL_FRAME_MAGIC) return CEL_SNIFF_BINARY;
    if (c == 0xFF) return CEL_SNIFF_TEXT; /* telnet IAC: a telnet client negotiating options */
    if (c == '\r' || c == '\n' || c == '\t' || (c >= 0x20 && c < 0x7F)) return CEL_SNIFF_TEXT;
    return CEL_SNIFF_REJECT;
}

cel_err cel_frame_header_parse(const uint8_t hdr[CEL_FRAME_HEADER], uint32_t max_frame,
                               uint32_t *body_len, cel_error *err) {
    *body_len = 0;
    if (hdr[0] != CEL_FRAME_MAGIC)
        return cel_fail(err, CEL_E_PROTOCOL, "bad frame magic 0x%02x", hdr[0]);
    if (hdr[1] != CEL_PROTO_VERSION)
        return cel_fail(err, CEL_E_PROTOCOL, "unsupported protocol version %u", hdr[1]);
    uint32_t n = (uint32_t)hdr[2] << 24 | (uint32_t)hdr[3] << 16 | (uint32_t)hdr[4] << 8 | hdr[5];
    *body_len = n;
    if (n == 0) return cel_fail(err, CEL_E_PROTOCOL, "empty frame");
    if (n > max_frame)
        return cel_fail(err, CEL_E_TOO_BIG, "frame of %u bytes exceeds the limit of %u", n,
                        max_frame);
    return CEL_OK;
}

void cel_frame_header_write(uint8_t hdr[CEL_FRAME_HEADER], uint32_t n) {
    hdr[0] = CEL_FRAME_MAGIC;
    hdr[1] = CEL_PROTO_VERSION;
    hdr[2] = (uint8_t)(n >> 24);
    hdr[3] = (uint8_t)(n >> 16);
    hdr[4] = (uint8_t)(n >> 8);
    hdr[5] = (uint8_t)n;
}

void cel_decoder_init(cel_decoder *d, uint32_t max_frame) {
    cel_buf_init(&d->in);
    d->max_frame = max_frame ? max_frame : CEL_DEFAULT_MAX_FRAME;
    d->skip = 0;
    d->consumed = 0;
    d->broken = false;
}

void cel_decoder_free(cel_decoder *d) {
    cel_buf_free(&d->in);
}

/* Drops bytes handed out by the previous call and bytes of an oversize body being skipped. */
static void decoder_compact(cel_decoder *d) {
    cel_buf_consume(&d->in, d->consumed);
    d->consumed = 0;
    if (d->skip) {
        size_t n = d->in.len < d->skip ? d->in.len : (size_t)d->skip;
        cel_buf_consume(&d->in, n);
        d->skip -= n;
    }
}

bool cel_decoder_feed(cel_decoder *d, const void *data, size_t len) {
    if (d->broken) return true;
    decoder_compact(d);
    if (d->skip && d->in.len == 0) {
        /* Still inside an oversize body: discard straight from the caller's bytes. */
        size_t n = len < d->skip ? len : (size_t)d->skip;
        d->skip -= n;
        data = (const uint8_t *)data + n;
        len -= n;
    }
    return cel_buf_append(&d->in, data, len);
}

cel_err cel_decoder_next(cel_decoder *d, const uint8_t **body, uint32_t *len, cel_error *err) {
    *body = NULL;
    *len = 0;
    if (d->broken) return cel_fail(err, CEL_E_PROTOCOL, "stream unusable after a bad header");
    decoder_compact(d);
    if (d->skip || d->in.len < CEL_FRAME_HEADER) return CEL_OK;
    uint32_t n;
    cel_err rc = cel_frame_header_parse(d->in.data, d->max_frame, &n, err);
    if (rc == CEL_E_TOO_BIG) {
        cel_buf_consume(&d->in, CEL_FRAME_HEADER);
        d->skip = n;
        decoder_compact(d);
        return rc;
    }
    if (rc != CEL_OK) {
        d->broken = true;
        return rc;
    }
    if (d->in.len - CEL_FRAME_HEADER < n) return CEL_OK;
    *body = d->in.data + CEL_FRAME_HEADER;
    *len = n;
    d->consumed = CEL_FRAME_HEADER + (size_t)n;
    return CEL_OK;
}

size_t cel_decoder_pending(const cel_decoder *d) {
    return d->in.len - d->consumed;
}
