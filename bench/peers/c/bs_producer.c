/* beanstalkd producer: bs_producer HOST PORT TUBE SEQ0 COUNT RATE
 * Puts COUNT jobs "seq enq_ns pad" (pad = PAYLOAD bytes, default 100) one at a time, each waiting
 * for its INSERTED reply; RATE > 0 paces the puts (tasks/s), 0 = as fast as possible. */
#include "bs_conn.h"

int main(int argc, char **argv) {
    if (argc != 7) { fprintf(stderr, "usage: %s HOST PORT TUBE SEQ0 COUNT RATE\n", argv[0]); return 2; }
    long long seq0 = atoll(argv[4]), count = atoll(argv[5]);
    double rate = atof(argv[6]);
    int payload = env_int("PAYLOAD", 100);
    char *pad = malloc((size_t)payload + 1);
    memset(pad, 'x', (size_t)payload), pad[payload] = 0;
    static bs_conn c;
    bs_connect(&c, argv[1], atoi(argv[2]));
    char cmd[512];
    snprintf(cmd, sizeof cmd, "use %s\r\n", argv[3]);
    bs_cmd(&c, cmd, "USING");
    size_t cap = (size_t)payload + 256;
    char *msg = malloc(cap), body[128];
    long long first = 0, last = 0, t0 = mono_ns();
    for (long long i = 0; i < count; i++) {
        pace(t0, i, rate);
        long long enq = now_ns();
        if (i == 0) first = enq;
        int bl = snprintf(body, sizeof body, "%lld %lld ", seq0 + i, enq);
        /* put <pri> <delay> <ttr> <bytes>\r\n<data>\r\n, sent with one write */
        int n = snprintf(msg, cap, "put 1024 0 120 %d\r\n%s%s\r\n", bl + payload, body, pad);
        bs_send(&c, msg, (size_t)n);
        char *r = bs_line(&c);
        if (strncmp(r, "INSERTED", 8) != 0) { fprintf(stderr, "put: %s\n", r); return 1; }
        last = now_ns();
    }
    printf("ENQ %lld %lld %lld\n", count, first, last);
    return 0;
}
