#include "workers/worker/plugin.h"

#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "service/core/utf8.h"

/* The table as ABI 2 first defined it, ending with reduce: every plugin of
 * this ABI has at least this much. */
#define PLUGIN_OPS_MIN_SIZE (offsetof(struct model_ops, reduce) + sizeof(void (*)(void)))

struct plugin {
    void *handle;          /* from dlopen(); dlclose()d by plugin_close() */
    char *path;            /* owned copy */
    char *name;            /* owned copy: batchd's name, ops.name points here */
    const char *own_name;  /* the plugin's table's name (in the object) */
    struct model_ops ops;  /* the plugin's table, copied, renamed */
};

__attribute__((format(printf, 3, 4))) static int plugin_fail(char *err, size_t errlen,
                                                             const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

/* NULL-safe: true when s is well-formed UTF-8 (RFC 3629). */
static bool plugin_utf8_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_seq_len((const unsigned char *)s + i, n - i);
        if (k == 0)
            return false;
        i += k;
    }
    return true;
}

int plugin_check_ops(const struct model_ops *ops, const char *path, char *err, size_t errlen)
{
    if (ops->abi_version != MODEL_ABI_VERSION)
        return plugin_fail(err, errlen, "plugin %s has model ABI version %u, this batchd speaks %u",
                           path, (unsigned)ops->abi_version, (unsigned)MODEL_ABI_VERSION);
    if (!ops->name || !ops->name[0])
        return plugin_fail(err, errlen, "plugin %s: its model table has no name", path);
    /* The description goes into GET /v1/models as a JSON string, and the
     * name into logs and error messages: both must be text. */
    if (!plugin_utf8_ok(ops->name))
        return plugin_fail(err, errlen, "plugin %s: its model name is not valid UTF-8", path);
    if (!plugin_utf8_ok(ops->description))
        return plugin_fail(err, errlen, "plugin %s (model %s): its description is not valid UTF-8",
                           path, ops->name);
    bool any_acc = ops->acc_run || ops->acc_export || ops->acc_free || ops->reduce;
    if (any_acc) {
        /* A stateful model is all four or nothing: a missing hook would be
         * found by a worker in the middle of a job. */
        const char *missing = !ops->acc_run      ? "acc_run"
                              : !ops->acc_export ? "acc_export"
                              : !ops->acc_free   ? "acc_free"
                              : !ops->reduce     ? "reduce"
                                                 : NULL;
        if (missing)
            return plugin_fail(err, errlen,
                               "plugin %s (model %s): a stateful model needs acc_run, acc_export, "
                               "acc_free and reduce; %s is NULL",
                               path, ops->name, missing);
    } else if (!ops->run) {
        return plugin_fail(err, errlen,
                           "plugin %s (model %s): run is NULL (a model needs run, or acc_run, "
                           "acc_export, acc_free and reduce)",
                           path, ops->name);
    }
    return 0;
}

/*
 * The size of the object `sym` as the ELF symbol table gives it, or 0 when
 * it is not known (dladdr1 failed, or st_size is 0 as for an assembler
 * symbol without .size). Used to read no further than the plugin's table.
 */
static size_t plugin_symbol_size(const void *sym)
{
    Dl_info info;
    const ElfW(Sym) *esym = NULL;
    if (dladdr1(sym, &info, (void **)&esym, RTLD_DL_SYMENT) == 0 || !esym)
        return 0;
    return (size_t)esym->st_size;
}

struct plugin *plugin_open(const char *path, const char *name, char *err, size_t errlen)
{
    struct plugin *p = calloc(1, sizeof *p);
    if (!p) {
        plugin_fail(err, errlen, "plugin %s: out of memory", path);
        return NULL;
    }
    p->path = strdup(path);
    p->name = strdup(name);
    if (!p->path || !p->name) {
        plugin_fail(err, errlen, "plugin %s: out of memory", path);
        goto fail;
    }
    /* plugin= names a file: without a '/', dlopen() would search the
     * library path instead of the current directory, and could load some
     * other library of that name. */
    char rel[4096];
    const char *file = path;
    if (!strchr(path, '/')) {
        if ((size_t)snprintf(rel, sizeof rel, "./%s", path) >= sizeof rel) {
            plugin_fail(err, errlen, "plugin %s: the path is too long", path);
            goto fail;
        }
        file = rel;
    }
    dlerror(); /* clear any stale error, so the one we read is ours */
    p->handle = dlopen(file, RTLD_NOW | RTLD_LOCAL);
    if (!p->handle) {
        const char *why = dlerror();
        plugin_fail(err, errlen, "plugin %s cannot be loaded: %s", path,
                    why ? why : "dlopen failed");
        goto fail;
    }
    dlerror();
    const struct model_ops *table = dlsym(p->handle, MODEL_PLUGIN_SYMBOL);
    if (!table) {
        /* dlsym's message names the object and the symbol; ours says what
         * a plugin has to export. */
        plugin_fail(err, errlen,
                    "plugin %s does not export the symbol %s (a plugin defines `const struct "
                    "model_ops %s`, see model.h)",
                    path, MODEL_PLUGIN_SYMBOL, MODEL_PLUGIN_SYMBOL);
        goto fail;
    }
    size_t size = plugin_symbol_size(table);
    if (size != 0 && size < sizeof table->abi_version) {
        plugin_fail(err, errlen, "plugin %s: %s is %zu bytes, too small for a model table", path,
                    MODEL_PLUGIN_SYMBOL, size);
        goto fail;
    }
    /* The version first: a table of another ABI has another layout, and
     * its version is the one thing the user needs to hear about. */
    if (table->abi_version != MODEL_ABI_VERSION) {
        plugin_fail(err, errlen, "plugin %s has model ABI version %u, this batchd speaks %u",
                    path, (unsigned)table->abi_version, (unsigned)MODEL_ABI_VERSION);
        goto fail;
    }
    /* Additions at the end of the table keep the version (model.h), so a
     * plugin built against an older model.h of this ABI may have a shorter
     * table: copy what it has and leave the newer hooks NULL (p is
     * calloc'ed). Shorter than the table ABI 2 began with, it is not one. */
    if (size != 0 && size < PLUGIN_OPS_MIN_SIZE) {
        plugin_fail(err, errlen,
                    "plugin %s: %s is %zu bytes, a model ABI %u table is at least %zu (is it a "
                    "struct model_ops?)",
                    path, MODEL_PLUGIN_SYMBOL, size, (unsigned)MODEL_ABI_VERSION,
                    (size_t)PLUGIN_OPS_MIN_SIZE);
        goto fail;
    }
    memcpy(&p->ops, table, size != 0 && size < sizeof p->ops ? size : sizeof p->ops);
    if (plugin_check_ops(&p->ops, path, err, errlen) != 0)
        goto fail;
    p->own_name = p->ops.name;
    p->ops.name = p->name;
    return p;

fail:
    plugin_close(p);
    return NULL;
}

const struct model_ops *plugin_ops(const struct plugin *p) { return &p->ops; }

const char *plugin_path(const struct plugin *p) { return p->path; }

const char *plugin_own_name(const struct plugin *p) { return p->own_name; }

void plugin_close(struct plugin *p)
{
    if (!p)
        return;
    if (p->handle)
        dlclose(p->handle);
    free(p->name);
    free(p->path);
    free(p);
}
