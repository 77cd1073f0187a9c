/* safetensors.h: a read-only reader for the safetensors weight format.
 *
 * The format (https://huggingface.co/docs/safetensors):
 *
 *   +----------------+---------------------------+--------------------------------+
 *   | N: u64, little | N bytes of JSON header    | data region (the rest)          |
 *   |  endian        |                           |                                |
 *   +----------------+---------------------------+--------------------------------+
 *
 * The header is one JSON object: {"<name>": {"dtype": "F32", "shape": [a, b],
 * "data_offsets": [begin, end]}, ..., "__metadata__": {string: string}}. Offsets are
 * relative to the start of the data region; end - begin must equal
 * product(shape) * sizeof(dtype).
 *
 * What is refused, each with a message that names the tensor and the problem: a header
 * length over ST_MAX_HEADER or past the end of the file, JSON errors (duplicate
 * names included), dtypes other than F32, F16, BF16 and I64 (I64 only because real BERT
 * checkpoints carry an `embeddings.position_ids` I64 tensor that nobody computes with),
 * more than ST_MAX_DIMS dimensions, a size that disagrees with the shape, and
 * offsets outside the data region. Overlapping or unsorted tensors are accepted.
 *
 * Errors: functions return 0 or -1; on -1 `err` holds a one-line message (errlen bytes,
 * truncated as snprintf does).
 *
 * Ownership: a st_file owns its tensor table and, when opened from a file, the read-only
 * mapping; every tensor's name and data pointer live until st_close.
 */
#ifndef EMBED_SAFETENSORS_H
#define EMBED_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#define ST_MAX_DIMS 4
#define ST_MAX_HEADER (100u * 1000u * 1000u) /* 100 MB, the reference limit */

typedef enum st_dtype {
    ST_F32,
    ST_F16,
    ST_BF16,
    ST_I64,
} st_dtype;

/* "F32", "F16", "BF16", "I64"; "?" for anything else. */
const char *st_dtype_name(st_dtype d);
/* Bytes per element: 4, 2, 2, 8. */
size_t st_dtype_size(st_dtype d);

typedef struct st_tensor {
    const char *name;
    st_dtype dtype;
    int ndim;                   /* 0..ST_MAX_DIMS; 0 is a scalar */
    int64_t shape[ST_MAX_DIMS]; /* unused dimensions are 1 */
    uint64_t offset;            /* begin, relative to the data region */
    size_t nbytes;
    /* Into the mapping; NULL when only a header was parsed. May be unaligned if the
     * writer did not pad the header to a multiple of 8 (real files do). */
    const void *data;
} st_tensor;

typedef struct st_file st_file;

/* st_open maps the file at `path` read-only and parses its header. */
int st_open(const char *path, st_file **out, char *err, size_t errlen);

/* st_parse_header parses the start of a safetensors file held in memory: `buf`
 * holds at least the 8-byte length and the JSON header (len bytes; more is ignored).
 * `file_size` is the size of the whole file, which bounds the offsets. Tensors get
 * data == NULL. For tests, and for checking a header without the weights. */
int st_parse_header(const char *buf, size_t len, uint64_t file_size, st_file **out, char *err,
                    size_t errlen);

/* The tensor named `name`, or NULL. */
const st_tensor *st_find(const st_file *st, const char *name);
/* Number of tensors (__metadata__ is not one); st_at(st, i) for i < count, in
 * name order. */
size_t st_count(const st_file *st);
const st_tensor *st_at(const st_file *st, size_t i);
/* A __metadata__ string value, or NULL. */
const char *st_metadata(const st_file *st, const char *key);

/* st_read_f32 converts tensor t (F32, F16 or BF16, with data) to count float32
 * values in dst, count = nbytes / element size; the source may be unaligned. Returns 0,
 * or -1 with a message naming the tensor (no data, or an integer dtype). */
int st_read_f32(const st_tensor *t, float *dst, char *err, size_t errlen);

/* Accepts NULL. */
void st_close(st_file *st);

#endif
