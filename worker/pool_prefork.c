/* The prefork pool: each slot's runner is a child process forked from the worker, so a task that
 * segfaults, aborts or runs away takes down only its child. The parent learns of a death from
 * SIGCHLD (waiting only for its own children, so an embedding program's are left alone), names
 * the signal in the task's failure and forks a replacement. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pool.h"

/* A child keeps only its runner socket, stdio, and regular files and devices (the log file among
 * them: its descriptor is not known here). Everything else is the parent's business: a child that
 * held the broker socket or another slot's socket would keep it open after the parent died, so
 * the broker would not see the worker go and its tasks would not be requeued at once. */
static void close_if_parents(int fd, int keep) {
    struct stat st;
    if (fd < 3 || fd == keep || fstat(fd, &st) != 0) return;
    if (!S_ISREG(st.st_mode) && !S_ISCHR(st.st_mode)) close(fd);
}

static void close_inherited_fds(int keep) {
    /* The open descriptors are listed in /proc: trying every number below the limit cost a child
     * 65,536 fstat() calls at start under a container's default limit. */
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        int own = dirfd(d);
        struct dirent *e;
        while ((e = readdir(d)))
            if (e->d_name[0] != '.' && atoi(e->d_name) != own)
                close_if_parents(atoi(e->d_name), keep);
        closedir(d);
        return;
    }
    struct rlimit rl;
    int max = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536 ? (int)rl.rlim_cur : 65536;
    for (int fd = 3; fd < max; fd++) close_if_parents(fd, keep);
}

/* Signals in a child: the parent decides when children stop (it drains on SIGTERM/SIGINT, which
 * a terminal or a service manager may also send to the whole process group), so a child ignores
 * them; it dies with its parent; SIGHUP reopens its log. */
static void child_signals(pid_t parent) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(1); /* the parent died before prctl */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGTERM, &sa, NULL), sigaction(SIGINT, &sa, NULL), sigaction(SIGQUIT, &sa, NULL);
    sa.sa_handler = SIG_DFL;
    sigaction(SIGCHLD, &sa, NULL), sigaction(SIGPIPE, &sa, NULL);
    sa.sa_handler = runner_on_sighup; /* no SA_RESTART: an idle runner wakes to reopen */
    sigaction(SIGHUP, &sa, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

static bool prefork_start(cel_slot *s, int fd) {
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) return false;
    if (pid == 0) {
        child_signals(parent);
        close_inherited_fds(fd);
        runner_loop(fd, s->pool->reg);
        _exit(0);
    }
    close(fd);
    s->pid = pid;
    return true;
}

static void prefork_kill(cel_slot *s) {
    if (s->pid > 0) kill(s->pid, SIGKILL); /* SIGCHLD then reports it */
}

static pid_t wait_child(pid_t pid, int *status, int flags) {
    pid_t r;
    while ((r = waitpid(pid, status, flags)) < 0 && errno == EINTR) {
    }
    return r;
}

static void prefork_reap(cel_slot *s) {
    if (s->pid <= 0) return;
    if (s->busy) kill(s->pid, SIGKILL);
    wait_child(s->pid, NULL, 0);
    s->pid = 0;
}

static void describe(int status, char *out, size_t cap) {
    if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        const char *abbrev = sigabbrev_np(sig);
        snprintf(out, cap, "killed by signal %d (SIG%s)%s", sig, abbrev ? abbrev : "?",
                 WCOREDUMP(status) ? ", core dumped" : "");
    } else {
        snprintf(out, cap, "exited with status %d", WEXITSTATUS(status));
    }
}

static void on_sigchld(evutil_socket_t fd, short what, void *arg) {
    (void)fd, (void)what;
    cel_pool *p = arg;
    for (int i = 0; i < p->n; i++) {
        cel_slot *s = &p->slots[i];
        int status;
        if (s->pid <= 0 || wait_child(s->pid, &status, WNOHANG) != s->pid) continue;
        s->pid = 0;
        char how[96];
        describe(status, how, sizeof how);
        pool_slot_lost(s, how);
    }
}

static bool prefork_init(cel_pool *p) {
    p->sigchld = evsignal_new(p->base, SIGCHLD, on_sigchld, p);
    return p->sigchld && event_add(p->sigchld, NULL) == 0;
}

static void prefork_fini(cel_pool *p) {
    if (p->sigchld) event_free(p->sigchld);
    p->sigchld = NULL;
}

const cel_pool_ops pool_prefork_ops = {
    .what = "child",
    .init = prefork_init,
    .fini = prefork_fini,
    .start = prefork_start,
    .kill = prefork_kill,
    .reap = prefork_reap,
};
