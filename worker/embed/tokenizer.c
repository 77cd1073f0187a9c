/* tokenizer.c: BERT basic tokenizer + WordPiece (see tokenizer.h for the pipeline). */
#include "tokenizer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet/err.h"

/* The generated tables (unicode_tables.c). */
#include "unicode_tables.h"

/* ------------------------------------------------------------ Unicode ---------------- */

static bool in_ranges(const uint32_t (*r)[2], size_t n, uint32_t c) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c < r[mid][0]) hi = mid;
        else if (c > r[mid][1]) lo = mid + 1;
        else return true;
    }
    return false;
}

/* BERT's _is_whitespace, plus Zl/Zp, which Python's str.split() also splits on. */
static bool uc_is_space(uint32_t c) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') return true;
    return c >= 0x80 && in_ranges(ucd_whitespace, ucd_whitespace_n, c);
}

static bool uc_is_control(uint32_t c) {
    if (c == '\t' || c == '\n' || c == '\r') return false;
    return in_ranges(ucd_control, ucd_control_n, c);
}

static bool uc_is_punct(uint32_t c) {
    if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
        (c >= 123 && c <= 126))
        return true;
    return c >= 0x80 && in_ranges(ucd_punct, ucd_punct_n, c);
}

/* BERT's _is_chinese_char: the CJK Unified Ideographs blocks, not all of CJK. */
static bool uc_is_cjk(uint32_t c) {
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
           (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
           (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

static uint32_t uc_lower(uint32_t c) {
    if (c < 0x80) return (c >= 'A' && c <= 'Z') ? c + 32 : c;
    size_t lo = 0, hi = ucd_lower_n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c < ucd_lower[mid][0]) hi = mid;
        else if (c > ucd_lower[mid][0]) lo = mid + 1;
        else return ucd_lower[mid][1];
    }
    return c;
}

/* Hangul syllable constants (Unicode §3.12). */
enum {
    H_SBASE = 0xAC00,
    H_LBASE = 0x1100,
    H_VBASE = 0x1161,
    H_TBASE = 0x11A7,
    H_LCOUNT = 19,
    H_VCOUNT = 21,
    H_TCOUNT = 28,
    H_NCOUNT = H_VCOUNT * H_TCOUNT,
    H_SCOUNT = H_LCOUNT * H_NCOUNT
};

/* Full canonical decomposition of c into out (at most 4 code points in Unicode 15; the
 * buffer holds 8). Returns the count. */
static size_t uc_nfd(uint32_t c, uint32_t out[8]) {
    if (c < 0xC0) {
        out[0] = c;
        return 1;
    }
    if (c >= H_SBASE && c < H_SBASE + H_SCOUNT) {
        uint32_t s = c - H_SBASE;
        out[0] = H_LBASE + s / H_NCOUNT;
        out[1] = H_VBASE + (s % H_NCOUNT) / H_TCOUNT;
        if (s % H_TCOUNT == 0) return 2;
        out[2] = H_TBASE + s % H_TCOUNT;
        return 3;
    }
    size_t lo = 0, hi = ucd_decomp_n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c < ucd_decomp[mid][0]) hi = mid;
        else if (c > ucd_decomp[mid][0]) lo = mid + 1;
        else {
            size_t n = ucd_decomp[mid][2];
            if (n > 8) n = 8;
            memcpy(out, &ucd_decomp_data[ucd_decomp[mid][1]], n * sizeof(uint32_t));
            return n;
        }
    }
    out[0] = c;
    return 1;
}

/* Decodes one UTF-8 sequence at s[0..n) (n >= 1) into *cp; returns the bytes used.
 * Anything invalid (bad lead, truncated, overlong, surrogate, > U+10FFFF) is one byte
 * read as U+FFFD, as a lenient decoder does. */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp) {
    unsigned char b = s[0];
    size_t need;
    uint32_t c, min;
    if (b < 0x80) {
        *cp = b;
        return 1;
    } else if ((b & 0xE0) == 0xC0) {
        need = 1, c = b & 0x1F, min = 0x80;
    } else if ((b & 0xF0) == 0xE0) {
        need = 2, c = b & 0x0F, min = 0x800;
    } else if ((b & 0xF8) == 0xF0) {
        need = 3, c = b & 0x07, min = 0x10000;
    } else {
        *cp = 0xFFFD;
        return 1;
    }
    if (n < need + 1) {
        *cp = 0xFFFD;
        return 1;
    }
    for (size_t i = 1; i <= need; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            *cp = 0xFFFD;
            return 1;
        }
        c = (c << 6) | (s[i] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) {
        *cp = 0xFFFD;
        return 1;
    }
    *cp = c;
    return need + 1;
}

static size_t utf8_encode(uint32_t c, char *o) {
    if (c < 0x80) {
        o[0] = (char)c;
        return 1;
    } else if (c < 0x800) {
        o[0] = (char)(0xC0 | (c >> 6));
        o[1] = (char)(0x80 | (c & 0x3F));
        return 2;
    } else if (c < 0x10000) {
        o[0] = (char)(0xE0 | (c >> 12));
        o[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        o[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (c >> 18));
    o[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((c >> 6) & 0x3F));
    o[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

/* ------------------------------------------------------------ vocabulary ------------- */

typedef struct vocab_slot {
    const char *tok; /* into tok_vocab.text; NULL: empty slot */
    uint32_t len;
    int32_t id;
} vocab_slot;

struct tok_vocab {
    char *text;        /* the file, owned */
    vocab_slot *slots; /* open addressing, linear probing; mask + 1 slots */
    size_t mask;
    size_t size; /* lines */
    int32_t unk, cls, sep;
};

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static long vocab_find(const tok_vocab *v, const char *s, size_t n) {
    size_t i = (size_t)hash_bytes(s, n) & v->mask;
    for (;;) {
        const vocab_slot *e = &v->slots[i];
        if (e->tok == NULL) return -1;
        if (e->len == n && memcmp(e->tok, s, n) == 0) return e->id;
        i = (i + 1) & v->mask;
    }
}

static void vocab_put(tok_vocab *v, const char *s, size_t n, int32_t id) {
    size_t i = (size_t)hash_bytes(s, n) & v->mask;
    for (;;) {
        vocab_slot *e = &v->slots[i];
        if (e->tok == NULL) {
            e->tok = s, e->len = (uint32_t)n, e->id = id;
            return;
        }
        if (e->len == n && memcmp(e->tok, s, n) == 0) {
            e->id = id; /* a duplicate keeps its last line, as HF's dict does */
            return;
        }
        i = (i + 1) & v->mask;
    }
}

static bool utf8_valid(const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint32_t c;
        size_t k = utf8_decode((const unsigned char *)s + i, n - i, &c);
        if (c == 0xFFFD && k == 1) return false;
        i += k;
    }
    return true;
}

int tok_vocab_load(const char *path, tok_vocab **out, char *err, size_t errlen) {
    *out = NULL;
    tok_vocab *v = calloc(1, sizeof(*v));
    FILE *f = NULL;
    if (v == NULL) goto oom;
    f = fopen(path, "rb");
    if (f == NULL) {
        fleet_err(err, errlen, "%s: %s", path, strerror(errno));
        goto err;
    }
    size_t cap = 1 << 16, len = 0;
    v->text = malloc(cap);
    if (v->text == NULL) goto oom;
    for (;;) {
        if (len + 1 >= cap) {
            if (cap > ((size_t)1 << 30)) {
                fleet_err(err, errlen, "%s: larger than 1 GiB", path);
                goto err;
            }
            char *t = realloc(v->text, cap * 2);
            if (t == NULL) goto oom;
            v->text = t, cap *= 2;
        }
        size_t got = fread(v->text + len, 1, cap - len - 1, f);
        len += got;
        if (got == 0) break;
    }
    if (ferror(f)) {
        fleet_err(err, errlen, "%s: read error", path);
        goto err;
    }
    fclose(f);
    f = NULL;
    v->text[len] = '\0';
    if (len == 0) {
        fleet_err(err, errlen, "%s: empty vocabulary", path);
        goto err;
    }

    /* Count lines: a last line without "\n" counts; a final "\n" opens no new line. */
    size_t lines = 0;
    for (size_t i = 0; i < len; i++) lines += v->text[i] == '\n';
    if (v->text[len - 1] != '\n') lines++;
    if (lines > INT32_MAX) {
        fleet_err(err, errlen, "%s: too many lines", path);
        goto err;
    }
    size_t nslots = 16;
    while (nslots < lines * 2) nslots *= 2;
    v->slots = calloc(nslots, sizeof(*v->slots));
    if (v->slots == NULL) goto oom;
    v->mask = nslots - 1;
    v->size = lines;

    char *p = v->text, *end = v->text + len;
    for (size_t id = 0; id < lines; id++) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *e = nl ? nl : end;
        if (e > p && e[-1] == '\r') e--;
        size_t n = (size_t)(e - p);
        if (memchr(p, '\0', n) != NULL) {
            fleet_err(err, errlen, "%s: line %zu: contains a NUL byte", path, id + 1);
            goto err;
        }
        if (!utf8_valid(p, n)) {
            fleet_err(err, errlen, "%s: line %zu: not valid UTF-8", path, id + 1);
            goto err;
        }
        *e = '\0';
        vocab_put(v, p, n, (int32_t)id);
        p = nl ? nl + 1 : end;
    }
    static const char *const need[] = {"[UNK]", "[CLS]", "[SEP]"};
    int32_t *slot[] = {&v->unk, &v->cls, &v->sep};
    for (size_t i = 0; i < 3; i++) {
        long id = tok_vocab_id(v, need[i]);
        if (id < 0) {
            fleet_err(err, errlen, "%s: no %s token", path, need[i]);
            goto err;
        }
        *slot[i] = (int32_t)id;
    }
    *out = v;
    return 0;

oom:
    fleet_err(err, errlen, "%s: out of memory", path);
err:
    if (f != NULL) fclose(f);
    tok_vocab_free(v);
    return -1;
}

void tok_vocab_free(tok_vocab *v) {
    if (v == NULL) return;
    free(v->slots);
    free(v->text);
    free(v);
}

long tok_vocab_id(const tok_vocab *v, const char *token) {
    return vocab_find(v, token, strlen(token));
}

size_t tok_vocab_size(const tok_vocab *v) { return v->size; }

/* ------------------------------------------------------------ tokenizing ------------- */

/* The state of one tok_encode call: the current word and the output. */
typedef struct tok_run {
    const tok_vocab *v;
    char *word; /* UTF-8 bytes of the current word, owned */
    size_t wlen, wcap;
    size_t wchars; /* its length in code points */
    int32_t *ids;
    size_t n, limit; /* written; most pieces allowed (before [SEP]) */
} tok_run;

static bool run_full(const tok_run *r) { return r->n >= r->limit; }

static void emit(tok_run *r, int32_t id) {
    if (r->n < r->limit) r->ids[r->n++] = id;
}

/* WordPiece on the current word: greedy longest match from the left, continuations
 * prefixed "##"; no full match or more than 100 characters: one [UNK]. */
static void wordpiece(tok_run *r) {
    size_t wlen = r->wlen, nchars = r->wchars;
    r->wlen = r->wchars = 0;
    if (wlen == 0) return;
    if (nchars > TOK_MAX_WORD_CHARS) {
        emit(r, r->v->unk);
        return;
    }
    /* At most 100 characters of at most 4 bytes each, after "##". */
    char buf[2 + 4 * TOK_MAX_WORD_CHARS];
    int32_t pieces[TOK_MAX_WORD_CHARS];
    size_t npieces = 0, start = 0;
    const char *w = r->word;
    buf[0] = buf[1] = '#';
    while (start < wlen) {
        size_t pre = start > 0 ? 2 : 0;
        memcpy(buf + 2, w + start, wlen - start);
        long id = -1;
        size_t end = wlen;
        while (end > start) {
            id = vocab_find(r->v, buf + 2 - pre, pre + end - start);
            if (id >= 0) break;
            /* Back off one character: skip UTF-8 continuation bytes. */
            do end--;
            while (end > start && ((unsigned char)w[end] & 0xC0) == 0x80);
        }
        if (id < 0) {
            emit(r, r->v->unk);
            return;
        }
        pieces[npieces++] = (int32_t)id;
        start = end;
    }
    for (size_t i = 0; i < npieces; i++) emit(r, pieces[i]);
}

/* Appends code point c to the current word. */
static int word_add(tok_run *r, uint32_t c) {
    if (r->wlen + 4 > r->wcap) {
        size_t cap = r->wcap ? r->wcap * 2 : 256;
        char *t = realloc(r->word, cap);
        if (t == NULL) return -1;
        r->word = t, r->wcap = cap;
    }
    r->wlen += utf8_encode(c, r->word + r->wlen);
    r->wchars++;
    return 0;
}

/* One code point after cleaning: normalizes it and adds it to the word, or makes it a
 * word of its own (punctuation; a CJK ideograph when alone). */
static int add_char(tok_run *r, uint32_t c, bool lower, bool alone) {
    uint32_t d[8];
    size_t nd;
    if (lower) {
        nd = uc_nfd(uc_lower(c), d);
    } else {
        d[0] = c;
        nd = 1;
    }
    for (size_t i = 0; i < nd; i++) {
        if (lower && d[i] >= 0x300 && in_ranges(ucd_mark_mn, ucd_mark_mn_n, d[i])) continue;
        if (uc_is_punct(d[i])) {
            wordpiece(r);
            if (word_add(r, d[i]) < 0) return -1;
            wordpiece(r);
        } else if (word_add(r, d[i]) < 0) {
            return -1;
        }
    }
    if (alone) wordpiece(r);
    return 0;
}

long tok_encode(const tok_vocab *v, const tok_opts *o, const char *text, size_t len, int32_t *ids,
                size_t cap, char *err, size_t errlen) {
    size_t limit = cap;
    if (o->max_len != 0 && o->max_len < limit) limit = o->max_len;
    if (limit < 2) {
        fleet_err(err, errlen, "no room for [CLS] and [SEP] (cap %zu, max_len %zu)", cap,
                  o->max_len);
        return -1;
    }
    tok_run r = {.v = v, .ids = ids, .limit = limit - 1};
    emit(&r, v->cls);
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0;
    while (i < len && !run_full(&r)) {
        uint32_t c;
        i += utf8_decode(s + i, len - i, &c);
        if (c == 0 || c == 0xFFFD || uc_is_control(c)) continue;
        if (uc_is_space(c)) {
            wordpiece(&r);
            continue;
        }
        bool cjk = uc_is_cjk(c);
        if (cjk) wordpiece(&r);
        if (add_char(&r, c, o->lower_case, cjk) < 0) {
            free(r.word);
            fleet_err(err, errlen, "out of memory");
            return -1;
        }
    }
    wordpiece(&r);
    free(r.word);
    r.limit = limit;
    emit(&r, v->sep);
    return (long)r.n;
}
