#include "service/core/jsonfmt.h"

#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* "%.<prec>g" as jansson spells it: exponent without '+' or leading zeros,
 * ".0" when the text would otherwise read as an integer. */
static size_t format_g(double v, int prec, char *buf)
{
    int n = snprintf(buf, JSONFMT_REAL_MAX, "%.*g", prec, v);
    if (n <= 0 || n >= JSONFMT_REAL_MAX)
        return 0;
    char *e = strchr(buf, 'e');
    if (e) {
        char *p = e + 1, *q = e + 1;
        if (*p == '+')
            p++;
        else if (*p == '-')
            *q++ = *p++;
        while (*p == '0' && p[1] != '\0')
            p++;
        memmove(q, p, strlen(p) + 1);
        return strlen(buf);
    }
    if (!strchr(buf, '.')) {
        if ((size_t)n + 3 > JSONFMT_REAL_MAX)
            return 0;
        memcpy(buf + n, ".0", 3);
        n += 2;
    }
    return (size_t)n;
}

size_t jsonfmt_real(double v, char *buf)
{
    buf[0] = '\0';
    if (!isfinite(v))
        return 0;
    /* A normal double that some decimal of at most 15 digits names reads
     * back from %.15g (its rounding error is below half a unit of the 15th
     * digit); a subnormal has fewer bits, so fewer digits may do: try them
     * all. Among the precisions that read back, the shortest text wins (a
     * longer precision may print positionally where a shorter one needs an
     * exponent, so more digits can be fewer characters). */
    int lo = fabs(v) < DBL_MIN ? 1 : 15;
    size_t best = 0;
    char cand[JSONFMT_REAL_MAX];
    for (int prec = lo; prec <= 17; prec++) {
        size_t n = format_g(v, prec, cand);
        /* 17 digits always read back; fewer must be checked */
        if (n == 0 || (prec < 17 && strtod(cand, NULL) != v))
            continue;
        if (best == 0 || n < best) {
            memcpy(buf, cand, n + 1);
            best = n;
        }
    }
    return best;
}

/* Significant digits of a number token's mantissa (leading zeros are not
 * significant; trailing ones are counted, which only errs on "check it"). */
static size_t mantissa_digits(const char *t, size_t n)
{
    size_t d = 0;
    bool seen = false;
    for (size_t i = 0; i < n && t[i] != 'e' && t[i] != 'E'; i++) {
        if (t[i] < '0' || t[i] > '9')
            continue;
        if (t[i] != '0')
            seen = true;
        if (seen)
            d++;
    }
    return d;
}

size_t jsonfmt_shorten(char *text, size_t len)
{
    size_t r = 0, w = 0;
    while (r < len) {
        char c = text[r];
        if (c == '"') {
            /* a string, copied whole: its digits are not numbers */
            text[w++] = text[r++];
            while (r < len) {
                char s = text[r];
                text[w++] = text[r++];
                if (s == '\\' && r < len)
                    text[w++] = text[r++];
                else if (s == '"')
                    break;
            }
            continue;
        }
        if (c != '-' && (c < '0' || c > '9')) {
            text[w++] = text[r++];
            continue;
        }
        size_t start = r;
        bool real = false;
        while (r < len && strchr("0123456789+-.eE", text[r]) && text[r] != '\0') {
            if (text[r] == '.' || text[r] == 'e' || text[r] == 'E')
                real = true;
            r++;
        }
        size_t tlen = r - start;
        char tok[64], out[JSONFMT_REAL_MAX];
        size_t olen = 0;
        /* up to 15 significant digits is already the shortest spelling
         * of a normal double (jsonfmt_real says why); jansson writes 17 */
        if (real && tlen < sizeof tok && mantissa_digits(text + start, tlen) > 15) {
            memcpy(tok, text + start, tlen);
            tok[tlen] = '\0';
            char *end;
            double v = strtod(tok, &end);
            if (end == tok + tlen)
                olen = jsonfmt_real(v, out);
        }
        if (olen > 0 && olen < tlen) {
            memcpy(text + w, out, olen);
            w += olen;
        } else {
            memmove(text + w, text + start, tlen);
            w += tlen;
        }
    }
    return w;
}

char *jsonfmt_dumps(const json_t *v, size_t flags)
{
    char *s = json_dumps(v, flags);
    if (!s)
        return NULL;
    size_t n = jsonfmt_shorten(s, strlen(s));
    s[n] = '\0';
    return s;
}
