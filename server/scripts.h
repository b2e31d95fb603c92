/* Lua sources of the Redis scripts, embedded at build time from server/scripts/ (each with
 * prelude.lua in front). */
#ifndef CELERIAC_SCRIPTS_H
#define CELERIAC_SCRIPTS_H

/* NULL for an unknown name. */
const char *cel_script_source(const char *name);

#endif
