/* celeriac: the command line for people and scripts, on libceleriac's sync API. JSON in, JSON
 * out; every error is one line on stderr and a non-zero exit (see cli.h). This file
 * holds the global options, the command table and the helpers; the commands are in
 * cli_commands.c. */
#include "cli.h"

#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_head[] =
    "usage: celeriac [--broker HOST:PORT[,HOST:PORT...]] [--connect-timeout S] COMMAND ...\n";

static const char usage_tail[] =
    "\nThe broker defaults to $CELERIAC_BROKER, then 127.0.0.1:7878. `celeriac COMMAND --help`\n"
    "explains one command. Exit status: 0 done, 1 the task did not succeed or the wait timed\n"
    "out, 2 bad usage, 3 the broker refused the request or could not be reached.\n";

void cli_error(const cli *g, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "celeriac: %s%s", g->cmd ? g->cmd->name : "", g->cmd ? ": " : "");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int cli_usage_error(const cli *g, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "celeriac: %s%s", g->cmd ? g->cmd->name : "", g->cmd ? ": " : "");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see celeriac %s%s--help)\n", g->cmd ? g->cmd->name : "", g->cmd ? " " : "");
    va_end(ap);
    return CLI_USAGE;
}

int cli_help(const cli *g) {
    printf("usage: celeriac [global options] %s\n\n%s", g->cmd->synopsis, g->cmd->help);
    return CLI_OK;
}

int cli_next_opt(const cli *g, int argc, char **argv, const struct option *longopts) {
    opterr = 0;
    int ch = getopt_long(argc, argv, ":h", longopts, NULL);
    if (ch == '?') {
        if (optopt)
            cli_usage_error(g, "unknown option '-%c'", optopt);
        else
            cli_usage_error(g, "unknown option '%s'", argv[optind - 1]);
    } else if (ch == ':') {
        cli_usage_error(g, "option '%s' needs a value", argv[optind - 1]);
        ch = '?';
    }
    return ch;
}

int cli_no_options(const cli *g, int argc, char **argv) {
    static const struct option none[] = {{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    int ch = cli_next_opt(g, argc, argv, none);
    if (ch == -1) return CLI_OK;
    if (ch == 'h') return cli_help(g), CLI_HELPED;
    return CLI_USAGE;
}

bool cli_uint(const char *s, unsigned long long max, unsigned long long *out) {
    char *end;
    if (!s || *s < '0' || *s > '9') return false;
    *out = strtoull(s, &end, 10);
    return !*end && *out <= max;
}

bool cli_seconds(const char *s, double max_s, uint64_t *ms_out) {
    char *end;
    if (!s || !*s || *s == '-' || *s == '+') return false;
    double v = strtod(s, &end);
    if (*end || !isfinite(v) || v < 0 || v > max_s) return false;
    *ms_out = (uint64_t)llround(v * 1000);
    return true;
}

/* A bad address is a usage error, found before anything connects. */
static bool brokers_valid(const cli *g) {
    const char *list = g->broker && *g->broker ? g->broker : getenv("CELERIAC_BROKER");
    if (!list || !*list) return true;
    char addr[300], host[256];
    for (const char *p = list, *comma;; p = comma + 1) {
        comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        snprintf(addr, sizeof addr, "%.*s", (int)len, p);
        int port;
        if (len >= sizeof addr || !cel_conn_parse_addr(addr, host, sizeof host, &port)) {
            cli_usage_error(g, "bad broker address '%s' (want HOST:PORT)", addr);
            return false;
        }
        if (!comma) return true;
    }
}

int cli_connect(const cli *g, celeriac **out) {
    char err[512];
    *out = NULL;
    if (!brokers_valid(g)) return CLI_USAGE;
    *out = celeriac_connect(g->broker, g->connect_ms, err, sizeof err);
    if (!*out) cli_error(g, "%s", err);
    return *out ? CLI_OK : CLI_BROKER;
}

int cli_failed(const cli *g, celeriac *c, const char *what, int rc) {
    cli_error(g, "%s%s%s: %s", what ? what : "", what ? ": " : "", celeriac_errname(rc),
              celeriac_last_error(c));
    return rc == CELERIAC_E_ARGS ? CLI_USAGE : CLI_BROKER;
}

void cli_print_json(json_t *j, bool pretty) {
    char *s = json_dumps(j, (pretty ? JSON_INDENT(2) : JSON_COMPACT) | JSON_ENCODE_ANY);
    if (s) puts(s);
    free(s);
}

static void print_usage(FILE *f) {
    fputs(usage_head, f);
    fputs("\ncommands:\n", f);
    for (const cli_command *c = cli_commands; c->name; c++) fprintf(f, "  %s\n", c->synopsis);
    fputs("  help [COMMAND]\n", f);
    fputs(usage_tail, f);
}

static const cli_command *find_command(const char *name) {
    for (const cli_command *c = cli_commands; c->name; c++)
        if (!strcmp(c->name, name)) return c;
    return NULL;
}

/* `celeriac help [COMMAND]`. */
static int run_help(cli *g, int argc, char **argv) {
    if (argc < 2) return print_usage(stdout), CLI_OK;
    const cli_command *c = find_command(argv[1]);
    if (!c) return cli_usage_error(g, "unknown command '%s'", argv[1]);
    g->cmd = c;
    return cli_help(g);
}

/* "--name VALUE", "--name=VALUE" or (short) "-n VALUE": the value, or NULL when a is not this
 * option. *i moves past a separate value; *missing is set when there is none. */
static const char *option_value(const char *a, const char *name, const char *short_name, int argc,
                                char **argv, int *i, bool *missing) {
    size_t n = strlen(name);
    if (!strncmp(a, name, n) && a[n] == '=') return a + n + 1;
    if (strcmp(a, name) != 0 && (!short_name || strcmp(a, short_name) != 0)) return NULL;
    if (*i + 1 >= argc) return *missing = true, NULL;
    return argv[++*i];
}

/* Global options come before the command; returns the index of the command, or -1 with
 * *exit_code set. */
static int parse_globals(cli *g, int argc, char **argv, int *exit_code) {
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i], *v;
        bool missing = false;
        uint64_t ms;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            print_usage(stdout);
            return *exit_code = CLI_OK, -1;
        }
        if ((v = option_value(a, "--broker", "-b", argc, argv, &i, &missing))) {
            g->broker = v;
        } else if ((v = option_value(a, "--connect-timeout", NULL, argc, argv, &i, &missing))) {
            if (!cli_seconds(v, 3600, &ms) || ms == 0)
                return *exit_code = cli_usage_error(g, "bad connect timeout '%s'", v), -1;
            g->connect_ms = (int)ms;
        } else if (missing) {
            return *exit_code = cli_usage_error(g, "option '%s' needs a value", a), -1;
        } else {
            return *exit_code = cli_usage_error(g, "unknown option '%s'", a), -1;
        }
    }
    if (i >= argc) {
        print_usage(stderr);
        return *exit_code = CLI_USAGE, -1;
    }
    return i;
}

int main(int argc, char **argv) {
    cli g = {.broker = NULL, .connect_ms = 5000, .cmd = NULL};
    int rc = CLI_USAGE; /* set by parse_globals on every early return */
    int i = parse_globals(&g, argc, argv, &rc);
    if (i < 0) return rc;
    if (!strcmp(argv[i], "help")) return run_help(&g, argc - i, argv + i);
    g.cmd = find_command(argv[i]);
    if (!g.cmd) return cli_usage_error(&g, "unknown command '%s'", argv[i]);
    optind = 1;
    rc = g.cmd->run(&g, argc - i, argv + i);
    return rc == CLI_HELPED ? CLI_OK : rc;
}
