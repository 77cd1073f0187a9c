/* unicode_tables.h: the Unicode tables of the tokenizer (generated into unicode_tables.c by
 * gen_unicode.py from Debian's UnicodeData.txt). Range tables are sorted {first, last}
 * pairs; lower is sorted {code point, lowercase}; decomp is sorted {code point, offset
 * into decomp_data, length} of the full canonical decomposition. */
#ifndef FLEET_EMBED_UNICODE_TABLES_H
#define FLEET_EMBED_UNICODE_TABLES_H

#include <stddef.h>
#include <stdint.h>

extern const uint32_t fleet__uc_whitespace[][2];
extern const size_t fleet__uc_whitespace_n;
extern const uint32_t fleet__uc_control[][2];
extern const size_t fleet__uc_control_n;
extern const uint32_t fleet__uc_punct[][2];
extern const size_t fleet__uc_punct_n;
extern const uint32_t fleet__uc_mark_mn[][2];
extern const size_t fleet__uc_mark_mn_n;
extern const uint32_t fleet__uc_lower[][2];
extern const size_t fleet__uc_lower_n;
extern const uint32_t fleet__uc_decomp_data[];
extern const uint32_t fleet__uc_decomp[][3];
extern const size_t fleet__uc_decomp_n;

#endif
