/* The broker's readers of what Redis sends back, compiled from server/status.c with the two
 * connection functions it calls captured here: the task body (packed by the broker, stored in
 * field d, read back on every lease and status), the lease reply check, and status replies.
 * Replies are built by hiredis's own reader from RESP text, as they arrive from Redis. Also
 * the broker's command formatter (server/resp.c), against hiredis's. */
#include <hiredis/hiredis.h>
#include <string.h>

#include "broker.h"
#include "harness.h"

static cel_buf sent;
static int sent_error;

void conn_send(cel_client *c, const cel_msg *m) {
    cel_error err;
    (void)c;
    cel_buf_reset(&sent);
    sent_error = 0;
    CU_ASSERT(cel_msg_encode(&sent, m, UINT32_MAX, &err) == CEL_OK);
}

void conn_send_error(cel_client *c, uint64_t seq, cel_err code, const char *msg) {
    (void)c, (void)seq, (void)msg;
    sent_error = code;
}

/* One reply from RESP text; the caller frees it. */
static redisReply *resp(const char *text, size_t len) {
    redisReader *r = redisReaderCreate();
    void *reply = NULL;
    redisReaderFeed(r, text, len);
    if (redisReaderGetReply(r, &reply) != REDIS_OK) reply = NULL;
    redisReaderFree(r);
    return reply;
}

static size_t body_of(cel_buf *b, const char *name, const uint8_t *args, size_t args_len) {
    task_body t = {.name = cel_str_c(name),
                   .priority = 7,
                   .created_ms = 1764380000123,
                   .soft_ms = 250,
                   .hard_ms = 1000};
    cel_buf_reset(b);
    task_body_pack_head(b, &t);
    cel_buf_append(b, args, args_len);
    return b->len;
}

static void test_task_body_round_trip_and_truncation(void) {
    cel_buf b = {0};
    const uint8_t args[] = {0x92, 0x01, 0xa2, 'h', 'i'}; /* [1, "hi"] */
    size_t len = body_of(&b, "email.send", args, sizeof args);
    task_body t;
    CU_ASSERT_FATAL(task_body_unpack((const char *)b.data, len, &t));
    CU_ASSERT(t.name.len == 10 && memcmp(t.name.ptr, "email.send", 10) == 0);
    CU_ASSERT(t.priority == 7 && t.created_ms == 1764380000123);
    CU_ASSERT(t.soft_ms == 250 && t.hard_ms == 1000);
    CU_ASSERT(t.args_len == sizeof args && memcmp(t.args, args, sizeof args) == 0);
    /* Every cut inside the head is refused; a body that is nothing but its head has no args. */
    size_t head = len - sizeof args;
    for (size_t cut = 0; cut < head; cut++)
        CU_ASSERT(!task_body_unpack((const char *)b.data, cut, &t));
    CU_ASSERT(!task_body_unpack((const char *)b.data, head, &t));
    CU_ASSERT(!task_body_unpack(NULL, 0, &t));
    b.data[0] = 0x94; /* an array of 4: not a body */
    CU_ASSERT(!task_body_unpack((const char *)b.data, len, &t));
    cel_buf_free(&b);
}

static void test_lease_reply_check(void) {
    static const char good[] = "*10\r\n$2\r\nt1\r\n$3\r\nabc\r\n:1\r\n:42\r\n:30000\r\n"
                               "$2\r\nt2\r\n$0\r\n\r\n:2\r\n:43\r\n:30000\r\n";
    redisReply *r = resp(good, sizeof good - 1);
    CU_ASSERT_FATAL(r && r->type == REDIS_REPLY_ARRAY);
    CU_ASSERT(lease_reply_valid(r->element, 2));
    CU_ASSERT(lease_reply_valid(r->element, 0));
    freeReplyObject(r);
    /* A task of the same enqueue call: its index in the call for a body. */
    static const char own[] = "*5\r\n$2\r\nt1\r\n:3\r\n:1\r\n:42\r\n:30000\r\n";
    r = resp(own, sizeof own - 1);
    CU_ASSERT_FATAL(r && r->type == REDIS_REPLY_ARRAY);
    CU_ASSERT(lease_reply_valid(r->element, 1));
    freeReplyObject(r);
    const char *bad[] = {
        "*5\r\n:7\r\n$3\r\nabc\r\n:1\r\n:42\r\n:30000\r\n",            /* id not a string */
        "*5\r\n$0\r\n\r\n$3\r\nabc\r\n:1\r\n:42\r\n:30000\r\n",        /* empty id */
        "*5\r\n$2\r\nt1\r\n$-1\r\n:1\r\n:42\r\n:30000\r\n",            /* no body */
        "*5\r\n$2\r\nt1\r\n:-1\r\n:1\r\n:42\r\n:30000\r\n",            /* index < 0 */
        "*5\r\n$2\r\nt1\r\n$3\r\nabc\r\n$1\r\n1\r\n:42\r\n:30000\r\n", /* attempt as text */
        "*5\r\n$2\r\nt1\r\n$3\r\nabc\r\n:1\r\n:-5\r\n:30000\r\n",      /* negative token */
        "*5\r\n$2\r\nt1\r\n$3\r\nabc\r\n:1\r\n:42\r\n*0\r\n",          /* lease_ms an array */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        r = resp(bad[i], strlen(bad[i]));
        CU_ASSERT_FATAL(r && r->type == REDIS_REPLY_ARRAY && r->elements == LEASE_FIELDS);
        CU_ASSERT(!lease_reply_valid(r->element, 1));
        freeReplyObject(r);
    }
    char longid[400];
    int n = snprintf(longid, sizeof longid, "*5\r\n$%u\r\n%0*d\r\n$0\r\n\r\n:1\r\n:1\r\n:1\r\n",
                     CEL_ID_MAX + 1, (int)CEL_ID_MAX + 1, 0);
    r = resp(longid, (size_t)n);
    CU_ASSERT_FATAL(r != NULL);
    CU_ASSERT(!lease_reply_valid(r->element, 1));
    freeReplyObject(r);
}

/* A status reply is the task's hash as field/value pairs: its body gives name and timings. */
static void test_status_reply_reads_the_body(void) {
    cel_buf b = {0};
    const uint8_t args[] = {0x90};
    size_t len = body_of(&b, "report.build", args, sizeof args);
    char text[512];
    int n = snprintf(text, sizeof text,
                     "*6\r\n$2\r\nst\r\n$6\r\nactive\r\n$2\r\nat\r\n$1\r\n2\r\n"
                     "$1\r\nd\r\n$%zu\r\n",
                     len);
    memcpy(text + n, b.data, len);
    n += (int)len;
    n += snprintf(text + n, sizeof text - (size_t)n, "\r\n");
    redisReply *r = resp(text, (size_t)n);
    CU_ASSERT_FATAL(r && r->type == REDIS_REPLY_ARRAY && r->elements == 6);
    cel_client c;
    memset(&c, 0, sizeof c);
    status_reply(&c, 9, "t-9", 3, r);
    freeReplyObject(r);
    CU_ASSERT_FATAL(sent.len > 0 && sent_error == 0);
    cel_msg m;
    msgpack_zone z;
    msgpack_zone_init(&z, 1024);
    cel_error err;
    cel_err rc = cel_msg_decode(sent.data + CEL_FRAME_HEADER, sent.len - CEL_FRAME_HEADER, &z,
                                CEL_DEFAULT_MAX_DEPTH, &m, &err);
    CU_ASSERT_FATAL(rc == CEL_OK);
    CU_ASSERT(m.task.len == 12 && memcmp(m.task.ptr, "report.build", 12) == 0);
    CU_ASSERT(m.state.len == 6 && memcmp(m.state.ptr, "active", 6) == 0);
    CU_ASSERT(m.attempt == 2 && m.created_ms == 1764380000123);
    msgpack_zone_destroy(&z);
    CU_ASSERT(m.priority == 7);
    /* No such task (the script answers nil): NOT_FOUND, nothing made up. */
    r = resp("$-1\r\n", 5);
    status_reply(&c, 10, "t-10", 4, r);
    freeReplyObject(r);
    CU_ASSERT(sent_error == CEL_E_NOT_FOUND);
    cel_buf_free(&b);
}

/* Script calls are formatted by the broker itself: byte for byte what hiredis would send,
 * for binary and empty arguments, lengths across digit counts, and C strings (lens NULL). */
static void test_commands_format_as_hiredis_would(void) {
    static char big[100000];
    memset(big, 'x', sizeof big);
    const char *argv[] = {
        "EVALSHA", "0123456789abcdef0123456789abcdef01234567", "0", "", "a\0b\r\n", big, big, big,
        big};
    size_t lens[] = {7, 40, 1, 0, 5, 9, 10, 999, sizeof big};
    for (int argc = 0; argc <= 9; argc++) {
        char *ours = NULL, *theirs = NULL;
        int n = cel_resp_format(&ours, argc, argv, lens);
        int m = redisFormatCommandArgv(&theirs, argc, argv, lens);
        CU_ASSERT_EQUAL(n, m);
        CU_ASSERT(n == m && memcmp(ours, theirs, (size_t)n) == 0);
        free(ours), free(theirs);
    }
    const char *words[] = {"SCRIPT", "LOAD", "return 1"};
    char *ours = NULL, *theirs = NULL;
    int n = cel_resp_format(&ours, 3, words, NULL);
    CU_ASSERT_EQUAL(n, redisFormatCommandArgv(&theirs, 3, words, NULL));
    CU_ASSERT(memcmp(ours, theirs, (size_t)n) == 0);
    free(ours), free(theirs);
}

int main(void) {
    static const th_test tests[] = {
        {"task body round trip and truncation", test_task_body_round_trip_and_truncation},
        {"lease reply check", test_lease_reply_check},
        {"status reply reads the body", test_status_reply_reads_the_body},
        {"commands format as hiredis would", test_commands_format_as_hiredis_would},
        {NULL, NULL}};
    int rc = th_run("replies", tests);
    cel_buf_free(&sent);
    return rc;
}
