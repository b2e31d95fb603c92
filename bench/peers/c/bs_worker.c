/* beanstalkd worker: bs_worker HOST PORT TUBE RECDIR
 * reserve -> parse "seq enq_ns pad" -> append the start record -> delete, forever. */
#include "bs_conn.h"

int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: %s HOST PORT TUBE RECDIR\n", argv[0]); return 2; }
    static bs_conn c;
    bs_connect(&c, argv[1], atoi(argv[2]));
    char cmd[512];
    snprintf(cmd, sizeof cmd, "watch %s\r\n", argv[3]);
    bs_cmd(&c, cmd, "WATCHING");
    if (strcmp(argv[3], "default") != 0) bs_cmd(&c, "ignore default\r\n", "WATCHING");
    int rec = open_record(argv[4], "bs");
    for (;;) {
        char *r = bs_cmd(&c, "reserve\r\n", "RESERVED ");
        unsigned long long id;
        size_t bytes;
        if (sscanf(r, "RESERVED %llu %zu", &id, &bytes) != 2) { fprintf(stderr, "bad: %s\n", r); return 1; }
        bs_fill(&c, bytes + 2);
        char *body = c.buf + c.off;
        c.off += bytes + 2;
        /* the task: (seq, enq_ns, pad) -> one record */
        long long start = now_ns();
        long long seq = strtoll(body, &body, 10), enq = strtoll(body, &body, 10);
        write_record(rec, seq, enq, start);
        snprintf(cmd, sizeof cmd, "delete %llu\r\n", id);
        bs_cmd(&c, cmd, "DELETED");
    }
}
