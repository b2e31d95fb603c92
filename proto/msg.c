/* Decoding and encoding of messages, driven by the tables in schema.c. Decoding runs the
 * allocation-free pre-check first, then msgpack-c, then validates every field; a message that
 * comes out of cel_msg_decode is safe to act on. */
#include <string.h>

#include "schema.h"

static int field_lookup(const char *name, uint32_t len) {
    for (int f = 0; f < CEL_F__COUNT; f++) {
        const char *n = cel_fields[f].name;
        if (strlen(n) == len && memcmp(n, name, len) == 0) return f;
    }
    return -1;
}

static cel_op op_lookup(const char *name, uint32_t len) {
    for (int op = CEL_OP_NONE + 1; op < CEL_OP__COUNT; op++) {
        const char *n = cel_ops[op].name;
        if (strlen(n) == len && memcmp(n, name, len) == 0) return op;
    }
    return CEL_OP_NONE;
}

static bool key_is(const msgpack_object *k, const char *name) {
    size_t n = strlen(name);
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
           memcmp(k->via.str.ptr, name, n) == 0;
}

static cel_err check_str(const cel_field_desc *fd, const msgpack_object *v, cel_error *err) {
    if (v->type != MSGPACK_OBJECT_STR)
        return cel_fail(err, CEL_E_BAD_FIELD, "field '%s' must be a string", fd->name);
    const char *p = v->via.str.ptr;
    uint32_t n = v->via.str.size;
    switch (fd->type) {
    case FT_NAME:
    case FT_NAMES:
        if (!cel_name_valid(p, n))
            return cel_fail(err, CEL_E_BAD_FIELD,
                            "field '%s' must be 1..%u bytes of [A-Za-z0-9_.:-]", fd->name,
                            CEL_NAME_MAX);
        return CEL_OK;
    case FT_ID:
    case FT_IDS:
        if (!cel_id_valid(p, n))
            return cel_fail(err, CEL_E_BAD_FIELD,
                            "field '%s' must be 1..%u bytes of [A-Za-z0-9_.:-]", fd->name,
                            CEL_ID_MAX);
        return CEL_OK;
    default:
        if (n > fd->max)
            return cel_fail(err, CEL_E_BAD_FIELD, "field '%s' longer than %llu bytes", fd->name,
                            (unsigned long long)fd->max);
        if (!cel_utf8_valid(p, n))
            return cel_fail(err, CEL_E_BAD_FIELD, "field '%s' is not valid UTF-8", fd->name);
        return CEL_OK;
    }
}

static cel_err decode_int(const cel_field_desc *fd, const msgpack_object *v, void *dst,
                          cel_error *err) {
    if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        if (v->via.u64 > fd->max)
            return cel_fail(err, CEL_E_BAD_FIELD, "field '%s' out of range (max %llu)", fd->name,
                            (unsigned long long)fd->max);
        memcpy(dst, &v->via.u64, sizeof(uint64_t));
        return CEL_OK;
    }
    if (v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        if (fd->type == FT_UINT)
            return cel_fail(err, CEL_E_BAD_FIELD, "field '%s' must not be negative", fd->name);
        if (v->via.i64 < -(int64_t)fd->max)
            return cel_fail(err, CEL_E_BAD_FIELD, "field '%s' out of range", fd->name);
        memcpy(dst, &v->via.i64, sizeof(int64_t));
        return CEL_OK;
    }
    return cel_fail(err, CEL_E_BAD_FIELD, "field '%s' must be an integer", fd->name);
}

static cel_err decode_fields(const msgpack_object_map *map, const cel_op_desc *od, bool top,
                             cel_msg *out, cel_error *err);

static cel_err decode_list(const cel_field_desc *fd, const msgpack_object *v, cel_list *l,
                           cel_error *err) {
    if (v->type != MSGPACK_OBJECT_ARRAY)
        return cel_fail(err, CEL_E_BAD_FIELD, "field '%s' must be an array", fd->name);
    uint32_t n = v->via.array.size;
    if (n == 0 || n > fd->max)
        return cel_fail(err, CEL_E_BAD_FIELD, "field '%s' must hold 1..%llu items", fd->name,
                        (unsigned long long)fd->max);
    for (uint32_t i = 0; i < n; i++) {
        const msgpack_object *item = &v->via.array.ptr[i];
        cel_err rc;
        if (fd->type == FT_TASKS) {
            if (item->type != MSGPACK_OBJECT_MAP)
                return cel_fail(err, CEL_E_BAD_FIELD, "tasks[%u] must be a map", i);
            cel_msg entry;
            memset(&entry, 0, sizeof entry);
            rc = decode_fields(&item->via.map, &cel_bulk_entry_desc, false, &entry, err);
            if (rc) {
                char inner[sizeof err->msg];
                memcpy(inner, err->msg, sizeof inner);
                return cel_fail(err, rc, "tasks[%u]: %.150s", i, inner);
            }
        } else if ((rc = check_str(fd, item, err)) != CEL_OK) {
            return rc;
        }
    }
    l->obj = v;
    l->n = n;
    return CEL_OK;
}

static cel_err decode_value(cel_field f, const msgpack_object *v, cel_msg *out, cel_error *err) {
    const cel_field_desc *fd = &cel_fields[f];
    void *dst = (char *)out + fd->offset;
    cel_err rc;
    switch (fd->type) {
    case FT_UINT:
    case FT_INT:
        return decode_int(fd, v, dst, err);
    case FT_BOOL:
        if (v->type != MSGPACK_OBJECT_BOOLEAN)
            return cel_fail(err, CEL_E_BAD_FIELD, "field '%s' must be a boolean", fd->name);
        *(bool *)dst = v->via.boolean;
        return CEL_OK;
    case FT_TEXT:
    case FT_NAME:
    case FT_ID:
        if ((rc = check_str(fd, v, err)) != CEL_OK) return rc;
        ((cel_str *)dst)->ptr = v->via.str.ptr;
        ((cel_str *)dst)->len = v->via.str.size;
        return CEL_OK;
    case FT_RAW:
        ((cel_raw *)dst)->obj = v;
        return CEL_OK;
    case FT_NAMES:
    case FT_IDS:
    case FT_TASKS:
        return decode_list(fd, v, dst, err);
    }
    return cel_fail(err, CEL_E_INTERNAL, "field '%s' has no decoder", fd->name);
}

static cel_err decode_fields(const msgpack_object_map *map, const cel_op_desc *od, bool top,
                             cel_msg *out, cel_error *err) {
    for (uint32_t i = 0; i < map->size; i++) {
        const msgpack_object *k = &map->ptr[i].key;
        if (k->type != MSGPACK_OBJECT_STR)
            return cel_fail(err, CEL_E_BAD_FIELD, "keys must be strings");
        if (top && key_is(k, "op")) continue;
        int f = field_lookup(k->via.str.ptr, k->via.str.size);
        if (f < 0)
            return cel_fail(err, CEL_E_BAD_FIELD, "unknown field '%.*s'",
                            (int)(k->via.str.size > 64 ? 64 : k->via.str.size), k->via.str.ptr);
        if (cel_msg_has(out, f))
            return cel_fail(err, CEL_E_BAD_FIELD, "duplicate field '%s'", cel_fields[f].name);
        if (!(((od->required | od->optional) >> f) & 1u))
            return cel_fail(err, CEL_E_BAD_FIELD, "field '%s' is not allowed in %s",
                            cel_fields[f].name, od->name);
        cel_err rc = decode_value(f, &map->ptr[i].val, out, err);
        if (rc) return rc;
        cel_msg_set(out, f);
    }
    uint64_t missing = od->required & ~out->present;
    if (missing)
        return cel_fail(err, CEL_E_BAD_FIELD, "missing field '%s' in %s",
                        cel_fields[__builtin_ctzll(missing)].name, od->name);
    return CEL_OK;
}

/* Finds op (exactly once) and, for error replies, seq before anything else is validated. */
static cel_err decode_header(const msgpack_object_map *map, cel_msg *out, cel_error *err) {
    const msgpack_object *op = NULL;
    for (uint32_t i = 0; i < map->size; i++) {
        const msgpack_object *k = &map->ptr[i].key;
        const msgpack_object *v = &map->ptr[i].val;
        if (key_is(k, "seq") && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER) out->seq = v->via.u64;
        if (!key_is(k, "op")) continue;
        if (op) return cel_fail(err, CEL_E_BAD_FIELD, "duplicate field 'op'");
        op = v;
    }
    if (!op) return cel_fail(err, CEL_E_BAD_FIELD, "missing field 'op'");
    if (op->type != MSGPACK_OBJECT_STR)
        return cel_fail(err, CEL_E_BAD_FIELD, "field 'op' must be a string");
    out->op = op_lookup(op->via.str.ptr, op->via.str.size);
    if (out->op == CEL_OP_NONE)
        return cel_fail(err, CEL_E_UNKNOWN_OP, "unknown op '%.*s'",
                        (int)(op->via.str.size > 64 ? 64 : op->via.str.size), op->via.str.ptr);
    return CEL_OK;
}

cel_err cel_msg_decode(const uint8_t *body, size_t len, msgpack_zone *zone, unsigned max_depth,
                       cel_msg *out, cel_error *err) {
    memset(out, 0, sizeof *out);
    cel_err rc = cel_mp_check(body, len, max_depth, err);
    if (rc) return rc;
    msgpack_object root;
    size_t off = 0;
    msgpack_unpack_return ur = msgpack_unpack((const char *)body, len, &off, zone, &root);
    if (ur == MSGPACK_UNPACK_NOMEM_ERROR)
        return cel_fail(err, CEL_E_TOO_DEEP, "message too deep or too large to unpack");
    if (ur != MSGPACK_UNPACK_SUCCESS || off != len)
        return cel_fail(err, CEL_E_PROTOCOL, "malformed msgpack");
    if (root.type != MSGPACK_OBJECT_MAP)
        return cel_fail(err, CEL_E_PROTOCOL, "a message must be a msgpack map");
    if ((rc = decode_header(&root.via.map, out, err)) != CEL_OK) return rc;
    return decode_fields(&root.via.map, &cel_ops[out->op], true, out, err);
}

cel_err cel_msg_bulk_entry(const cel_msg *bulk, uint32_t i, cel_msg *out, cel_error *err) {
    memset(out, 0, sizeof *out);
    if (bulk->op != CEL_OP_ENQUEUE_BULK || !bulk->tasks.obj || i >= bulk->tasks.n)
        return cel_fail(err, CEL_E_INTERNAL, "no bulk entry %u", i);
    const msgpack_object *item = &bulk->tasks.obj->via.array.ptr[i];
    out->op = CEL_OP_ENQUEUE;
    out->seq = bulk->seq;
    return decode_fields(&item->via.map, &cel_bulk_entry_desc, false, out, err);
}

cel_str cel_list_str(const cel_list *l, uint32_t i) {
    cel_str s = {NULL, 0};
    if (i >= l->n) return s;
    if (l->strs) return l->strs[i];
    const msgpack_object *o = &l->obj->via.array.ptr[i];
    s.ptr = o->via.str.ptr;
    s.len = o->via.str.size;
    return s;
}

/* ---- encoding ---------------------------------------------------------------------------- */

static int pack_cstr(msgpack_packer *pk, const char *s, size_t n) {
    return msgpack_pack_str(pk, n) || msgpack_pack_str_body(pk, s, n);
}

static int pack_fields(msgpack_packer *pk, cel_buf *out, const cel_msg *m, uint64_t mask);

static int pack_list(msgpack_packer *pk, cel_buf *out, const cel_field_desc *fd,
                     const cel_list *l) {
    if (!l->strs && !l->msgs) return l->obj ? msgpack_pack_object(pk, *l->obj) : -1;
    if (msgpack_pack_array(pk, l->n)) return -1;
    for (uint32_t i = 0; i < l->n; i++) {
        int rc = fd->type == FT_TASKS
                     ? pack_fields(pk, out, &l->msgs[i],
                                   cel_bulk_entry_desc.required | cel_bulk_entry_desc.optional)
                     : pack_cstr(pk, l->strs[i].ptr, l->strs[i].len);
        if (rc) return -1;
    }
    return 0;
}

static int pack_value(msgpack_packer *pk, cel_buf *out, cel_field f, const cel_msg *m) {
    const cel_field_desc *fd = &cel_fields[f];
    const void *src = (const char *)m + fd->offset;
    switch (fd->type) {
    case FT_UINT:
        return msgpack_pack_uint64(pk, *(const uint64_t *)src);
    case FT_INT:
        return msgpack_pack_int64(pk, *(const int64_t *)src);
    case FT_BOOL:
        return *(const bool *)src ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
    case FT_TEXT:
    case FT_NAME:
    case FT_ID: {
        const cel_str *s = src;
        return pack_cstr(pk, s->ptr ? s->ptr : "", s->len);
    }
    case FT_RAW: {
        const cel_raw *r = src;
        if (r->obj) return msgpack_pack_object(pk, *r->obj);
        if (r->bytes) return cel_buf_append(out, r->bytes, r->len) ? 0 : -1;
        return msgpack_pack_nil(pk);
    }
    case FT_NAMES:
    case FT_IDS:
    case FT_TASKS:
        return pack_list(pk, out, fd, src);
    }
    return -1;
}

static int pack_fields(msgpack_packer *pk, cel_buf *out, const cel_msg *m, uint64_t mask) {
    uint64_t present = m->present & mask;
    if (msgpack_pack_map(pk, (size_t)__builtin_popcountll(present))) return -1;
    for (int f = 0; f < CEL_F__COUNT; f++) {
        if (!((present >> f) & 1u)) continue;
        if (pack_cstr(pk, cel_fields[f].name, strlen(cel_fields[f].name))) return -1;
        if (pack_value(pk, out, f, m)) return -1;
    }
    return 0;
}

static cel_err encode_check(const cel_msg *m, cel_error *err) {
    if (m->op <= CEL_OP_NONE || m->op >= CEL_OP__COUNT)
        return cel_fail(err, CEL_E_UNKNOWN_OP, "cannot encode op %d", (int)m->op);
    const cel_op_desc *od = &cel_ops[m->op];
    uint64_t missing = od->required & ~m->present;
    if (missing)
        return cel_fail(err, CEL_E_BAD_FIELD, "missing field '%s' in %s",
                        cel_fields[__builtin_ctzll(missing)].name, od->name);
    uint64_t extra = m->present & ~(od->required | od->optional);
    if (extra)
        return cel_fail(err, CEL_E_BAD_FIELD, "field '%s' is not allowed in %s",
                        cel_fields[__builtin_ctzll(extra)].name, od->name);
    return CEL_OK;
}

cel_err cel_msg_encode(cel_buf *out, const cel_msg *m, uint32_t max_frame, cel_error *err) {
    cel_err rc = encode_check(m, err);
    if (rc) return rc;
    size_t start = out->len;
    if (!cel_buf_reserve(out, CEL_FRAME_HEADER + 64))
        return cel_fail(err, CEL_E_INTERNAL, "out of memory");
    out->len += CEL_FRAME_HEADER;
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, cel_buf_msgpack_write);
    const char *name = cel_ops[m->op].name;
    /* The map header counts op plus the present fields, hence the manual header here. */
    int bad = msgpack_pack_map(&pk, 1 + (size_t)__builtin_popcountll(m->present)) ||
              pack_cstr(&pk, "op", 2) || pack_cstr(&pk, name, strlen(name));
    for (int f = 0; !bad && f < CEL_F__COUNT; f++) {
        if (!cel_msg_has(m, f)) continue;
        bad = pack_cstr(&pk, cel_fields[f].name, strlen(cel_fields[f].name)) ||
              pack_value(&pk, out, f, m);
    }
    size_t body = out->len - start - CEL_FRAME_HEADER;
    if (bad || body > max_frame) {
        out->len = start;
        if (bad) return cel_fail(err, CEL_E_INTERNAL, "out of memory while encoding");
        return cel_fail(err, CEL_E_TOO_BIG, "%s message of %zu bytes exceeds the limit of %u", name,
                        body, max_frame);
    }
    cel_frame_header_write(out->data + start, (uint32_t)body);
    return CEL_OK;
}

cel_err cel_encode_error(cel_buf *out, uint64_t seq, cel_err code, const char *text) {
    cel_msg m;
    memset(&m, 0, sizeof m);
    m.op = CEL_OP_ERROR;
    m.seq = seq;
    m.code = cel_str_c(cel_err_name(code));
    /* Messages may quote a peer's bytes; keep them printable ASCII so the reply always
     * decodes as valid UTF-8 on the other side. */
    char clean[sizeof(((cel_error *)0)->msg) * 2];
    size_t n = 0;
    for (; text && text[n] && n < sizeof clean - 1; n++)
        clean[n] = (text[n] >= 0x20 && text[n] < 0x7f) ? text[n] : '?';
    clean[n] = '\0';
    m.msg = cel_str_c(clean);
    cel_msg_set(&m, CEL_F_SEQ);
    cel_msg_set(&m, CEL_F_CODE);
    cel_msg_set(&m, CEL_F_MSG);
    return cel_msg_encode(out, &m, UINT32_MAX, NULL);
}
