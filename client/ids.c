/* Task ids chosen by the client: every enqueue carries one, so that a resend after a lost reply
 * names the same task and the broker can return it instead of storing a second one. */
#include <stdio.h>
#include <sys/random.h>
#include <sys/types.h>
#include <time.h>

#include "internal.h"

/* 128 random bits make a collision between two producers' ids negligible; getrandom never
 * blocks once the kernel's pool is initialised, which it is long before any producer runs. */
void cel_id_new(char out[CELERIAC_ID_SIZE]) {
    static const char hex[] = "0123456789abcdef";
    uint8_t raw[16];
    ssize_t n = getrandom(raw, sizeof raw, 0);
    if (n != (ssize_t)sizeof raw) {
        /* Only on a kernel without getrandom: fall back to a clock-seeded mix, still unique
         * enough per process for idempotent resends. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ (uint64_t)(uintptr_t)out;
        for (size_t i = 0; i < sizeof raw; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            raw[i] = (uint8_t)x;
        }
    }
    for (size_t i = 0; i < sizeof raw; i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[2 * sizeof raw] = 0;
}
