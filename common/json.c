/* msgpack ↔ JSON conversion (see json.h). */
#include "json.h"

#include <stdio.h>
#include <string.h>

static json_t *from_map(const msgpack_object_map *m) {
    json_t *obj = json_object();
    for (uint32_t i = 0; obj && i < m->size; i++) {
        const msgpack_object *k = &m->ptr[i].key;
        char key[256];
        if (k->type == MSGPACK_OBJECT_STR)
            snprintf(key, sizeof key, "%.*s", (int)k->via.str.size, k->via.str.ptr);
        else
            msgpack_object_print_buffer(key, sizeof key, *k);
        json_object_set_new(obj, key, cel_json_from_msgpack(&m->ptr[i].val));
    }
    return obj;
}

json_t *cel_json_from_msgpack(const msgpack_object *o) {
    switch (o->type) {
    case MSGPACK_OBJECT_NIL:
        return json_null();
    case MSGPACK_OBJECT_BOOLEAN:
        return json_boolean(o->via.boolean);
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        /* JSON integers here are signed 64-bit: a larger one keeps its sign and magnitude as a
         * number with a fraction's precision rather than wrapping to a negative value. */
        if (o->via.u64 > (uint64_t)INT64_MAX) return json_real((double)o->via.u64);
        return json_integer((json_int_t)o->via.u64);
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return json_integer(o->via.i64);
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        return json_real(o->via.f64);
    case MSGPACK_OBJECT_STR:
        return json_stringn_nocheck(o->via.str.ptr, o->via.str.size);
    case MSGPACK_OBJECT_ARRAY: {
        json_t *a = json_array();
        for (uint32_t i = 0; a && i < o->via.array.size; i++)
            json_array_append_new(a, cel_json_from_msgpack(&o->via.array.ptr[i]));
        return a;
    }
    case MSGPACK_OBJECT_MAP:
        return from_map(&o->via.map);
    case MSGPACK_OBJECT_BIN:
        return json_pack("{sI}", "$bin", (json_int_t)o->via.bin.size);
    case MSGPACK_OBJECT_EXT:
        return json_pack("{sI}", "$ext", (json_int_t)o->via.ext.size);
    }
    return json_null();
}

json_t *cel_json_from_bytes(const uint8_t *data, size_t len) {
    msgpack_zone zone;
    msgpack_zone_init(&zone, 1024);
    msgpack_object o;
    size_t off = 0;
    json_t *j = NULL;
    /* The bytes come from our own Redis, written by the broker from checked frames. */
    if (cel_mp_check(data, len, CEL_DEFAULT_MAX_DEPTH, NULL) == CEL_OK &&
        msgpack_unpack((const char *)data, len, &off, &zone, &o) == MSGPACK_UNPACK_SUCCESS)
        j = cel_json_from_msgpack(&o);
    msgpack_zone_destroy(&zone);
    return j ? j : json_null();
}

static bool pack(msgpack_packer *pk, const json_t *j, unsigned depth) {
    if (depth > CEL_DEFAULT_MAX_DEPTH) return false;
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        msgpack_pack_map(pk, json_object_size(j));
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)j, k, v) {
            msgpack_pack_str_with_body(pk, k, strlen(k));
            if (!pack(pk, v, depth + 1)) return false;
        }
        return true;
    }
    case JSON_ARRAY: {
        msgpack_pack_array(pk, json_array_size(j));
        for (size_t i = 0; i < json_array_size(j); i++)
            if (!pack(pk, json_array_get(j, i), depth + 1)) return false;
        return true;
    }
    case JSON_STRING:
        return msgpack_pack_str_with_body(pk, json_string_value(j), json_string_length(j)) == 0;
    case JSON_INTEGER:
        return msgpack_pack_int64(pk, json_integer_value(j)) == 0;
    case JSON_REAL:
        return msgpack_pack_double(pk, json_real_value(j)) == 0;
    case JSON_TRUE:
        return msgpack_pack_true(pk) == 0;
    case JSON_FALSE:
        return msgpack_pack_false(pk) == 0;
    case JSON_NULL:
        return msgpack_pack_nil(pk) == 0;
    }
    return false;
}

bool cel_json_to_msgpack(const json_t *j, cel_buf *out) {
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, cel_buf_msgpack_write);
    return pack(&pk, j, 1);
}
