/* The monotonic clock every timeout and deadline in celeriac is measured with. */
#ifndef CELERIAC_CLOCK_H
#define CELERIAC_CLOCK_H

long long cel_now_ms(void);
long long cel_now_us(void);

#endif
