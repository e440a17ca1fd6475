/*
 * plugin: models loaded from shared objects (`--model NAME:plugin=PATH`).
 *
 * A plugin is a shared object that exports `const struct model_ops
 * batchd_model` (MODEL_PLUGIN_SYMBOL, model.h). plugin_open() dlopen()s it
 * with RTLD_NOW | RTLD_LOCAL, finds that table, checks it, and keeps a
 * private copy of it under batchd's name for the model (NAME from the
 * flag), so that everything downstream (supervisor, workers, logs) sees one
 * table whatever the plugin called itself.
 *
 * Process: the supervisor, at start-up, BEFORE any fork. The workers
 * inherit the mapped object and the copied table across fork(); they never
 * dlopen anything. RTLD_NOW makes a missing symbol a start-up error instead
 * of a worker dying on its first item, and RTLD_LOCAL keeps one plugin's
 * symbols from satisfying another's.
 *
 * What a plugin may not do: the supervisor is single-threaded for its whole
 * life because it forks (respawns hours later), so a plugin's constructors
 * (__attribute__((constructor)), C++ static initialisers, and those of every
 * library it pulls in) and its load() MUST NOT start threads, and must not
 * fork or install signal handlers. init() runs in a worker and may start
 * threads. Nothing here can check this; docs/architecture.md says why it
 * matters.
 *
 * What is checked (each failure is a clear message, and batchd exits 2):
 * the file opens as a shared object (dlerror()'s text otherwise), the
 * symbol exists, abi_version == MODEL_ABI_VERSION, the table is at least
 * as large as this ABI's table (when the ELF symbol size is known), a
 * non-empty name, valid UTF-8 in name and description, and either run()
 * or the whole set of stateful hooks (acc_run, acc_export, acc_free,
 * reduce).
 *
 * Threads: none of this is thread-safe (dlerror() is per-thread state and
 * the supervisor has one thread anyway).
 *
 * Ownership: plugin_open() returns a new struct plugin that the caller
 * frees with plugin_close(); the table from plugin_ops() and the strings
 * from plugin_path()/plugin_own_name() are borrowed from it. The table's
 * description and hooks point into the shared object, so they are valid
 * until plugin_close() (which dlclose()s it): call the model's unload()
 * first.
 */
#ifndef BATCHD_PLUGIN_H
#define BATCHD_PLUGIN_H

#include <stddef.h>

#include <batchd/model.h>

struct plugin;

/*
 * Loads the shared object at `path` as the model called `name` (both
 * borrowed; copied). Returns a new plugin, or NULL with the reason in err
 * (NUL-terminated, at most errlen bytes), e.g. "plugin /x/libm.so:
 * cannot load: /x/libm.so: cannot open shared object file: No such file or
 * directory" or "plugin PATH has model ABI version 1, this batchd speaks
 * 2". On failure nothing stays loaded. `path` names a file: one without a
 * '/' is in the current directory (it is never searched for in the library
 * path as dlopen() would, which could load another library of that name).
 */
struct plugin *plugin_open(const char *path, const char *name, char *err, size_t errlen);

/*
 * Checks a model table as plugin_open() does, without loading anything
 * (`path` is only used in the messages). Returns 0, or -EINVAL with the
 * reason in err. Exposed for the unit tests.
 */
int plugin_check_ops(const struct model_ops *ops, const char *path, char *err, size_t errlen);

/* The model's table: a copy of the plugin's, its name replaced by the name
 * given to plugin_open(). Borrowed from p. */
const struct model_ops *plugin_ops(const struct plugin *p);

/* The path given to plugin_open(). Borrowed from p. */
const char *plugin_path(const struct plugin *p);

/* The name the plugin calls itself (its table's name), which may differ
 * from batchd's name for it. Borrowed from p (points into the object). */
const char *plugin_own_name(const struct plugin *p);

/* dlclose()s the object and frees p. NULL is fine. Every pointer from the
 * plugin (hooks, description, shared state that points into it) is
 * invalid afterwards. */
void plugin_close(struct plugin *p);

#endif
