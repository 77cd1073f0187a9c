/* embed.c: the "embed" model: sentence embeddings with a BERT model directory
 * (all-MiniLM-L6-v2 or anything shaped like it) on the CPU or a CUDA GPU (worker/embed/).
 *
 *   fleet-worker --model embed --backend cuda --model-args /models/all-MiniLM-L6-v2
 *
 * There is one fleet_model table per backend (wk_model_embed for "cpu",
 * wk_model_embed_cuda for "cuda"); they differ only in the bert_ops they load with
 * (worker/embed/bert.h), which come from the modules fleet-embed-cpu.so and
 * fleet-embed-cuda.so, opened the first time the embed model considers that backend
 * (embed_load_on, wk_embed_cuda_present): no other model ever loads OpenBLAS or a CUDA
 * library.
 *
 * load reads DIR/vocab.txt (the WordPiece tokenizer) and the model (config files and
 * model.safetensors, through the backend's load); lower_case comes from
 * tokenizer_config.json and the token limit from max_seq_length.
 *
 * Input:  {"text": "..."}  or  {"texts": ["...", ...]}   (1..1024 texts, each at most
 *         100,000 bytes)
 * Output: {"model": "embed", "dim": D, "embeddings": [[D float32], ...] (one per text, in
 *          input order), "tokens": N (all token ids embedded, [CLS] and [SEP] included)}
 *
 * A batch tokenizes every text of every job, sorts the sequences by length (so a faster
 * backend that pads wastes little) and embeds them in chunks of at most the backend's max_seqs sequences.
 * After each chunk every job that had texts in it reports progress (done/total texts),
 * and before each chunk every unfinished job is asked whether it must stop.
 */
#include <limits.h>
#include <msgpack.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bert.h"
#include "bert_module.h"
#include "fleet/codec.h"
#include "models.h"
#include "tokenizer.h"

#define MAX_TEXTS 1024 /* per job */
#define MAX_TEXT_BYTES 100000
#define SHAPE_ERROR "input must be {\"text\": ...} or {\"texts\": [...]}"

typedef struct embed_state {
    tok_vocab *vocab;
    const bert_ops *ops;
    void *model;
    size_t chunk; /* most sequences per ops->embed call */
    tok_opts tok;
    int dim;
} embed_state;

/* One job of a batch. */
typedef struct embed_job {
    msgpack_unpacked up; /* the decoded input; texts point into it */
    int up_init;
    size_t ntexts;
    const char **text;
    size_t *text_len;
    float *emb; /* ntexts x dim */
    size_t done;
    long tokens;
    int active;            /* parsed and not yet failed or stopped */
    size_t reported_chunk; /* the last chunk (1, 2, ...) it reported progress for */
} embed_job;

/* One tokenized text. */
typedef struct embed_seq {
    size_t job, index;
    int32_t *ids;
    size_t len;
} embed_seq;

/* ---------------------------------------------------------------- load ------------- */

static void embed_unload(void *state) {
    embed_state *s = state;
    if (!s) return;
    if (s->ops) s->ops->free(s->model);
    tok_vocab_free(s->vocab);
    free(s);
}

static int embed_load_with(const bert_ops *ops, const char *args, void **state, char *err,
                           size_t errlen) {
    char e[FLEET_MODEL_ERROR_MAX] = "";
    *state = NULL;
    if (!args || !args[0]) {
        snprintf(err, errlen, "embed needs the model directory in --model-args");
        return -1;
    }
    embed_state *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "embed: out of memory");
        return -1;
    }
    char *vpath = malloc(strlen(args) + sizeof "/vocab.txt");
    if (!vpath) {
        snprintf(err, errlen, "embed: out of memory");
        goto fail;
    }
    sprintf(vpath, "%s/vocab.txt", args);
    int rc = tok_vocab_load(vpath, &s->vocab, e, sizeof e);
    free(vpath);
    if (rc != 0) {
        snprintf(err, errlen, "embed: %s", e);
        goto fail;
    }
    s->ops = ops;
    if (ops->load(args, &s->model, e, sizeof e) != 0) {
        snprintf(err, errlen, "embed (%s): %s", ops->name, e);
        goto fail;
    }
    const bert_config *c = ops->config(s->model);
    s->chunk = ops->max_seqs(s->model);
    if (s->chunk < 1) s->chunk = 1;
    if (tok_vocab_size(s->vocab) > (size_t)c->vocab_size) {
        snprintf(err, errlen, "embed: %s/vocab.txt has %zu tokens, the model only %d", args,
                 tok_vocab_size(s->vocab), c->vocab_size);
        goto fail;
    }
    s->dim = c->hidden_size;
    s->tok.lower_case = c->do_lower_case;
    s->tok.max_len = (size_t)c->max_seq_length;
    if (c->max_position_embeddings < c->max_seq_length)
        s->tok.max_len = (size_t)c->max_position_embeddings;
    if (s->tok.max_len < 2) {
        snprintf(err, errlen, "embed: max_seq_length %zu is below 2", s->tok.max_len);
        goto fail;
    }
    *state = s;
    return 0;
fail:
    embed_unload(s);
    return -1;
}

/* ---------------------------------------------------------------- input ------------ */

static int key_is(const msgpack_object *k, const char *name) {
    size_t n = strlen(name);
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
           memcmp(k->via.str.ptr, name, n) == 0;
}

/* parse_input decodes one job's input into ej (texts point into ej->up). Returns 0, or
 * -1 with a message for the user in err. */
static int parse_input(const fleet_model_job *j, embed_job *ej, char *err, size_t errlen) {
    size_t off = 0;
    msgpack_unpacked_init(&ej->up);
    ej->up_init = 1;
    if (!j->input || j->input_len == 0 ||
        msgpack_unpack_next(&ej->up, j->input, j->input_len, &off) != MSGPACK_UNPACK_SUCCESS ||
        off != j->input_len) {
        snprintf(err, errlen, SHAPE_ERROR);
        return -1;
    }
    const msgpack_object *o = &ej->up.data;
    if (o->type != MSGPACK_OBJECT_MAP || o->via.map.size != 1) {
        snprintf(err, errlen, SHAPE_ERROR);
        return -1;
    }
    const msgpack_object *k = &o->via.map.ptr[0].key, *v = &o->via.map.ptr[0].val;
    const msgpack_object *items;
    size_t n;
    int single;
    if (key_is(k, "text") && v->type == MSGPACK_OBJECT_STR) {
        items = v;
        n = 1;
        single = 1;
    } else if (key_is(k, "texts") && v->type == MSGPACK_OBJECT_ARRAY) {
        items = v->via.array.ptr;
        n = v->via.array.size;
        single = 0;
        if (n < 1 || n > MAX_TEXTS) {
            snprintf(err, errlen, "input.texts must hold 1 to %d strings, got %zu", MAX_TEXTS, n);
            return -1;
        }
    } else {
        snprintf(err, errlen, SHAPE_ERROR);
        return -1;
    }
    ej->text = calloc(n, sizeof *ej->text);
    ej->text_len = calloc(n, sizeof *ej->text_len);
    if (!ej->text || !ej->text_len) {
        snprintf(err, errlen, "out of memory reading the input");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        const msgpack_object *t = &items[i];
        if (t->type != MSGPACK_OBJECT_STR) {
            snprintf(err, errlen, "input.texts[%zu] must be a string", i);
            return -1;
        }
        if (t->via.str.size > MAX_TEXT_BYTES) {
            if (single)
                snprintf(err, errlen, "input.text is %u bytes; at most %d", t->via.str.size,
                         MAX_TEXT_BYTES);
            else
                snprintf(err, errlen, "input.texts[%zu] is %u bytes; at most %d", i,
                         t->via.str.size, MAX_TEXT_BYTES);
            return -1;
        }
        ej->text[i] = t->via.str.ptr;
        ej->text_len[i] = t->via.str.size;
    }
    ej->ntexts = n;
    return 0;
}

/* ---------------------------------------------------------------- output ----------- */

static int pack_output(const embed_job *ej, int dim, char **out, size_t *len) {
    msgpack_sbuffer sb;
    msgpack_packer pk;
    int bad = 0;

    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    bad |= msgpack_pack_map(&pk, 4);
    bad |= msgpack_pack_str_with_body(&pk, "model", 5);
    bad |= msgpack_pack_str_with_body(&pk, "embed", 5);
    bad |= msgpack_pack_str_with_body(&pk, "dim", 3);
    bad |= msgpack_pack_int64(&pk, dim);
    bad |= msgpack_pack_str_with_body(&pk, "embeddings", 10);
    bad |= msgpack_pack_array(&pk, ej->ntexts);
    /* Each embedding is one FLEET_EXT_F32 value (msgpack ext type 1, shared/include/fleet/
     * codec.h): dim little-endian float32s, dim*4 bytes. JSON clients read it as an array
     * of numbers, msgpack clients as a bin of the same bytes. */
    enum { CHUNK = 64 };
    _Static_assert(sizeof(float) == sizeof(uint32_t), "float must be IEEE binary32");
    unsigned char le[CHUNK * 4];
    for (size_t i = 0; i < ej->ntexts && !bad; i++) {
        const float *v = ej->emb + i * (size_t)dim;
        bad |= msgpack_pack_ext(&pk, (size_t)dim * 4, FLEET_EXT_F32);
        for (size_t d0 = 0; d0 < (size_t)dim && !bad; d0 += CHUNK) {
            size_t m = (size_t)dim - d0 < CHUNK ? (size_t)dim - d0 : CHUNK;
            for (size_t k = 0; k < m; k++) {
                uint32_t u;
                memcpy(&u, &v[d0 + k], sizeof u);
                le[4 * k] = (unsigned char)u;
                le[4 * k + 1] = (unsigned char)(u >> 8);
                le[4 * k + 2] = (unsigned char)(u >> 16);
                le[4 * k + 3] = (unsigned char)(u >> 24);
            }
            bad |= msgpack_pack_ext_body(&pk, le, 4 * m);
        }
    }
    bad |= msgpack_pack_str_with_body(&pk, "tokens", 6);
    bad |= msgpack_pack_int64(&pk, ej->tokens);
    if (bad) {
        msgpack_sbuffer_destroy(&sb);
        return -1;
    }
    *len = sb.size;
    *out = msgpack_sbuffer_release(&sb); /* malloc'd: the worker free()s it */
    return *out ? 0 : -1;
}

/* ---------------------------------------------------------------- batch ------------ */

static int seq_cmp(const void *a, const void *b) {
    const embed_seq *x = a, *y = b;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    if (x->job != y->job) return x->job < y->job ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

static void fail_all(fleet_model_job *jobs, embed_job *ej, size_t n, const char *msg) {
    for (size_t i = 0; i < n; i++)
        if (ej[i].active) {
            fleet_model_job_fail(&jobs[i], 1, "%s", msg);
            ej[i].active = 0;
        }
}

static void embed_run_batch(void *state, fleet_model_job *jobs, size_t n,
                            const fleet_model_ctx *ctx) {
    embed_state *s = state;
    const size_t dim = (size_t)s->dim;
    embed_job *ej = calloc(n, sizeof *ej);
    embed_seq *seq = NULL;
    int32_t *scratch = malloc(s->tok.max_len * sizeof *scratch);
    float *cout = malloc(s->chunk * dim * sizeof *cout); /* one chunk's embeddings */
    const int32_t **cids = malloc(s->chunk * sizeof *cids);
    size_t *clens = malloc(s->chunk * sizeof *clens), *cpos = malloc(s->chunk * sizeof *cpos);
    size_t nseq = 0, total = 0, next = 0, chunk = 0;
    char err[FLEET_MODEL_ERROR_MAX];

    if (!ej || !scratch || !cout || !cids || !clens || !cpos) {
        for (size_t i = 0; i < n; i++)
            fleet_model_job_fail(&jobs[i], 1, "out of memory starting the batch");
        goto out;
    }
    /* Parse every input. */
    for (size_t i = 0; i < n; i++) {
        if (parse_input(&jobs[i], &ej[i], err, sizeof err) < 0) {
            fleet_model_job_fail(&jobs[i], 0, "%s", err);
            continue;
        }
        ej[i].emb = malloc(ej[i].ntexts * dim * sizeof *ej[i].emb);
        if (!ej[i].emb) {
            fleet_model_job_fail(&jobs[i], 1, "out of memory for %zu embeddings", ej[i].ntexts);
            continue;
        }
        ej[i].active = 1;
        total += ej[i].ntexts;
    }
    /* Tokenize every text. */
    seq = calloc(total ? total : 1, sizeof *seq);
    if (!seq) {
        fail_all(jobs, ej, n, "out of memory starting the batch");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        for (size_t t = 0; ej[i].active && t < ej[i].ntexts; t++) {
            long len = tok_encode(s->vocab, &s->tok, ej[i].text[t], ej[i].text_len[t], scratch,
                                  s->tok.max_len, err, sizeof err);
            int32_t *ids = len > 0 ? malloc((size_t)len * sizeof *ids) : NULL;
            if (!ids) {
                fleet_model_job_fail(&jobs[i], 1, "tokenizing text %zu: %s", t,
                                     len < 0 ? err : "out of memory");
                ej[i].active = 0;
                break;
            }
            memcpy(ids, scratch, (size_t)len * sizeof *ids);
            seq[nseq++] = (embed_seq){.job = i, .index = t, .ids = ids, .len = (size_t)len};
            ej[i].tokens += len;
        }
    }
    qsort(seq, nseq, sizeof *seq, seq_cmp);

    /* Embed in chunks of sequences of similar length. */
    while (next < nseq) {
        for (size_t i = 0; i < n; i++)
            if (ej[i].active && ctx->cancelled(ctx, i)) {
                jobs[i].outcome = FLEET_MODEL_STOPPED;
                ej[i].active = 0;
            }
        size_t m = 0;
        while (next < nseq && m < s->chunk) {
            if (ej[seq[next].job].active) {
                cids[m] = seq[next].ids;
                clens[m] = seq[next].len;
                cpos[m] = next;
                m++;
            }
            next++;
        }
        if (m == 0) break;
        if (s->ops->embed(s->model, cids, clens, m, cout, err, sizeof err) != 0) {
            for (size_t k = 0; k < m; k++) {
                size_t i = seq[cpos[k]].job;
                if (ej[i].active) {
                    /* The tokenizer only makes ids and lengths the model takes, so this is
                     * the device or memory failing: another attempt may succeed. */
                    fleet_model_job_fail(&jobs[i], 1, "%s", err);
                    ej[i].active = 0;
                }
            }
            continue;
        }
        for (size_t k = 0; k < m; k++) {
            const embed_seq *q = &seq[cpos[k]];
            memcpy(ej[q->job].emb + q->index * dim, cout + k * dim, dim * sizeof *cout);
            ej[q->job].done++;
        }
        /* Progress once per job that had texts in this chunk. */
        chunk++;
        for (size_t k = 0; k < m; k++) {
            size_t i = seq[cpos[k]].job;
            if (!ej[i].active || ej[i].reported_chunk == chunk) continue;
            ej[i].reported_chunk = chunk;
            char msg[64];
            snprintf(msg, sizeof msg, "embedded %zu of %zu texts", ej[i].done, ej[i].ntexts);
            if (ctx->progress(ctx, i, 100.0 * (double)ej[i].done / (double)ej[i].ntexts, msg,
                              (long)ej[i].done, (long)ej[i].ntexts)) {
                jobs[i].outcome = FLEET_MODEL_STOPPED;
                ej[i].active = 0;
            }
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (!ej[i].active) continue;
        if (ej[i].done != ej[i].ntexts)
            fleet_model_job_fail(&jobs[i], 1, "embedded %zu of %zu texts", ej[i].done,
                                 ej[i].ntexts);
        else if (pack_output(&ej[i], s->dim, &jobs[i].output, &jobs[i].output_len) < 0)
            fleet_model_job_fail(&jobs[i], 1, "out of memory packing the output");
        else jobs[i].outcome = FLEET_MODEL_OK;
    }
out:
    for (size_t q = 0; q < nseq; q++) free(seq[q].ids);
    free(seq);
    free(scratch);
    free(cout);
    free(cids);
    free(clens);
    free(cpos);
    for (size_t i = 0; ej && i < n; i++) {
        if (ej[i].up_init) msgpack_unpacked_destroy(&ej[i].up);
        free(ej[i].text);
        free(ej[i].text_len);
        free(ej[i].emb);
    }
    free(ej);
}

/* Each backend is opened from its module (worker/embed/bert_module.h) only here, when the
 * embed model loads on it (or, for cuda, when --backend auto asks whether a GPU is
 * there): no other model loads OpenBLAS or a CUDA library. */
static int embed_load_on(const char *backend, const char *args, void **state, char *err,
                         size_t errlen) {
    char e[FLEET_MODEL_ERROR_MAX];
    const bert_module *m = bert_module_open(backend, e, sizeof e);
    if (!m) {
        *state = NULL;
        snprintf(err, errlen, "embed (%s): %s", backend, e);
        return -1;
    }
    return embed_load_with(m->ops, args, state, err, errlen);
}

static int embed_load_cpu(const char *args, void **state, char *err, size_t errlen) {
    return embed_load_on("cpu", args, state, err, errlen);
}

const fleet_model wk_model_embed = {
    .abi_version = FLEET_MODEL_ABI_VERSION,
    .name = "embed",
    .backend = "cpu",
    .max_batch = 64,
    .load = embed_load_cpu,
    .run_batch = embed_run_batch,
    .unload = embed_unload,
};

/* --backend auto asks wk_embed_cuda_present; wk_cuda_backend_present (models.h) decides
 * whether the module is worth opening at all. */
static int embed_cuda_open_present(char *err, size_t errlen) {
    const bert_module *m = bert_module_open("cuda", err, errlen);
    return m ? m->present() : -1;
}

int wk_embed_cuda_present(void) {
    char path[PATH_MAX + 64];
    bert_module_path("cuda", path, sizeof path);
    return wk_cuda_backend_present("embed", path, embed_cuda_open_present);
}

static int embed_load_cuda(const char *args, void **state, char *err, size_t errlen) {
    return embed_load_on("cuda", args, state, err, errlen);
}

const fleet_model wk_model_embed_cuda = {
    .abi_version = FLEET_MODEL_ABI_VERSION,
    .name = "embed",
    .backend = "cuda",
    .max_batch = 256,
    .load = embed_load_cuda,
    .run_batch = embed_run_batch,
    .unload = embed_unload,
};
