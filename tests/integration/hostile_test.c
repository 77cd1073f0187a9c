/* hostile_test: malformed and hostile HTTP against a live gateway, over raw TCP sockets.
 *
 * malformed_storm: a few thousand requests made by a seeded generator (the same every run): garbage
 * bytes, bad methods and versions, missing CRLFs, huge request lines, huge and many
 * headers, Content-Length that lies, is negative or overflows, chunked bodies with bad
 * sizes, submit bodies that are not valid jobs (bad UTF-8, nesting 10,000 deep, 1e999999,
 * 30-digit integers, duplicate keys, truncated, NUL bytes, ...), bad job ids in paths,
 * ambiguous framing (both Content-Length and Transfer-Encoding, a coding other than
 * chunked, a space before the colon, bad chunk sizes: each with its one status).
 * Each runs on its own connection, 48 at a time, and its answer is read with a deadline.
 * Every request knows what it may get: an answer is never 5xx, 2xx only for the reads
 * that are valid, the status the head limits promise where the request hits one; closing
 * without an answer is allowed except where an answer is due. Then the gateway must still
 * run and answer GET /healthz, and Redis must hold no job, input or stream entry (no
 * submit was valid).
 *
 * head_limits: the limits of gateway/http.h at their edges, whole answers checked
 * (problem+json, Connection: close), keep-alive and pipelined requests included.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "testlib.h"

#define STORM_REQUESTS 3000
#define STORM_PARALLEL 48
#define STORM_SEED 0x5eedf1ee7ULL
#define MAX_BODY 65536 /* FLEET_MAX_BODY of the gateway under test */

/* ------------------------------------------------------------ bytes ----------------- */

typedef struct buf {
    char *p;
    size_t n, cap;
} buf;

/* Room for n more bytes and a NUL; returns where they go. */
static char *bgrow(buf *b, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) FAILF("out of memory");
        b->p = p;
        b->cap = cap;
    }
    char *at = b->p + b->n;
    b->n += n;
    b->p[b->n] = '\0';
    return at;
}

static void bput(buf *b, const void *d, size_t n) {
    if (n) memcpy(bgrow(b, n), d, n);
}

static void bstr(buf *b, const char *s) { bput(b, s, strlen(s)); }

static void bprintf(buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bprintf(buf *b, const char *fmt, ...) {
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp) FAILF("bprintf: too long");
    bput(b, tmp, (size_t)n);
}

static void bfill(buf *b, char c, size_t n) {
    if (n) memset(bgrow(b, n), c, n);
}

/* ------------------------------------------------------------ the generator --------- */

static uint64_t rng = STORM_SEED;

static uint64_t rnd64(void) { return tl_rand64(&rng); }

static size_t rnd(size_t n) { return n ? (size_t)(rnd64() % n) : 0; }

static const char *pick(const char *const *v, size_t n) { return v[rnd(n)]; }
#define PICK(arr) pick(arr, TL_COUNT(arr))

/* What a request may get. */
typedef struct hreq {
    const char *cat;  /* its category, for the counts */
    buf b;            /* the bytes sent */
    bool may_2xx;     /* a valid read: 2xx allowed */
    bool must_answer; /* closing without an answer is a failure */
    int want;         /* the one status allowed (0: any 4xx, 404/405 included) */
    bool may_hang;    /* the server rightly waits for more: short deadline */
} hreq;

static const char *const read_paths[] = {"/healthz",  "/readyz",  "/v1/models",
                                         "/v1/stats", "/v1/jobs", "/v1/jobs?limit=1"};

static void head(buf *b, const char *method, const char *target, const char *version) {
    bprintf(b, "%s ", method);
    bstr(b, target);
    bprintf(b, " %s\r\nHost: 127.0.0.1\r\n", version);
}

/* A valid job; only ever sent broken. */
static const char valid_job[] = "{\"model\":\"echo\",\"input\":{\"a\":1}}";

static void post_body(hreq *r, const char *ctype, const char *body, size_t len) {
    head(&r->b, "POST", "/v1/jobs", "HTTP/1.1");
    if (ctype) bprintf(&r->b, "Content-Type: %s\r\n", ctype);
    bprintf(&r->b, "Content-Length: %zu\r\nConnection: close\r\n\r\n", len);
    bput(&r->b, body, len);
}

static void gen_garbage(hreq *r) {
    size_t n = 1 + rnd(2000);
    bool printable = rnd(2);
    for (size_t i = 0; i < n; i++) {
        char c = printable ? (char)(0x20 + rnd(95)) : (char)rnd(256);
        bput(&r->b, &c, 1);
    }
    if (rnd(2)) bstr(&r->b, "\r\n\r\n");
    r->may_hang = true; /* a head that never ends */
}

static void gen_bad_method(hreq *r) {
    static const char *const m[] = {"FOO",  "get",      "G3T",     "GETT",  "POSTX",   "",
                                    " ",    "PROPFIND", "CONNECT", "TRACE", "OPTIONS", "PATCH",
                                    "HEAD", "\x01GET",  "GET\tX",  "_"};
    static const char *const p[] = {"/healthz", "/v1/jobs", "/v1/jobs/abc",
                                    "/nope",    "*",        "http://127.0.0.1/healthz"};
    const char *method = PICK(m), *path = PICK(p);
    head(&r->b, method, path, "HTTP/1.1");
    bstr(&r->b, "Connection: close\r\n\r\n");
    /* HEAD, or a method the parser reads as GET on a read route, may well get a 200 */
    r->may_2xx = (strcmp(method, "HEAD") == 0 || strcmp(method, "_") == 0) &&
                 (strcmp(path, "/healthz") == 0 || strncmp(path, "http", 4) == 0);
    r->may_hang = true;
}

static void gen_bad_version(hreq *r) {
    static const char *const v[] = {
        "HTTP/9.9",   "HTTP/1",  "HTTPS/1.1", "HTTP/1.1x",          "http/1.1", "HTTP/1.1 extra",
        "HTTP/01.01", "HTTP/1.", "HTTP/",     "HTTP/99999999999.1", "",         "HTTP/1.0",
        "HTTP/2.0"};
    head(&r->b, "GET", "/v1/jobs/nojob", PICK(v));
    bstr(&r->b, "Connection: close\r\n\r\n");
    r->may_hang = true;
}

static void gen_missing_crlf(hreq *r) {
    switch (rnd(5)) {
    case 0:
        bstr(&r->b, "GET /healthz HTTP/1.1\nHost: x\n\n");
        r->may_2xx = true;
        break;
    case 1: bstr(&r->b, "GET /healthz HTTP/1.1\r\nHost: x\r\n"); break; /* head never ends */
    case 2: bstr(&r->b, "GET /healthz HTTP/1.1"); break;
    case 3: bstr(&r->b, "GET /healthz HTTP/1.1\r\rHost: x\r\r\r\r"); break;
    default:
        bstr(&r->b, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: b\rX-C: d\r\n\r\n");
        r->may_2xx = true;
    }
    r->may_hang = true;
}

static void gen_long_uri(hreq *r) {
    static const size_t lens[] = {2049, 2100, 4096, 4097, 8191, 8192, 8193, 16384, 65536, 200000};
    size_t n = lens[rnd(TL_COUNT(lens))];
    bstr(&r->b, rnd(2) ? "GET /" : "POST /v1/jobs?x=");
    bfill(&r->b, (char)('a' + rnd(26)), n);
    bstr(&r->b, " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    r->want = 414;
    r->must_answer = true;
}

static void gen_huge_header(hreq *r) {
    static const size_t lens[] = {8190, 8300, 9000, 16384, 65536, 200000};
    head(&r->b, "GET", "/healthz", "HTTP/1.1");
    if (rnd(2)) {
        bstr(&r->b, "X-Big: ");
    } else { /* a huge name */
        bfill(&r->b, 'N', 4000 + rnd(8000));
        bstr(&r->b, ": ");
    }
    bfill(&r->b, 'v', lens[rnd(TL_COUNT(lens))]);
    bstr(&r->b, "\r\nConnection: close\r\n\r\n");
    r->want = 431;
    r->must_answer = true;
}

static void gen_many_headers(hreq *r) {
    size_t n = 101 + rnd(5000);
    head(&r->b, "GET", "/healthz", "HTTP/1.1");
    for (size_t i = 0; i < n; i++) bprintf(&r->b, "X-H%zu: %zu\r\n", i, i);
    bstr(&r->b, "Connection: close\r\n\r\n");
    r->want = 431;
    r->must_answer = true;
}

static void gen_big_headers(hreq *r) {
    size_t each = 2000 + rnd(6000), n = 32768 / each + 1 + rnd(10);
    head(&r->b, "GET", "/healthz", "HTTP/1.1");
    for (size_t i = 0; i < n; i++) {
        bprintf(&r->b, "X-Pad-%zu: ", i);
        bfill(&r->b, 'p', each);
        bstr(&r->b, "\r\n");
    }
    bstr(&r->b, "Connection: close\r\n\r\n");
    r->want = 431;
    r->must_answer = true;
}

static void gen_content_length(hreq *r) {
    size_t len = strlen(valid_job);
    head(&r->b, "POST", "/v1/jobs", "HTTP/1.1");
    bstr(&r->b, "Content-Type: application/json\r\nConnection: close\r\n");
    switch (rnd(8)) {
    case 0: /* claims more than it sends: the server waits */
        bprintf(&r->b, "Content-Length: %zu\r\n\r\n", len + 1 + rnd(100));
        bstr(&r->b, valid_job);
        r->may_hang = true;
        break;
    case 1: { /* claims less: a truncated body, then bytes that are not a request */
        size_t cut = rnd(len);
        bprintf(&r->b, "Content-Length: %zu\r\n\r\n", cut);
        bstr(&r->b, valid_job);
        r->must_answer = true; /* the truncated body is answered 400 first */
        break;
    }
    case 2:
        bstr(&r->b, "Content-Length: -1\r\n\r\n");
        bstr(&r->b, valid_job);
        break;
    case 3:
        bstr(&r->b, "Content-Length: 99999999999999999999999\r\n\r\n");
        bstr(&r->b, valid_job);
        break;
    case 4:
        bstr(&r->b, "Content-Length: 18446744073709551615\r\n\r\n");
        bstr(&r->b, valid_job);
        break;
    case 5:
        bstr(&r->b, "Content-Length: 3x\r\n\r\n");
        bstr(&r->b, valid_job);
        break;
    case 6: /* two that disagree */
        bprintf(&r->b, "Content-Length: %zu\r\nContent-Length: 5\r\n\r\n", len);
        bstr(&r->b, valid_job);
        break;
    default: /* over FLEET_MAX_BODY, sent whole */
        bprintf(&r->b, "Content-Length: %d\r\n\r\n", MAX_BODY + 100);
        bfill(&r->b, ' ', MAX_BODY + 100);
        r->want = 413;
        r->must_answer = true;
    }
    r->may_hang = r->may_hang || !r->must_answer;
}

static void gen_chunked(hreq *r) {
    head(&r->b, "POST", "/v1/jobs", "HTTP/1.1");
    bstr(&r->b, "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
                "Connection: close\r\n\r\n");
    switch (rnd(7)) {
    case 0: bstr(&r->b, "zz\r\n{}\r\n0\r\n\r\n"); break;
    case 1: bstr(&r->b, "-1\r\n{}\r\n0\r\n\r\n"); break;
    case 2: bstr(&r->b, "ffffffffffffffffffff\r\n{}\r\n0\r\n\r\n"); break;
    case 3: bstr(&r->b, "100\r\n{\"model\":\r\n0\r\n\r\n"); break;        /* shorter than it says */
    case 4: bstr(&r->b, "2\r\n{\"model\":\"echo\"}\r\n0\r\n\r\n"); break; /* longer */
    case 5: bstr(&r->b, "5\r\n{\"mod\r\n"); break;                        /* no last chunk */
    default: bstr(&r->b, "4\r\n[1,2\r\n0\r\n\r\n");                       /* not a job */
    }
    r->may_hang = true;
}

/* Ambiguous or malformed framing (RFC 9112 §6): each has its one answer, and closes. */
static void gen_framing(hreq *r) {
    static const struct {
        const char *framing, *body;
        int want;
    } v[] = {
        {"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n", 400},
        {"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", "0\r\n\r\n", 400},
        {"Transfer-Encoding : chunked\r\n", "0\r\n\r\n", 400},
        {"Transfer-Encoding: xchunked\r\n", "0\r\n\r\n", 501},
        {"Transfer-Encoding: gzip, chunked\r\n", "0\r\n\r\n", 501},
        {"Content-Length: 2\r\nContent-Length: 3\r\n", "{}", 400},
        {"Content-Length: +2\r\n", "{}", 400},
        {"Content-Length: 2 2\r\n", "{}", 400},
        {"Transfer-Encoding: chunked\r\n", "fffffffffffffffff\r\n{}\r\n0\r\n\r\n", 400},
        {"Transfer-Encoding: chunked\r\n", "zz\r\n{}\r\n0\r\n\r\n", 400},
        {"Transfer-Encoding: chunked\r\n", "2\r\n{\"model\":1}\r\n0\r\n\r\n", 400},
    };
    size_t i = rnd(TL_COUNT(v));
    head(&r->b, "POST", "/v1/jobs", "HTTP/1.1");
    bprintf(&r->b, "Content-Type: application/json\r\nConnection: close\r\n%s\r\n%s", v[i].framing,
            v[i].body);
    r->want = v[i].want;
    r->must_answer = true;
}

/* Submit bodies that are not valid jobs, with an honest Content-Length. */
static void gen_bad_json(hreq *r) {
    buf body = {0};
    const char *ctype = "application/json";
    switch (rnd(18)) {
    case 0: bstr(&body, "{\"model\":\"echo\",\"input\":\"\xff\xfe\xc0\xaf\"}"); break;
    case 1:
        bstr(&body, "{\"model\":\"echo\",\"input\":");
        bfill(&body, '[', 10000);
        bfill(&body, ']', 10000);
        bstr(&body, "}");
        break;
    case 2:
        bstr(&body, "{\"model\":\"echo\",\"input\":");
        bfill(&body, '{', 1);
        for (int i = 0; i < 40; i++) bstr(&body, "\"a\":{");
        bfill(&body, '}', 42);
        break;
    case 3: bstr(&body, "{\"model\":\"echo\",\"input\":1e999999}"); break;
    case 4: bstr(&body, "{\"model\":\"echo\",\"input\":123456789012345678901234567890}"); break;
    case 5: bstr(&body, "{\"model\":\"echo\",\"model\":\"echo\",\"input\":1}"); break;
    case 6: bput(&body, valid_job, rnd(strlen(valid_job))); break; /* truncated */
    case 7: {                                                      /* a NUL byte somewhere */
        size_t at = rnd(strlen(valid_job));
        bput(&body, valid_job, at);
        bput(&body, "\0", 1);
        bstr(&body, valid_job + at);
        break;
    }
    case 8: bstr(&body, "[{\"model\":\"echo\",\"input\":1}]"); break;
    case 9: bstr(&body, "{\"model\":\"echo\"}"); break;
    case 10: bstr(&body, "{\"input\":1}"); break;
    case 11: bstr(&body, "{\"model\":\"nosuchmodel\",\"input\":1}"); break;
    case 12:
        bstr(&body, "{\"model\":\"echo\",\"input\":1,\"priority\":\"urgent\",\"ttl_s\":-5}");
        break;
    case 13:
        bstr(&body, "{\"model\":\"echo\",\"input\":1,\"webhook\":\"http://127.0.0.1:1/x\"}");
        break;
    case 14:
        bstr(&body, valid_job);
        ctype = "text/plain";
        break;
    case 15:
        bstr(&body, valid_job);
        ctype = "application/msgpack";
        break;
    case 16:
        bstr(&body, valid_job);
        ctype = "multipart/form-data; boundary=XyZ";
        break;
    default:
        for (size_t i = 0, n = 1 + rnd(300); i < n; i++) {
            char c = (char)rnd(256);
            bput(&body, &c, 1);
        }
        if (body.p[0] == '{') body.p[0] = '!'; /* never a valid object by luck */
    }
    post_body(r, ctype, body.p ? body.p : "", body.n);
    free(body.p);
    r->must_answer = true;
}

static void gen_bad_job_path(hreq *r) {
    static const char *const ids[] = {
        "%00",
        "..%2f..%2fetc",
        "../../etc/passwd",
        "%2e%2e",
        ".",
        "-",
        "%ff%fe",
        "a%20b",
        "01ZZZZZZZZZZZZZZZZZZZZZZZZ",
        "*",
        "'%20OR%201=1",
        "%0d%0aX-Injected:%201",
        "\xc3\xa9",
        "null",
        "~",
        "{prefix}:job:x",
    };
    static const char *const tails[] = {"", "/result", "/events", "/result/x", "/", "//"};
    static const char *const methods[] = {"GET", "DELETE", "GET", "POST"};
    const char *method = PICK(methods);
    buf path = {0};
    bstr(&path, "/v1/jobs/");
    if (rnd(4) == 0) bfill(&path, 'A' + (char)rnd(26), 30 + rnd(1900)); /* very long ids */
    else bstr(&path, PICK(ids));
    bstr(&path, PICK(tails));
    head(&r->b, method, path.p, "HTTP/1.1");
    free(path.p);
    bstr(&r->b, "Connection: close\r\n");
    if (strcmp(method, "POST") == 0) bprintf(&r->b, "Content-Length: 2\r\n\r\n{}");
    else bstr(&r->b, "\r\n");
    r->must_answer = true;
}

#define LIT(s) \
    { s, sizeof(s) - 1 }
static void gen_nul_in_head(hreq *r) {
    static const struct {
        const char *s;
        size_t n;
    } v[] = {LIT("GET /healthz\0 HTTP/1.1\r\n\r\n"), LIT("GET /he\0althz HTTP/1.1\r\n\r\n"),
             LIT("GET /healthz HTTP/1.1\r\nX-A: b\0c\r\n\r\n"),
             LIT("GET /healthz HTTP/1.1\r\nX\0A: b\r\n\r\n"),
             LIT("\0\0\0\0GET /healthz HTTP/1.1\r\n\r\n")};
    size_t i = rnd(TL_COUNT(v));
    bput(&r->b, v[i].s, v[i].n);
    r->may_2xx = true; /* a lenient parse of GET /healthz is harmless */
    r->may_hang = true;
}

static void gen_bad_method_on_submit(hreq *r) {
    static const char *const m[] = {"PUT", "PATCH", "DELETE", "GET"};
    head(&r->b, PICK(m), "/v1/jobs", "HTTP/1.1");
    bprintf(&r->b,
            "Content-Type: application/json\r\nContent-Length: %zu\r\n"
            "Connection: close\r\n\r\n%s",
            strlen(valid_job), valid_job);
    /* GET /v1/jobs with a body is a list: a valid read */
    r->may_2xx = strncmp(r->b.p, "GET", 3) == 0;
    r->must_answer = true;
}

static void gen_valid_read(hreq *r) {
    head(&r->b, "GET", PICK(read_paths), rnd(4) ? "HTTP/1.1" : "HTTP/1.0");
    bstr(&r->b, "Connection: close\r\n\r\n");
    r->may_2xx = true;
    r->must_answer = true;
    r->want = 200;
}

static void gen_pipelined(hreq *r) {
    /* a good request first (its answer is what is read), then something hostile */
    head(&r->b, "GET", "/healthz", "HTTP/1.1");
    bstr(&r->b, "\r\n");
    hreq tail = {0};
    switch (rnd(3)) {
    case 0: gen_garbage(&tail); break;
    case 1: gen_huge_header(&tail); break;
    default: gen_bad_json(&tail);
    }
    bput(&r->b, tail.b.p, tail.b.n);
    free(tail.b.p);
    r->may_2xx = true;
    r->must_answer = true;
    r->want = 200;
}

typedef struct category {
    const char *name;
    void (*gen)(hreq *r);
} category;

static const category categories[] = {
    {"garbage", gen_garbage},
    {"bad-method", gen_bad_method},
    {"bad-version", gen_bad_version},
    {"missing-crlf", gen_missing_crlf},
    {"long-uri", gen_long_uri},
    {"huge-header", gen_huge_header},
    {"many-headers", gen_many_headers},
    {"big-headers", gen_big_headers},
    {"content-length", gen_content_length},
    {"chunked", gen_chunked},
    {"framing", gen_framing},
    {"bad-json", gen_bad_json},
    {"bad-json", gen_bad_json},
    {"bad-job-path", gen_bad_job_path},
    {"nul-in-head", gen_nul_in_head},
    {"wrong-method", gen_bad_method_on_submit},
    {"valid-read", gen_valid_read},
    {"pipelined", gen_pipelined},
};

static void generate(size_t i, hreq *r) {
    memset(r, 0, sizeof *r);
    const category *c = &categories[i % TL_COUNT(categories)];
    r->cat = c->name;
    c->gen(r);
}

/* ------------------------------------------------------------ sockets --------------- */

static int connect_to(int port, bool nonblocking) {
    int fd = socket(AF_INET, SOCK_STREAM | (nonblocking ? SOCK_NONBLOCK : 0), 0);
    if (fd < 0) FAILF("socket: %s", strerror(errno));
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(0x7f000001)};
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* The status of the first status line in resp[0, n), 0 while incomplete, -1 if the bytes
 * are not an HTTP answer. */
static int status_of(const char *resp, size_t n) {
    const char *eol = memchr(resp, '\n', n);
    if (!eol) return strncmp(resp, "HTTP/", n < 5 ? n : 5) != 0 ? -1 : 0;
    /* libevhtp answers in the version the request claimed: "HTTP/9.9 404 Not Found" */
    int st = 0;
    if (sscanf(resp, "HTTP/%*1d.%*1d %3d", &st) != 1 || st < 100 || st > 599) return -1;
    return st;
}

/* ------------------------------------------------------------ storm ----------------- */

typedef enum { O_ANSWER, O_CLOSED, O_RESET, O_TIMEOUT, O_GARBLED, O_COUNT } outcome;
static const char *const outcome_names[] = {"answered", "closed without answer",
                                            "reset without answer", "no answer before deadline",
                                            "answer not HTTP"};

typedef struct slot {
    bool used;
    int fd;
    size_t idx;
    hreq r;
    size_t sent;
    bool send_done;
    char resp[256];
    size_t rlen;
    int64_t deadline;
} slot;

typedef struct storm {
    int port;
    size_t next, done;
    size_t by_status[600];
    size_t by_outcome[O_COUNT];
    size_t failures;
    char first_failures[40][320];
} storm;

/* The request line and the start of the body, escaped. */
static void describe(char *out, size_t cap, const hreq *r) {
    const char *p = r->b.p, *eol = memchr(p, '\n', r->b.n < 80 ? r->b.n : 80);
    const char *body = r->b.n > 4 ? memmem(p, r->b.n, "\r\n\r\n", 4) : NULL;
    size_t k = 0;
    for (size_t i = 0; i < r->b.n && k + 5 < cap; i++) {
        if (i == (size_t)(eol ? eol - p : 60)) {
            if (!body) break;
            k += (size_t)snprintf(out + k, cap - k, " ... ");
            i = (size_t)(body + 4 - p);
            if (i >= r->b.n) break;
        }
        if (body && i > (size_t)(body + 4 - p) + 60) break;
        unsigned char c = (unsigned char)p[i];
        if (c >= 0x20 && c < 0x7f && c != '\\') out[k++] = (char)c;
        else k += (size_t)snprintf(out + k, cap - k, "\\x%02x", c);
    }
    out[k] = '\0';
}

static void finish(storm *s, slot *sl, outcome o, int status) {
    const hreq *r = &sl->r;
    const char *why = NULL;
    if (o == O_ANSWER) {
        s->by_status[status]++;
        if (status >= 500 && status != r->want) why = "a 5xx answer";
        else if (status >= 200 && status < 300 && !r->may_2xx) why = "a 2xx to an invalid request";
        else if (r->want && status != r->want) why = "not the status due";
        else if (!r->want && status >= 300 && status < 400) why = "a 3xx answer";
    } else {
        if (r->must_answer || o == O_GARBLED) why = "no HTTP answer where one is due";
    }
    s->by_outcome[o]++;
    if (why) {
        char shown[256];
        describe(shown, sizeof shown, r);
        if (s->failures < TL_COUNT(s->first_failures))
            snprintf(s->first_failures[s->failures], sizeof s->first_failures[0],
                     "#%zu %s: %s (got %s %d, want %d) for \"%.160s\"", sl->idx, r->cat, why,
                     outcome_names[o], status, r->want, shown);
        s->failures++;
    }
    close(sl->fd);
    free(sl->r.b.p);
    memset(sl, 0, sizeof *sl);
    s->done++;
}

static void slot_start(storm *s, slot *sl) {
    sl->idx = s->next++;
    generate(sl->idx, &sl->r);
    sl->fd = connect_to(s->port, true);
    if (sl->fd < 0) FAILF("connect to the gateway (request #%zu): %s", sl->idx, strerror(errno));
    sl->used = true;
    sl->deadline = tl_now_ms() + (sl->r.may_hang && !sl->r.must_answer ? 1000 : 8000);
}

static void slot_io(storm *s, slot *sl, short revents) {
    if (!sl->send_done && (revents & POLLOUT)) {
        ssize_t n = send(sl->fd, sl->r.b.p + sl->sent, sl->r.b.n - sl->sent, MSG_NOSIGNAL);
        if (n > 0) sl->sent += (size_t)n;
        else if (n < 0 && errno != EAGAIN && errno != EINTR) sl->send_done = true; /* closed */
        if (sl->sent == sl->r.b.n) sl->send_done = true;
    }
    if (!(revents & (POLLIN | POLLHUP | POLLERR))) return;
    ssize_t n = recv(sl->fd, sl->resp + sl->rlen, sizeof sl->resp - 1 - sl->rlen, 0);
    if (n > 0) {
        sl->rlen += (size_t)n;
        sl->resp[sl->rlen] = '\0';
        int st = status_of(sl->resp, sl->rlen);
        if (st > 0 && st < 200) { /* 1xx: skip to the final answer */
            const char *end = strstr(sl->resp, "\r\n\r\n");
            if (!end) return;
            size_t skip = (size_t)(end + 4 - sl->resp);
            memmove(sl->resp, sl->resp + skip, sl->rlen - skip);
            sl->rlen -= skip;
            st = status_of(sl->resp, sl->rlen);
        }
        if (st > 0) finish(s, sl, O_ANSWER, st);
        else if (st < 0 || sl->rlen == sizeof sl->resp - 1) finish(s, sl, O_GARBLED, 0);
        return;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (sl->rlen) finish(s, sl, O_GARBLED, 0);
    else finish(s, sl, n == 0 ? O_CLOSED : O_RESET, 0);
}

static void run_storm(tl_fleet *f, storm *s) {
    slot slots[STORM_PARALLEL];
    memset(slots, 0, sizeof slots);
    s->port = f->gateway_port;
    for (;;) {
        int64_t now = tl_now_ms();
        size_t active = 0;
        for (size_t i = 0; i < STORM_PARALLEL; i++) {
            if (!slots[i].used && s->next < STORM_REQUESTS) slot_start(s, &slots[i]);
            if (slots[i].used) active++;
        }
        if (active == 0) break;
        struct pollfd pfd[STORM_PARALLEL];
        for (size_t i = 0; i < STORM_PARALLEL; i++) {
            pfd[i] = (struct pollfd){.fd = slots[i].used ? slots[i].fd : -1,
                                     .events = POLLIN | (slots[i].send_done ? 0 : POLLOUT)};
        }
        if (poll(pfd, STORM_PARALLEL, 50) < 0 && errno != EINTR) FAILF("poll: %s", strerror(errno));
        now = tl_now_ms();
        for (size_t i = 0; i < STORM_PARALLEL; i++) {
            if (!slots[i].used) continue;
            if (pfd[i].revents) slot_io(s, &slots[i], pfd[i].revents);
            if (slots[i].used && now > slots[i].deadline) finish(s, &slots[i], O_TIMEOUT, 0);
        }
        if (s->done % 500 == 0 && !tl_proc_alive(f->gateway))
            FAILF("the gateway died after %zu requests: %s", s->done, tl_proc_describe(f->gateway));
    }
}

TL_TEST(malformed_storm) {
    tl_fleet *f =
        tl_fleet_start(&(tl_fleet_opts){.gateway_env = {tl_printf("FLEET_MAX_BODY=%d", MAX_BODY)}});
    storm *s = tl_alloc(sizeof *s);
    int64_t t0 = tl_now_ms();
    run_storm(f, s);
    tl_log("%zu requests (seed %#llx) in %.1f s", s->done, (unsigned long long)STORM_SEED,
           (double)(tl_now_ms() - t0) / 1000.0);
    for (int o = 0; o < O_COUNT; o++)
        if (s->by_outcome[o]) tl_log("  %-28s %zu", outcome_names[o], s->by_outcome[o]);
    for (int st = 100; st < 600; st++)
        if (s->by_status[st]) tl_log("  HTTP %-23d %zu", st, s->by_status[st]);
    for (size_t i = 0; i < s->failures && i < TL_COUNT(s->first_failures); i++)
        tl_log("  FAILED %s", s->first_failures[i]);
    ASSERT_EQ_INT(s->failures, 0);
    ASSERT_EQ_INT(s->done, STORM_REQUESTS);

    ASSERT_TRUE(tl_proc_alive(f->gateway));
    ASSERT_HTTP_STATUS(tl_get(f, "/healthz"), 200);

    /* Not one of the submits was valid: nothing of a job reached Redis. */
    const char *pfx = f->prefix;
    ASSERT_EQ_INT(tl_redis_keys(f->rc, tl_printf("{%s}:job:*", pfx)).n, 0);
    ASSERT_EQ_INT(tl_redis_keys(f->rc, tl_printf("{%s}:input:*", pfx)).n, 0);
    ASSERT_EQ_INT(tl_redis_keys(f->rc, tl_printf("{%s}:wait:*", pfx)).n, 0);
    ASSERT_EQ_INT(tl_redis_int(f->rc, "EXISTS %s", tl_printf("{%s}:stream:echo", pfx)) == 0 ||
                      tl_redis_int(f->rc, "XLEN %s", tl_printf("{%s}:stream:echo", pfx)) == 0,
                  1);

    /* and the gateway still takes a job */
    ASSERT_NOT_NULL(tl_job_submit(f, "echo", "{\"after\":\"the storm\"}"));
}

/* ------------------------------------------------------------ head limits ----------- */

typedef struct answer {
    int status;
    char *headers; /* the header block, harness-owned */
    char *body;
} answer;

/* Sends bytes on a fresh connection and reads up to want answers (Content-Length
 * framed), until the server closes or 5 s pass. Returns how many were read; *closed says
 * whether the server closed the connection. */
static size_t exchange(tl_fleet *f, const buf *req, answer *out, size_t want, bool *closed) {
    int fd = connect_to(f->gateway_port, false);
    if (fd < 0) FAILF("connect: %s", strerror(errno));
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    for (size_t sent = 0; sent < req->n;) {
        ssize_t n = send(fd, req->p + sent, req->n - sent, MSG_NOSIGNAL);
        if (n <= 0) break; /* the server stopped reading: what it answered is still there */
        sent += (size_t)n;
    }
    buf in = {0};
    size_t got = 0, at = 0;
    *closed = false;
    char chunk[16384];
    while (got < want) {
        /* a complete answer at `at`? */
        char *hend = in.p ? strstr(in.p + at, "\r\n\r\n") : NULL;
        if (hend) {
            size_t hlen = (size_t)(hend - (in.p + at));
            char *hdrs = tl_alloc(hlen + 1);
            memcpy(hdrs, in.p + at, hlen);
            const char *cl = strcasestr(hdrs, "\r\nContent-Length:");
            size_t blen = cl ? strtoul(cl + 17, NULL, 10) : 0;
            size_t start = (size_t)(hend + 4 - in.p);
            if (in.n - start >= blen) {
                out[got].status = status_of(in.p + at, hlen);
                out[got].headers = hdrs;
                out[got].body = tl_alloc(blen + 1);
                memcpy(out[got].body, in.p + start, blen);
                got++;
                at = start + blen;
                continue;
            }
        }
        ssize_t n = recv(fd, chunk, sizeof chunk, 0);
        if (n <= 0) {
            *closed = n == 0 || errno == ECONNRESET;
            break;
        }
        bput(&in, chunk, (size_t)n);
    }
    if (got == want && !*closed) { /* does the server close after the last one? */
        tv.tv_sec = 0;
        tv.tv_usec = 300000;
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        ssize_t n = recv(fd, chunk, sizeof chunk, 0);
        *closed = n == 0 || (n < 0 && errno == ECONNRESET);
    }
    close(fd);
    free(in.p);
    return got;
}

/* One request, one answer with the given status. */
static answer *expect_status(tl_fleet *f, const buf *req, int status, const char *what) {
    answer *a = tl_alloc(sizeof *a);
    bool closed;
    if (exchange(f, req, a, 1, &closed) != 1) FAILF("%s: no answer", what);
    if (a->status != status) FAILF("%s: HTTP %d, want %d: %s", what, a->status, status, a->body);
    return a;
}

/* A refused head: problem+json with the status, its request id, Connection: close. */
static void expect_problem(tl_fleet *f, const buf *req, int status, const char *slug,
                           const char *what) {
    answer *a = tl_alloc(sizeof *a);
    bool closed;
    if (exchange(f, req, a, 1, &closed) != 1) FAILF("%s: no answer", what);
    if (a->status != status) FAILF("%s: HTTP %d, want %d", what, a->status, status);
    ASSERT_STR_CONTAINS_CI(a->headers, "\r\nContent-Type: application/problem+json");
    ASSERT_STR_CONTAINS_CI(a->headers, "\r\nConnection: close");
    json_t *p = tl_json(a->body);
    ASSERT_EQ_INT(tl_jint(p, "status"), status);
    ASSERT_EQ_STR(tl_jstr(p, "type"), tl_printf("urn:fleet:problem:%s", slug));
    ASSERT_TRUE(tl_jstr(p, "detail") && *tl_jstr(p, "detail"));
    const char *rid = strcasestr(a->headers, "\r\nX-Request-ID: ");
    ASSERT_NOT_NULL(rid);
    ASSERT_TRUE(strncmp(rid + 16, tl_jstr(p, "request_id"), strlen(tl_jstr(p, "request_id"))) == 0);
    ASSERT_TRUE(closed);
}

static buf get_with(const char *target, size_t nheaders, size_t value_len) {
    buf b = {0};
    head(&b, "GET", target, "HTTP/1.1");
    for (size_t i = 0; i < nheaders; i++) {
        bprintf(&b, "X-H%zu: ", i);
        bfill(&b, 'v', value_len);
        bstr(&b, "\r\n");
    }
    bstr(&b, "Connection: close\r\n\r\n");
    return b;
}

static buf with_uri_len(size_t n) {
    buf path = {0};
    bstr(&path, "/");
    bfill(&path, 'u', n - 1);
    buf b = get_with(path.p, 0, 0);
    free(path.p);
    return b;
}

TL_TEST(head_limits) {
    tl_fleet *f = tl_fleet_start(&(tl_fleet_opts){0});

    /* the URI: 2048 bytes are read (no such route), one more is 414 */
    buf b = with_uri_len(2048);
    expect_status(f, &b, 404, "a URI of 2048 bytes");
    free(b.p);
    b = with_uri_len(2049);
    expect_problem(f, &b, 414, "uri-too-long", "a URI of 2049 bytes");
    free(b.p);
    b = with_uri_len(100000); /* refused before libevhtp parses it */
    expect_problem(f, &b, 414, "uri-too-long", "a URI of 100,000 bytes");
    free(b.p);

    /* header fields: Host and Connection count too */
    b = get_with("/healthz", 98, 1);
    expect_status(f, &b, 200, "100 header fields");
    free(b.p);
    b = get_with("/healthz", 99, 1);
    expect_problem(f, &b, 431, "headers-too-large", "101 header fields");
    free(b.p);
    b = get_with("/healthz", 10000, 1);
    expect_problem(f, &b, 431, "headers-too-large", "10,000 header fields");
    free(b.p);

    /* one line: "X-H0: " and 8186 bytes is 8192; one more is too long */
    b = get_with("/healthz", 1, 8186);
    expect_status(f, &b, 200, "a header line of 8192 bytes");
    free(b.p);
    b = get_with("/healthz", 1, 8187);
    expect_problem(f, &b, 431, "headers-too-large", "a header line of 8193 bytes");
    free(b.p);
    b = get_with("/healthz", 1, 1 << 20);
    expect_problem(f, &b, 431, "headers-too-large", "a header line of 1 MiB");
    free(b.p);

    /* all lines together: 4 of 8192 are 32768 with Host and Connection beside */
    b = get_with("/healthz", 4, 8000);
    expect_status(f, &b, 200, "header lines of 32,000 bytes");
    free(b.p);
    b = get_with("/healthz", 5, 8000);
    expect_problem(f, &b, 431, "headers-too-large", "header lines of 40,000 bytes");
    free(b.p);

    /* keep-alive and pipelining: every request answered in order, the refused one last */
    b = (buf){0};
    for (int i = 0; i < 3; i++) bstr(&b, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    buf big = get_with("/healthz", 1, 20000);
    bput(&b, big.p, big.n);
    free(big.p);
    answer a[4];
    bool closed;
    ASSERT_EQ_INT(exchange(f, &b, a, 4, &closed), 4);
    for (int i = 0; i < 3; i++) ASSERT_EQ_INT(a[i].status, 200);
    ASSERT_EQ_INT(a[3].status, 431);
    ASSERT_TRUE(closed);
    free(b.p);

    /* pipelined requests need no more bytes to be answered (libevhtp alone waited) */
    b = (buf){0};
    for (int i = 0; i < 5; i++) bstr(&b, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    ASSERT_EQ_INT(exchange(f, &b, a, 4, &closed), 4);
    for (int i = 0; i < 4; i++) ASSERT_EQ_INT(a[i].status, 200);
    free(b.p);

    /* the body limit still answers 413 from Content-Length */
    tl_fleet *small = tl_fleet_start(&(tl_fleet_opts){.gateway_env = {"FLEET_MAX_BODY=1024"}});
    b = (buf){0};
    head(&b, "POST", "/v1/jobs", "HTTP/1.1");
    bstr(&b, "Content-Type: application/json\r\nContent-Length: 2000\r\nConnection: close\r\n\r\n");
    bfill(&b, ' ', 2000);
    expect_status(small, &b, 413, "a body of 2000 bytes over FLEET_MAX_BODY=1024");
    free(b.p);

    ASSERT_HTTP_STATUS(tl_get(f, "/healthz"), 200);
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {TL_CASE(malformed_storm), TL_CASE(head_limits)};
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
