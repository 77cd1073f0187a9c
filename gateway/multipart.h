/* multipart.h: reads a multipart/form-data body (RFC 7578 on RFC 2046 §5.1). Pure: no
 * I/O, so it is unit-tested and fuzzed alone; job_body.c gives the fields their meaning.
 *
 *   Content-Type: multipart/form-data; boundary=XyZ
 *
 *   preamble (ignored)\r\n
 *   --XyZ\r\n
 *   Content-Disposition: form-data; name="files"; filename="a.pdf"\r\n
 *   Content-Type: application/pdf\r\n
 *   \r\n
 *   <bytes, any of them, CRLF included>\r\n
 *   --XyZ--\r\n
 *   epilogue (ignored)
 *
 * A part's content runs up to the next CRLF "--" boundary, so binary data needs no
 * escaping. The reader is strict where leniency would guess: lines end in CRLF, a
 * boundary line is followed by CRLF or "--", the closing "--boundary--" must be there
 * (a body cut short is refused, not read as complete), header lines are not folded, and
 * every part has Content-Disposition: form-data with a non-empty name. Headers other
 * than Content-Disposition and Content-Type are ignored.
 *
 * Ownership: a part's data points into the body the caller passed, so the form is only
 * valid while that body is; nothing of the content is copied.
 */
#ifndef GW_MULTIPART_H
#define GW_MULTIPART_H

#include <stdbool.h>
#include <stddef.h>

#define GW_MP_BOUNDARY_MAX 70  /* RFC 2046: 1..70 characters */
#define GW_MP_PARTS_MAX 100    /* parts in one body */
#define GW_MP_HEADERS_MAX 8192 /* bytes of one part's header block */
#define GW_MP_NAME_MAX 255     /* bytes of a part's name */
#define GW_MP_FILENAME_MAX 255 /* bytes of a filename (UTF-8) */
#define GW_MP_CTYPE_MAX 255    /* bytes of a part's Content-Type */

typedef struct gw_mp_part {
    char name[GW_MP_NAME_MAX + 1];
    bool has_filename;                      /* the part came with filename= or filename*= */
    char filename[GW_MP_FILENAME_MAX + 1];  /* valid UTF-8, no NUL; "" when none */
    char content_type[GW_MP_CTYPE_MAX + 1]; /* as sent, trimmed; "" when none */
    const char *data;                       /* into the body; not NUL-terminated */
    size_t len;
} gw_mp_part;

typedef struct gw_mp_form {
    gw_mp_part *parts; /* malloc'd; in body order */
    size_t n;
} gw_mp_form;

/* Reads the boundary parameter of a multipart/form-data Content-Type (quoted or not) into
 * boundary (GW_MP_BOUNDARY_MAX + 1 bytes). Returns 0, or -1 with a detail in err: no
 * boundary, an empty one, one over 70 characters, a character RFC 2046 does not allow, a
 * malformed parameter list. Does not check the media type itself. */
int gw_multipart_boundary(const char *content_type, char *boundary, char *err, size_t errlen);

/* Splits body (len bytes) at boundary into form (free with gw_multipart_form_free, also
 * after a failure). Returns 0, or -1 with a detail in err naming the part (1-based) and
 * what is wrong with it. */
int gw_multipart_parse(const char *body, size_t len, const char *boundary, gw_mp_form *form,
                       char *err, size_t errlen);
void gw_multipart_form_free(gw_mp_form *form);

#endif
