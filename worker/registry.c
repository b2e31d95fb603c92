/* The task registry: task names to handlers, filled by the built-ins, by plugins loaded with
 * dlopen, or by a program that embeds the worker. Read-only once the pool starts. */
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker.h"

/* Reserved for builtin.c, so a plugin cannot shadow or fake a built-in. */
#define BUILTIN_PREFIX "celeriac."

void registry_init(celeriac_registry *r) {
    memset(r, 0, sizeof *r);
    r->origin = "the program";
}

void registry_free(celeriac_registry *r) {
    free(r->items);
    registry_init(r);
}

const cel_handler *registry_find(const celeriac_registry *r, const char *name, size_t len) {
    for (size_t i = 0; i < r->n; i++)
        if (strncmp(r->items[i].name, name, len) == 0 && r->items[i].name[len] == 0)
            return &r->items[i];
    return NULL;
}

__attribute__((format(printf, 2, 3))) static int refuse(celeriac_registry *r, const char *fmt,
                                                        ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->refused, sizeof r->refused, fmt, ap);
    va_end(ap);
    return -1;
}

static int registry_add(celeriac_registry *r, const char *name, celeriac_task_fn fn, void *data) {
    size_t len = name ? strlen(name) : 0;
    const cel_handler *taken = name ? registry_find(r, name, len) : NULL;
    if (!name || !cel_name_valid(name, len))
        return refuse(r, "task name \"%.60s\" is not valid: 1..%u bytes of [A-Za-z0-9_.:-]",
                      name ? name : "", CEL_NAME_MAX);
    if (!fn) return refuse(r, "task \"%s\" has no handler", name);
    if (taken) return refuse(r, "task \"%s\" is already registered by %s", name, taken->origin);
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        cel_handler *h = realloc(r->items, cap * sizeof *h);
        if (!h) return refuse(r, "task \"%s\": out of memory", name);
        r->items = h, r->cap = cap;
    }
    cel_handler *h = &r->items[r->n++];
    memcpy(h->name, name, len + 1);
    h->fn = fn, h->data = data, h->origin = r->origin;
    return 0;
}

int celeriac_register(celeriac_registry *r, const char *name, celeriac_task_fn fn, void *data) {
    if (!r) return -1;
    if (name && strncmp(name, BUILTIN_PREFIX, strlen(BUILTIN_PREFIX)) == 0)
        return refuse(r, "task name \"%s\": names starting with \"%s\" are the built-ins'", name,
                      BUILTIN_PREFIX);
    return registry_add(r, name, fn, data);
}

int registry_add_builtin(celeriac_registry *r, const char *name, celeriac_task_fn fn) {
    return registry_add(r, name, fn, NULL);
}

bool registry_load_plugin(celeriac_registry *r, const char *path, char *why, size_t cap) {
    /* RTLD_NOW: a plugin with a missing symbol fails here, not in the middle of a task. The
     * handle is never closed: handlers stay referenced until the process exits. */
    void *so = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!so) {
        snprintf(why, cap, "%s", dlerror());
        return false;
    }
    celeriac_plugin_init_fn init =
        (celeriac_plugin_init_fn)(uintptr_t)dlsym(so, CELERIAC_PLUGIN_INIT);
    if (!init) {
        snprintf(why, cap, "%s does not export %s()", path, CELERIAC_PLUGIN_INIT);
        return false;
    }
    size_t before = r->n;
    const char *origin = r->origin;
    r->origin = path, r->refused[0] = 0;
    int rc = init(r);
    r->origin = origin;
    if (rc != 0) {
        r->n = before; /* all or nothing: a half-registered plugin is not loaded */
        snprintf(why, cap, "%s: %s() returned %d%s%s", path, CELERIAC_PLUGIN_INIT, rc,
                 r->refused[0] ? ": " : "", r->refused);
        return false;
    }
    log_info("plugin %s: %zu tasks registered", path, r->n - before);
    return true;
}
