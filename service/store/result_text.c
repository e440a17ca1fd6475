#include "service/store/result_text.h"

#include <string.h>

bool result_text_is_error(const char *text, size_t len)
{
    static const char head[] = "{\"index\":";
    static const char err[] = ",\"error\":";
    size_t h = sizeof head - 1, e = sizeof err - 1;
    if (len < h || memcmp(text, head, h) != 0)
        return false;
    size_t i = h;
    while (i < len && text[i] >= '0' && text[i] <= '9')
        i++;
    if (i == h)
        return false;
    return len - i >= e && memcmp(text + i, err, e) == 0;
}

size_t result_text_keep_errors(char *buf, size_t len)
{
    size_t out = 0, at = 0;
    while (at < len) {
        const char *nl = memchr(buf + at, '\n', len - at);
        size_t line = nl ? (size_t)(nl - (buf + at)) + 1 : len - at;
        size_t text = nl ? line - 1 : line;
        if (result_text_is_error(buf + at, text)) {
            /* memmove: the kept line may overlap where it goes */
            memmove(buf + out, buf + at, line);
            out += line;
        }
        at += line;
    }
    return out;
}
