/* bert_config_test: reading a sentence-transformers model directory and checking its
 * weights against it (worker/embed/bert_config.c): the real all-MiniLM-L6-v2 directory
 * when ../shared/models is present, and small directories written here, one fault each. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bert_config.h"
#include "testlib.h"

#define REAL_DIR TEST_SOURCE_DIR "/../shared/models/all-MiniLM-L6-v2"

/* ------------------------------------------------------------ a small model dir ----- */

static void write_file(const char *dir, const char *rel, const char *text) {
    const char *path = tl_printf("%s/%s", dir, rel);
    FILE *f = fopen(path, "wb");
    if (!f) FAILF("cannot write %s", path);
    fputs(text, f);
    ASSERT_EQ_INT(fclose(f), 0);
}

#define CONFIG_JSON(hidden, heads, act, extra)                                                \
    "{\"hidden_size\": " hidden ", \"num_hidden_layers\": 2, \"num_attention_heads\": " heads \
    ", \"intermediate_size\": 16, \"max_position_embeddings\": 16, "                          \
    "\"vocab_size\": 10, \"type_vocab_size\": 2, \"layer_norm_eps\": 1e-12, "                 \
    "\"hidden_act\": \"" act "\", \"model_type\": \"bert\"" extra "}"

#define MODULES_JSON(extra)                                     \
    "[{\"idx\": 0, \"name\": \"0\", \"path\": \"\", "           \
    "\"type\": \"sentence_transformers.models.Transformer\"}, " \
    "{\"idx\": 1, \"name\": \"1\", \"path\": \"1_Pooling\", "   \
    "\"type\": \"sentence_transformers.models.Pooling\"}" extra "]"

#define NORMALIZE_MODULE                                          \
    ", {\"idx\": 2, \"name\": \"2\", \"path\": \"2_Normalize\", " \
    "\"type\": \"sentence_transformers.models.Normalize\"}"

#define POOLING_JSON(cls, mean)                                               \
    "{\"word_embedding_dimension\": 8, \"pooling_mode_cls_token\": " cls ", " \
    "\"pooling_mode_mean_tokens\": " mean ", \"pooling_mode_max_tokens\": false}"

/* A fresh directory holding a valid tiny model's JSON files: hidden 8, 2 layers, 2
 * heads, intermediate 16, 16 positions, vocabulary 10. */
static const char *good_dir(const char *name) {
    const char *dir = tl_printf("%s/%s", tl_tmpdir(), name);
    ASSERT_EQ_INT(mkdir(dir, 0755), 0);
    ASSERT_EQ_INT(mkdir(tl_printf("%s/1_Pooling", dir), 0755), 0);
    write_file(dir, "config.json", CONFIG_JSON("8", "2", "gelu", ""));
    write_file(dir, "tokenizer_config.json", "{\"do_lower_case\": false}");
    write_file(dir, "sentence_bert_config.json", "{\"max_seq_length\": 12}");
    write_file(dir, "modules.json", MODULES_JSON(NORMALIZE_MODULE));
    write_file(dir, "1_Pooling/config.json", POOLING_JSON("false", "true"));
    return dir;
}

/* Loads a directory that must be refused; returns the message. */
static const char *refused(const char *dir) {
    bert_config c;
    char err[512] = "";
    ASSERT_EQ_INT(bert_config_load(dir, &c, err, sizeof err), -1);
    tl_log("refused: %s", err);
    return tl_printf("%s", err);
}

/* ------------------------------------------------------------ a small header -------- */

typedef struct fault {
    const char *drop;    /* leave out this tensor (name without prefix) */
    const char *reshape; /* give this tensor shape [d0] */
    int64_t d0;
    const char *as_i64; /* give this tensor dtype I64 */
    int extra_layer;    /* add encoder.layer.<layers> */
} fault;

static void add_tensor(json_t *root, uint64_t *off, const char *prefix, const char *name,
                       int64_t d0, int64_t d1, const fault *fl) {
    if (fl->drop && strcmp(fl->drop, name) == 0) return;
    const char *dtype = "F32";
    int esize = 4;
    if (fl->as_i64 && strcmp(fl->as_i64, name) == 0) {
        dtype = "I64";
        esize = 8;
    }
    if (fl->reshape && strcmp(fl->reshape, name) == 0) {
        d0 = fl->d0;
        d1 = -1;
    }
    json_t *shape = d1 < 0 ? json_pack("[I]", (json_int_t)d0)
                           : json_pack("[I, I]", (json_int_t)d0, (json_int_t)d1);
    uint64_t n = (uint64_t)d0 * (uint64_t)(d1 < 0 ? 1 : d1) * (uint64_t)esize;
    json_object_set_new(root, tl_printf("%s%s", prefix, name),
                        json_pack("{s:s, s:o, s:[I, I]}", "dtype", dtype, "shape", shape,
                                  "data_offsets", (json_int_t)*off, (json_int_t)(*off + n)));
    *off += n;
}

static void add_layer(json_t *root, uint64_t *off, const char *prefix, int l, const fault *fl) {
    static const char *hh[] = {"attention.self.query", "attention.self.key", "attention.self.value",
                               "attention.output.dense"};
    for (int i = 0; i < 4; i++) {
        add_tensor(root, off, prefix, tl_printf("encoder.layer.%d.%s.weight", l, hh[i]), 8, 8, fl);
        add_tensor(root, off, prefix, tl_printf("encoder.layer.%d.%s.bias", l, hh[i]), 8, -1, fl);
    }
    static const char *ln[] = {"attention.output.LayerNorm", "output.LayerNorm"};
    for (int i = 0; i < 2; i++) {
        add_tensor(root, off, prefix, tl_printf("encoder.layer.%d.%s.weight", l, ln[i]), 8, -1, fl);
        add_tensor(root, off, prefix, tl_printf("encoder.layer.%d.%s.bias", l, ln[i]), 8, -1, fl);
    }
    add_tensor(root, off, prefix, tl_printf("encoder.layer.%d.intermediate.dense.weight", l), 16, 8,
               fl);
    add_tensor(root, off, prefix, tl_printf("encoder.layer.%d.intermediate.dense.bias", l), 16, -1,
               fl);
    add_tensor(root, off, prefix, tl_printf("encoder.layer.%d.output.dense.weight", l), 8, 16, fl);
    add_tensor(root, off, prefix, tl_printf("encoder.layer.%d.output.dense.bias", l), 8, -1, fl);
}

/* A parsed header (no data) for good_dir's model, with `prefix` before every name and
 * one fault (or none). */
static st_file *tiny_weights(const char *prefix, const fault *fl) {
    static const fault none;
    if (!fl) fl = &none;
    json_t *root = tl_json_own(json_object());
    uint64_t off = 0;
    /* As real checkpoints carry it: I64, and ignored by the check. */
    const fault i64 = {.as_i64 = "embeddings.position_ids"};
    add_tensor(root, &off, prefix, "embeddings.position_ids", 1, 16, &i64);
    add_tensor(root, &off, prefix, "embeddings.word_embeddings.weight", 10, 8, fl);
    add_tensor(root, &off, prefix, "embeddings.position_embeddings.weight", 16, 8, fl);
    add_tensor(root, &off, prefix, "embeddings.token_type_embeddings.weight", 2, 8, fl);
    add_tensor(root, &off, prefix, "embeddings.LayerNorm.weight", 8, -1, fl);
    add_tensor(root, &off, prefix, "embeddings.LayerNorm.bias", 8, -1, fl);
    for (int l = 0; l < 2 + fl->extra_layer; l++) add_layer(root, &off, prefix, l, fl);
    add_tensor(root, &off, prefix, "pooler.dense.weight", 8, 8, fl);

    const char *json = tl_json_text(root);
    size_t hlen = strlen(json);
    char *buf = tl_alloc(8 + hlen);
    for (int i = 0; i < 8; i++) buf[i] = (char)((uint64_t)hlen >> (8 * i));
    memcpy(buf + 8, json, hlen);
    st_file *st;
    char err[512];
    if (st_parse_header(buf, 8 + hlen, 8 + hlen + off, &st, err, sizeof err) != 0)
        FAILF("tiny header refused: %s", err);
    return st;
}

static const char *tensors_refused(const bert_config *c, st_file *st) {
    char err[512] = "";
    ASSERT_EQ_INT(bert_check_tensors(c, st, err, sizeof err), -1);
    st_close(st);
    tl_log("refused: %s", err);
    return tl_printf("%s", err);
}

/* ------------------------------------------------------------ cases --------------- */

TL_TEST(real_minilm_directory_is_good) {
    struct stat sb;
    if (stat(REAL_DIR "/config.json", &sb) != 0) TL_SKIP("skipped: ../shared/models not present");
    bert_config c;
    char err[512] = "";
    if (bert_config_load(REAL_DIR, &c, err, sizeof err) != 0)
        FAILF("real directory refused: %s", err);
    ASSERT_EQ_INT(c.hidden_size, 384);
    ASSERT_EQ_INT(c.num_hidden_layers, 6);
    ASSERT_EQ_INT(c.num_attention_heads, 12);
    ASSERT_EQ_INT(c.head_dim, 32);
    ASSERT_EQ_INT(c.intermediate_size, 1536);
    ASSERT_EQ_INT(c.max_position_embeddings, 512);
    ASSERT_EQ_INT(c.vocab_size, 30522);
    ASSERT_EQ_INT(c.type_vocab_size, 2);
    ASSERT_TRUE(c.layer_norm_eps == 1e-12);
    ASSERT_TRUE(c.do_lower_case); /* tokenizer_config.json, not sentence_bert_config.json */
    ASSERT_EQ_INT(c.max_seq_length, 256);
    ASSERT_TRUE(c.normalize);
    ASSERT_EQ_STR(c.pooling_path, "1_Pooling");

    /* The weights' real header against that config. */
    size_t len;
    char *buf = tl_read_file(REAL_DIR "/model.safetensors.header", &len);
    if (!buf) TL_SKIP("skipped: model.safetensors.header not present");
    st_file *st;
    ASSERT_EQ_INT(st_parse_header(buf, len, 90868376, &st, err, sizeof err), 0);
    if (bert_check_tensors(&c, st, err, sizeof err) != 0) FAILF("real tensors refused: %s", err);
    ASSERT_EQ_STR(bert_tensor_prefix(st), "");
    /* A config that says 7 layers does not fit these weights. */
    c.num_hidden_layers = 7;
    ASSERT_EQ_INT(bert_check_tensors(&c, st, err, sizeof err), -1);
    ASSERT_STR_CONTAINS(err, "tensor encoder.layer.6.attention.self.query.weight missing");
    st_close(st);
}

TL_TEST(small_directory_loads_with_defaults) {
    const char *dir = good_dir("m");
    bert_config c;
    char err[512] = "";
    if (bert_config_load(dir, &c, err, sizeof err) != 0) FAILF("refused: %s", err);
    ASSERT_EQ_INT(c.hidden_size, 8);
    ASSERT_EQ_INT(c.head_dim, 4);
    ASSERT_FALSE(c.do_lower_case);
    ASSERT_EQ_INT(c.max_seq_length, 12);
    ASSERT_TRUE(c.normalize);

    /* Without the optional files: lower-casing on, max_seq_length = positions. */
    ASSERT_EQ_INT(unlink(tl_printf("%s/tokenizer_config.json", dir)), 0);
    ASSERT_EQ_INT(unlink(tl_printf("%s/sentence_bert_config.json", dir)), 0);
    write_file(dir, "modules.json", MODULES_JSON(""));
    ASSERT_EQ_INT(bert_config_load(dir, &c, err, sizeof err), 0);
    ASSERT_TRUE(c.do_lower_case);
    ASSERT_EQ_INT(c.max_seq_length, 16);
    ASSERT_FALSE(c.normalize);
    /* A null max_seq_length means the default too. */
    write_file(dir, "sentence_bert_config.json", "{\"max_seq_length\": null}");
    ASSERT_EQ_INT(bert_config_load(dir, &c, err, sizeof err), 0);
    ASSERT_EQ_INT(c.max_seq_length, 16);
}

TL_TEST(config_json_faults_are_named) {
    const char *dir = good_dir("m");
    write_file(dir, "config.json",
               "{\"num_hidden_layers\": 2, \"num_attention_heads\": 2, "
               "\"intermediate_size\": 16, \"max_position_embeddings\": 16, "
               "\"vocab_size\": 10, \"type_vocab_size\": 2, \"layer_norm_eps\": 1e-12, "
               "\"hidden_act\": \"gelu\"}");
    ASSERT_EQ_STR(refused(dir), "config.json: hidden_size missing");
    write_file(dir, "config.json", CONFIG_JSON("\"8\"", "2", "gelu", ""));
    ASSERT_EQ_STR(refused(dir), "config.json: hidden_size must be an integer");
    write_file(dir, "config.json", CONFIG_JSON("0", "2", "gelu", ""));
    ASSERT_STR_CONTAINS(refused(dir), "config.json: hidden_size is 0, must be in [1,");
    write_file(dir, "config.json", CONFIG_JSON("8", "3", "gelu", ""));
    ASSERT_EQ_STR(refused(dir),
                  "config.json: hidden_size 8 is not a multiple of num_attention_heads 3");
    write_file(dir, "config.json", CONFIG_JSON("8", "2", "relu", ""));
    ASSERT_STR_CONTAINS(refused(dir), "config.json: hidden_act must be \"gelu\"");
    ASSERT_STR_CONTAINS(refused(dir), "got relu");
    write_file(dir, "config.json", CONFIG_JSON("8", "2", "gelu", ", \"model_type\": \"roberta\""));
    /* (a duplicate key: jansson keeps the last) */
    ASSERT_STR_CONTAINS(refused(dir), "model_type must be \"bert\", got roberta");
    write_file(dir, "config.json",
               CONFIG_JSON("8", "2", "gelu", ", \"position_embedding_type\": \"relative_key\""));
    ASSERT_STR_CONTAINS(refused(dir), "position_embedding_type must be \"absolute\"");
    write_file(dir, "config.json", "{\"hidden_size\": 8,");
    ASSERT_STR_CONTAINS(refused(dir), "config.json: invalid JSON");
    write_file(dir, "config.json", "[]");
    ASSERT_EQ_STR(refused(dir), "config.json: not a JSON object");
    ASSERT_EQ_INT(unlink(tl_printf("%s/config.json", dir)), 0);
    ASSERT_STR_CONTAINS(refused(dir), "config.json: cannot read: No such file");
    ASSERT_STR_CONTAINS(refused(tl_printf("%s/nowhere", tl_tmpdir())), "config.json: cannot read");

    dir = good_dir("eps");
    write_file(dir, "config.json",
               "{\"hidden_size\": 8, \"num_hidden_layers\": 2, \"num_attention_heads\": 2, "
               "\"intermediate_size\": 16, \"max_position_embeddings\": 16, "
               "\"vocab_size\": 10, \"type_vocab_size\": 2, \"hidden_act\": \"gelu\"}");
    ASSERT_EQ_STR(refused(dir), "config.json: layer_norm_eps missing");
}

TL_TEST(other_files_faults_are_named) {
    const char *dir = good_dir("m");
    write_file(dir, "1_Pooling/config.json", POOLING_JSON("true", "false"));
    ASSERT_EQ_STR(refused(dir), "1_Pooling/config.json: only mean pooling is supported, got "
                                "pooling_mode_cls_token");
    write_file(dir, "1_Pooling/config.json", POOLING_JSON("true", "true"));
    ASSERT_STR_CONTAINS(refused(dir), "got pooling_mode_cls_token");
    write_file(dir, "1_Pooling/config.json", POOLING_JSON("false", "false"));
    ASSERT_STR_CONTAINS(refused(dir), "pooling_mode_mean_tokens is not true");
    write_file(dir, "1_Pooling/config.json",
               "{\"pooling_mode_mean_tokens\": true, \"pooling_mode_max_tokens\": true}");
    ASSERT_STR_CONTAINS(refused(dir), "got pooling_mode_max_tokens");
    write_file(dir, "1_Pooling/config.json",
               "{\"pooling_mode_mean_tokens\": true, \"word_embedding_dimension\": 384}");
    ASSERT_STR_CONTAINS(refused(dir), "word_embedding_dimension must equal config.json's "
                                      "hidden_size 8");
    ASSERT_EQ_INT(unlink(tl_printf("%s/1_Pooling/config.json", dir)), 0);
    ASSERT_STR_CONTAINS(refused(dir), "1_Pooling/config.json: cannot read");

    dir = good_dir("mods");
    write_file(dir, "modules.json",
               MODULES_JSON(", {\"idx\": 2, \"name\": \"2\", \"path\": \"2_Dense\", "
                            "\"type\": \"sentence_transformers.models.Dense\"}"));
    ASSERT_STR_CONTAINS(refused(dir),
                        "modules.json: unsupported module sentence_transformers.models.Dense "
                        "(path 2_Dense)");
    write_file(dir, "modules.json",
               "[{\"path\": \"\", \"type\": \"sentence_transformers.models.Transformer\"}]");
    ASSERT_EQ_STR(refused(dir), "modules.json: no sentence_transformers.models.Pooling module");
    write_file(dir, "modules.json",
               "[{\"path\": \"../x\", \"type\": \"sentence_transformers.models.Pooling\"}]");
    ASSERT_STR_CONTAINS(refused(dir), "must be a short relative path");
    write_file(dir, "modules.json", "{}");
    ASSERT_EQ_STR(refused(dir), "modules.json: not a JSON array");
    write_file(dir, "modules.json", "[");
    ASSERT_STR_CONTAINS(refused(dir), "modules.json: invalid JSON");
    ASSERT_EQ_INT(unlink(tl_printf("%s/modules.json", dir)), 0);
    ASSERT_STR_CONTAINS(refused(dir), "modules.json: cannot read: No such file");

    dir = good_dir("seq");
    write_file(dir, "sentence_bert_config.json", "{\"max_seq_length\": 32}");
    ASSERT_EQ_STR(refused(dir), "sentence_bert_config.json: max_seq_length 32 is over "
                                "config.json's max_position_embeddings 16");
    write_file(dir, "sentence_bert_config.json", "{\"max_seq_length\": \"long\"}");
    ASSERT_STR_CONTAINS(refused(dir), "sentence_bert_config.json: max_seq_length must be an "
                                      "integer");
    write_file(dir, "tokenizer_config.json", "{\"do_lower_case\": \"yes\"}");
    ASSERT_EQ_STR(refused(dir), "tokenizer_config.json: do_lower_case must be true or false");
}

TL_TEST(tensor_check_finds_each_fault) {
    const char *dir = good_dir("m");
    bert_config c;
    char err[512] = "";
    ASSERT_EQ_INT(bert_config_load(dir, &c, err, sizeof err), 0);

    /* Good, with and without the bert. prefix. */
    st_file *st = tiny_weights("", NULL);
    if (bert_check_tensors(&c, st, err, sizeof err) != 0) FAILF("refused: %s", err);
    ASSERT_EQ_STR(bert_tensor_prefix(st), "");
    st_close(st);
    st = tiny_weights("bert.", NULL);
    if (bert_check_tensors(&c, st, err, sizeof err) != 0) FAILF("refused: %s", err);
    ASSERT_EQ_STR(bert_tensor_prefix(st), "bert.");
    st_close(st);

    ASSERT_EQ_STR(tensors_refused(&c,
                                  tiny_weights("",
                                               &(fault){
                                                   .drop = "embeddings.word_embeddings.weight"})),
                  "weights: tensor embeddings.word_embeddings.weight missing (looked with "
                  "and without a \"bert.\" prefix)");
    ASSERT_EQ_STR(tensors_refused(&c,
                                  tiny_weights("bert.",
                                               &(fault){
                                                   .drop =
                                                       "encoder.layer.1.attention.self.key.bias"})),
                  "weights: tensor bert.encoder.layer.1.attention.self.key.bias missing");
    ASSERT_EQ_STR(tensors_refused(&c,
                                  tiny_weights("", &(fault){.drop = "embeddings.LayerNorm.bias"})),
                  "weights: tensor embeddings.LayerNorm.bias missing");
    ASSERT_EQ_STR(tensors_refused(&c,
                                  tiny_weights("",
                                               &(fault){.reshape =
                                                            "encoder.layer.0.output.dense.weight",
                                                        .d0 = 128})),
                  "weights: tensor encoder.layer.0.output.dense.weight has shape [128], "
                  "expected [8, 16]");
    ASSERT_EQ_STR(tensors_refused(&c,
                                  tiny_weights("",
                                               &(fault){
                                                   .reshape =
                                                       "encoder.layer.1.output.LayerNorm.weight",
                                                   .d0 = 9})),
                  "weights: tensor encoder.layer.1.output.LayerNorm.weight has shape [9], "
                  "expected [8]");
    ASSERT_EQ_STR(tensors_refused(
                      &c, tiny_weights("",
                                       &(fault){
                                           .as_i64 = "encoder.layer.0.attention.self.query.bias"})),
                  "weights: tensor encoder.layer.0.attention.self.query.bias has dtype I64, "
                  "expected F32, F16 or BF16");
    ASSERT_EQ_STR(tensors_refused(&c, tiny_weights("", &(fault){.extra_layer = 1})),
                  "weights: tensor encoder.layer.2.attention.self.query.weight present, but "
                  "config.json has num_hidden_layers 2");
    /* A config whose vocabulary disagrees with the embeddings. */
    c.vocab_size = 11;
    ASSERT_EQ_STR(tensors_refused(&c, tiny_weights("", NULL)),
                  "weights: tensor embeddings.word_embeddings.weight has shape [10, 8], "
                  "expected [11, 8]");
}

int main(int argc, char **argv) {
    static const tl_case cases[] = {
        TL_CASE(real_minilm_directory_is_good), TL_CASE(small_directory_loads_with_defaults),
        TL_CASE(config_json_faults_are_named),  TL_CASE(other_files_faults_are_named),
        TL_CASE(tensor_check_finds_each_fault),
    };
    return tl_main(argc, argv, cases, TL_COUNT(cases));
}
