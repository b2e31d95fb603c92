/* Logging: timestamped lines to stderr or a file; the file is reopened on SIGHUP so log rotation
 * works without a restart. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static FILE *log_fp;
static char log_path[512];
static cel_log_level log_level = CEL_LOG_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

bool cel_log_open(const char *path, cel_log_level level) {
    log_level = level;
    snprintf(log_path, sizeof log_path, "%s", path ? path : "");
    if (!log_path[0]) {
        log_fp = stderr;
        return true;
    }
    FILE *f = fopen(log_path, "a");
    if (!f) return false;
    setvbuf(f, NULL, _IOLBF, 0);
    log_fp = f;
    return true;
}

void cel_log_reopen(void) {
    if (!log_path[0]) return;
    FILE *f = fopen(log_path, "a");
    if (!f) return;
    setvbuf(f, NULL, _IOLBF, 0);
    if (log_fp && log_fp != stderr) fclose(log_fp);
    log_fp = f;
}

bool cel_log_level_parse(const char *name, cel_log_level *out) {
    for (int i = 0; i < 4; i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *out = (cel_log_level)i;
            return true;
        }
    }
    return false;
}

bool cel_log_enabled(cel_log_level level) {
    return level >= log_level;
}

void cel_log(cel_log_level level, const char *fmt, ...) {
    if (level < log_level) return;
    FILE *f = log_fp ? log_fp : stderr;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char ts[32];
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(f, "%s.%03dZ %d %s %s\n", ts, (int)(tv.tv_usec / 1000), (int)getpid(),
            level_names[level], line);
}
