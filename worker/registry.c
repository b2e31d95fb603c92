/* Task registry: names to handlers, filled by the built-ins, by plugins loaded with dlopen, or
 * by a program that embeds the worker. */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker.h"

void registry_init(celeriac_registry *r) {
    memset(r, 0, sizeof *r);
}

void registry_free(celeriac_registry *r) {
    free(r->items);
    registry_init(r);
}

const cel_handler *registry_find(const celeriac_registry *r, const char *name, size_t len) {
    for (size_t i = 0; i < r->n; i++)
        if (strlen(r->items[i].name) == len && memcmp(r->items[i].name, name, len) == 0)
            return &r->items[i];
    return NULL;
}

int celeriac_register(celeriac_registry *r, const char *name, celeriac_task_fn fn, void *data) {
    size_t len = name ? strlen(name) : 0;
    if (!fn || !cel_name_valid(name, len) || registry_find(r, name, len)) return -1;
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        cel_handler *h = realloc(r->items, cap * sizeof *h);
        if (!h) return -1;
        r->items = h, r->cap = cap;
    }
    cel_handler *h = &r->items[r->n++];
    memcpy(h->name, name, len + 1);
    h->fn = fn, h->data = data;
    return 0;
}

bool registry_load_plugin(celeriac_registry *r, const char *path, char *why, size_t cap) {
    /* RTLD_NOW: a plugin with a missing symbol fails here, not in the middle of a task. */
    void *so = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!so) {
        snprintf(why, cap, "%s", dlerror());
        return false;
    }
    celeriac_plugin_init_fn init =
        (celeriac_plugin_init_fn)(uintptr_t)dlsym(so, CELERIAC_PLUGIN_INIT);
    if (!init) {
        snprintf(why, cap, "%s does not export %s", path, CELERIAC_PLUGIN_INIT);
        return false;
    }
    size_t before = r->n;
    if (init(r) != 0) {
        snprintf(why, cap, "%s: %s failed", path, CELERIAC_PLUGIN_INIT);
        return false;
    }
    log_info("plugin %s registered %zu tasks", path, r->n - before);
    return true;
}
