/* celeriacd: flags, then hand over to the server. */
#include <stdio.h>

#include "broker.h"

int main(int argc, char **argv) {
    cel_config cfg;
    cel_config_defaults(&cfg);
    int rc = cel_config_parse(&cfg, argc, argv);
    if (rc != 0) return rc > 0 ? 0 : 2;
    if (!cel_log_open(cfg.log_file, cfg.log_level)) {
        fprintf(stderr, "celeriacd: cannot open log file %s\n", cfg.log_file);
        return 2;
    }
    return server_run(&cfg);
}
