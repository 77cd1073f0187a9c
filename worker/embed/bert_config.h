/* bert_config.h: what a sentence-transformers BERT model directory says about itself.
 *
 * A directory as the hub ships it (all-MiniLM-L6-v2 for instance):
 *
 *   config.json                 the encoder: sizes, layers, heads, eps, activation
 *   tokenizer_config.json       do_lower_case (default true)
 *   sentence_bert_config.json   max_seq_length (optional; default max_position_embeddings)
 *   modules.json                Transformer -> Pooling(path) [-> Normalize]
 *   <pooling path>/config.json  pooling modes; only mean pooling is supported
 *   model.safetensors           the weights (checked by bert_check_tensors)
 *
 * Errors: 0 or -1; on -1 `err` names the file and what is missing or wrong, e.g.
 * "config.json: hidden_size missing" or "1_Pooling/config.json: only mean pooling is
 * supported, got pooling_mode_cls_token".
 */
#ifndef EMBED_BERT_CONFIG_H
#define EMBED_BERT_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "safetensors.h"

typedef struct bert_config {
    /* config.json */
    int hidden_size;
    int num_hidden_layers;
    int num_attention_heads;
    int head_dim; /* hidden_size / num_attention_heads */
    int intermediate_size;
    int max_position_embeddings;
    int vocab_size;
    int type_vocab_size;
    double layer_norm_eps;
    /* tokenizer_config.json */
    bool do_lower_case;
    /* sentence_bert_config.json */
    int max_seq_length;
    /* modules.json */
    bool normalize;         /* a sentence_transformers.models.Normalize module is listed */
    char pooling_path[256]; /* "1_Pooling"; "" when the Pooling module's path is the root */
} bert_config;

/* bert_config_load reads the JSON files of the model directory `dir` into *out
 * and checks them for consistency. config.json, modules.json and the pooling config are
 * required; tokenizer_config.json and sentence_bert_config.json are optional. modules.json
 * may list only Transformer, Pooling and Normalize modules (a Dense module would change
 * the output, so it is refused rather than ignored). */
int bert_config_load(const char *dir, bert_config *out, char *err, size_t errlen);

/* bert_check_tensors verifies that `st` holds every tensor of a BERT encoder as
 * `c` describes it, with the right shape and a float dtype (F32, F16 or BF16): the
 * embeddings (word [vocab, hidden], position [max_pos, hidden], token_type [type_vocab,
 * hidden], LayerNorm weight/bias [hidden]) and per layer the attention query/key/value
 * and output dense ([hidden, hidden] + [hidden]), its LayerNorm, intermediate.dense
 * [inter, hidden], output.dense [hidden, inter] and output.LayerNorm, and that there is
 * no layer past num_hidden_layers. Names are with or without a "bert." prefix (see
 * bert_tensor_prefix). Other tensors (pooler.*, embeddings.position_ids) are
 * ignored. */
int bert_check_tensors(const bert_config *c, const st_file *st, char *err, size_t errlen);

/* "bert." when st names its tensors "bert.embeddings...", "" when "embeddings...", NULL
 * when it has no embeddings.word_embeddings.weight either way. */
const char *bert_tensor_prefix(const st_file *st);

#endif
