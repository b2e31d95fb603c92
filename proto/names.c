/* Validation of names, ids and text that arrive from peers. */
#include "celeriac/proto.h"

static bool name_char(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '.' || c == ':';
}

static bool charset_valid(const char *s, size_t len, size_t max) {
    if (len == 0 || len > max) return false;
    for (size_t i = 0; i < len; i++)
        if (!name_char((unsigned char)s[i])) return false;
    return true;
}

bool cel_name_valid(const char *s, size_t len) {
    return charset_valid(s, len, CEL_NAME_MAX);
}

bool cel_id_valid(const char *s, size_t len) {
    return charset_valid(s, len, CEL_ID_MAX);
}

/* Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF. */
bool cel_utf8_valid(const char *str, size_t len) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        size_t n;
        unsigned min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            n = 1, min = 0x80, c &= 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            n = 2, min = 0x800, c &= 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            n = 3, min = 0x10000, c &= 0x07;
        } else {
            return false;
        }
        if (len - i <= n) return false;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return false;
            c = (c << 6) | (s[i + k] & 0x3F);
        }
        if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return false;
        i += n + 1;
    }
    return true;
}
