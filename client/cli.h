/* The celeriac CLI: helpers shared by its commands (cli.c) and the commands (cli_commands.c). */
#ifndef CELERIAC_CLI_H
#define CELERIAC_CLI_H

#include <celeriac/celeriac.h>
#include <celeriac/conn.h>
#include <celeriac/proto.h>
#include <getopt.h>
#include <jansson.h>
#include <stdbool.h>

/* Exit status, documented in `celeriac --help`. */
enum {
    CLI_OK = 0,
    CLI_TASK_FAILED = 1, /* the task ended other than succeeded, or the wait timed out */
    CLI_USAGE = 2,       /* bad command line or arguments; nothing was sent */
    CLI_BROKER = 3,      /* the broker refused the request or could not be reached */
    CLI_HELPED = -1      /* --help was printed (exit 0) */
};

typedef struct cli cli;

typedef struct cli_command {
    const char *name;
    int (*run)(cli *g, int argc, char **argv); /* argv[0] is the command's name */
    const char *synopsis;
    const char *help;
} cli_command;

struct cli {
    const char *broker; /* NULL: $CELERIAC_BROKER or the default */
    int connect_ms;
    const cli_command *cmd;
};

extern const cli_command cli_commands[]; /* ends with a NULL name */

/* "celeriac: COMMAND: message" on stderr. */
void cli_error(const cli *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The same with a pointer to --help; returns CLI_USAGE. */
int cli_usage_error(const cli *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints the command's help on stdout; returns CLI_OK. */
int cli_help(const cli *g);
/* getopt_long with the CLI's own messages: returns the option, -1 after the last, or '?' after
 * printing a usage error. Options may follow the positional arguments ("--" ends them). */
int cli_next_opt(const cli *g, int argc, char **argv, const struct option *longopts);
/* For commands without options: CLI_OK, CLI_HELPED or CLI_USAGE. */
int cli_no_options(const cli *g, int argc, char **argv);
/* Whole decimal numbers only. */
bool cli_uint(const char *s, unsigned long long max, unsigned long long *out);
/* A non-negative decimal number of seconds (fractions allowed) into milliseconds. */
bool cli_seconds(const char *s, double max_s, uint64_t *ms_out);
/* Connects: CLI_OK, or CLI_USAGE (a bad broker address) or CLI_BROKER after printing why. */
int cli_connect(const cli *g, celeriac **out);
/* Prints a failed call's error ("what: NAME: message"); returns the exit status for it. */
int cli_failed(const cli *g, celeriac *c, const char *what, int rc);
/* One JSON value on stdout: compact on one line, or indented for people. Steals nothing. */
void cli_print_json(json_t *j, bool pretty);

#endif
