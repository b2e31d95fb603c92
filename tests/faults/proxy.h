/* A TCP proxy for cut-off scenarios, run on a thread of the test process: 127.0.0.1:port
 * forwards to 127.0.0.1:target. Modes switch at once for every connection through it:
 *   PASS       bytes flow both ways;
 *   HOLD       nothing is read, written or accepted: bytes wait in kernel buffers and new
 *              connections in the listen backlog, as in a partition that later heals;
 *   BLACKHOLE  bytes are read from both sides and dropped; new connections are accepted;
 *   CUT        every connection is closed and new ones are closed on accept. */
#ifndef CELERIAC_TEST_PROXY_H
#define CELERIAC_TEST_PROXY_H

typedef enum fp_mode { FP_PASS, FP_HOLD, FP_BLACKHOLE, FP_CUT } fp_mode;
typedef struct fp_proxy fp_proxy;

fp_proxy *fp_start(int target_port);
int fp_port(const fp_proxy *p);
void fp_set(fp_proxy *p, fp_mode mode);
/* Connections currently open through the proxy. */
int fp_connections(fp_proxy *p);
void fp_stop(fp_proxy *p);

#endif
