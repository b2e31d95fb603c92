/* The wire format: round trips of every op, decoding under every split of a stream, and every
 * malformed, oversized and truncated input yielding its typed error. */
#include <celeriac/proto.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static msgpack_zone zone;

/* A message of op with every field it allows set to a recognisable value. */
static void fill(cel_msg *m, cel_op op, bool optional);

static cel_str S(const char *s) {
    return cel_str_c(s);
}

static const cel_str names2[] = {{"alpha", 5}, {"beta.q", 6}};
static cel_msg bulk_entries[2];
static msgpack_object args_obj;
static const uint8_t raw_result[] = {0x92, 0x01, 0xa1, 'x'}; /* [1, "x"] */

static void set_field(cel_msg *m, cel_field f) {
    switch (f) {
    case CEL_F_SEQ:
        m->seq = 42;
        break;
    case CEL_F_ROLE:
        m->role = S("worker");
        break;
    case CEL_F_CLIENT:
        m->client = S("tester \xc3\xa9");
        break;
    case CEL_F_VERSION:
        m->version = 1;
        break;
    case CEL_F_SERVER:
        m->server = S("celeriacd");
        break;
    case CEL_F_MAX_FRAME:
        m->max_frame = 1 << 20;
        break;
    case CEL_F_ID:
        m->id = S("task-1");
        break;
    case CEL_F_QUEUE:
        m->queue = S("default");
        break;
    case CEL_F_TASK:
        m->task = S("celeriac.echo");
        break;
    case CEL_F_ARGS:
        m->args.obj = &args_obj;
        break;
    case CEL_F_PRIORITY:
        m->priority = 200;
        break;
    case CEL_F_DELAY_MS:
        m->delay_ms = 1500;
        break;
    case CEL_F_ETA_MS:
        m->eta_ms = 1795000000000;
        break;
    case CEL_F_MAX_RETRIES:
        m->max_retries = 3;
        break;
    case CEL_F_SOFT_MS:
        m->soft_ms = 1000;
        break;
    case CEL_F_HARD_MS:
        m->hard_ms = 2000;
        break;
    case CEL_F_RESULT_TTL_S:
        m->result_ttl_s = 60;
        break;
    case CEL_F_UNIQUE_KEY:
        m->unique_key = S("uk-1");
        break;
    case CEL_F_EXPIRES_MS:
        m->expires_ms = 1795000001000;
        break;
    case CEL_F_TASKS:
        m->tasks.msgs = bulk_entries, m->tasks.n = 2;
        break;
    case CEL_F_QUEUES:
        m->queues.strs = names2, m->queues.n = 2;
        break;
    case CEL_F_CREDITS:
        m->credits = 16;
        break;
    case CEL_F_ATTEMPT:
        m->attempt = 2;
        break;
    case CEL_F_TOKEN:
        m->token = 0xFFFFFFFFFFull;
        break;
    case CEL_F_LEASE_MS:
        m->lease_ms = 30000;
        break;
    case CEL_F_RESULT:
        m->result.bytes = raw_result, m->result.len = sizeof raw_result;
        break;
    case CEL_F_ERROR:
        m->error = S("it broke");
        break;
    case CEL_F_RETRY:
        m->retry = true;
        break;
    case CEL_F_REASON:
        m->reason = S("worker_lost");
        break;
    case CEL_F_TIMEOUT_MS:
        m->timeout_ms = 5000;
        break;
    case CEL_F_STATE:
        m->state = S("queued");
        break;
    case CEL_F_EXISTED:
        m->existed = true;
        break;
    case CEL_F_IDS:
        m->ids.strs = names2, m->ids.n = 2;
        break;
    case CEL_F_CODE:
        m->code = S("NOT_FOUND");
        break;
    case CEL_F_MSG:
        m->msg = S("no such task");
        break;
    case CEL_F_CREATED_MS:
        m->created_ms = 1;
        break;
    case CEL_F_STARTED_MS:
        m->started_ms = 2;
        break;
    case CEL_F_FINISHED_MS:
        m->finished_ms = -3;
        break;
    case CEL_F_WORKER:
        m->worker = S("w/1");
        break;
    case CEL_F_STATS:
        m->stats.bytes = raw_result, m->stats.len = sizeof raw_result;
        break;
    case CEL_F_COUNT:
        m->count = 7;
        break;
    case CEL_F_CURSOR:
        m->cursor = 9;
        break;
    default:
        break;
    }
    cel_msg_set(m, f);
}

/* Which fields an op requires/allows, learnt by probing the encoder one field at a time. */
static bool allowed(cel_op op, cel_field f) {
    cel_msg m;
    fill(&m, op, false);
    if (cel_msg_has(&m, f)) return true;
    set_field(&m, f);
    cel_buf b;
    cel_buf_init(&b);
    cel_err rc = cel_msg_encode(&b, &m, UINT32_MAX, NULL);
    cel_buf_free(&b);
    return rc == CEL_OK;
}

static void fill(cel_msg *m, cel_op op, bool optional) {
    memset(m, 0, sizeof *m);
    m->op = op;
    /* Required fields: the encoder names the first one missing until none is. */
    for (int guard = 0; guard < CEL_F__COUNT; guard++) {
        cel_buf b;
        cel_buf_init(&b);
        cel_error err;
        cel_err rc = cel_msg_encode(&b, m, UINT32_MAX, &err);
        cel_buf_free(&b);
        if (rc != CEL_E_BAD_FIELD || !strstr(err.msg, "missing field")) break;
        for (int f = 0; f < CEL_F__COUNT; f++) {
            char want[64];
            snprintf(want, sizeof want, "'%s'", cel_field_name(f));
            if (strstr(err.msg, want)) set_field(m, f);
        }
    }
    if (!optional) return;
    for (int f = 0; f < CEL_F__COUNT; f++)
        if (!cel_msg_has(m, f) && allowed(op, f)) set_field(m, f);
}

static void init_fixtures(void) {
    static msgpack_object items[2];
    items[0].type = MSGPACK_OBJECT_POSITIVE_INTEGER, items[0].via.u64 = 5;
    items[1].type = MSGPACK_OBJECT_STR, items[1].via.str.ptr = "five", items[1].via.str.size = 4;
    args_obj.type = MSGPACK_OBJECT_ARRAY;
    args_obj.via.array.size = 2, args_obj.via.array.ptr = items;
    for (int i = 0; i < 2; i++) {
        memset(&bulk_entries[i], 0, sizeof bulk_entries[i]);
        bulk_entries[i].queue = S(i ? "q2" : "q1");
        bulk_entries[i].task = S("t");
        cel_msg_set(&bulk_entries[i], CEL_F_QUEUE), cel_msg_set(&bulk_entries[i], CEL_F_TASK);
        if (i) bulk_entries[i].priority = 9, cel_msg_set(&bulk_entries[i], CEL_F_PRIORITY);
    }
    msgpack_zone_init(&zone, 4096);
}

static bool str_eq(cel_str a, cel_str b) {
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

static void assert_same(const cel_msg *a, const cel_msg *b) {
    CU_ASSERT_EQUAL(a->op, b->op);
    CU_ASSERT_EQUAL(a->present, b->present);
    CU_ASSERT_EQUAL(a->seq, b->seq);
    const cel_str *sa[] = {&a->role, &a->client,     &a->server, &a->id,     &a->queue,
                           &a->task, &a->unique_key, &a->error,  &a->reason, &a->state,
                           &a->code, &a->msg,        &a->worker};
    const cel_str *sb[] = {&b->role, &b->client,     &b->server, &b->id,     &b->queue,
                           &b->task, &b->unique_key, &b->error,  &b->reason, &b->state,
                           &b->code, &b->msg,        &b->worker};
    for (size_t i = 0; i < sizeof sa / sizeof *sa; i++) CU_ASSERT(str_eq(*sa[i], *sb[i]));
    CU_ASSERT_EQUAL(a->version, b->version);
    CU_ASSERT_EQUAL(a->token, b->token);
    CU_ASSERT_EQUAL(a->priority, b->priority);
    CU_ASSERT_EQUAL(a->eta_ms, b->eta_ms);
    CU_ASSERT_EQUAL(a->finished_ms, b->finished_ms);
    CU_ASSERT_EQUAL(a->delay_ms, b->delay_ms);
    CU_ASSERT_EQUAL(a->credits, b->credits);
    CU_ASSERT_EQUAL(a->retry, b->retry);
    CU_ASSERT_EQUAL(a->existed, b->existed);
    CU_ASSERT_EQUAL(a->count, b->count);
    CU_ASSERT_EQUAL(a->cursor, b->cursor);
}

static const cel_msg *decode_frame(const cel_buf *b, cel_msg *out, cel_error *err) {
    uint32_t len;
    if (cel_frame_header_parse(b->data, UINT32_MAX, &len, err) != CEL_OK) return NULL;
    msgpack_zone_clear(&zone);
    if (cel_msg_decode(b->data + CEL_FRAME_HEADER, len, &zone, 0, out, err) != CEL_OK) return NULL;
    return out;
}

static void test_every_op_round_trips_with_all_and_required_fields(void) {
    for (int op = CEL_OP_NONE + 1; op < CEL_OP__COUNT; op++) {
        for (int opt = 0; opt < 2; opt++) {
            cel_msg m, back;
            fill(&m, op, opt);
            cel_buf b;
            cel_buf_init(&b);
            cel_error err;
            CU_ASSERT_EQUAL_FATAL(cel_msg_encode(&b, &m, UINT32_MAX, &err), CEL_OK);
            const cel_msg *d = decode_frame(&b, &back, &err);
            if (!d) fprintf(stderr, "\n%s: %s\n", cel_op_name(op), err.msg);
            CU_ASSERT_FATAL(d != NULL);
            /* Raw and list fields come back as objects; compare their shape. */
            assert_same(&m, &back);
            if (cel_msg_has(&m, CEL_F_QUEUES)) {
                CU_ASSERT_EQUAL(back.queues.n, 2);
                CU_ASSERT(str_eq(cel_list_str(&back.queues, 1), S("beta.q")));
            }
            if (cel_msg_has(&m, CEL_F_ARGS)) {
                CU_ASSERT_EQUAL(back.args.obj->type, MSGPACK_OBJECT_ARRAY);
                CU_ASSERT_EQUAL(back.args.obj->via.array.ptr[0].via.u64, 5);
            }
            if (cel_msg_has(&m, CEL_F_RESULT)) {
                CU_ASSERT_EQUAL(back.result.obj->via.array.size, 2);
            }
            if (cel_msg_has(&m, CEL_F_TASKS)) {
                cel_msg e;
                CU_ASSERT_EQUAL(cel_msg_bulk_entry(&back, 1, &e, &err), CEL_OK);
                CU_ASSERT(str_eq(e.queue, S("q2")));
                CU_ASSERT_EQUAL(e.priority, 9);
                CU_ASSERT_EQUAL(e.seq, back.seq);
                CU_ASSERT_NOT_EQUAL(cel_msg_bulk_entry(&back, 2, &e, &err), CEL_OK);
            }
            cel_buf_free(&b);
        }
    }
}

/* A stream of several frames of different ops. */
static int expected[64];

/* expected[i] is frame i's seq (0 for pushes, which carry none). */
static void build_stream(cel_buf *b, int *nframes) {
    *nframes = 0;
    for (int op = CEL_OP_NONE + 1; op < CEL_OP__COUNT; op++) {
        cel_msg m;
        fill(&m, op, op % 2);
        m.seq = (uint64_t)op;
        expected[*nframes] = cel_msg_has(&m, CEL_F_SEQ) ? op : 0;
        CU_ASSERT_EQUAL(cel_msg_encode(b, &m, UINT32_MAX, NULL), CEL_OK);
        (*nframes)++;
    }
}

/* Feeds the stream in chunks given by next_chunk; returns the ops decoded, in order. */
static int decode_split(const cel_buf *s, size_t (*next_chunk)(size_t pos, size_t left), int *ops) {
    cel_decoder d;
    cel_decoder_init(&d, 0);
    int n = 0;
    for (size_t pos = 0; pos < s->len;) {
        size_t k = next_chunk(pos, s->len - pos);
        cel_decoder_feed(&d, s->data + pos, k);
        pos += k;
        const uint8_t *body;
        uint32_t len;
        cel_error err;
        while (cel_decoder_next(&d, &body, &len, &err) == CEL_OK && body) {
            cel_msg m;
            msgpack_zone_clear(&zone);
            ops[n++] = cel_msg_decode(body, len, &zone, 0, &m, &err) == CEL_OK ? (int)m.seq : -1;
        }
    }
    CU_ASSERT_EQUAL(cel_decoder_pending(&d), 0);
    cel_decoder_free(&d);
    return n;
}

static size_t split_at;
static size_t chunk_whole(size_t pos, size_t left) {
    (void)pos;
    return left;
}
static size_t chunk_one(size_t pos, size_t left) {
    (void)pos, (void)left;
    return 1;
}
static size_t chunk_two_way(size_t pos, size_t left) {
    return pos < split_at ? split_at - pos : left;
}
static size_t chunk_random(size_t pos, size_t left) {
    (void)pos;
    size_t k = 1 + (size_t)(rand() % 97);
    return k < left ? k : left;
}

static void test_decoder_gives_same_frames_for_every_split(void) {
    cel_buf s;
    cel_buf_init(&s);
    int want;
    build_stream(&s, &want);
    int ops[64], n;
    n = decode_split(&s, chunk_whole, ops);
    CU_ASSERT_EQUAL_FATAL(n, want);
    for (int i = 0; i < n; i++) CU_ASSERT_EQUAL(ops[i], expected[i]);
    CU_ASSERT_EQUAL(decode_split(&s, chunk_one, ops), want);
    for (int i = 0; i < want; i++) CU_ASSERT_EQUAL(ops[i], expected[i]);
    int bad = 0;
    for (split_at = 1; split_at < s.len; split_at++) {
        n = decode_split(&s, chunk_two_way, ops);
        for (int i = 0; i < n; i++) bad += ops[i] != expected[i];
        bad += n != want;
    }
    CU_ASSERT_EQUAL(bad, 0);
    srand(7);
    for (int round = 0; round < 200; round++) {
        n = decode_split(&s, chunk_random, ops);
        bad += n != want;
        for (int i = 0; i < n; i++) bad += ops[i] != expected[i];
    }
    CU_ASSERT_EQUAL(bad, 0);
    cel_buf_free(&s);
}

/* ---- malformed input ----------------------------------------------------------------------- */

static cel_err decode_body(const uint8_t *body, size_t len, cel_error *err) {
    cel_msg m;
    msgpack_zone_clear(&zone);
    return cel_msg_decode(body, len, &zone, CEL_DEFAULT_MAX_DEPTH, &m, err);
}

static void expect_body(const char *hex_desc, const uint8_t *body, size_t len, cel_err want) {
    cel_error err = {CEL_OK, ""};
    cel_err got = decode_body(body, len, &err);
    if (got != want) fprintf(stderr, "\n%s: got %s (%s)\n", hex_desc, cel_err_name(got), err.msg);
    CU_ASSERT_EQUAL(got, want);
}

static void test_frame_header_errors(void) {
    uint32_t len;
    cel_error err;
    const uint8_t bad_magic[6] = {0xCD, 1, 0, 0, 0, 1};
    CU_ASSERT_EQUAL(cel_frame_header_parse(bad_magic, 1024, &len, &err), CEL_E_PROTOCOL);
    const uint8_t bad_version[6] = {0xCE, 2, 0, 0, 0, 1};
    CU_ASSERT_EQUAL(cel_frame_header_parse(bad_version, 1024, &len, &err), CEL_E_PROTOCOL);
    const uint8_t zero[6] = {0xCE, 1, 0, 0, 0, 0};
    CU_ASSERT_EQUAL(cel_frame_header_parse(zero, 1024, &len, &err), CEL_E_PROTOCOL);
    const uint32_t sizes[] = {1025, 1u << 31, UINT32_MAX};
    for (int i = 0; i < 3; i++) {
        uint8_t h[6];
        cel_frame_header_write(h, sizes[i]);
        CU_ASSERT_EQUAL(cel_frame_header_parse(h, 1024, &len, &err), CEL_E_TOO_BIG);
        CU_ASSERT_EQUAL(len, sizes[i]);
    }
    const uint8_t max[6] = {0xCE, 1, 0, 0, 4, 0};
    CU_ASSERT_EQUAL(cel_frame_header_parse(max, 1024, &len, &err), CEL_OK);
}

static void test_oversize_frame_is_skipped_without_buffering(void) {
    cel_decoder d;
    cel_decoder_init(&d, 1024);
    uint8_t h[6];
    cel_frame_header_write(h, 1u << 20);
    cel_decoder_feed(&d, h, 6);
    const uint8_t *body;
    uint32_t len;
    cel_error err;
    CU_ASSERT_EQUAL(cel_decoder_next(&d, &body, &len, &err), CEL_E_TOO_BIG);
    static uint8_t junk[4096];
    memset(junk, 0x90, sizeof junk);
    for (int i = 0; i < 256; i++) {
        cel_decoder_feed(&d, junk, sizeof junk);
        CU_ASSERT(cel_decoder_pending(&d) == 0);
        CU_ASSERT_EQUAL(cel_decoder_next(&d, &body, &len, &err), CEL_OK);
        CU_ASSERT_PTR_NULL(body);
    }
    cel_buf ok;
    cel_buf_init(&ok);
    cel_msg m;
    fill(&m, CEL_OP_PING, false);
    cel_msg_encode(&ok, &m, 1024, NULL);
    cel_decoder_feed(&d, ok.data, ok.len);
    CU_ASSERT_EQUAL(cel_decoder_next(&d, &body, &len, &err), CEL_OK);
    CU_ASSERT_PTR_NOT_NULL(body);
    cel_buf_free(&ok);
    /* A bad header is fatal: the stream cannot be resynchronised. */
    const uint8_t bad[6] = {0x00, 1, 0, 0, 0, 1};
    cel_decoder_feed(&d, bad, 6);
    CU_ASSERT_EQUAL(cel_decoder_next(&d, &body, &len, &err), CEL_E_PROTOCOL);
    CU_ASSERT_EQUAL(cel_decoder_next(&d, &body, &len, &err), CEL_E_PROTOCOL);
    cel_decoder_free(&d);
}

#define BODY(...) ((const uint8_t[]){__VA_ARGS__}), sizeof((const uint8_t[]){__VA_ARGS__})
/* {"op": "ping", "seq": 1} with a twist appended as a third pair. */
#define PING_WITH(...)                                                                             \
    BODY(0x83, 0xa2, 'o', 'p', 0xa4, 'p', 'i', 'n', 'g', 0xa3, 's', 'e', 'q', 1, __VA_ARGS__)
#define STATUS_ID(...)                                                                             \
    BODY(0x83, 0xa2, 'o', 'p', 0xa6, 's', 't', 'a', 't', 'u', 's', 0xa3, 's', 'e', 'q', 1, 0xa2,   \
         'i', 'd', __VA_ARGS__)

static void test_malformed_messages_get_typed_errors(void) {
    expect_body("unknown op",
                BODY(0x82, 0xa2, 'o', 'p', 0xa3, 'z', 'a', 'p', 0xa3, 's', 'e', 'q', 1),
                CEL_E_UNKNOWN_OP);
    expect_body("root array", BODY(0x92, 0x01, 0x02), CEL_E_PROTOCOL);
    expect_body("root int", BODY(0x05), CEL_E_PROTOCOL);
    expect_body("missing op", BODY(0x81, 0xa3, 's', 'e', 'q', 1), CEL_E_BAD_FIELD);
    expect_body("op not a string", BODY(0x82, 0xa2, 'o', 'p', 0x07, 0xa3, 's', 'e', 'q', 1),
                CEL_E_BAD_FIELD);
    expect_body("duplicate op",
                BODY(0x83, 0xa2, 'o', 'p', 0xa4, 'p', 'i', 'n', 'g', 0xa2, 'o', 'p', 0xa4, 'p', 'i',
                     'n', 'g', 0xa3, 's', 'e', 'q', 1),
                CEL_E_BAD_FIELD);
    expect_body("duplicate seq", PING_WITH(0xa3, 's', 'e', 'q', 2), CEL_E_BAD_FIELD);
    expect_body("unknown field", PING_WITH(0xa3, 'z', 'z', 'z', 1), CEL_E_BAD_FIELD);
    expect_body("field not allowed", PING_WITH(0xa2, 'i', 'd', 0xa1, 'x'), CEL_E_BAD_FIELD);
    expect_body("non-string key", PING_WITH(0x01, 0x01), CEL_E_BAD_FIELD);
    expect_body(
        "missing required id",
        BODY(0x82, 0xa2, 'o', 'p', 0xa6, 's', 't', 'a', 't', 'u', 's', 0xa3, 's', 'e', 'q', 1),
        CEL_E_BAD_FIELD);
    expect_body("id wrong type", STATUS_ID(0x05), CEL_E_BAD_FIELD);
    expect_body("id nil", STATUS_ID(0xc0), CEL_E_BAD_FIELD);
    expect_body("id with a space", STATUS_ID(0xa3, 'a', ' ', 'b'), CEL_E_BAD_FIELD);
    expect_body("id with braces", STATUS_ID(0xa3, '{', 'q', '}'), CEL_E_BAD_FIELD);
    expect_body("id empty", STATUS_ID(0xa0), CEL_E_BAD_FIELD);
    expect_body("id non-ascii", STATUS_ID(0xa2, 0xc3, 0xa9), CEL_E_BAD_FIELD);
    expect_body("seq negative",
                BODY(0x82, 0xa2, 'o', 'p', 0xa4, 'p', 'i', 'n', 'g', 0xa3, 's', 'e', 'q', 0xff),
                CEL_E_BAD_FIELD);
    expect_body("trailing bytes", PING_WITH(0xa3, 's', 'e', 'q', 2, 0x00), CEL_E_PROTOCOL);
    expect_body("truncated", BODY(0x82, 0xa2, 'o', 'p', 0xa4, 'p', 'i'), CEL_E_PROTOCOL);
    expect_body("reserved 0xc1", BODY(0x81, 0xa2, 'o', 'p', 0xc1), CEL_E_PROTOCOL);
    /* Found by fuzzing: a name with a NUL inside must not match a shorter known name. */
    expect_body(
        "op with NUL",
        BODY(0x82, 0xa2, 'o', 'p', 0xa8, 'p', 'i', 'n', 'g', 0, 0, 0, 'x', 0xa3, 's', 'e', 'q', 1),
        CEL_E_UNKNOWN_OP);
    expect_body("field with NUL", PING_WITH(0xa4, 's', 'e', 'q', 0, 1), CEL_E_BAD_FIELD);
    /* Found by fuzzing: names inside a queue list obey the name charset too. */
    expect_body("queue list name with comma",
                BODY(0x84, 0xa2, 'o', 'p', 0xa7, 'c', 'o', 'n', 's', 'u', 'm', 'e', 0xa3, 's', 'e',
                     'q', 1, 0xa6, 'q', 'u', 'e', 'u', 'e', 's', 0x91, 0xa2, 'a', ',', 0xa7, 'c',
                     'r', 'e', 'd', 'i', 't', 's', 4),
                CEL_E_BAD_FIELD);
    expect_body("str cut short", BODY(0x81, 0xa2, 'o', 'p', 0xa4, 'p', 'i'), CEL_E_PROTOCOL);
    expect_body("array32 of 2^31", BODY(0x81, 0xa2, 'o', 'p', 0xdd, 0x7f, 0xff, 0xff, 0xff),
                CEL_E_TOO_BIG);
    expect_body("map32 of 2^32-1", BODY(0x81, 0xa2, 'o', 'p', 0xdf, 0xff, 0xff, 0xff, 0xff),
                CEL_E_TOO_BIG);
    expect_body("str32 of 2^32-1", BODY(0x81, 0xa2, 'o', 'p', 0xdb, 0xff, 0xff, 0xff, 0xff, 'a'),
                CEL_E_TOO_BIG);
    expect_body("bin32 huge", BODY(0x81, 0xa2, 'o', 'p', 0xc6, 0x10, 0, 0, 0, 'a'), CEL_E_TOO_BIG);
    expect_body("ext32 huge", BODY(0x81, 0xa2, 'o', 'p', 0xc9, 0x10, 0, 0, 0, 1, 'a'),
                CEL_E_TOO_BIG);
}

static cel_err enqueue_with(cel_field f, uint64_t v, bool negative) {
    cel_buf b;
    cel_buf_init(&b);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, cel_buf_msgpack_write);
    msgpack_pack_map(&pk, 5);
    msgpack_pack_str_with_body(&pk, "op", 2), msgpack_pack_str_with_body(&pk, "enqueue", 7);
    msgpack_pack_str_with_body(&pk, "seq", 3), msgpack_pack_uint64(&pk, 1);
    msgpack_pack_str_with_body(&pk, "queue", 5), msgpack_pack_str_with_body(&pk, "q", 1);
    msgpack_pack_str_with_body(&pk, "task", 4), msgpack_pack_str_with_body(&pk, "t", 1);
    const char *name = cel_field_name(f);
    msgpack_pack_str_with_body(&pk, name, strlen(name));
    if (negative)
        msgpack_pack_int64(&pk, -(int64_t)v);
    else
        msgpack_pack_uint64(&pk, v);
    cel_error err;
    cel_err rc = decode_body(b.data, b.len, &err);
    cel_buf_free(&b);
    return rc;
}

static void test_integer_fields_are_range_checked(void) {
    CU_ASSERT_EQUAL(enqueue_with(CEL_F_PRIORITY, 255, false), CEL_OK);
    CU_ASSERT_EQUAL(enqueue_with(CEL_F_PRIORITY, 256, false), CEL_E_BAD_FIELD);
    CU_ASSERT_EQUAL(enqueue_with(CEL_F_PRIORITY, 1, true), CEL_E_BAD_FIELD);
    CU_ASSERT_EQUAL(enqueue_with(CEL_F_DELAY_MS, 1, true), CEL_E_BAD_FIELD);
    CU_ASSERT_EQUAL(enqueue_with(CEL_F_DELAY_MS, UINT64_MAX, false), CEL_E_BAD_FIELD);
    CU_ASSERT_EQUAL(enqueue_with(CEL_F_RESULT_TTL_S, 60, false), CEL_OK);
    CU_ASSERT_EQUAL(enqueue_with(CEL_F_RESULT_TTL_S, 1, true), CEL_E_BAD_FIELD);
    CU_ASSERT_EQUAL(enqueue_with(CEL_F_HARD_MS, UINT64_MAX, false), CEL_E_BAD_FIELD);
    CU_ASSERT_EQUAL(enqueue_with(CEL_F_ETA_MS, UINT64_MAX, false), CEL_E_BAD_FIELD);
    CU_ASSERT_EQUAL(enqueue_with(CEL_F_ETA_MS, (uint64_t)INT64_MAX, true), CEL_E_BAD_FIELD);
}

static void test_nesting_limit_is_exact(void) {
    uint8_t body[64];
    size_t n = 0;
    /* {"op":"enqueue","seq":1,"queue":"q","task":"t","args": [[[...1...]]]} */
    const uint8_t head[] = {0x85, 0xa2, 'o', 'p', 0xa7, 'e', 'n',  'q', 'u', 'e', 'u',  'e', 0xa3,
                            's',  'e',  'q', 1,   0xa5, 'q', 'u',  'e', 'u', 'e', 0xa1, 'q', 0xa4,
                            't',  'a',  's', 'k', 0xa1, 't', 0xa4, 'a', 'r', 'g', 's'};
    for (unsigned depth = CEL_DEFAULT_MAX_DEPTH - 2; depth <= CEL_DEFAULT_MAX_DEPTH + 2; depth++) {
        n = 0;
        memcpy(body, head, sizeof head), n = sizeof head;
        for (unsigned i = 0; i < depth; i++) body[n++] = 0x91;
        body[n++] = 0x01;
        cel_error err;
        /* The root map is one level: args may nest max_depth - 1 more. */
        cel_err want = depth + 1 <= CEL_DEFAULT_MAX_DEPTH ? CEL_OK : CEL_E_TOO_DEEP;
        CU_ASSERT_EQUAL(decode_body(body, n, &err), want);
    }
    CU_ASSERT_EQUAL(cel_mp_check(body, n, 40, NULL), CEL_OK);
    uint8_t deep[40];
    for (int i = 0; i < 39; i++) deep[i] = 0x91;
    deep[39] = 0x01;
    CU_ASSERT_EQUAL(cel_mp_check(deep, sizeof deep, 0, NULL), CEL_E_TOO_DEEP);
}

static void test_text_fields_must_be_utf8_and_bounded(void) {
    CU_ASSERT_TRUE(cel_utf8_valid("plain", 5));
    CU_ASSERT_TRUE(cel_utf8_valid("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9));
    CU_ASSERT_FALSE(cel_utf8_valid("\xc0\xaf", 2));         /* overlong '/' */
    CU_ASSERT_FALSE(cel_utf8_valid("\xed\xa0\x80", 3));     /* surrogate */
    CU_ASSERT_FALSE(cel_utf8_valid("\xf4\x90\x80\x80", 4)); /* above U+10FFFF */
    CU_ASSERT_FALSE(cel_utf8_valid("\xe2\x82", 2));         /* truncated */
    CU_ASSERT_FALSE(cel_utf8_valid("\xff", 1));
    char name[CEL_NAME_MAX + 2];
    memset(name, 'a', sizeof name);
    CU_ASSERT_TRUE(cel_name_valid(name, CEL_NAME_MAX));
    CU_ASSERT_FALSE(cel_name_valid(name, CEL_NAME_MAX + 1));
    CU_ASSERT_FALSE(cel_name_valid("", 0));
    CU_ASSERT_TRUE(cel_name_valid("celeriac.noop:v2-a_b", 20));
    /* An error reply quoting a peer's bytes stays decodable. */
    cel_buf b;
    cel_buf_init(&b);
    CU_ASSERT_EQUAL(cel_encode_error(&b, 9, CEL_E_BAD_FIELD, "bad \xff\xfe name"), CEL_OK);
    cel_msg m;
    cel_error err;
    CU_ASSERT_PTR_NOT_NULL_FATAL(decode_frame(&b, &m, &err));
    CU_ASSERT_EQUAL(m.op, CEL_OP_ERROR);
    CU_ASSERT_EQUAL(m.seq, 9);
    CU_ASSERT(str_eq(m.code, S("BAD_FIELD")));
    CU_ASSERT(str_eq(m.msg, S("bad ?? name")));
    cel_buf_free(&b);
}

static void test_encoder_refuses_bad_messages_and_leaves_buffer_unchanged(void) {
    cel_buf b;
    cel_buf_init(&b);
    cel_buf_append(&b, "keep", 4);
    cel_msg m;
    memset(&m, 0, sizeof m);
    m.op = CEL_OP_ENQUEUE;
    cel_error err;
    CU_ASSERT_EQUAL(cel_msg_encode(&b, &m, UINT32_MAX, &err), CEL_E_BAD_FIELD);
    fill(&m, CEL_OP_PING, false);
    set_field(&m, CEL_F_QUEUE);
    CU_ASSERT_EQUAL(cel_msg_encode(&b, &m, UINT32_MAX, &err), CEL_E_BAD_FIELD);
    fill(&m, CEL_OP_ENQUEUE, false);
    static char big[5000];
    memset(big, 'x', sizeof big);
    m.error = (cel_str){big, sizeof big};
    msgpack_object o = {.type = MSGPACK_OBJECT_STR, .via.str = {sizeof big, big}};
    m.args.obj = &o, cel_msg_set(&m, CEL_F_ARGS);
    CU_ASSERT_EQUAL(cel_msg_encode(&b, &m, 1024, &err), CEL_E_TOO_BIG);
    CU_ASSERT_EQUAL(b.len, 4);
    CU_ASSERT_EQUAL(memcmp(b.data, "keep", 4), 0);
    m.op = CEL_OP_NONE;
    CU_ASSERT_EQUAL(cel_msg_encode(&b, &m, 1024, &err), CEL_E_UNKNOWN_OP);
    cel_buf_free(&b);
}

static void test_sniff_and_error_names(void) {
    CU_ASSERT_EQUAL(cel_sniff(0xCE), CEL_SNIFF_BINARY);
    CU_ASSERT_EQUAL(cel_sniff('P'), CEL_SNIFF_TEXT);
    CU_ASSERT_EQUAL(cel_sniff('\r'), CEL_SNIFF_TEXT);
    CU_ASSERT_EQUAL(cel_sniff('\n'), CEL_SNIFF_TEXT);
    CU_ASSERT_EQUAL(cel_sniff(0xFF), CEL_SNIFF_TEXT);
    CU_ASSERT_EQUAL(cel_sniff(0x00), CEL_SNIFF_REJECT);
    CU_ASSERT_EQUAL(cel_sniff(0x80), CEL_SNIFF_REJECT);
    for (int e = 0; e < CEL_E__COUNT; e++) {
        const char *n = cel_err_name(e);
        CU_ASSERT_EQUAL(cel_err_from_name(n, strlen(n)), e);
    }
    CU_ASSERT_EQUAL(cel_err_from_name("NOPE", 4), CEL_E__COUNT);
    CU_ASSERT_STRING_EQUAL(cel_op_name(CEL_OP_ENQUEUE_BULK), "enqueue_bulk");
}

int main(void) {
    init_fixtures();
    static const th_test tests[] = {
        {"every op round trips with all and with required fields",
         test_every_op_round_trips_with_all_and_required_fields},
        {"decoder gives the same frames for every split",
         test_decoder_gives_same_frames_for_every_split},
        {"frame header errors", test_frame_header_errors},
        {"oversize frame is skipped without buffering",
         test_oversize_frame_is_skipped_without_buffering},
        {"malformed messages get typed errors", test_malformed_messages_get_typed_errors},
        {"integer fields are range checked", test_integer_fields_are_range_checked},
        {"nesting limit is exact", test_nesting_limit_is_exact},
        {"text fields must be UTF-8 and bounded", test_text_fields_must_be_utf8_and_bounded},
        {"encoder refuses bad messages and leaves the buffer unchanged",
         test_encoder_refuses_bad_messages_and_leaves_buffer_unchanged},
        {"sniff and error names", test_sniff_and_error_names},
        {NULL, NULL}};
    int rc = th_run("proto", tests);
    msgpack_zone_destroy(&zone);
    return rc;
}
