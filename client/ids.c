/* Task ids chosen by the client: every enqueue carries one, so that a resend after a lost reply
 * names the same task and the broker can return it instead of storing a second one. */
#include <pthread.h>
#include <stdio.h>
#include <sys/random.h>
#include <sys/types.h>
#include <time.h>

#include "internal.h"

/* Random bytes come from the kernel a pool at a time: one getrandom per 16 ids, not one system
 * call per enqueue. Each thread has its own pool; a forked child empties the one it inherited,
 * so it never hands out its parent's next ids. */
#define ID_BYTES 16
#define POOL_BYTES 256 /* getrandom fills up to 256 bytes whole, never interrupted */
static __thread uint8_t pool[POOL_BYTES];
static __thread size_t pool_left;
static pthread_once_t fork_hook = PTHREAD_ONCE_INIT;

static void pool_forget(void) {
    pool_left = 0;
}

static void hook_fork(void) {
    pthread_atfork(NULL, NULL, pool_forget);
}

/* Only on a kernel without getrandom: a clock-seeded mix, still unique enough per process for
 * idempotent resends. */
static void clock_mix(uint8_t *raw, size_t n, const void *salt) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ (uint64_t)(uintptr_t)salt;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        raw[i] = (uint8_t)x;
    }
}

/* 128 random bits make a collision between two producers' ids negligible; getrandom never
 * blocks once the kernel's pool is initialised, which it is long before any producer runs. */
void cel_id_new(char out[CELERIAC_ID_SIZE]) {
    static const char hex[] = "0123456789abcdef";
    pthread_once(&fork_hook, hook_fork);
    if (pool_left < ID_BYTES) {
        if (getrandom(pool, sizeof pool, 0) == (ssize_t)sizeof pool)
            pool_left = sizeof pool;
        else
            clock_mix(pool, ID_BYTES, out), pool_left = ID_BYTES;
    }
    const uint8_t *raw = pool + sizeof pool - pool_left;
    pool_left -= ID_BYTES;
    for (size_t i = 0; i < ID_BYTES; i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[2 * ID_BYTES] = 0;
}
