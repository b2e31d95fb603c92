/* Monotonic time: immune to wall-clock jumps, so leases and timeouts never fire early or late
 * because someone set the date. */
#include "clock.h"

#include <time.h>

long long cel_now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

long long cel_now_ms(void) {
    return cel_now_us() / 1000;
}
