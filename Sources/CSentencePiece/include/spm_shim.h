// A C interface over Debian's libsentencepiece, so that Swift needs no C++ interop.
//
// Every function that can fail returns 0 on success or a nonzero status code and, through
// `error`, a malloc'ed message the caller frees with `tlm_spm_free_string`.
#ifndef TINYLM_SPM_SHIM_H
#define TINYLM_SPM_SHIM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tlm_spm_processor tlm_spm_processor;

/// Loads a serialized ModelProto (the bytes of a `.model` file).
int tlm_spm_load(const char *bytes, size_t length, tlm_spm_processor **out, char **error);
void tlm_spm_destroy(tlm_spm_processor *processor);
void tlm_spm_free_string(char *string);
void tlm_spm_free_ids(int32_t *ids);

/// Encodes UTF-8 text to ids; `*ids` is malloc'ed (free with `tlm_spm_free_ids`).
int tlm_spm_encode_ids(const tlm_spm_processor *processor, const char *text, size_t length,
                       int32_t **ids, size_t *count, char **error);

/// Encodes UTF-8 text to pieces, returned as one malloc'ed buffer of NUL-separated pieces
/// (`*bytes` long, `*count` pieces).
int tlm_spm_encode_pieces(const tlm_spm_processor *processor, const char *text, size_t length,
                          char **pieces, size_t *bytes, size_t *count, char **error);

/// Decodes ids to UTF-8 text (malloc'ed, `*length` bytes plus a NUL).
int tlm_spm_decode_ids(const tlm_spm_processor *processor, const int32_t *ids, size_t count,
                       char **text, size_t *length, char **error);

int32_t tlm_spm_piece_size(const tlm_spm_processor *processor);
/// The piece for `id` (0 <= id < piece size); the pointer lives as long as the processor.
const char *tlm_spm_id_to_piece(const tlm_spm_processor *processor, int32_t id, size_t *length);
int32_t tlm_spm_piece_to_id(const tlm_spm_processor *processor, const char *piece, size_t length);
float tlm_spm_score(const tlm_spm_processor *processor, int32_t id);
int tlm_spm_is_unknown(const tlm_spm_processor *processor, int32_t id);
int tlm_spm_is_control(const tlm_spm_processor *processor, int32_t id);
int tlm_spm_is_unused(const tlm_spm_processor *processor, int32_t id);
int tlm_spm_is_byte(const tlm_spm_processor *processor, int32_t id);
int32_t tlm_spm_unk_id(const tlm_spm_processor *processor);
int32_t tlm_spm_bos_id(const tlm_spm_processor *processor);
int32_t tlm_spm_eos_id(const tlm_spm_processor *processor);
int32_t tlm_spm_pad_id(const tlm_spm_processor *processor);

/// Trains a model. `keys` and `values` are `count` trainer options as spm_train spells them
/// (e.g. "vocab_size" = "4096"); `seed` seeds SentencePiece's generator. On success `*model`
/// holds the serialized ModelProto (malloc'ed, `*length` bytes); nothing is written to disk.
int tlm_spm_train(const char *const *keys, const char *const *values, size_t count,
                  unsigned int seed, char **model, size_t *length, char **error);

#ifdef __cplusplus
}
#endif

#endif
