/*
 * bad_plugin: the broken plugins the loader must refuse, one source built
 * into one shared object per mistake (the Makefile builds
 * build/tests/plugins/libbad_VARIANT.so with -DBAD_VARIANT):
 *
 *   BAD_nosym   the table is exported under a misspelt name
 *   BAD_abi1    the table says model ABI version 1
 *   BAD_norun   neither run() nor the stateful hooks
 *   BAD_short   batchd_model is two words, not a struct model_ops (the
 *               right version number, then nothing: the loader must not
 *               read past it)
 *
 * Each is otherwise a working model (it echoes its item), so that the one
 * mistake is what the loader has to find. Used by tests/unit/workers/
 * test_plugin.c and tests/integration/test_plugins.c.
 */
#include <errno.h>

#include <jansson.h>

#include <batchd/model.h>

__attribute__((unused)) static int bad_run(void *state, const json_t *item, json_t **output, char *err, size_t errlen)
{
    (void)state;
    (void)err;
    (void)errlen;
    *output = json_deep_copy(item);
    return *output ? 0 : -ENOMEM;
}

#if defined(BAD_nosym)
#define BAD_SYMBOL batchd_modle /* the typo under test */
#else
#define BAD_SYMBOL batchd_model
#endif

#if defined(BAD_abi1)
#define BAD_VERSION 1u
#else
#define BAD_VERSION MODEL_ABI_VERSION
#endif

#if defined(BAD_norun)
#define BAD_RUN NULL
#else
#define BAD_RUN bad_run
#endif

#if defined(BAD_short)
extern const uint32_t batchd_model[2];
const uint32_t batchd_model[2] = {MODEL_ABI_VERSION, 0};
#else
/* Declared first: -Wmissing-variable-declarations in some builds. */
extern const struct model_ops BAD_SYMBOL;

const struct model_ops BAD_SYMBOL = {
    .abi_version = BAD_VERSION,
    .name = "bad",
    .description = "A deliberately broken plugin for the loader's tests.",
    .run = BAD_RUN,
};
#endif
