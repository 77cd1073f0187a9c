/* ui.h: the dashboard (docs/dashboard.md): a page, a style sheet and a script, built
 * into the gateway from gateway/ui/ by gateway/ui/embed.cmake, served without an API
 * key. The page itself calls the /v1 API with the key its user types in, so it sees what
 * that key may see and nothing more.
 */
#ifndef GW_UI_H
#define GW_UI_H

#include <stddef.h>

#include "http.h"

/* One embedded file, as it is and gzip-compressed. */
typedef struct gw_ui_asset {
    const char *path;         /* "/" or "/ui/<name>" */
    const char *content_type; /* with its charset */
    const char *etag;         /* "\"<hex>\"": the SHA-256 of the plain bytes, cut to 20 digits */
    const char *etag_gz;      /* "\"<hex>-gz\"": the same, for the gzip bytes */
    const unsigned char *data;
    size_t len;
    const unsigned char *gz;
    size_t gz_len;
} gw_ui_asset;

/* The generated table (ui_assets.c in the build directory). */
extern const gw_ui_asset gw_ui_assets[];
extern const size_t gw_ui_nassets;

/* GET of an asset's path (routes.c lists each): 200 with the file, or 304 when the
 * request's If-None-Match names its ETag. */
void gw_ui_serve(gw_req *r);

#endif
