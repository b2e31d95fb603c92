/* Error codes: the names that travel on the wire and in text replies. */
#include "celeriac/proto.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const char *const err_names[CEL_E__COUNT] = {
    [CEL_OK] = "OK",
    [CEL_E_PROTOCOL] = "PROTOCOL",
    [CEL_E_TOO_BIG] = "TOO_BIG",
    [CEL_E_TOO_DEEP] = "TOO_DEEP",
    [CEL_E_BAD_FIELD] = "BAD_FIELD",
    [CEL_E_UNKNOWN_OP] = "UNKNOWN_OP",
    [CEL_E_UNAVAILABLE] = "UNAVAILABLE",
    [CEL_E_BUSY] = "BUSY",
    [CEL_E_NOT_FOUND] = "NOT_FOUND",
    [CEL_E_LEASE_EXPIRED] = "LEASE_EXPIRED",
    [CEL_E_TIMEOUT] = "TIMEOUT",
    [CEL_E_STATE] = "STATE",
    [CEL_E_INTERNAL] = "INTERNAL",
};

const char *cel_err_name(cel_err code) {
    if ((unsigned)code >= CEL_E__COUNT) return "INTERNAL";
    return err_names[code];
}

cel_err cel_err_from_name(const char *name, size_t len) {
    for (int i = 0; i < CEL_E__COUNT; i++) {
        if (strlen(err_names[i]) == len && memcmp(err_names[i], name, len) == 0) return i;
    }
    return CEL_E__COUNT;
}

cel_err cel_fail(cel_error *e, cel_err code, const char *fmt, ...) {
    if (!e) return code;
    e->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return code;
}
