/* tokenizer_test: the embed model's BERT WordPiece tokenizer (worker/embed/tokenizer.c).
 *
 * golden_cases runs the 43 cases of ../shared/models/all-MiniLM-L6-v2/tokenizer_cases.json
 * (outputs of Hugging Face's tokenizer on the real vocabulary) when that directory is
 * there, and skips otherwise. The other cases use a small vocabulary written to the
 * case's temporary directory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "testlib.h"
#include "tokenizer.h"

#define MODEL_DIR TEST_SOURCE_DIR "/../shared/models/all-MiniLM-L6-v2"

static void vocab_free_cb(void *v) { tok_vocab_free(v); }

static tok_vocab *load_or_fail(const char *path) {
    tok_vocab *v = NULL;
    char err[512] = "";
    if (tok_vocab_load(path, &v, err, sizeof(err)) != 0) FAILF("vocab load: %s", err);
    tl_defer(vocab_free_cb, v);
    return v;
}

/* The small vocabulary: ids are line numbers. */
static const char *const small_tokens[] = {
    "[PAD]", "[UNK]", "[CLS]",    "[SEP]",         "cafe",   "hello", "world",      ",",
    "!",     ".",     "un",       "##aff",         "##able", "中",    "国",         "the",
    "a",     "##b",   "\xc3\xa9", /* é */ "Hello", "'",      "s",     "##\xc3\xa9",
};
enum {
    T_UNK = 1,
    T_CLS = 2,
    T_SEP = 3,
    T_CAFE = 4,
    T_HELLO = 5,
    T_WORLD = 6,
    T_COMMA = 7,
    T_BANG = 8,
    T_DOT = 9,
    T_UN = 10,
    T_AFF = 11,
    T_ABLE = 12,
    T_ZHONG = 13,
    T_GUO = 14,
    T_THE = 15,
    T_A = 16,
    T_HASH_B = 17,
    T_E_ACUTE = 18,
    T_HELLO_CAP = 19,
    T_APOS = 20,
    T_S = 21,
    T_HASH_E_ACUTE = 22
};

static tok_vocab *small_vocab(void) {
    const char *path = tl_printf("%s/vocab.txt", tl_tmpdir());
    FILE *f = fopen(path, "w");
    ASSERT_NOT_NULL(f);
    for (size_t i = 0; i < TL_COUNT(small_tokens); i++)
        fprintf(f, "%s%s", small_tokens[i], i % 3 == 0 ? "\r\n" : "\n"); /* both endings */
    fclose(f);
    return load_or_fail(path);
}

/* Tokenizes s and compares with want (a -1-terminated list, [CLS]/[SEP] included). */
static void check_ex(const tok_vocab *v, bool lower, size_t max_len, const char *s, size_t len,
                     const int32_t *want, const char *what) {
    int32_t ids[512];
    char err[256] = "";
    tok_opts o = {.lower_case = lower, .max_len = max_len};
    long n = tok_encode(v, &o, s, len, ids, TL_COUNT(ids), err, sizeof(err));
    if (n < 0) FAILF("%s: tok_encode: %s", what, err);
    size_t nw = 0;
    while (want[nw] != -1) nw++;
    bool same = (size_t)n == nw;
    for (size_t i = 0; same && i < nw; i++) same = ids[i] == want[i];
    if (!same) {
        char got[2048] = "", exp[2048] = "";
        for (long i = 0; i < n; i++)
            snprintf(got + strlen(got), sizeof(got) - strlen(got), " %d", ids[i]);
        for (size_t i = 0; i < nw; i++)
            snprintf(exp + strlen(exp), sizeof(exp) - strlen(exp), " %d", want[i]);
        FAILF("%s: got [%s ] want [%s ]", what, got, exp);
    }
}

#define CHECK(v, s, ...) \
    check_ex((v), true, 0, (s), strlen(s), (const int32_t[]){__VA_ARGS__, -1}, #s)

/* ------------------------------------------------------------ golden ----------------- */

TL_TEST(golden_cases) {
    struct stat st;
    if (stat(MODEL_DIR, &st) != 0) TL_SKIP("skipped: ../shared/models not present");
    tok_vocab *v = load_or_fail(MODEL_DIR "/vocab.txt");
    ASSERT_EQ_INT(tok_vocab_size(v), 30522);
    ASSERT_EQ_INT(tok_vocab_id(v, "[UNK]"), 100);
    ASSERT_EQ_INT(tok_vocab_id(v, "[CLS]"), 101);
    ASSERT_EQ_INT(tok_vocab_id(v, "[SEP]"), 102);
    char *text = tl_read_file(MODEL_DIR "/tokenizer_cases.json", NULL);
    ASSERT_NOT_NULL(text);
    json_t *cases = tl_json(text);
    ASSERT_TRUE(json_is_array(cases));
    size_t i, passed = 0;
    json_t *c;
    json_array_foreach(cases, i, c) {
        json_t *jt = json_object_get(c, "text"), *jids = json_object_get(c, "ids");
        ASSERT_TRUE(json_is_string(jt) && json_is_array(jids));
        int32_t *want = tl_alloc((json_array_size(jids) + 3) * sizeof(int32_t));
        size_t k = 0, j;
        json_t *id;
        want[k++] = 101;
        json_array_foreach(jids, j, id) want[k++] = (int32_t)json_integer_value(id);
        want[k++] = 102;
        want[k] = -1;
        check_ex(v, true, 256, json_string_value(jt), json_string_length(jt), want,
                 tl_printf("golden case %zu %s", i, tl_json_text(jt)));
        passed++;
    }
    tl_log("%zu of %zu golden cases match", passed, json_array_size(cases));
    ASSERT_EQ_INT(passed, 43);
}

TL_TEST(golden_truncation) {
    struct stat st;
    if (stat(MODEL_DIR, &st) != 0) TL_SKIP("skipped: ../shared/models not present");
    tok_vocab *v = load_or_fail(MODEL_DIR "/vocab.txt");
    size_t n = 1000;
    char *s = tl_alloc(n * 2 + 1);
    for (size_t i = 0; i < n; i++) memcpy(s + 2 * i, "a ", 2);
    int32_t ids[512];
    char err[128];
    tok_opts o = {.lower_case = true, .max_len = 256};
    ASSERT_EQ_INT(tok_encode(v, &o, s, strlen(s), ids, 512, err, sizeof(err)), 256);
    ASSERT_EQ_INT(ids[0], 101);
    ASSERT_EQ_INT(ids[1], tok_vocab_id(v, "a"));
    ASSERT_EQ_INT(ids[254], tok_vocab_id(v, "a"));
    ASSERT_EQ_INT(ids[255], 102);
}

/* ------------------------------------------------------------ small vocabulary ------- */

TL_TEST(vocab_loads_ids_by_line) {
    tok_vocab *v = small_vocab();
    ASSERT_EQ_INT(tok_vocab_size(v), TL_COUNT(small_tokens));
    ASSERT_EQ_INT(tok_vocab_id(v, "[UNK]"), T_UNK); /* a "\r\n" line */
    ASSERT_EQ_INT(tok_vocab_id(v, "##aff"), T_AFF);
    ASSERT_EQ_INT(tok_vocab_id(v, "s"), T_S); /* the last line */
    ASSERT_EQ_INT(tok_vocab_id(v, "absent"), -1);
    ASSERT_EQ_INT(tok_vocab_id(v, ""), -1);
}

static const char *load_err(const char *content, size_t len) {
    const char *path = tl_printf("%s/v%zu.txt", tl_tmpdir(), len);
    FILE *f = fopen(path, "wb");
    ASSERT_NOT_NULL(f);
    fwrite(content, 1, len, f);
    fclose(f);
    tok_vocab *v = NULL;
    char *err = tl_alloc(512);
    ASSERT_EQ_INT(tok_vocab_load(path, &v, err, 512), -1);
    ASSERT_NULL(v);
    return err;
}

TL_TEST(vocab_errors_are_precise) {
    tok_vocab *v = NULL;
    char err[512];
    ASSERT_EQ_INT(tok_vocab_load("/nonexistent/vocab.txt", &v, err, sizeof(err)), -1);
    ASSERT_STR_CONTAINS(err, "/nonexistent/vocab.txt: No such file");
    ASSERT_STR_CONTAINS(load_err("", 0), "empty vocabulary");
    ASSERT_STR_CONTAINS(load_err("[UNK]\n[CLS]\n\xff\xfe\n", 15), "line 3: not valid UTF-8");
    ASSERT_STR_CONTAINS(load_err("[UNK]\na\0b\n", 10), "line 2: contains a NUL byte");
    ASSERT_STR_CONTAINS(load_err("[UNK]\n[CLS]\n", 12), "no [SEP] token");
}

TL_TEST(basic_words_and_punctuation) {
    tok_vocab *v = small_vocab();
    CHECK(v, "Hello, world!", T_CLS, T_HELLO, T_COMMA, T_WORLD, T_BANG, T_SEP);
    CHECK(v, "hello.world", T_CLS, T_HELLO, T_DOT, T_WORLD, T_SEP);
    CHECK(v, "hello's", T_CLS, T_HELLO, T_APOS, T_S, T_SEP);
    /* Unicode punctuation (U+2026 HORIZONTAL ELLIPSIS, Po) splits; not in vocab: [UNK]. */
    CHECK(v, "hello\xe2\x80\xa6world", T_CLS, T_HELLO, T_UNK, T_WORLD, T_SEP);
    /* ASCII symbols BERT counts as punctuation ($ is Sc in Unicode). */
    CHECK(v, "hello$world", T_CLS, T_HELLO, T_UNK, T_WORLD, T_SEP);
}

TL_TEST(accents_are_stripped) {
    tok_vocab *v = small_vocab();
    CHECK(v, "caf\xc3\xa9", T_CLS, T_CAFE, T_SEP);  /* café, precomposed */
    CHECK(v, "cafe\xcc\x81", T_CLS, T_CAFE, T_SEP); /* e + U+0301 */
    CHECK(v, "CAF\xc3\x89", T_CLS, T_CAFE, T_SEP);  /* CAFÉ */
    /* Without lower_case nothing is stripped or lowered. */
    check_ex(v, false, 0, "\xc3\xa9 Hello", 8,
             (const int32_t[]){T_CLS, T_E_ACUTE, T_HELLO_CAP, T_SEP, -1}, "no lower case");
}

TL_TEST(cjk_is_split) {
    tok_vocab *v = small_vocab();
    CHECK(v, "\xe4\xb8\xad\xe5\x9b\xbd", T_CLS, T_ZHONG, T_GUO, T_SEP); /* 中国 */
    CHECK(v, "hello\xe4\xb8\xadworld", T_CLS, T_HELLO, T_ZHONG, T_WORLD, T_SEP);
}

TL_TEST(wordpiece_continuations) {
    tok_vocab *v = small_vocab();
    CHECK(v, "unaffable", T_CLS, T_UN, T_AFF, T_ABLE, T_SEP);
    CHECK(v, "ab", T_CLS, T_A, T_HASH_B, T_SEP);
    /* One piece that does not match makes the whole word [UNK]. */
    CHECK(v, "unaffablex the", T_CLS, T_UNK, T_THE, T_SEP);
    CHECK(v, "zebra", T_CLS, T_UNK, T_SEP);
}

TL_TEST(long_word_is_unk) {
    tok_vocab *v = small_vocab();
    char s[256];
    /* "a" + 99 × "b" = 100 characters: pieces; 101: [UNK]. */
    s[0] = 'a';
    memset(s + 1, 'b', 99);
    s[100] = '\0';
    int32_t want[104];
    want[0] = T_CLS, want[1] = T_A;
    for (int i = 0; i < 99; i++) want[2 + i] = T_HASH_B;
    want[101] = T_SEP, want[102] = -1;
    check_ex(v, true, 0, s, 100, want, "100 chars");
    strcat(s, "b the");
    CHECK(v, s, T_CLS, T_UNK, T_THE, T_SEP);
    /* Characters, not bytes: 60 × "é" (120 bytes) is 60 characters (é ##é ...), 101 are
     * too many. */
    char e[512] = "";
    int32_t want_e[64];
    want_e[0] = T_CLS, want_e[1] = T_E_ACUTE;
    for (int i = 0; i < 60; i++) strcat(e, "\xc3\xa9");
    for (int i = 1; i < 60; i++) want_e[1 + i] = T_HASH_E_ACUTE;
    want_e[61] = T_SEP, want_e[62] = -1;
    check_ex(v, false, 0, e, strlen(e), want_e, "60 é");
    for (int i = 60; i < 101; i++) strcat(e, "\xc3\xa9");
    check_ex(v, false, 0, e, strlen(e), (const int32_t[]){T_CLS, T_UNK, T_SEP, -1}, "101 é");
}

TL_TEST(truncation) {
    tok_vocab *v = small_vocab();
    const char *s = "hello world hello world";
    check_ex(v, true, 4, s, strlen(s), (const int32_t[]){T_CLS, T_HELLO, T_WORLD, T_SEP, -1},
             "max_len 4");
    check_ex(v, true, 2, s, strlen(s), (const int32_t[]){T_CLS, T_SEP, -1}, "max_len 2");
    /* The capacity truncates as max_len does. */
    int32_t ids[3];
    char err[128];
    tok_opts o = {.lower_case = true, .max_len = 256};
    ASSERT_EQ_INT(tok_encode(v, &o, s, strlen(s), ids, 3, err, sizeof(err)), 3);
    ASSERT_EQ_INT(ids[1], T_HELLO);
    ASSERT_EQ_INT(ids[2], T_SEP);
    /* A word's pieces are cut too: [CLS] un ##aff [SEP]. */
    check_ex(v, true, 4, "unaffable", 9, (const int32_t[]){T_CLS, T_UN, T_AFF, T_SEP, -1},
             "pieces cut");
    ASSERT_EQ_INT(tok_encode(v, &o, s, strlen(s), ids, 1, err, sizeof(err)), -1);
    ASSERT_STR_CONTAINS(err, "no room");
    o.max_len = 1;
    ASSERT_EQ_INT(tok_encode(v, &o, s, strlen(s), ids, 3, err, sizeof(err)), -1);
}

TL_TEST(control_chars_and_invalid_utf8_dropped) {
    tok_vocab *v = small_vocab();
    /* NUL, BEL, U+200B ZERO WIDTH SPACE (Cf), U+FFFD and bad bytes vanish inside a word;
     * tab, newline, CR and U+3000 separate words. */
    const char s[] = "hel\0l\x07o\xe2\x80\x8b\tworld\r\nhe\xef\xbf\xbdllo\xff\xc3"
                     "\xe3\x80\x80world\xf0\x9f";
    check_ex(v, true, 0, s, sizeof(s) - 1,
             (const int32_t[]){T_CLS, T_HELLO, T_WORLD, T_HELLO, T_WORLD, T_SEP, -1}, "controls");
}

TL_TEST(empty_text) {
    tok_vocab *v = small_vocab();
    check_ex(v, true, 256, "", 0, (const int32_t[]){T_CLS, T_SEP, -1}, "empty");
    check_ex(v, true, 256, NULL, 0, (const int32_t[]){T_CLS, T_SEP, -1}, "NULL");
    CHECK(v, " \t\n\r\x01", T_CLS, T_SEP);
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(golden_cases),
        TL_CASE(golden_truncation),
        TL_CASE(vocab_loads_ids_by_line),
        TL_CASE(vocab_errors_are_precise),
        TL_CASE(basic_words_and_punctuation),
        TL_CASE(accents_are_stripped),
        TL_CASE(cjk_is_split),
        TL_CASE(wordpiece_continuations),
        TL_CASE(long_word_is_unk),
        TL_CASE(truncation),
        TL_CASE(control_chars_and_invalid_utf8_dropped),
        TL_CASE(empty_text),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
