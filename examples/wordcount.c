/* An example task plugin: wc.count counts the lines, words and bytes of a file, like wc(1).
 * Args: {"path": "/some/file"}. Result: {"path": ..., "lines": n, "words": n, "bytes": n}.
 * Build it as a shared object and load it with celeriac-worker --plugin ./libwordcount.so. */
#include <celeriac/task.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

static const msgpack_object *arg(const msgpack_object *map, const char *key) {
    if (map->type != MSGPACK_OBJECT_MAP) return NULL;
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == strlen(key) &&
            memcmp(k->via.str.ptr, key, k->via.str.size) == 0)
            return &map->via.map.ptr[i].val;
    }
    return NULL;
}

static int count(celeriac_task_ctx *ctx) {
    const msgpack_object *p = arg(celeriac_task_args(ctx), "path");
    if (!p || p->type != MSGPACK_OBJECT_STR || p->via.str.size >= 4096) {
        celeriac_task_error(ctx, "wc.count wants {\"path\": \"...\"}");
        return CELERIAC_TASK_FATAL;
    }
    char path[4096];
    snprintf(path, sizeof path, "%.*s", (int)p->via.str.size, p->via.str.ptr);
    FILE *f = fopen(path, "rb");
    if (!f) {
        celeriac_task_error(ctx, "%s: %s", path, strerror(errno));
        return errno == ENOENT ? CELERIAC_TASK_FATAL : CELERIAC_TASK_ERROR;
    }
    unsigned long long lines = 0, words = 0, bytes = 0;
    int c, in_word = 0;
    while ((c = fgetc(f)) != EOF) {
        bytes++;
        lines += c == '\n';
        if (isspace(c))
            in_word = 0;
        else if (!in_word)
            in_word = 1, words++;
        if ((bytes & 0xFFFFF) == 0 && celeriac_task_should_stop(ctx)) break;
    }
    fclose(f);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    msgpack_pack_str_with_body(&pk, "path", 4), msgpack_pack_str_with_body(&pk, path, strlen(path));
    msgpack_pack_str_with_body(&pk, "lines", 5), msgpack_pack_uint64(&pk, lines);
    msgpack_pack_str_with_body(&pk, "words", 5), msgpack_pack_uint64(&pk, words);
    msgpack_pack_str_with_body(&pk, "bytes", 5), msgpack_pack_uint64(&pk, bytes);
    int rc = celeriac_task_result(ctx, sb.data, sb.size);
    msgpack_sbuffer_destroy(&sb);
    return rc == 0 ? CELERIAC_TASK_OK : CELERIAC_TASK_FATAL;
}

int celeriac_plugin_init(celeriac_registry *r) {
    return celeriac_register(r, "wc.count", count, NULL);
}
