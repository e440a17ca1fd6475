/*
 * test_bad_inputs: the bad-input catalogue (tests/integration/bad/, one
 * NNN-name.case file per request) against one running batchd.
 *
 * Each case file is one request, written byte for byte (raw.h sends it over
 * its own connection, so nothing is normalised on the way), and the answer
 * it must get: a status and a problem type, optionally the problem's
 * pointer, line, limit or a piece of its detail. The format is described
 * in tests/integration/bad/README.md. For every case:
 *   - a response comes (no hang: each exchange has a deadline; no dropped
 *     connection) and it is never a 5xx;
 *   - the status is the expected one;
 *   - it is an RFC 9457 problem (application/problem+json, type, title,
 *     status == the HTTP status, detail, instance == the path) of the
 *     expected type, unless the case names an `exception:` (answers
 *     libmicrohttpd gives itself, before batchd sees the request: they are
 *     HTML, and left out of the contract log since openapi.yaml does not
 *     describe them);
 *   - every other response is appended to the contract log like any
 *     harness response, so tests/contract/validate.mjs checks it too.
 * A case marked `known-bug:` is run and reported (XFAIL, or XPASS when it
 * now passes) without failing the program: the catalogue says what the
 * right answer is while the fix is pending.
 *
 * Around the catalogue: a job is run before it and its results kept; after
 * the last case GET /healthz answers, that earlier job and its results are
 * unchanged, and a new job still succeeds. The service runs with small
 * limits so that the 413 cases need small bodies: --max-body-bytes 1 MiB,
 * --max-items 1000, --max-item-bytes 64 KiB, and the default
 * --max-json-depth (64).
 */
#include "tests/integration/harness.h"
#include "tests/integration/raw.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define WAIT_S 60
#define CASE_TIMEOUT_S 10
#define MAX_CASES 512
#define EARLIER_N 100

static struct h_service svc;
static bool svc_up;
static char bad_dir[512];

/* The case being run, parsed. */
struct bad_case {
    char file[256];
    char method[64];
    struct h_buf target;
    char version[32];
    struct h_buf headers;  /* "Name: value\r\n" lines, as sent */
    struct h_buf body;
    struct h_buf raw;      /* raw: the whole request, as is (no request line built) */
    bool body_given;       /* a body directive was seen (even an empty one) */
    bool no_host;          /* host: none */
    bool cl_none;          /* content-length: none */
    size_t chunk;          /* chunked: N bytes per chunk; 0 = not chunked */
    int status;            /* expected; 0 = the connection is closed unanswered */
    char slug[64];         /* the problem's type, "" when not a problem */
    char exception[512];
    char known_bug[512];
    char pointer[512];
    bool has_pointer;
    long long line, limit;
    bool has_line, has_limit;
    char detail[512];
    int timeout_s;
    bool parse_error;
};

static void case_free(struct bad_case *c)
{
    h_buf_free(&c->target);
    h_buf_free(&c->headers);
    h_buf_free(&c->body);
    h_buf_free(&c->raw);
}

/* Decodes the escapes of a case value into b: \n \r \t \0 \\ \xHH. */
static bool unescape_into(struct h_buf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch != '\\') {
            h_buf_add(b, &ch, 1);
            continue;
        }
        if (++i >= n)
            return false;
        switch (s[i]) {
        case 'n': ch = '\n'; break;
        case 'r': ch = '\r'; break;
        case 't': ch = '\t'; break;
        case '0': ch = '\0'; break;
        case '\\': ch = '\\'; break;
        case '"': ch = '"'; break;
        case 'x': {
            if (i + 2 >= n)
                return false;
            char hex[3] = {s[i + 1], s[i + 2], '\0'};
            char *end;
            long v = strtol(hex, &end, 16);
            if (end != hex + 2)
                return false;
            ch = (char)v;
            i += 2;
            break;
        }
        default:
            return false;
        }
        h_buf_add(b, &ch, 1);
    }
    return true;
}

/* A copy of an unescaped single-line value into out[cap] (C string). */
static bool unescape_str(char *out, size_t cap, const char *s, size_t n)
{
    struct h_buf b = {0};
    bool ok = unescape_into(&b, s, n);
    if (ok && b.len < cap) {
        memcpy(out, b.p ? b.p : "", b.len);
        out[b.len] = '\0';
    } else {
        ok = false;
    }
    h_buf_free(&b);
    return ok;
}

static void fill(struct h_buf *b, char ch, size_t n)
{
    char block[4096];
    memset(block, ch, sizeof block);
    while (n > 0) {
        size_t k = n < sizeof block ? n : sizeof block;
        h_buf_add(b, block, k);
        n -= k;
    }
}

/* Parses one directive line (without its newline) into c. */
static bool parse_line(struct bad_case *c, const char *l, size_t n)
{
    if (n == 0 || l[0] == '#')
        return true;
    const char *colon = memchr(l, ':', n);
    if (!colon)
        return false;
    char key[32];
    size_t kl = (size_t)(colon - l);
    if (kl >= sizeof key)
        return false;
    memcpy(key, l, kl);
    key[kl] = '\0';
    const char *v = colon + 1;
    size_t vl = n - kl - 1;
    if (vl > 0 && *v == ' ') {
        v++;
        vl--;
    }
    char tmp[512];
    if (!strcmp(key, "request")) {
        /* METHOD TARGET [VERSION]: split at spaces after unescaping */
        struct h_buf b = {0};
        bool ok = unescape_into(&b, v, vl);
        h_buf_add(&b, "", 1);
        char *sp1 = ok ? strchr(b.p, ' ') : NULL;
        if (sp1) {
            *sp1 = '\0';
            char *t = sp1 + 1, *sp2 = strchr(t, ' ');
            if (sp2)
                *sp2 = '\0';
            snprintf(c->method, sizeof c->method, "%s", b.p);
            h_buf_add(&c->target, t, strlen(t));
            snprintf(c->version, sizeof c->version, "%s", sp2 ? sp2 + 1 : "HTTP/1.1");
        }
        h_buf_free(&b);
        return sp1 != NULL;
    }
    if (!strcmp(key, "header")) {
        bool ok = unescape_into(&c->headers, v, vl);
        h_buf_add(&c->headers, "\r\n", 2);
        return ok;
    }
    if (!strcmp(key, "header-fill") || !strcmp(key, "headers-many") ||
        !strcmp(key, "target-fill") || !strcmp(key, "body-fill")) {
        if (!unescape_str(tmp, sizeof tmp, v, vl))
            return false;
        char name[128] = "";
        unsigned long count = 0;
        if (!strcmp(key, "header-fill")) {
            if (sscanf(tmp, "%127s %lu", name, &count) != 2)
                return false;
            h_buf_printf(&c->headers, "%s: ", name);
            fill(&c->headers, 'a', count);
            h_buf_add(&c->headers, "\r\n", 2);
        } else if (!strcmp(key, "headers-many")) {
            if (sscanf(tmp, "%lu", &count) != 1)
                return false;
            for (unsigned long i = 0; i < count; i++)
                h_buf_printf(&c->headers, "X-Filler-%lu: v\r\n", i);
        } else if (!strcmp(key, "target-fill")) {
            if (sscanf(tmp, "%lu", &count) != 1)
                return false;
            fill(&c->target, 'a', count);
        } else {
            char ch[8];
            if (sscanf(tmp, "%lu %7s", &count, ch) != 2)
                return false;
            fill(&c->body, ch[0], count);
            c->body_given = true;
        }
        return count <= (64u << 20);
    }
    if (!strcmp(key, "raw"))
        return unescape_into(&c->raw, v, vl);
    if (!strcmp(key, "body")) {
        c->body_given = true;
        return unescape_into(&c->body, v, vl);
    }
    if (!strcmp(key, "body-repeat")) {
        /* COUNT TEXT */
        char *end;
        unsigned long count = strtoul(v, &end, 10);
        if (end == v || *end != ' ' || count > 10000000)
            return false;
        struct h_buf piece = {0};
        bool ok = unescape_into(&piece, end + 1, vl - (size_t)(end + 1 - v));
        for (unsigned long i = 0; ok && i < count; i++)
            h_buf_add(&c->body, piece.p, piece.len);
        h_buf_free(&piece);
        c->body_given = true;
        return ok;
    }
    if (!strcmp(key, "body-file")) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%.*s", bad_dir, (int)vl, v);
        FILE *f = fopen(path, "rb");
        if (!f)
            return false;
        char buf[65536];
        size_t k;
        while ((k = fread(buf, 1, sizeof buf, f)) > 0)
            h_buf_add(&c->body, buf, k);
        fclose(f);
        c->body_given = true;
        return true;
    }
    if (!unescape_str(tmp, sizeof tmp, v, vl))
        return false;
    if (!strcmp(key, "host"))
        c->no_host = !strcmp(tmp, "none");
    else if (!strcmp(key, "content-length"))
        c->cl_none = !strcmp(tmp, "none");
    else if (!strcmp(key, "chunked"))
        c->chunk = strtoul(tmp, NULL, 10);
    else if (!strcmp(key, "timeout"))
        c->timeout_s = atoi(tmp);
    else if (!strcmp(key, "exception"))
        snprintf(c->exception, sizeof c->exception, "%s", tmp);
    else if (!strcmp(key, "known-bug"))
        snprintf(c->known_bug, sizeof c->known_bug, "%s", tmp);
    else if (!strcmp(key, "expect-pointer")) {
        snprintf(c->pointer, sizeof c->pointer, "%s", tmp);
        c->has_pointer = true;
    } else if (!strcmp(key, "expect-line")) {
        c->line = atoll(tmp);
        c->has_line = true;
    } else if (!strcmp(key, "expect-limit")) {
        c->limit = atoll(tmp);
        c->has_limit = true;
    } else if (!strcmp(key, "expect-detail"))
        snprintf(c->detail, sizeof c->detail, "%s", tmp);
    else if (!strcmp(key, "expect")) {
        if (!strcmp(tmp, "none")) {
            c->status = 0;
            return true;
        }
        char slug[64] = "";
        if (sscanf(tmp, "%d %63s", &c->status, slug) != 2)
            return false;
        snprintf(c->slug, sizeof c->slug, "%s", strcmp(slug, "-") ? slug : "");
    } else
        return false;
    return true;
}

static bool case_load(struct bad_case *c, const char *file)
{
    memset(c, 0, sizeof *c);
    snprintf(c->file, sizeof c->file, "%s", file);
    c->status = -1;
    c->timeout_s = CASE_TIMEOUT_S;
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", bad_dir, file);
    FILE *f = fopen(path, "rb");
    if (!f)
        return CHECKF(false, "cannot open %s", path);
    struct h_buf text = {0};
    char buf[4096];
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, f)) > 0)
        h_buf_add(&text, buf, k);
    fclose(f);
    bool ok = true;
    size_t lineno = 0;
    for (size_t pos = 0; ok && pos < text.len; lineno++) {
        const char *l = text.p + pos;
        const char *nl = memchr(l, '\n', text.len - pos);
        size_t n = nl ? (size_t)(nl - l) : text.len - pos;
        pos += n + 1;
        if (n > 0 && l[n - 1] == '\r')
            n--;
        ok = CHECKF(parse_line(c, l, n), "%s line %zu: cannot read \"%.*s\"", file, lineno + 1,
                    (int)(n < 80 ? n : 80), l);
    }
    h_buf_free(&text);
    ok = ok && CHECKF((c->method[0] && c->target.len) || c->raw.len, "%s: no request", file) &&
         CHECKF(c->status >= 0, "%s: no expect line", file) &&
         CHECKF(c->status != 0 || c->exception[0],
                "%s: a case expecting no response must say why (exception:)", file);
    return ok;
}

/* The request's bytes. */
static void case_build(const struct bad_case *c, struct h_buf *out)
{
    if (c->raw.len) {
        h_buf_add(out, c->raw.p, c->raw.len);
        return;
    }
    h_buf_printf(out, "%s ", c->method);
    h_buf_add(out, c->target.p, c->target.len);
    h_buf_printf(out, " %s\r\n", c->version);
    if (!c->no_host)
        h_buf_printf(out, "Host: 127.0.0.1:%d\r\n", svc.port);
    if (c->headers.len)
        h_buf_add(out, c->headers.p, c->headers.len);
    bool explicit_cl = false;
    for (size_t i = 0; i + 15 <= c->headers.len; i++)
        if ((i == 0 || c->headers.p[i - 1] == '\n') &&
            strncasecmp(c->headers.p + i, "content-length:", 15) == 0)
            explicit_cl = true;
    if (c->chunk)
        h_buf_printf(out, "Transfer-Encoding: chunked\r\n");
    else if (!explicit_cl && !c->cl_none && c->body_given)
        h_buf_printf(out, "Content-Length: %zu\r\n", c->body.len);
    h_buf_add(out, "\r\n", 2);
    if (!c->chunk) {
        if (c->body.len)
            h_buf_add(out, c->body.p, c->body.len);
        return;
    }
    for (size_t pos = 0; pos < c->body.len; pos += c->chunk) {
        size_t n = c->body.len - pos < c->chunk ? c->body.len - pos : c->chunk;
        h_buf_printf(out, "%zx\r\n", n);
        h_buf_add(out, c->body.p + pos, n);
        h_buf_add(out, "\r\n", 2);
    }
    h_buf_add(out, "0\r\n\r\n", 5);
}

/* The path part of the target, for "instance": only when it needs no
 * decoding (no %, no query) and is printable ASCII, else NULL. */
static bool plain_path(const struct bad_case *c, char *out, size_t cap)
{
    if (c->target.len == 0 || c->target.len >= cap)
        return false;
    for (size_t i = 0; i < c->target.len; i++) {
        unsigned char ch = (unsigned char)c->target.p[i];
        if (ch == '%' || ch == '?' || ch < 0x21 || ch > 0x7e)
            return false;
    }
    memcpy(out, c->target.p, c->target.len);
    out[c->target.len] = '\0';
    return true;
}

/* Checks the response against the case; returns true when it matches. */
static bool case_check(const struct bad_case *c, int rc, struct h_resp *r)
{
    bool ok = true;
    if (c->status == 0)
        return CHECKF(rc != 0 && h_raw_dropped(r), "%s: expected the connection to be closed "
                      "unanswered (%s), got %ld", c->file, c->exception, r->status);
    if (!CHECKF(rc == 0, "%s: no response: %s", c->file, r->error))
        return false;
    /* a 5xx only where libmicrohttpd answers by itself and the case says
     * so (505 for an HTTP version it does not speak) */
    ok &= CHECKF(r->status < 500 || (c->exception[0] && r->status == c->status),
                 "%s: a %ld answer to a client's request", c->file, r->status);
    ok &= CHECKF(r->status == c->status, "%s: status %ld, expected %d; body %.300s", c->file,
                 r->status, c->status, r->body);
    bool problem = h_resp_is(r, "application/problem+json");
    if (c->exception[0])
        return ok;
    if (!c->slug[0]) {
        ok &= CHECKF(!problem && r->status < 400, "%s: expected a success, got %ld %.200s",
                     c->file, r->status, r->body);
        return ok;
    }
    if (!CHECKF(problem, "%s: Content-Type %s, not application/problem+json", c->file,
                r->content_type ? r->content_type : "(none)"))
        return false;
    json_t *j = h_json(r);
    if (!CHECKF(json_is_object(j), "%s: the problem is not a JSON object", c->file))
        return false;
    char type[128];
    snprintf(type, sizeof type, "urn:batchd:problem:%s", c->slug);
    const char *t = h_jstr(j, "type");
    ok &= CHECKF(t && !strcmp(t, type), "%s: type %s, expected %s (detail: %s)", c->file,
                 t ? t : "(none)", type, h_jstr(j, "detail") ? h_jstr(j, "detail") : "");
    long long st = -1;
    ok &= CHECKF(h_jint(j, "status", &st) && st == r->status, "%s: status member %lld", c->file,
                 st);
    ok &= CHECKF(h_jstr(j, "title") && h_jstr(j, "title")[0], "%s: no title", c->file);
    const char *detail = h_jstr(j, "detail");
    ok &= CHECKF(detail != NULL, "%s: no detail", c->file);
    char path[1024];
    if (plain_path(c, path, sizeof path)) {
        const char *inst = h_jstr(j, "instance");
        ok &= CHECKF(inst && !strcmp(inst, path), "%s: instance %s, expected %s", c->file,
                     inst ? inst : "(none)", path);
    } else {
        ok &= CHECKF(h_jstr(j, "instance") != NULL, "%s: no instance", c->file);
    }
    if (c->has_pointer) {
        const char *p = h_jstr(j, "pointer");
        ok &= CHECKF(p && !strcmp(p, c->pointer), "%s: pointer %s, expected %s", c->file,
                     p ? p : "(none)", c->pointer);
    }
    long long v = -1;
    if (c->has_line)
        ok &= CHECKF(h_jint(j, "line", &v) && v == c->line, "%s: line %lld, expected %lld",
                     c->file, v, c->line);
    if (c->has_limit)
        ok &= CHECKF(h_jint(j, "limit", &v) && v == c->limit, "%s: limit %lld, expected %lld",
                     c->file, v, c->limit);
    if (c->detail[0])
        ok &= CHECKF(detail && strstr(detail, c->detail), "%s: detail \"%s\" lacks \"%s\"",
                     c->file, detail ? detail : "", c->detail);
    return ok;
}

/* Records the response for the contract check, when openapi.yaml describes
 * it: not libmicrohttpd's own answers, and only printable request lines. */
static void case_record(const struct bad_case *c, const struct h_resp *r)
{
    if (r->status == 0 || c->exception[0] || c->raw.len)
        return;
    for (size_t i = 0; i < c->target.len; i++)
        if ((unsigned char)c->target.p[i] < 0x21 || (unsigned char)c->target.p[i] > 0x7e)
            return;
    for (const char *m = c->method; *m; m++)
        if ((unsigned char)*m < 0x21 || (unsigned char)*m > 0x7e)
            return;
    char *target = strndup(c->target.p, c->target.len);
    if (!target)
        abort();
    struct h_req req = {.method = c->method, .path = target};
    h_contract_record(&req, r);
    free(target);
}

/* ------------------------------------------------------------------ tests */

static char *case_files[MAX_CASES];
static size_t n_cases;
static size_t case_idx;
static unsigned n_xfail, n_xpass;

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void run_case(void)
{
    struct bad_case c;
    const char *file = case_files[case_idx];
    if (!case_load(&c, file)) {
        case_free(&c);
        return;
    }
    struct h_buf req = {0};
    case_build(&c, &req);
    struct h_resp r;
    int rc = h_raw_exchange(svc.port, req.p, req.len, c.timeout_s, &r);
    if (c.known_bug[0]) {
        /* judged without counting a failure: a known bug is reported */
        bool as_expected = (c.status == 0) ? (rc != 0 && h_raw_dropped(&r))
                                           : (rc == 0 && r.status == c.status &&
                                              (!c.slug[0] || h_resp_is(&r, "application/problem+json")));
        if (as_expected) {
            n_xpass++;
            h_note("XPASS %s: known bug (%s) no longer shows: remove its known-bug line",
                   file, c.known_bug);
        } else {
            n_xfail++;
            char got[900];
            if (rc)
                snprintf(got, sizeof got, "%s", r.error);
            else
                snprintf(got, sizeof got, "status %ld, %.200s", r.status, r.body);
            h_note("XFAIL %s: known bug: %s (got: %s)", file, c.known_bug, got);
        }
    } else {
        case_check(&c, rc, &r);
    }
    case_record(&c, &r);
    h_resp_free(&r);
    h_buf_free(&req);
    case_free(&c);
    /* the service is still there (every case: it is cheap) */
    struct h_resp hz;
    if (CHECK(h_get(&svc, "/healthz", &hz) == 0))
        CHECKF(hz.status == 200, "%s: GET /healthz afterwards: %ld", file, hz.status);
    h_resp_free(&hz);
}

static void list_cases(void)
{
    DIR *d = opendir(bad_dir);
    if (!d) {
        CHECKF(false, "cannot open %s", bad_dir);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n_cases < MAX_CASES) {
        size_t n = strlen(e->d_name);
        if (n > 5 && !strcmp(e->d_name + n - 5, ".case")) {
            case_files[n_cases] = strdup(e->d_name);
            if (!case_files[n_cases])
                abort();
            n_cases++;
        }
    }
    closedir(d);
    qsort(case_files, n_cases, sizeof case_files[0], cmp_str);
    CHECKF(n_cases >= 40, "only %zu cases in %s", n_cases, bad_dir);
}

/* ---------------------------------------------------- the jobs around it */

static char earlier_id[32];
static char *earlier_results; /* compact JSON of its results */

static void earlier_job(void)
{
    struct h_buf b = {0};
    h_buf_printf(&b, "{\"model\":\"square\",\"inputs\":[");
    for (int i = 0; i < EARLIER_N; i++)
        h_buf_printf(&b, "%s%d", i ? "," : "", i);
    h_buf_printf(&b, "]}");
    bool ok = h_submit(&svc, "/v1/jobs", "application/json", b.p, b.len, earlier_id, 30);
    h_buf_free(&b);
    if (!ok)
        return;
    json_t *job = h_wait_job(&svc, earlier_id, WAIT_S);
    if (CHECK(job != NULL))
        CHECK_STR(h_jstr(job, "status"), "succeeded");
    json_decref(job);
    json_t *res = h_fetch_results(&svc, earlier_id, EARLIER_N, 1000);
    if (CHECK(res != NULL))
        earlier_results = h_json_dump(res);
    json_decref(res);
}

static void after_catalogue(void)
{
    struct h_resp r;
    if (CHECK(h_get(&svc, "/healthz", &r) == 0))
        CHECK_INT(r.status, 200);
    h_resp_free(&r);
    CHECK(h_pid_alive(svc.pid));
    if (earlier_id[0] && earlier_results) {
        char path[80];
        snprintf(path, sizeof path, "/v1/jobs/%s", earlier_id);
        if (CHECK(h_get(&svc, path, &r) == 0) && CHECK_INT(r.status, 200)) {
            CHECK_STR(h_jstr(h_json(&r), "status"), "succeeded");
            long long done = -1;
            CHECK(h_jint(h_json(&r), "counts/done", &done) && done == EARLIER_N);
        }
        h_resp_free(&r);
        json_t *res = h_fetch_results(&svc, earlier_id, EARLIER_N, 1000);
        char *now = res ? h_json_dump(res) : NULL;
        CHECKF(now && !strcmp(now, earlier_results), "the earlier job's results changed");
        free(now);
        json_decref(res);
    }
    /* and a new job still runs */
    char id[32];
    const char *body = "{\"model\":\"square\",\"inputs\":[3,4]}";
    if (h_submit(&svc, "/v1/jobs", "application/json", body, strlen(body), id, 30)) {
        json_t *job = h_wait_job(&svc, id, WAIT_S);
        if (CHECK(job != NULL))
            CHECK_STR(h_jstr(job, "status"), "succeeded");
        json_decref(job);
        json_t *res = h_fetch_results(&svc, id, 2, 10);
        double v = 0;
        CHECK(res && h_jnum(json_array_get(res, 1), "output", &v) && v == 16);
        json_decref(res);
    }
    if (n_xfail || n_xpass)
        h_note("%u case(s) failed as known bugs (XFAIL), %u known bug(s) no longer show (XPASS)",
               n_xfail, n_xpass);
}

static void start(void)
{
    static const char *const args[] = {"--workers", "1", "--model", "echo", "--model", "square",
                                       "--max-body-bytes", "1048576", "--max-items", "1000",
                                       "--max-item-bytes", "65536", NULL};
    struct h_service_opts o = {.args = args};
    svc_up = h_service_start(&svc, &o) == 0;
}

static void stop(void)
{
    CHECK_INT(h_service_stop(&svc, 30), 0);
}

int main(void)
{
    if (h_init() != 0) {
        h_fail_test("harness", "cannot initialise");
        return h_finish();
    }
    const char *dir = getenv("BATCHD_BAD_DIR");
    if (dir && dir[0]) {
        snprintf(bad_dir, sizeof bad_dir, "%s", dir);
    } else {
        /* this file's directory (make runs from the repository's root) */
        const char *slash = strrchr(__FILE__, '/');
        snprintf(bad_dir, sizeof bad_dir, "%.*s/bad", slash ? (int)(slash - __FILE__) : 1,
                 slash ? __FILE__ : ".");
    }
    h_run_one("list the catalogue", list_cases);
    h_run_one("start batchd", start);
    if (svc_up) {
        h_run_one("a job before the catalogue", earlier_job);
        for (case_idx = 0; case_idx < n_cases; case_idx++)
            h_run_one(case_files[case_idx], run_case);
        h_run_one("after the catalogue: healthy, earlier job intact, new job runs",
                  after_catalogue);
        h_run_one("stop batchd (SIGTERM, exit 0, no child left)", stop);
    } else {
        h_fail_test("the catalogue", "batchd did not start");
    }
    h_service_cleanup(&svc);
    for (size_t i = 0; i < n_cases; i++)
        free(case_files[i]);
    free(earlier_results);
    return h_finish();
}
