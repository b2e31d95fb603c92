/* Internal tables shared by the decoder and encoder (see schema.c). */
#ifndef CELERIAC_PROTO_SCHEMA_H
#define CELERIAC_PROTO_SCHEMA_H

#include "celeriac/proto.h"

/* Durations are capped at 30 days: long enough for any real delay or lease, small enough that
 * adding one to a millisecond clock can never overflow. */
#define CEL_MAX_DURATION_MS (30ull * 24 * 3600 * 1000)

typedef enum cel_ftype {
    FT_UINT,  /* uint64_t, 0..max */
    FT_INT,   /* int64_t, -max..max */
    FT_BOOL,  /* bool */
    FT_TEXT,  /* cel_str, valid UTF-8, at most max bytes */
    FT_NAME,  /* cel_str, cel_name_valid */
    FT_ID,    /* cel_str, cel_id_valid */
    FT_RAW,   /* cel_raw, any msgpack value */
    FT_NAMES, /* cel_list of names, at most max items */
    FT_IDS,   /* cel_list of ids, at most max items */
    FT_TASKS  /* cel_list of enqueue maps, at most max items */
} cel_ftype;

typedef struct cel_field_desc {
    const char *name;
    cel_ftype type;
    size_t offset;
    uint64_t max;
} cel_field_desc;

typedef struct cel_op_desc {
    const char *name;
    uint64_t required;
    uint64_t optional;
} cel_op_desc;

extern const cel_field_desc cel_fields[CEL_F__COUNT];
extern const cel_op_desc cel_ops[CEL_OP__COUNT];
extern const cel_op_desc cel_bulk_entry_desc;

#endif
