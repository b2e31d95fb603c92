/* Logging for the daemons: levels, one line per event, a file reopened on SIGHUP. */
#ifndef CELERIAC_LOG_H
#define CELERIAC_LOG_H

#include <stdbool.h>

typedef enum cel_log_level {
    CEL_LOG_DEBUG,
    CEL_LOG_INFO,
    CEL_LOG_WARN,
    CEL_LOG_ERROR
} cel_log_level;

/* path NULL or "" logs to stderr. */
bool cel_log_open(const char *path, cel_log_level level);
void cel_log_reopen(void);
/* Returns false for an unknown level name. */
bool cel_log_level_parse(const char *name, cel_log_level *out);
bool cel_log_enabled(cel_log_level level);
void cel_log(cel_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (cel_log_enabled(CEL_LOG_DEBUG)) cel_log(CEL_LOG_DEBUG, __VA_ARGS__);                   \
    } while (0)
#define log_info(...) cel_log(CEL_LOG_INFO, __VA_ARGS__)
#define log_warn(...) cel_log(CEL_LOG_WARN, __VA_ARGS__)
#define log_error(...) cel_log(CEL_LOG_ERROR, __VA_ARGS__)

#endif
