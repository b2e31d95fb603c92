/* Redis commands in the wire format (RESP), for redisAsyncFormattedCommand. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "redis.h"

static char *resp_len(char *w, char kind, uint64_t n) {
    char tmp[24];
    const char *d = cel_u64_digits(tmp, n);
    size_t k = (size_t)(tmp + 24 - d);
    *w++ = kind;
    memcpy(w, d, k);
    w += k;
    *w++ = '\r', *w++ = '\n';
    return w;
}

int cel_resp_format(char **out, int argc, const char **argv, const size_t *lens) {
    char tmp[24];
    size_t total = 3 + (size_t)(tmp + 24 - cel_u64_digits(tmp, (uint64_t)argc));
    for (int i = 0; i < argc; i++) {
        size_t len = lens ? lens[i] : strlen(argv[i]);
        total += 5 + (size_t)(tmp + 24 - cel_u64_digits(tmp, len)) + len;
    }
    char *p = total <= INT_MAX ? malloc(total) : NULL;
    if (!p) return -1;
    char *w = resp_len(p, '*', (uint64_t)argc);
    for (int i = 0; i < argc; i++) {
        size_t len = lens ? lens[i] : strlen(argv[i]);
        w = resp_len(w, '$', len);
        memcpy(w, argv[i], len);
        w += len;
        *w++ = '\r', *w++ = '\n';
    }
    *out = p;
    return (int)total;
}
