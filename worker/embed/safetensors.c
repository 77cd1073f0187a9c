/* safetensors.c: parsing and mapping safetensors files; see safetensors.h. */
#include "fleet/err.h"
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct st_file {
    st_tensor *tensors; /* sorted by name */
    size_t n;
    json_t *meta; /* the __metadata__ object, or NULL */
    void *map;    /* the whole file, or NULL for a parsed header */
    size_t map_len;
};


/* ------------------------------------------------------------ dtypes ------------- */

static const struct {
    const char *name;
    st_dtype dtype;
    size_t size;
} dtypes[] = {
    {"F32", ST_F32, 4},
    {"F16", ST_F16, 2},
    {"BF16", ST_BF16, 2},
    {"I64", ST_I64, 8},
};

const char *st_dtype_name(st_dtype d) {
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (dtypes[i].dtype == d) return dtypes[i].name;
    return "?";
}

size_t st_dtype_size(st_dtype d) {
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (dtypes[i].dtype == d) return dtypes[i].size;
    return 0;
}

static int dtype_from_name(const char *s, st_dtype *d) {
    for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++)
        if (strcmp(dtypes[i].name, s) == 0) {
            *d = dtypes[i].dtype;
            return 0;
        }
    return -1;
}

/* ------------------------------------------------------------ header parsing ----- */

static uint64_t le64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* A JSON integer that is >= 0, as uint64_t. */
static int json_u64(const json_t *j, uint64_t *v) {
    if (!json_is_integer(j) || json_integer_value(j) < 0) return -1;
    *v = (uint64_t)json_integer_value(j);
    return 0;
}

/* Fills t from one header entry. data_size bounds the offsets. */
static int parse_entry(const char *name, const json_t *e, uint64_t data_size, st_tensor *t,
                       char *err, size_t errlen) {
    if (!json_is_object(e))
        return fleet_err(err, errlen, "safetensors: tensor %s: entry is not an object", name);

    const json_t *jd = json_object_get(e, "dtype");
    if (!json_is_string(jd))
        return fleet_err(err, errlen, "safetensors: tensor %s: dtype missing or not a string",
                         name);
    if (dtype_from_name(json_string_value(jd), &t->dtype) != 0)
        return fleet_err(err, errlen,
                         "safetensors: tensor %s: unsupported dtype %s (supported: F32, F16, "
                         "BF16, I64)",
                         name, json_string_value(jd));

    const json_t *js = json_object_get(e, "shape");
    if (!json_is_array(js))
        return fleet_err(err, errlen, "safetensors: tensor %s: shape missing or not an array",
                         name);
    size_t ndim = json_array_size(js);
    if (ndim > ST_MAX_DIMS)
        return fleet_err(err, errlen,
                         "safetensors: tensor %s: %zu dimensions, at most %d "
                         "supported",
                         name, ndim, ST_MAX_DIMS);
    t->ndim = (int)ndim;
    uint64_t elems = 1;
    for (size_t i = 0; i < ST_MAX_DIMS; i++) t->shape[i] = 1;
    for (size_t i = 0; i < ndim; i++) {
        uint64_t d;
        if (json_u64(json_array_get(js, i), &d) != 0 || d > INT64_MAX)
            return fleet_err(err, errlen,
                             "safetensors: tensor %s: shape[%zu] is not a "
                             "non-negative integer",
                             name, i);
        t->shape[i] = (int64_t)d;
        if (d && elems > UINT64_MAX / d)
            return fleet_err(err, errlen, "safetensors: tensor %s: shape overflows", name);
        elems *= d;
    }
    size_t esize = st_dtype_size(t->dtype);
    if (elems > UINT64_MAX / esize)
        return fleet_err(err, errlen, "safetensors: tensor %s: shape overflows", name);
    uint64_t want = elems * esize;

    const json_t *jo = json_object_get(e, "data_offsets");
    uint64_t begin, end;
    if (!json_is_array(jo) || json_array_size(jo) != 2 ||
        json_u64(json_array_get(jo, 0), &begin) != 0 || json_u64(json_array_get(jo, 1), &end) != 0)
        return fleet_err(err, errlen,
                         "safetensors: tensor %s: data_offsets must be two "
                         "non-negative integers [begin, end]",
                         name);
    if (end < begin)
        return fleet_err(err, errlen,
                         "safetensors: tensor %s: data_offsets [%llu, %llu] end "
                         "before begin",
                         name, (unsigned long long)begin, (unsigned long long)end);
    if (end > data_size)
        return fleet_err(err, errlen,
                         "safetensors: tensor %s: data_offsets [%llu, %llu] past "
                         "the end of the data region (%llu bytes)",
                         name, (unsigned long long)begin, (unsigned long long)end,
                         (unsigned long long)data_size);
    if (end - begin != want)
        return fleet_err(err, errlen,
                         "safetensors: tensor %s: %llu bytes in data_offsets but "
                         "shape and dtype %s need %llu",
                         name, (unsigned long long)(end - begin), json_string_value(jd),
                         (unsigned long long)want);
    t->offset = begin;
    t->nbytes = (size_t)(end - begin);
    return 0;
}

static int cmp_name(const void *a, const void *b) {
    return strcmp(((const st_tensor *)a)->name, ((const st_tensor *)b)->name);
}

/* Parses buf (8-byte length + JSON, len bytes available) for a file of file_size bytes.
 * data, when not NULL, is where the data region starts in memory. */
static int parse(const char *buf, size_t len, uint64_t file_size, const char *data, st_file **out,
                 char *err, size_t errlen) {
    *out = NULL;
    if (len < 8 || file_size < 8)
        return fleet_err(err, errlen,
                         "safetensors: file shorter than the 8-byte header "
                         "length");
    uint64_t hlen = le64((const unsigned char *)buf);
    if (hlen > ST_MAX_HEADER)
        return fleet_err(err, errlen, "safetensors: header length %llu over the %u-byte limit",
                         (unsigned long long)hlen, ST_MAX_HEADER);
    if (hlen > file_size - 8)
        return fleet_err(err, errlen,
                         "safetensors: header length %llu past the end of the "
                         "file (%llu bytes)",
                         (unsigned long long)hlen, (unsigned long long)file_size);
    if (hlen > len - 8)
        return fleet_err(err, errlen,
                         "safetensors: header length %llu but only %zu header "
                         "bytes given",
                         (unsigned long long)hlen, len - 8);
    uint64_t data_size = file_size - 8 - hlen;

    json_error_t jerr;
    json_t *root = json_loadb(buf + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return fleet_err(err, errlen, "safetensors: header is not valid JSON: %s (at byte %d)",
                         jerr.text, jerr.position);
    st_file *st = calloc(1, sizeof *st);
    if (!st) {
        json_decref(root);
        return fleet_err(err, errlen, "safetensors: out of memory");
    }
    if (!json_is_object(root)) {
        fleet_err(err, errlen, "safetensors: header is not a JSON object");
        goto err;
    }
    st->tensors = calloc(json_object_size(root) + 1, sizeof *st->tensors);
    if (!st->tensors) {
        fleet_err(err, errlen, "safetensors: out of memory");
        goto err;
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (strcmp(key, "__metadata__") == 0) {
            if (!json_is_object(val)) {
                fleet_err(err, errlen, "safetensors: __metadata__ is not an object");
                goto err;
            }
            st->meta = json_incref(val);
            continue;
        }
        st_tensor *t = &st->tensors[st->n];
        if (parse_entry(key, val, data_size, t, err, errlen) != 0) goto err;
        if (!(t->name = strdup(key))) {
            fleet_err(err, errlen, "safetensors: out of memory");
            goto err;
        }
        if (data) t->data = data + t->offset;
        st->n++;
    }
    json_decref(root);
    qsort(st->tensors, st->n, sizeof *st->tensors, cmp_name);
    *out = st;
    return 0;

err:
    json_decref(root);
    st_close(st);
    return -1;
}

/* ------------------------------------------------------------ public API --------- */

int st_parse_header(const char *buf, size_t len, uint64_t file_size, st_file **out, char *err,
                    size_t errlen) {
    return parse(buf, len, file_size, NULL, out, err, errlen);
}

int st_open(const char *path, st_file **out, char *err, size_t errlen) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return fleet_err(err, errlen, "safetensors: %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return fleet_err(err, errlen, "safetensors: %s: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return fleet_err(err, errlen, "safetensors: %s: not a regular file", path);
    }
    if (sb.st_size < 8) {
        close(fd);
        return fleet_err(err, errlen,
                         "safetensors: %s: %lld bytes, shorter than the 8-byte "
                         "header length",
                         path, (long long)sb.st_size);
    }
    size_t size = (size_t)sb.st_size;
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd); /* the mapping keeps the file */
    if (map == MAP_FAILED)
        return fleet_err(err, errlen, "safetensors: %s: mmap: %s", path, strerror(e));

    const char *base = map;
    uint64_t hlen = le64(map);
    const char *data = hlen <= size - 8 ? base + 8 + hlen : NULL;
    if (parse(base, size, size, data, out, err, errlen) != 0) {
        munmap(map, size);
        /* Name the file: the parser's messages start with "safetensors: ". */
        if (err && errlen > 0) {
            char tmp[512];
            snprintf(tmp, sizeof tmp, "%s", err);
            const char *rest = strncmp(tmp, "safetensors: ", 13) == 0 ? tmp + 13 : tmp;
            snprintf(err, errlen, "safetensors: %s: %s", path, rest);
        }
        return -1;
    }
    (*out)->map = map;
    (*out)->map_len = size;
    return 0;
}

const st_tensor *st_find(const st_file *st, const char *name) {
    if (!st || !name) return NULL;
    st_tensor key = {.name = name};
    return bsearch(&key, st->tensors, st->n, sizeof *st->tensors, cmp_name);
}

size_t st_count(const st_file *st) { return st ? st->n : 0; }

const st_tensor *st_at(const st_file *st, size_t i) {
    return st && i < st->n ? &st->tensors[i] : NULL;
}

const char *st_metadata(const st_file *st, const char *key) {
    if (!st || !st->meta) return NULL;
    return json_string_value(json_object_get(st->meta, key));
}

void st_close(st_file *st) {
    if (!st) return;
    for (size_t i = 0; i < st->n; i++) free((char *)st->tensors[i].name);
    free(st->tensors);
    json_decref(st->meta);
    if (st->map) munmap(st->map, st->map_len);
    free(st);
}

/* ------------------------------------------------------------ conversion --------- */

/* IEEE binary16 to binary32, subnormals, infinities and NaNs included. */
static float half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: value = man * 2^-24 */
            float f = (float)man * 5.9604644775390625e-8f;
            return sign ? -f : f;
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 112u) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

int st_read_f32(const st_tensor *t, float *dst, char *err, size_t errlen) {
    if (!t->data) return fleet_err(err, errlen, "safetensors: tensor %s has no data", t->name);
    const unsigned char *src = t->data;
    size_t n = t->nbytes / st_dtype_size(t->dtype);
    switch (t->dtype) {
    case ST_F32: memcpy(dst, src, n * sizeof *dst); return 0;
    case ST_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            dst[i] = half_to_float(h);
        }
        return 0;
    case ST_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            uint32_t bits = (uint32_t)h << 16;
            memcpy(&dst[i], &bits, 4);
        }
        return 0;
    default:
        return fleet_err(err, errlen, "safetensors: tensor %s has dtype %s, not a float", t->name,
                         st_dtype_name(t->dtype));
    }
}
