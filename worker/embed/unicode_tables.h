/* unicode_tables.h: the Unicode tables of the tokenizer (generated into unicode_tables.c by
 * gen_unicode.py from Debian's UnicodeData.txt). Range tables are sorted {first, last}
 * pairs; lower is sorted {code point, lowercase}; decomp is sorted {code point, offset
 * into decomp_data, length} of the full canonical decomposition. */
#ifndef EMBED_UNICODE_TABLES_H
#define EMBED_UNICODE_TABLES_H

#include <stddef.h>
#include <stdint.h>

extern const uint32_t ucd_whitespace[][2];
extern const size_t ucd_whitespace_n;
extern const uint32_t ucd_control[][2];
extern const size_t ucd_control_n;
extern const uint32_t ucd_punct[][2];
extern const size_t ucd_punct_n;
extern const uint32_t ucd_mark_mn[][2];
extern const size_t ucd_mark_mn_n;
extern const uint32_t ucd_lower[][2];
extern const size_t ucd_lower_n;
extern const uint32_t ucd_decomp_data[];
extern const uint32_t ucd_decomp[][3];
extern const size_t ucd_decomp_n;

#endif
