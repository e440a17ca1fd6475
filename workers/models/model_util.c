#include "workers/models/model_util.h"

#include <batchd/model.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void model_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

const char *model_json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER:
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "an unknown value";
}

int model_utf8_prefix(const char *s, size_t max)
{
    size_t n = strnlen(s, max + 1);
    if (n > max) {
        n = max;
        /* s[n] is the first byte left out: while it continues a
         * character, that character started inside the prefix */
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--;
    }
    return (int)n;
}

int model_params_none(const char *model, const struct model_params *params, char *err,
                      size_t errlen)
{
    if (!params || params->n == 0)
        return 0;
    model_err(err, errlen, "model %s takes no parameter '%s'", model ? model : "?",
            params->keys && params->keys[0] ? params->keys[0] : "?");
    return -EINVAL;
}
