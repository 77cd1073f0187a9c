/* fuzz_multipart: libFuzzer target for the multipart/form-data reader
 * (gateway/multipart.c). An input is a Content-Type value, a newline, then the body:
 *
 *   multipart/form-data; boundary=XyZ\n--XyZ\r\nContent-Disposition: form-data; ...
 *
 * Whatever the bytes, gw_multipart_boundary and gw_multipart_parse must not crash, leak
 * or hit undefined behaviour, and what they accept must keep the contract of
 * multipart.h: a boundary of 1..70 characters; at most GW_MP_PARTS_MAX parts, each with
 * a non-empty terminated name, terminated filename and content type, and data that lies
 * inside the body. A broken rule aborts, which libFuzzer reports as a crash. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "multipart.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void require(bool ok, const char *rule) {
    if (ok) return;
    fprintf(stderr, "fuzz_multipart: broken rule: %s\n", rule);
    abort();
}

static bool terminated(const char *s, size_t cap) { return memchr(s, '\0', cap) != NULL; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nl = memchr(data, '\n', size < 1024 ? size : 1024);
    if (!nl) return 0;
    size_t ctlen = (size_t)(nl - data);
    char ct[1024];
    memcpy(ct, data, ctlen);
    ct[ctlen] = '\0';
    const char *body = (const char *)nl + 1;
    size_t len = size - ctlen - 1;

    char boundary[GW_MP_BOUNDARY_MAX + 1], err[256] = "";
    if (gw_multipart_boundary(ct, boundary, err, sizeof err) < 0) {
        require(err[0] != '\0', "a refused boundary says why");
        return 0;
    }
    require(terminated(boundary, sizeof boundary), "the boundary is terminated");
    size_t blen = strlen(boundary);
    require(blen >= 1 && blen <= GW_MP_BOUNDARY_MAX, "the boundary has 1..70 characters");

    /* the body in a buffer of its own size, so that ASan sees any read past its end */
    char *copy = malloc(len ? len : 1);
    if (!copy) return 0;
    memcpy(copy, body, len);
    gw_mp_form form;
    memset(&form, 0, sizeof form);
    err[0] = '\0';
    if (gw_multipart_parse(copy, len, boundary, &form, err, sizeof err) < 0) {
        require(err[0] != '\0', "a refused body says why");
    } else {
        require(form.n <= GW_MP_PARTS_MAX, "at most GW_MP_PARTS_MAX parts");
        for (size_t i = 0; i < form.n; i++) {
            const gw_mp_part *pt = &form.parts[i];
            require(terminated(pt->name, sizeof pt->name) && pt->name[0] != '\0',
                    "a part has a non-empty name");
            require(terminated(pt->filename, sizeof pt->filename), "the filename is terminated");
            require(pt->has_filename || pt->filename[0] == '\0', "no filename reads as \"\"");
            require(terminated(pt->content_type, sizeof pt->content_type),
                    "the content type is terminated");
            require(pt->len == 0 || (pt->data >= copy && pt->data <= copy + len &&
                                     pt->len <= (size_t)(copy + len - pt->data)),
                    "a part's data lies inside the body");
        }
    }
    gw_multipart_form_free(&form);
    free(copy);
    return 0;
}
