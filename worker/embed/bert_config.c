/* bert_config.c: reading and checking a sentence-transformers BERT directory; see
 * bert_config.h. */
#include "fleet/err.h"
#include "bert_config.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


/* ------------------------------------------------------------ JSON helpers ------- */

/* Loads dir/rel as a JSON object into *out. Returns 0, 1 when the file does not exist
 * and `optional` (*out = NULL), or -1 with err set. Messages start with rel. */
static int load_json(const char *dir, const char *rel, bool optional, json_t **out, char *err,
                     size_t errlen) {
    *out = NULL;
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, rel) >= sizeof path)
        return fleet_err(err, errlen, "%s: path too long", rel);
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (optional && errno == ENOENT) return 1;
        return fleet_err(err, errlen, "%s: cannot read: %s", rel, strerror(errno));
    }
    json_error_t jerr;
    json_t *j = json_loadf(f, 0, &jerr);
    fclose(f);
    if (!j)
        return fleet_err(err, errlen, "%s: invalid JSON: %s (line %d)", rel, jerr.text, jerr.line);
    if (!json_is_object(j)) {
        json_decref(j);
        return fleet_err(err, errlen, "%s: not a JSON object", rel);
    }
    *out = j;
    return 0;
}

/* A required integer in [min, max]. */
static int int_field(const json_t *o, const char *rel, const char *key, long min, long max,
                     int *out, char *err, size_t errlen) {
    const json_t *v = json_object_get(o, key);
    if (!v) return fleet_err(err, errlen, "%s: %s missing", rel, key);
    if (!json_is_integer(v)) return fleet_err(err, errlen, "%s: %s must be an integer", rel, key);
    json_int_t x = json_integer_value(v);
    if (x < min || x > max)
        return fleet_err(err, errlen, "%s: %s is %lld, must be in [%ld, %ld]", rel, key,
                         (long long)x, min, max);
    *out = (int)x;
    return 0;
}

/* An optional boolean; *out keeps its value when the key is absent or null. */
static int bool_field(const json_t *o, const char *rel, const char *key, bool *out, char *err,
                      size_t errlen) {
    const json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_boolean(v))
        return fleet_err(err, errlen, "%s: %s must be true or false", rel, key);
    *out = json_is_true(v);
    return 0;
}

/* ------------------------------------------------------------ the files ---------- */

static int read_config_json(const char *dir, bert_config *c, char *err, size_t errlen) {
    const char *rel = "config.json";
    json_t *o;
    if (load_json(dir, rel, false, &o, err, errlen) != 0) return -1;
    int rc = -1;
    if (int_field(o, rel, "hidden_size", 1, 1 << 16, &c->hidden_size, err, errlen) ||
        int_field(o, rel, "num_hidden_layers", 1, 1024, &c->num_hidden_layers, err, errlen) ||
        int_field(o, rel, "num_attention_heads", 1, 1024, &c->num_attention_heads, err, errlen) ||
        int_field(o, rel, "intermediate_size", 1, 1 << 18, &c->intermediate_size, err, errlen) ||
        int_field(o, rel, "max_position_embeddings", 1, 1 << 20, &c->max_position_embeddings, err,
                  errlen) ||
        int_field(o, rel, "vocab_size", 1, 1 << 24, &c->vocab_size, err, errlen) ||
        int_field(o, rel, "type_vocab_size", 1, 1 << 10, &c->type_vocab_size, err, errlen))
        goto out;

    const json_t *eps = json_object_get(o, "layer_norm_eps");
    if (!eps) {
        fleet_err(err, errlen, "%s: layer_norm_eps missing", rel);
        goto out;
    }
    if (!json_is_number(eps) || !(json_number_value(eps) > 0 && json_number_value(eps) < 1)) {
        fleet_err(err, errlen, "%s: layer_norm_eps must be a number in (0, 1)", rel);
        goto out;
    }
    c->layer_norm_eps = json_number_value(eps);

    const json_t *act = json_object_get(o, "hidden_act");
    if (!act) {
        fleet_err(err, errlen, "%s: hidden_act missing", rel);
        goto out;
    }
    if (!json_is_string(act) || strcmp(json_string_value(act), "gelu") != 0) {
        fleet_err(err, errlen, "%s: hidden_act must be \"gelu\" (the exact erf form), got %s", rel,
                  json_is_string(act) ? json_string_value(act) : "a non-string");
        goto out;
    }
    /* Optional, but when present they must be what the encoder implements. */
    const json_t *mt = json_object_get(o, "model_type");
    if (mt && (!json_is_string(mt) || strcmp(json_string_value(mt), "bert") != 0)) {
        fleet_err(err, errlen, "%s: model_type must be \"bert\", got %s", rel,
                  json_is_string(mt) ? json_string_value(mt) : "a non-string");
        goto out;
    }
    const json_t *pe = json_object_get(o, "position_embedding_type");
    if (pe && (!json_is_string(pe) || strcmp(json_string_value(pe), "absolute") != 0)) {
        fleet_err(err, errlen, "%s: position_embedding_type must be \"absolute\", got %s", rel,
                  json_is_string(pe) ? json_string_value(pe) : "a non-string");
        goto out;
    }
    if (c->hidden_size % c->num_attention_heads != 0) {
        fleet_err(err, errlen, "%s: hidden_size %d is not a multiple of num_attention_heads %d",
                  rel, c->hidden_size, c->num_attention_heads);
        goto out;
    }
    c->head_dim = c->hidden_size / c->num_attention_heads;
    rc = 0;
out:
    json_decref(o);
    return rc;
}

static int read_tokenizer_config(const char *dir, bert_config *c, char *err, size_t errlen) {
    const char *rel = "tokenizer_config.json";
    json_t *o;
    c->do_lower_case = true;
    int r = load_json(dir, rel, true, &o, err, errlen);
    if (r != 0) return r < 0 ? -1 : 0;
    r = bool_field(o, rel, "do_lower_case", &c->do_lower_case, err, errlen);
    json_decref(o);
    return r;
}

static int read_sentence_config(const char *dir, bert_config *c, char *err, size_t errlen) {
    const char *rel = "sentence_bert_config.json";
    json_t *o;
    c->max_seq_length = c->max_position_embeddings;
    int r = load_json(dir, rel, true, &o, err, errlen);
    if (r != 0) return r < 0 ? -1 : 0;
    r = 0;
    const json_t *v = json_object_get(o, "max_seq_length");
    if (v && !json_is_null(v))
        r = int_field(o, rel, "max_seq_length", 2, INT32_MAX, &c->max_seq_length, err, errlen);
    json_decref(o);
    if (r == 0 && c->max_seq_length > c->max_position_embeddings)
        r = fleet_err(err, errlen,
                      "%s: max_seq_length %d is over config.json's "
                      "max_position_embeddings %d",
                      rel, c->max_seq_length, c->max_position_embeddings);
    return r;
}

static int read_modules(const char *dir, bert_config *c, char *err, size_t errlen) {
    const char *rel = "modules.json";
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    json_error_t jerr;
    json_t *a = json_load_file(path, 0, &jerr);
    if (!a) {
        FILE *f = fopen(path, "rb");
        if (!f) return fleet_err(err, errlen, "%s: cannot read: %s", rel, strerror(errno));
        fclose(f);
        return fleet_err(err, errlen, "%s: invalid JSON: %s (line %d)", rel, jerr.text, jerr.line);
    }
    int rc = -1;
    bool pooling = false;
    c->normalize = false;
    if (!json_is_array(a)) {
        fleet_err(err, errlen, "%s: not a JSON array", rel);
        goto out;
    }
    size_t i;
    json_t *m;
    json_array_foreach(a, i, m) {
        const char *type = json_string_value(json_object_get(m, "type"));
        const char *mpath = json_string_value(json_object_get(m, "path"));
        if (!type) {
            fleet_err(err, errlen, "%s: module %zu has no type", rel, i);
            goto out;
        }
        if (strcmp(type, "sentence_transformers.models.Transformer") == 0) continue;
        if (strcmp(type, "sentence_transformers.models.Normalize") == 0) {
            c->normalize = true;
            continue;
        }
        if (strcmp(type, "sentence_transformers.models.Pooling") == 0) {
            if (pooling) {
                fleet_err(err, errlen, "%s: more than one Pooling module", rel);
                goto out;
            }
            if (!mpath) {
                fleet_err(err, errlen, "%s: the Pooling module has no path", rel);
                goto out;
            }
            /* The pooling config must stay inside the model directory. */
            if (mpath[0] == '/' || strstr(mpath, "..") || strlen(mpath) >= sizeof c->pooling_path) {
                fleet_err(err, errlen,
                          "%s: the Pooling module's path \"%s\" must be a short "
                          "relative path inside the model directory",
                          rel, mpath);
                goto out;
            }
            snprintf(c->pooling_path, sizeof c->pooling_path, "%s", mpath);
            pooling = true;
            continue;
        }
        fleet_err(err, errlen,
                  "%s: unsupported module %s (path %s); only Transformer, "
                  "Pooling and Normalize are",
                  rel, type, mpath ? mpath : "none");
        goto out;
    }
    if (!pooling) {
        fleet_err(err, errlen, "%s: no sentence_transformers.models.Pooling module", rel);
        goto out;
    }
    rc = 0;
out:
    json_decref(a);
    return rc;
}

static int read_pooling(const char *dir, bert_config *c, char *err, size_t errlen) {
    char rel[300];
    snprintf(rel, sizeof rel, "%s%sconfig.json", c->pooling_path, c->pooling_path[0] ? "/" : "");
    /* With path "" the pooling config would be the encoder's config.json. */
    if (!c->pooling_path[0])
        return fleet_err(err, errlen, "modules.json: the Pooling module's path is empty");
    json_t *o;
    if (load_json(dir, rel, false, &o, err, errlen) != 0) return -1;
    int rc = -1;
    const char *key;
    json_t *v;
    bool mean = false;
    json_object_foreach(o, key, v) {
        if (strncmp(key, "pooling_mode_", 13) != 0) continue;
        if (!json_is_boolean(v)) {
            fleet_err(err, errlen, "%s: %s must be true or false", rel, key);
            goto out;
        }
        if (!json_is_true(v)) continue;
        if (strcmp(key, "pooling_mode_mean_tokens") == 0) {
            mean = true;
            continue;
        }
        fleet_err(err, errlen, "%s: only mean pooling is supported, got %s", rel, key);
        goto out;
    }
    if (!mean) {
        fleet_err(err, errlen,
                  "%s: only mean pooling is supported, and "
                  "pooling_mode_mean_tokens is not true",
                  rel);
        goto out;
    }
    const json_t *dim = json_object_get(o, "word_embedding_dimension");
    if (dim && (!json_is_integer(dim) || json_integer_value(dim) != c->hidden_size)) {
        fleet_err(err, errlen,
                  "%s: word_embedding_dimension must equal config.json's "
                  "hidden_size %d",
                  rel, c->hidden_size);
        goto out;
    }
    rc = 0;
out:
    json_decref(o);
    return rc;
}

int bert_config_load(const char *dir, bert_config *out, char *err, size_t errlen) {
    bert_config c;
    memset(&c, 0, sizeof c);
    if (read_config_json(dir, &c, err, errlen) != 0 ||
        read_tokenizer_config(dir, &c, err, errlen) != 0 ||
        read_sentence_config(dir, &c, err, errlen) != 0 ||
        read_modules(dir, &c, err, errlen) != 0 || read_pooling(dir, &c, err, errlen) != 0)
        return -1;
    *out = c;
    return 0;
}

/* ------------------------------------------------------------ tensors ------------ */

const char *bert_tensor_prefix(const st_file *st) {
    if (st_find(st, "embeddings.word_embeddings.weight")) return "";
    if (st_find(st, "bert.embeddings.word_embeddings.weight")) return "bert.";
    return NULL;
}

static void shape_text(char *buf, size_t len, const int64_t *shape, int ndim) {
    size_t n = (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < ndim && n < len; i++)
        n += (size_t)snprintf(buf + n, len - n, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (n < len) snprintf(buf + n, len - n, "]");
}

/* Checks prefix+name has shape [d0] (d1 < 0) or [d0, d1]. */
static int expect_shape(const st_file *st, const char *prefix, const char *name, int64_t d0,
                        int64_t d1, char *err, size_t errlen) {
    char full[256];
    snprintf(full, sizeof full, "%s%s", prefix, name);
    const st_tensor *t = st_find(st, full);
    if (!t) return fleet_err(err, errlen, "weights: tensor %s missing", full);
    if (t->dtype != ST_F32 && t->dtype != ST_F16 && t->dtype != ST_BF16)
        return fleet_err(err, errlen,
                         "weights: tensor %s has dtype %s, expected F32, F16 or "
                         "BF16",
                         full, st_dtype_name(t->dtype));
    int64_t want[2] = {d0, d1};
    int wnd = d1 < 0 ? 1 : 2;
    if (t->ndim != wnd || t->shape[0] != want[0] || (wnd == 2 && t->shape[1] != want[1])) {
        char got[96], exp[96];
        shape_text(got, sizeof got, t->shape, t->ndim);
        shape_text(exp, sizeof exp, want, wnd);
        return fleet_err(err, errlen, "weights: tensor %s has shape %s, expected %s", full, got,
                         exp);
    }
    return 0;
}

int bert_check_tensors(const bert_config *c, const st_file *st, char *err, size_t errlen) {
    const char *p = bert_tensor_prefix(st);
    if (!p)
        return fleet_err(err, errlen,
                         "weights: tensor embeddings.word_embeddings.weight "
                         "missing (looked with and without a \"bert.\" prefix)");
    const int64_t h = c->hidden_size, in = c->intermediate_size;
    if (expect_shape(st, p, "embeddings.word_embeddings.weight", c->vocab_size, h, err, errlen) ||
        expect_shape(st, p, "embeddings.position_embeddings.weight", c->max_position_embeddings, h,
                     err, errlen) ||
        expect_shape(st, p, "embeddings.token_type_embeddings.weight", c->type_vocab_size, h, err,
                     errlen) ||
        expect_shape(st, p, "embeddings.LayerNorm.weight", h, -1, err, errlen) ||
        expect_shape(st, p, "embeddings.LayerNorm.bias", h, -1, err, errlen))
        return -1;

    static const struct {
        const char *suffix;
        char rows, cols; /* 'h' hidden, 'i' intermediate, 0 none (a vector) */
    } per_layer[] = {
        {"attention.self.query.weight", 'h', 'h'},
        {"attention.self.query.bias", 'h', 0},
        {"attention.self.key.weight", 'h', 'h'},
        {"attention.self.key.bias", 'h', 0},
        {"attention.self.value.weight", 'h', 'h'},
        {"attention.self.value.bias", 'h', 0},
        {"attention.output.dense.weight", 'h', 'h'},
        {"attention.output.dense.bias", 'h', 0},
        {"attention.output.LayerNorm.weight", 'h', 0},
        {"attention.output.LayerNorm.bias", 'h', 0},
        {"intermediate.dense.weight", 'i', 'h'},
        {"intermediate.dense.bias", 'i', 0},
        {"output.dense.weight", 'h', 'i'},
        {"output.dense.bias", 'h', 0},
        {"output.LayerNorm.weight", 'h', 0},
        {"output.LayerNorm.bias", 'h', 0},
    };
    for (int l = 0; l < c->num_hidden_layers; l++) {
        for (size_t k = 0; k < sizeof per_layer / sizeof per_layer[0]; k++) {
            char name[160];
            snprintf(name, sizeof name, "encoder.layer.%d.%s", l, per_layer[k].suffix);
            int64_t r = per_layer[k].rows == 'h' ? h : in;
            int64_t cl = per_layer[k].cols == 0 ? -1 : per_layer[k].cols == 'h' ? h : in;
            if (expect_shape(st, p, name, r, cl, err, errlen) != 0) return -1;
        }
    }
    /* Weights for more layers than the config has mean config and weights disagree. */
    char extra[160];
    snprintf(extra, sizeof extra, "%sencoder.layer.%d.attention.self.query.weight", p,
             c->num_hidden_layers);
    if (st_find(st, extra))
        return fleet_err(err, errlen,
                         "weights: tensor %s present, but config.json has "
                         "num_hidden_layers %d",
                         extra, c->num_hidden_layers);
    return 0;
}
