/* script_embed_test: each script as embedded (shared/scripts/embed.cmake) holds exactly
 * the helpers of lib.lua it uses; no Redis.
 *
 * embed.cmake picks lib.lua's blocks for a script by finding their names in the script's
 * text with regular expressions. This test reads the result with a Lua tokenizer of its
 * own (comments, strings, long brackets, field names after "." or ":" are not uses), and
 * checks, for every script and every name that a block of lib.lua defines:
 *   - every use of the name comes after a definition of it in the same text (a helper the
 *     script was not given would be a global, which Redis refuses only when the line runs);
 *   - every block the script was given defines a name that the text uses (a block never
 *     called still costs its definition at every call of the script).
 * Every gateway also sends each script to Redis with SCRIPT LOAD before it is ready, so
 * the integration tests compile every embedded script. */
#include <ctype.h>
#include <string.h>

#include "fleet/state.h"
#include "testlib.h"

/* ------------------------------------------------------------ lib.lua's blocks ------ */

#define MAX_BLOCKS 64
#define MAX_NAMES 8

typedef struct block {
    char names[MAX_NAMES][64];
    int n;
} block;

typedef struct lib {
    block b[MAX_BLOCKS];
    int n;
} lib;

/* The blocks of lib.lua: each line "--- name [name...]" starts one. */
static void read_lib(lib *l) {
    memset(l, 0, sizeof *l);
    char *text = tl_read_file(TEST_SOURCE_DIR "/shared/scripts/lib.lua", NULL);
    ASSERT_NOT_NULL(text);
    for (char *line = text; line && *line;) {
        char *eol = strchr(line, '\n');
        if (strncmp(line, "--- ", 4) == 0) {
            if (l->n >= MAX_BLOCKS) FAILF("lib.lua has more than %d blocks", MAX_BLOCKS);
            block *b = &l->b[l->n++];
            const char *p = line + 4;
            const char *end = eol ? eol : p + strlen(p);
            while (p < end) {
                while (p < end && *p == ' ') p++;
                size_t len = 0;
                while (p + len < end && (isalnum((unsigned char)p[len]) || p[len] == '_')) len++;
                if (len == 0) {
                    if (p < end) FAILF("lib.lua: a block line is not \"--- name [name...]\"");
                    break;
                }
                if (b->n >= MAX_NAMES || len >= sizeof b->names[0])
                    FAILF("lib.lua: a block line names too many or too long names");
                memcpy(b->names[b->n++], p, len);
                p += len;
            }
            if (b->n == 0) FAILF("lib.lua: a block line names nothing");
        }
        line = eol ? eol + 1 : NULL;
    }
    if (l->n == 0) FAILF("lib.lua has no block line (\"--- name\")");
}

/* ------------------------------------------------------------ a Lua tokenizer ------- */

typedef struct token {
    const char *s;
    size_t len;
    bool ident;
    bool field; /* a name after a single "." or ":": a table field, not a variable */
} token;

typedef struct tokens {
    token *t;
    size_t n, cap;
} tokens;

static void push(tokens *ts, token t) {
    if (ts->n == ts->cap) {
        size_t cap = ts->cap ? ts->cap * 2 : 1024;
        token *nt = tl_alloc(cap * sizeof *nt);
        if (ts->n) memcpy(nt, ts->t, ts->n * sizeof *nt);
        ts->t = nt;
        ts->cap = cap;
    }
    ts->t[ts->n++] = t;
}

/* At p a long bracket "[" "="* "[": its level (the number of "="), else -1. */
static int long_open(const char *p) {
    if (*p != '[') return -1;
    int level = 0;
    while (p[1 + level] == '=') level++;
    return p[1 + level] == '[' ? level : -1;
}

/* Past the long bracket's closing "]" "="*level "]" (or the end of the text). */
static const char *long_skip(const char *p, int level) {
    p += level + 2;
    for (; *p; p++) {
        if (*p != ']') continue;
        int i = 0;
        while (i < level && p[1 + i] == '=') i++;
        if (i == level && p[1 + level] == ']') return p + level + 2;
    }
    return p;
}

static void tokenize(const char *src, tokens *ts) {
    memset(ts, 0, sizeof *ts);
    const char *p = src;
    if (strncmp(p, "#!", 2) == 0) p += strcspn(p, "\n"); /* the shebang line */
    bool after_dot = false;
    while (*p) {
        unsigned char c = (unsigned char)*p;
        if (isspace(c)) {
            p++;
        } else if (p[0] == '-' && p[1] == '-') {
            int level = long_open(p + 2);
            p = level >= 0 ? long_skip(p + 2, level) : p + strcspn(p, "\n");
        } else if (c == '\'' || c == '"') {
            for (p++; *p && *p != (char)c && *p != '\n'; p++)
                if (*p == '\\' && p[1]) p++;
            if (*p == (char)c) p++;
            push(ts, (token){.s = "str", .len = 3});
            after_dot = false;
        } else if (long_open(p) >= 0) {
            p = long_skip(p, long_open(p));
            push(ts, (token){.s = "str", .len = 3});
            after_dot = false;
        } else if (isalpha(c) || c == '_') {
            const char *s = p;
            while (isalnum((unsigned char)*p) || *p == '_') p++;
            push(ts, (token){.s = s, .len = (size_t)(p - s), .ident = true, .field = after_dot});
            after_dot = false;
        } else if (isdigit(c)) {
            while (isalnum((unsigned char)*p) || *p == '_' ||
                   (*p == '.' && isdigit((unsigned char)p[1])))
                p++;
            push(ts, (token){.s = "num", .len = 3});
            after_dot = false;
        } else {
            /* "." or ":" (not ".." nor "::") makes the next name a field. */
            bool dot = (c == '.' || c == ':') && p[1] != (char)c && (p == src || p[-1] != (char)c);
            push(ts, (token){.s = p, .len = 1});
            p++;
            after_dot = dot;
        }
    }
}

static bool tok_is(const token *t, const char *s) {
    return t->len == strlen(s) && strncmp(t->s, s, t->len) == 0;
}

/* ------------------------------------------------------------ the checks ------------ */

/* The index of the token where name is defined as a local ("local function name" or
 * "local a, name, b ="), the first one; or -1. */
static long definition(const tokens *ts, const char *name) {
    for (size_t i = 0; i + 1 < ts->n; i++) {
        if (!tok_is(&ts->t[i], "local")) continue;
        size_t j = i + 1;
        if (tok_is(&ts->t[j], "function")) {
            if (j + 1 < ts->n && tok_is(&ts->t[j + 1], name)) return (long)(j + 1);
            continue;
        }
        for (; j < ts->n && ts->t[j].ident; j += 2) {
            if (tok_is(&ts->t[j], name)) return (long)j;
            if (j + 1 >= ts->n || !tok_is(&ts->t[j + 1], ",")) break;
        }
    }
    return -1;
}

/* Whether name is used (not defined, not a field) after token index from. Fails the case
 * at a use before any definition. */
static bool used_after(const tokens *ts, const char *script, const char *name, long def) {
    bool used = false;
    for (size_t i = 0; i < ts->n; i++) {
        const token *t = &ts->t[i];
        if (!t->ident || t->field || !tok_is(t, name) || (long)i == def) continue;
        /* "local x, name =" defining it again later is not a use either. */
        if (def < 0 || (long)i < def)
            FAILF("%s.lua uses lib.lua's %s without its definition before (token %zu)", script,
                  name, i);
        used = true;
    }
    return used;
}

static const char *const script_names[] = {
#define FLEET_SCRIPT(name, NAME) #name,
#include "../../shared/scripts/scripts.def"
#undef FLEET_SCRIPT
};

TL_TEST(each_script_holds_exactly_the_helpers_it_uses) {
    lib *l = tl_alloc(sizeof *l);
    read_lib(l);
    int given_total = 0;
    for (int s = 0; s < FLEET_SCRIPT_COUNT; s++) {
        const char *name = script_names[s];
        tokens ts;
        tokenize(fleet_script_get((fleet_script_id)s)->source, &ts);
        for (int b = 0; b < l->n; b++) {
            const block *bl = &l->b[b];
            bool given = false, used = false;
            for (int k = 0; k < bl->n; k++) {
                long def = definition(&ts, bl->names[k]);
                if (used_after(&ts, name, bl->names[k], def)) used = true;
                if (def >= 0) given = true;
            }
            if (given && !used)
                FAILF("%s.lua was given lib.lua's block \"%s\", which it never uses", name,
                      bl->names[0]);
            given_total += given;
        }
    }
    /* The checks saw the blocks at all (the script text holds its helpers). */
    ASSERT_TRUE(given_total > 0);
}

/* The tokenizer itself: what it must not count as a use of a name. */
TL_TEST(tokenizer_skips_comments_strings_and_fields) {
    tokens ts;
    tokenize("#!lua flags=no-writes\n"
             "-- now_ms() in a comment\n"
             "--[==[ now_ms ]] still ]==] local a = 'now_ms' .. \"now_ms\\\"\" .. [[now_ms]]\n"
             "local t = {}; t.now_ms = 1; t:now_ms(); local b = a .. now_ms\n",
             &ts);
    long def = definition(&ts, "now_ms");
    ASSERT_EQ_INT(def, -1);
    int uses = 0;
    for (size_t i = 0; i < ts.n; i++)
        if (tok_is(&ts.t[i], "now_ms") && !ts.t[i].field) uses++;
    ASSERT_EQ_INT(uses, 1); /* after "..", the concatenation */
    tokenize("local x, now_ms, y = 1, 2, 3\nlocal function f() return now_ms end\n", &ts);
    ASSERT_TRUE(definition(&ts, "now_ms") > 0);
    ASSERT_TRUE(definition(&ts, "f") > 0);
    ASSERT_EQ_INT(definition(&ts, "g"), -1);
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(each_script_holds_exactly_the_helpers_it_uses),
        TL_CASE(tokenizer_skips_comments_strings_and_fields),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
