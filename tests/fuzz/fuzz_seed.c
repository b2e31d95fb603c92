/* Writes the seed corpora: one valid frame (fuzz_frame) and body (fuzz_msg) per op, plus a few
 * malformed ones. Run by scripts/fuzz.sh --seed; its output is checked in. */
#include <celeriac/proto.h>
#include <stdio.h>
#include <string.h>

static void put(const char *dir, const char *name, const void *p, size_t n) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fwrite(p, 1, n, f);
    fclose(f);
}

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    static const cel_str qs[] = {{"default", 7}, {"mail", 4}};
    msgpack_object args = {.type = MSGPACK_OBJECT_STR, .via.str = {5, "hello"}};
    for (int op = CEL_OP_NONE + 1; op < CEL_OP__COUNT; op++) {
        cel_msg m;
        memset(&m, 0, sizeof m);
        m.op = op;
        m.seq = 1, m.role = cel_str_c("producer"), m.version = 1, m.server = cel_str_c("s");
        m.max_frame = 1024, m.id = cel_str_c("id-1"), m.queue = cel_str_c("default");
        m.task = cel_str_c("celeriac.echo"), m.args.obj = &args, m.token = 7;
        m.attempt = 1, m.lease_ms = 1000, m.error = cel_str_c("e"), m.timeout_ms = 10;
        m.credits = 4, m.queues.strs = qs, m.queues.n = 2, m.code = cel_str_c("BUSY");
        m.msg = cel_str_c("m"), m.state = cel_str_c("queued"), m.stats.obj = &args;
        static cel_msg entry;
        entry.queue = cel_str_c("q"), entry.task = cel_str_c("t");
        entry.present = (uint64_t)1 << CEL_F_QUEUE | (uint64_t)1 << CEL_F_TASK;
        m.tasks.msgs = &entry, m.tasks.n = 1;
        /* Add the fields the encoder reports missing until the op has all it requires. */
        for (int guard = 0; guard < CEL_F__COUNT; guard++) {
            cel_buf t;
            cel_buf_init(&t);
            cel_error err;
            cel_err rc = cel_msg_encode(&t, &m, 4096, &err);
            cel_buf_free(&t);
            if (rc != CEL_E_BAD_FIELD) break;
            for (int f = 0; f < CEL_F__COUNT; f++) {
                char want[64];
                snprintf(want, sizeof want, "missing field '%s'", cel_field_name(f));
                if (strstr(err.msg, want)) cel_msg_set(&m, f);
            }
        }
        cel_buf b;
        cel_buf_init(&b);
        if (cel_msg_encode(&b, &m, 4096, NULL) == CEL_OK) {
            char name[64];
            snprintf(name, sizeof name, "%s.bin", cel_op_name(op));
            put(argv[1], name, b.data, b.len);
            put(argv[2], name, b.data + CEL_FRAME_HEADER, b.len - CEL_FRAME_HEADER);
        }
        cel_buf_free(&b);
    }
    const unsigned char huge[] = {0xCE, 1, 0xff, 0xff, 0xff, 0xff};
    put(argv[1], "oversize.bin", huge, sizeof huge);
    const unsigned char liar[] = {0x81, 0xa2, 'o', 'p', 0xdd, 0x7f, 0xff, 0xff, 0xff};
    put(argv[2], "array32-liar.bin", liar, sizeof liar);
    unsigned char deep[40];
    memset(deep, 0x91, sizeof deep);
    deep[39] = 1;
    put(argv[2], "deep.bin", deep, sizeof deep);
    return 0;
}
