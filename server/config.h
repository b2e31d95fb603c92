/* Broker configuration: every flag with its default, from the command line or a config file. */
#ifndef CELERIAC_CONFIG_H
#define CELERIAC_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "log.h"

typedef enum cel_text_mode { CEL_TEXT_OFF, CEL_TEXT_LOOPBACK, CEL_TEXT_ON } cel_text_mode;

typedef struct cel_config {
    char listen[128];
    int port;
    char redis_host[256];
    int redis_port;
    int redis_db;
    char redis_password[256];
    char redis_socket[256];
    char prefix[64];
    uint32_t max_frame;
    int max_connections;
    size_t output_soft;   /* stop reading a client whose unsent replies exceed this */
    size_t output_hard;   /* drop a client whose unsent replies exceed this */
    int idle_timeout_s;   /* close a connection silent for this long (0: never) */
    int hello_timeout_ms; /* a new connection must say hello within this */
    int lease_ms;
    int reaper_ms;
    int redis_timeout_ms;
    int max_redis_inflight;
    int result_ttl_s;
    int dispatch_batch;
    int poll_ms;       /* re-check queues with idle workers (enqueues via other brokers) */
    int retry_base_ms; /* first retry delay; doubles per attempt */
    int retry_cap_ms;  /* longest retry delay */
    int poison_limit;  /* deliveries that killed their worker before a task is dead */
    int dead_max;      /* dead tasks kept per queue; the oldest beyond it are deleted */
    int busy_poll_us;  /* after input, poll this long before sleeping (0: off) */
    cel_text_mode text_mode;
    cel_log_level log_level;
    char log_file[256];
    char server_name[128];
} cel_config;

void cel_config_defaults(cel_config *c);
/* Parses argv (and --config FILE, whose lines are "flag value" without dashes). Returns 0 to
 * run, 1 when --help was printed, -1 on a bad flag (message printed). */
int cel_config_parse(cel_config *c, int argc, char **argv);

#endif
