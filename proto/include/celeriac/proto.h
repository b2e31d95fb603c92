/* celeriac wire format: frame codec, message schema, validation, limits and error codes.
 * Pure code: no sockets, no event loop, no Redis. Everything that reads bytes from a peer goes
 * through here first, so it is the one place where limits are enforced and the one place fuzzed. */
#ifndef CELERIAC_PROTO_H
#define CELERIAC_PROTO_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- limits ------------------------------------------------------------------------------ */

/* First byte of every binary frame. Not printable ASCII, not a telnet IAC (0xFF), so the first
 * byte of a connection tells a binary client from a person typing (see cel_sniff). */
#define CEL_FRAME_MAGIC 0xCEu
#define CEL_PROTO_VERSION 1u
/* magic(1) + version(1) + big-endian body length(4) */
#define CEL_FRAME_HEADER 6u
#define CEL_DEFAULT_MAX_FRAME (1u << 20)
/* msgpack-c fails with a misleading NOMEM beyond 32 levels; our schema needs 3 levels at most,
 * task args get the rest. */
#define CEL_DEFAULT_MAX_DEPTH 16u
#define CEL_HARD_MAX_DEPTH 32u
/* Queue and task names become parts of Redis keys and log lines: a short, printable charset. */
#define CEL_NAME_MAX 128u
#define CEL_ID_MAX 128u
/* Free text (error messages, client names) is bounded so replies and logs stay small. */
#define CEL_TEXT_MAX 4096u
/* Largest priority: scores in Redis pack (priority, sequence) into a double's 53-bit mantissa. */
#define CEL_PRIORITY_MAX 255

/* ---- errors ------------------------------------------------------------------------------ */

typedef enum cel_err {
    CEL_OK = 0,
    CEL_E_PROTOCOL,      /* malformed frame or message; the stream may be unusable */
    CEL_E_TOO_BIG,       /* frame or declared size beyond a limit */
    CEL_E_TOO_DEEP,      /* nesting beyond the depth limit */
    CEL_E_BAD_FIELD,     /* a field is missing, duplicated, unknown, or of the wrong type/value */
    CEL_E_UNKNOWN_OP,    /* the op names nothing this version speaks */
    CEL_E_UNAVAILABLE,   /* Redis is unreachable or timed out; retry later */
    CEL_E_BUSY,          /* too much in flight; retry later */
    CEL_E_NOT_FOUND,     /* no such task (or it expired) */
    CEL_E_LEASE_EXPIRED, /* the fencing token is stale: the task was redelivered or finished */
    CEL_E_TIMEOUT,       /* a wait ran out before the task finished */
    CEL_E_STATE,         /* the operation does not apply in the task's current state */
    CEL_E_INTERNAL,      /* a bug or resource failure on the server side */
    CEL_E__COUNT
} cel_err;

/* An error code with a human message for the peer and the log. */
typedef struct cel_error {
    cel_err code;
    char msg[200];
} cel_error;

const char *cel_err_name(cel_err code);
/* Returns CEL_E__COUNT for an unknown name. */
cel_err cel_err_from_name(const char *name, size_t len);
/* Sets e->code and a printf-style message; returns code so callers can `return cel_fail(...)`. */
cel_err cel_fail(cel_error *e, cel_err code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- buffers ----------------------------------------------------------------------------- */

/* A growable byte buffer owned by its caller; reused across frames so the hot path does not
 * allocate once it has grown to the working size. */
typedef struct cel_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
} cel_buf;

void cel_buf_init(cel_buf *b);
void cel_buf_free(cel_buf *b);
void cel_buf_reset(cel_buf *b);
/* Returns false only when memory is exhausted. */
bool cel_buf_reserve(cel_buf *b, size_t extra);
bool cel_buf_append(cel_buf *b, const void *data, size_t len);
/* Drops the first n bytes. */
void cel_buf_consume(cel_buf *b, size_t n);
/* A msgpack-c write callback appending to a cel_buf (data is the cel_buf). */
int cel_buf_msgpack_write(void *data, const char *buf, size_t len);

/* ---- connection sniffing ----------------------------------------------------------------- */

typedef enum cel_sniff_kind {
    CEL_SNIFF_BINARY, /* first byte is CEL_FRAME_MAGIC */
    CEL_SNIFF_TEXT,   /* printable ASCII, whitespace or telnet IAC: a person or a script */
    CEL_SNIFF_REJECT  /* anything else: neither protocol */
} cel_sniff_kind;

cel_sniff_kind cel_sniff(uint8_t first_byte);

/* ---- frames ------------------------------------------------------------------------------ */

/* Checks a 6-byte frame header; on success *body_len holds the body length. A header whose
 * length exceeds max_frame yields CEL_E_TOO_BIG with *body_len still set, so the caller can
 * skip the body without reading it into memory. */
cel_err cel_frame_header_parse(const uint8_t hdr[CEL_FRAME_HEADER], uint32_t max_frame,
                               uint32_t *body_len, cel_error *err);
void cel_frame_header_write(uint8_t hdr[CEL_FRAME_HEADER], uint32_t body_len);

/* Incremental decoder: feed it any split of a byte stream, take whole frame bodies out.
 * Oversize frames are reported once (CEL_E_TOO_BIG) and their bodies skipped as they arrive,
 * never buffered. Any other header error is fatal for the stream. */
typedef struct cel_decoder {
    cel_buf in;
    uint32_t max_frame;
    uint64_t skip;   /* bytes of an oversize body still to discard */
    size_t consumed; /* bytes of `in` handed out by the previous cel_decoder_next */
    bool broken;     /* a fatal header error was reported; the stream cannot resync */
} cel_decoder;

void cel_decoder_init(cel_decoder *d, uint32_t max_frame);
void cel_decoder_free(cel_decoder *d);
/* Returns false only when memory is exhausted. */
bool cel_decoder_feed(cel_decoder *d, const void *data, size_t len);
/* Returns CEL_OK and sets *body and *len when a whole frame is ready (valid until the next call to
 * feed or next); returns CEL_OK with *body == NULL when more bytes are needed; returns an error
 * code for a bad or oversize frame. */
cel_err cel_decoder_next(cel_decoder *d, const uint8_t **body, uint32_t *len, cel_error *err);
/* Bytes buffered that do not yet form a whole frame (non-zero at EOF means a truncated frame). */
size_t cel_decoder_pending(const cel_decoder *d);

/* ---- msgpack pre-check ------------------------------------------------------------------- */

/* Walks one msgpack object without allocating and checks it before msgpack-c may unpack it:
 * exactly one object filling the buffer, no reserved bytes, every declared str/bin/ext length
 * and every array/map count within the bytes that remain, nesting within max_depth. After a
 * pass, msgpack-c's allocations for this buffer are bounded by a small multiple of len. */
cel_err cel_mp_check(const uint8_t *data, size_t len, unsigned max_depth, cel_error *err);

/* ---- names and text ---------------------------------------------------------------------- */

/* Queue and task names: 1..CEL_NAME_MAX bytes of [A-Za-z0-9_.:-]. Braces, spaces and
 * non-ASCII are excluded so a name can never forge a Redis key or a log line. */
bool cel_name_valid(const char *s, size_t len);
/* Task ids: 1..CEL_ID_MAX bytes of [A-Za-z0-9_.:-]. */
bool cel_id_valid(const char *s, size_t len);
bool cel_utf8_valid(const char *s, size_t len);

/* ---- messages ---------------------------------------------------------------------------- */

typedef enum cel_op {
    CEL_OP_NONE = 0,
    CEL_OP_HELLO,        /* client → broker: role, client name, version */
    CEL_OP_WELCOME,      /* broker → client: server name, version, max frame */
    CEL_OP_ENQUEUE,      /* producer → broker: one task with options */
    CEL_OP_ENQUEUE_BULK, /* producer → broker: many tasks, all or nothing validated */
    CEL_OP_CONSUME,      /* worker → broker: queues and credits (tasks it can hold) */
    CEL_OP_TASK,         /* broker → worker: a leased task (push, no seq) */
    CEL_OP_ACK,          /* worker → broker: success with optional result, fenced by token */
    CEL_OP_FAIL,         /* worker → broker: failure with error, fenced by token */
    CEL_OP_TOUCH,        /* worker → broker: extend a lease, fenced by token */
    CEL_OP_STATUS,       /* any → broker: task state by id */
    CEL_OP_WAIT,         /* any → broker: block until the task finishes or timeout */
    CEL_OP_CANCEL,       /* any → broker: cancel a queued, delayed or running task */
    CEL_OP_ABORT,        /* broker → worker: stop running a task (cancelled) (push) */
    CEL_OP_STATS,        /* any → broker: server counters */
    CEL_OP_PING,         /* any → broker: liveness / worker heartbeat */
    CEL_OP_OK,           /* reply: success, with optional id/state/existed/ids */
    CEL_OP_ERROR,        /* reply: code and message */
    CEL_OP_TASK_INFO,    /* reply to status/wait: a task's state and outcome */
    CEL_OP_STATS_INFO,   /* reply to stats: a map of counters */
    CEL_OP_PAUSE,        /* admin → broker: stop dispatching a queue (enqueues still accepted) */
    CEL_OP_RESUME,       /* admin → broker: dispatch a paused queue again */
    CEL_OP_DEAD_LIST,    /* admin → broker: ids in a queue's dead set, oldest first */
    CEL_OP_DEAD_REQUEUE, /* admin → broker: move one dead task (id) or all back to ready */
    CEL_OP_DEAD_PURGE,   /* admin → broker: delete a queue's dead tasks */
    CEL_OP_PURGE,        /* admin → broker: delete a queue's ready and scheduled tasks */
    CEL_OP_PEEK,         /* admin → broker: ids of a queue's tasks in one state, paged */
    CEL_OP__COUNT
} cel_op;

const char *cel_op_name(cel_op op);

/* Fields, in the order they are encoded. Each has a wire name and a type (see proto/msg.c). */
typedef enum cel_field {
    CEL_F_SEQ = 0,
    CEL_F_ROLE,
    CEL_F_CLIENT,
    CEL_F_VERSION,
    CEL_F_SERVER,
    CEL_F_MAX_FRAME,
    CEL_F_ID,
    CEL_F_QUEUE,
    CEL_F_TASK,
    CEL_F_ARGS,
    CEL_F_PRIORITY,
    CEL_F_DELAY_MS,
    CEL_F_ETA_MS,
    CEL_F_MAX_RETRIES,
    CEL_F_SOFT_MS,
    CEL_F_HARD_MS,
    CEL_F_RESULT_TTL_S,
    CEL_F_UNIQUE_KEY,
    CEL_F_EXPIRES_MS,
    CEL_F_TASKS,
    CEL_F_QUEUES,
    CEL_F_CREDITS,
    CEL_F_ATTEMPT,
    CEL_F_TOKEN,
    CEL_F_LEASE_MS,
    CEL_F_RESULT,
    CEL_F_ERROR,
    CEL_F_RETRY,
    CEL_F_REASON,
    CEL_F_TIMEOUT_MS,
    CEL_F_STATE,
    CEL_F_EXISTED,
    CEL_F_IDS,
    CEL_F_CODE,
    CEL_F_MSG,
    CEL_F_CREATED_MS,
    CEL_F_STARTED_MS,
    CEL_F_FINISHED_MS,
    CEL_F_WORKER,
    CEL_F_STATS,
    CEL_F_COUNT,
    CEL_F_CURSOR,
    CEL_F__COUNT
} cel_field;

const char *cel_field_name(cel_field f);

/* A string inside a frame (not NUL-terminated); valid while the frame's bytes are. */
typedef struct cel_str {
    const char *ptr;
    uint32_t len;
} cel_str;

/* An opaque msgpack value (task args, results, stats). Decoding sets obj; an encoder uses obj,
 * or else bytes/len, which must hold exactly one valid msgpack object (e.g. read from Redis). */
typedef struct cel_raw {
    const msgpack_object *obj;
    const uint8_t *bytes;
    uint32_t len;
} cel_raw;

struct cel_msg;

/* A list field: decoding sets obj (an array) and n; encoding reads strs (names, ids) or msgs
 * (bulk tasks) and n. */
typedef struct cel_list {
    const msgpack_object *obj;
    const cel_str *strs;
    const struct cel_msg *msgs;
    uint32_t n;
} cel_list;

/* One message of any op. `present` has bit (1 << field) set for each field carried. */
typedef struct cel_msg {
    cel_op op;
    uint64_t present;
    uint64_t seq;
    cel_str role, client, server, id, queue, task, unique_key, error, reason, state, code, msg,
        worker;
    uint64_t version, max_frame, max_retries, soft_ms, hard_ms, result_ttl_s, credits, attempt,
        token, lease_ms, timeout_ms, delay_ms, count, cursor;
    int64_t priority, eta_ms, expires_ms, created_ms, started_ms, finished_ms;
    bool retry, existed;
    cel_raw args, result, stats;
    cel_list tasks, queues, ids;
} cel_msg;

static inline bool cel_msg_has(const cel_msg *m, cel_field f) {
    return (m->present >> f) & 1u;
}
static inline void cel_msg_set(cel_msg *m, cel_field f) {
    m->present |= (uint64_t)1 << f;
}
static inline cel_str cel_str_c(const char *s) {
    cel_str r = {s, 0};
    while (s && s[r.len]) r.len++;
    return r;
}
static inline bool cel_str_eq(cel_str a, const char *b) {
    cel_str c = cel_str_c(b);
    return a.len == c.len && (a.len == 0 || __builtin_memcmp(a.ptr, c.ptr, a.len) == 0);
}

/* Decodes and validates one frame body. The message points into `body` and `zone`, which must
 * outlive it (clear the zone between frames to reuse its memory). out->seq is set as early as
 * possible so that an error reply can echo it even when validation fails. */
cel_err cel_msg_decode(const uint8_t *body, size_t len, msgpack_zone *zone, unsigned max_depth,
                       cel_msg *out, cel_error *err);

/* Decodes entry i of a decoded bulk enqueue into an enqueue message (already validated by
 * cel_msg_decode, so this only fails on misuse). */
cel_err cel_msg_bulk_entry(const cel_msg *bulk, uint32_t i, cel_msg *out, cel_error *err);
/* Reads item i of a decoded list of strings (queues, ids). */
cel_str cel_list_str(const cel_list *l, uint32_t i);

/* Appends one whole frame (header + body) for m to out. Fails with CEL_E_TOO_BIG if the body
 * would exceed max_frame (out is left as it was), CEL_E_BAD_FIELD if m lacks a required field
 * or carries one its op does not allow. */
cel_err cel_msg_encode(cel_buf *out, const cel_msg *m, uint32_t max_frame, cel_error *err);

/* Convenience: an error reply frame. */
cel_err cel_encode_error(cel_buf *out, uint64_t seq, cel_err code, const char *msg);

#ifdef __cplusplus
}
#endif
#endif
