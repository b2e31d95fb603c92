/* msgpack ↔ JSON for the text protocol (jansson): task args typed by people, results and
 * stats shown to them. */
#ifndef CELERIAC_JSON_H
#define CELERIAC_JSON_H

#include <celeriac/proto.h>
#include <jansson.h>

/* Returns a new reference, or NULL when o cannot be shown as JSON (e.g. a non-string map key
 * is shown as its JSON text instead, so this only fails on memory). bin/ext become base64-free
 * placeholders: {"$bin": length}. */
json_t *cel_json_from_msgpack(const msgpack_object *o);
/* Same for one packed msgpack object. */
json_t *cel_json_from_bytes(const uint8_t *data, size_t len);
/* Packs j into out; false when nesting exceeds CEL_DEFAULT_MAX_DEPTH. */
bool cel_json_to_msgpack(const json_t *j, cel_buf *out);

#endif
