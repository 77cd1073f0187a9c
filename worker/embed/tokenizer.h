/* tokenizer.h: the BERT WordPiece tokenizer of the embed model (library fleet_embed).
 *
 * Reproduces Hugging Face's BertTokenizer (all-MiniLM-L6-v2 / bert-base-uncased):
 *
 *   UTF-8 text
 *     ──▶ clean: drop NUL, U+FFFD, control chars (Cc/Cf but \t \n \r); whitespace → space
 *     ──▶ CJK ideographs become words of their own
 *     ──▶ lower_case: simple lowercase, then NFD, dropping the Mn marks (accents)
 *     ──▶ split on whitespace and punctuation (Unicode P*, ASCII 33–47 58–64 91–96 123–126)
 *     ──▶ WordPiece: greedy longest match, "##" continuations; a word with no full match,
 *         or of more than 100 characters, is [UNK]
 *     ──▶ [CLS] pieces... [SEP], truncated to max_len
 *
 * Invalid UTF-8 bytes are read as U+FFFD and so dropped (Python never sees them: it
 * works on str). Known differences from HF: added/special tokens written in the text
 * ("[SEP]") are tokenized as ordinary text, and NFD does not reorder combining marks
 * that are not Mn. The Unicode tables come from unicode_tables.c (gen_unicode.py).
 *
 * Pure: no I/O except tok_vocab_load reading the vocabulary file. A loaded vocabulary
 * is immutable, so any number of threads may tokenize with it at once.
 */
#ifndef EMBED_TOKENIZER_H
#define EMBED_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TOK_MAX_WORD_CHARS 100 /* longer words become [UNK] (HF max_input_chars_per_word) */

typedef struct tok_vocab tok_vocab;

/* tok_vocab_load reads vocab.txt: one token per line (UTF-8, "\n" or "\r\n"), the id of
 * a token is its 0-based line number; a token listed twice keeps its last id, as HF does.
 * It needs [UNK], [CLS] and [SEP]. Returns 0 and a vocabulary the caller frees with
 * tok_vocab_free, or -1 with a message naming the file (and line) in err. */
int tok_vocab_load(const char *path, tok_vocab **out, char *err, size_t errlen);
/* Accepts NULL. */
void tok_vocab_free(tok_vocab *v);
/* The id of token (NUL-terminated, exact bytes), or -1 if absent. */
long tok_vocab_id(const tok_vocab *v, const char *token);
/* Number of lines (ids 0 .. size-1). */
size_t tok_vocab_size(const tok_vocab *v);

typedef struct tok_opts {
    bool lower_case; /* lowercase and strip accents (do_lower_case) */
    size_t max_len;  /* most ids written, [CLS] and [SEP] included (>= 2); 0: no limit but cap */
} tok_opts;

/* tok_encode tokenizes len bytes of UTF-8 text into ids: [CLS], the word pieces, [SEP],
 * the pieces truncated so that the whole fits in min(max_len, cap). Returns the number of
 * ids written, or -1 with a message in err (cap or max_len below 2, allocation failure). */
long tok_encode(const tok_vocab *v, const tok_opts *o, const char *text, size_t len, int32_t *ids,
                size_t cap, char *err, size_t errlen);

#endif
