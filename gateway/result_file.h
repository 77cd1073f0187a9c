/* result_file.h: whether a job's result is a file that downloads as itself. Pure.
 *
 * The convention. A model that produces a file (an image, a PDF, audio) returns as its
 * result one msgpack map with exactly these keys, in any order, each once:
 *
 *   "content_type"  str  a media type: type/subtype[; param=value]..., ASCII, at most
 *                        255 bytes (RFC 6838 names, RFC 9110 parameters)
 *   "bytes"         bin  the file's bytes (msgpack bin, never str)
 *   "filename"      str  optional: 1..255 bytes of UTF-8 without control characters
 *
 * and nothing after the map. Such a result is served by GET /v1/jobs/{id}/result as the
 * bytes themselves, with that Content-Type, and with Content-Disposition: attachment when
 * a filename is given (gw_content_disposition). Any other result, including a map that
 * almost follows the convention (bytes as str, an extra key, a media type with a CR in
 * it), is an ordinary result and is served as JSON or msgpack.
 *
 * In Python: return {"content_type": "image/png", "bytes": png, "filename": "out.png"}
 * with bytes a bytes object (msgpack packs bytes as bin).
 */
#ifndef GW_RESULT_FILE_H
#define GW_RESULT_FILE_H

#include <stdbool.h>
#include <stddef.h>

#define GW_RESULT_CTYPE_MAX 255
#define GW_RESULT_FILENAME_MAX 255
/* Room for the longest Content-Disposition value gw_content_disposition writes. */
#define GW_CONTENT_DISPOSITION_MAX \
    (sizeof "attachment; filename=\"\"; filename*=UTF-8''" + 4 * GW_RESULT_FILENAME_MAX)

typedef struct gw_result_file_view {
    char content_type[GW_RESULT_CTYPE_MAX + 1]; /* NUL-terminated, safe in a header */
    const char *bytes;                          /* into the buffer given; may be empty */
    size_t len;
    char filename[GW_RESULT_FILENAME_MAX + 1]; /* "" when the result has none */
} gw_result_file_view;

/* Whether mp (len bytes, one stored result) follows the convention above. When it does,
 * fills out, whose bytes point into mp (valid while mp is). Never reads past len. */
bool gw_result_file(const char *mp, size_t len, gw_result_file_view *out);

/* The same question for a result too large to read whole (gw_result_stream): it is asked
 * a window at a time. p starts zeroed with p->total set; each call gets the stored bytes
 * from p->pos on (GW_RESULT_FILE_WINDOW of them, or up to the end) and returns 1 when the
 * result follows the convention (p->view has the content type and filename, its bytes are
 * p->bytes_len bytes at offset p->bytes_off), 0 when it does not, or 2 to be called again
 * with the bytes from the new p->pos (past the file's bytes, which are never read here).
 * Answers exactly as gw_result_file does on the whole buffer. */
#define GW_RESULT_FILE_WINDOW 640 /* > the longest entry but "bytes": key + 255-byte str */
typedef struct gw_result_file_probe {
    unsigned long long total, pos;
    unsigned long long count, done; /* the map's entries; entries read */
    bool started, have_type, have_bytes, have_name;
    unsigned long long bytes_off, bytes_len;
    gw_result_file_view view;
} gw_result_file_probe;
int gw_result_file_probe_step(gw_result_file_probe *p, const char *win, size_t n);

/* Whether s[0..n) is a media type as the convention requires (no CR, LF or other control
 * characters anywhere, so it is safe as a header value). */
bool gw_media_type_valid(const char *s, size_t n);

/* Writes a Content-Disposition value for filename (NULL or "" gives "attachment"):
 *   attachment; filename="plain"; filename*=UTF-8''percent-encoded
 * The plain form keeps printable ASCII only: control characters (CR, LF), '"' and '\' are
 * dropped, other bytes become '_' (one per UTF-8 character, and for '%', which some
 * browsers decode). The filename*= form (RFC 8187) percent-encodes every byte outside
 * attr-char and is left out when the name is not valid UTF-8. A name over 255 bytes is cut
 * at a character boundary. out always ends up NUL-terminated and a whole header value: if
 * outlen is smaller than GW_CONTENT_DISPOSITION_MAX and the full form does not fit, the
 * filename*= part is dropped, then the filename. Header injection is impossible: nothing
 * below 0x20 (or 0x7f) is ever written. */
void gw_content_disposition(const char *filename, char *out, size_t outlen);

#endif
