#include "spm_shim.h"

#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <unordered_map>
#include <vector>

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

struct tlm_spm_processor {
  sentencepiece::SentencePieceProcessor processor;
};

namespace {

char *copy_string(const std::string &text) {
  char *out = static_cast<char *>(std::malloc(text.size() + 1));
  if (out == nullptr) return nullptr;
  std::memcpy(out, text.data(), text.size());
  out[text.size()] = '\0';
  return out;
}

int fail(char **error, const std::string &message, int code = 1) {
  if (error != nullptr) *error = copy_string(message);
  return code == 0 ? 1 : code;
}

int fail(char **error, const sentencepiece::util::Status &status) {
  return fail(error, status.ToString(), static_cast<int>(status.code()));
}

}  // namespace

extern "C" {

int tlm_spm_load(const char *bytes, size_t length, tlm_spm_processor **out, char **error) {
  try {
    auto *wrapper = new tlm_spm_processor();
    auto status = wrapper->processor.LoadFromSerializedProto(std::string_view(bytes, length));
    if (!status.ok()) {
      delete wrapper;
      return fail(error, status);
    }
    *out = wrapper;
    return 0;
  } catch (const std::exception &e) {
    return fail(error, e.what());
  }
}

void tlm_spm_destroy(tlm_spm_processor *processor) { delete processor; }
void tlm_spm_free_string(char *string) { std::free(string); }
void tlm_spm_free_ids(int32_t *ids) { std::free(ids); }

int tlm_spm_encode_ids(const tlm_spm_processor *processor, const char *text, size_t length,
                       int32_t **ids, size_t *count, char **error) {
  try {
    std::vector<int> result;
    auto status = processor->processor.Encode(std::string_view(text, length), &result);
    if (!status.ok()) return fail(error, status);
    auto *buffer = static_cast<int32_t *>(std::malloc(sizeof(int32_t) * (result.size() + 1)));
    if (buffer == nullptr) return fail(error, "out of memory");
    for (size_t i = 0; i < result.size(); ++i) buffer[i] = static_cast<int32_t>(result[i]);
    *ids = buffer;
    *count = result.size();
    return 0;
  } catch (const std::exception &e) {
    return fail(error, e.what());
  }
}

int tlm_spm_encode_pieces(const tlm_spm_processor *processor, const char *text, size_t length,
                          char **pieces, size_t *bytes, size_t *count, char **error) {
  try {
    std::vector<std::string> result;
    auto status = processor->processor.Encode(std::string_view(text, length), &result);
    if (!status.ok()) return fail(error, status);
    std::string joined;
    for (const auto &piece : result) {
      joined.append(piece);
      joined.push_back('\0');
    }
    auto *buffer = static_cast<char *>(std::malloc(joined.size() + 1));
    if (buffer == nullptr) return fail(error, "out of memory");
    std::memcpy(buffer, joined.data(), joined.size());
    *pieces = buffer;
    *bytes = joined.size();
    *count = result.size();
    return 0;
  } catch (const std::exception &e) {
    return fail(error, e.what());
  }
}

int tlm_spm_decode_ids(const tlm_spm_processor *processor, const int32_t *ids, size_t count,
                       char **text, size_t *length, char **error) {
  try {
    std::vector<int> input(ids, ids + count);
    std::string result;
    auto status = processor->processor.Decode(input, &result);
    if (!status.ok()) return fail(error, status);
    *text = copy_string(result);
    if (*text == nullptr) return fail(error, "out of memory");
    *length = result.size();
    return 0;
  } catch (const std::exception &e) {
    return fail(error, e.what());
  }
}

int32_t tlm_spm_piece_size(const tlm_spm_processor *p) { return p->processor.GetPieceSize(); }

const char *tlm_spm_id_to_piece(const tlm_spm_processor *p, int32_t id, size_t *length) {
  const std::string &piece = p->processor.IdToPiece(id);
  *length = piece.size();
  return piece.data();
}

int32_t tlm_spm_piece_to_id(const tlm_spm_processor *p, const char *piece, size_t length) {
  return p->processor.PieceToId(std::string_view(piece, length));
}

float tlm_spm_score(const tlm_spm_processor *p, int32_t id) { return p->processor.GetScore(id); }
int tlm_spm_is_unknown(const tlm_spm_processor *p, int32_t id) { return p->processor.IsUnknown(id); }
int tlm_spm_is_control(const tlm_spm_processor *p, int32_t id) { return p->processor.IsControl(id); }
int tlm_spm_is_unused(const tlm_spm_processor *p, int32_t id) { return p->processor.IsUnused(id); }
int tlm_spm_is_byte(const tlm_spm_processor *p, int32_t id) { return p->processor.IsByte(id); }
int32_t tlm_spm_unk_id(const tlm_spm_processor *p) { return p->processor.unk_id(); }
int32_t tlm_spm_bos_id(const tlm_spm_processor *p) { return p->processor.bos_id(); }
int32_t tlm_spm_eos_id(const tlm_spm_processor *p) { return p->processor.eos_id(); }
int32_t tlm_spm_pad_id(const tlm_spm_processor *p) { return p->processor.pad_id(); }

int tlm_spm_train(const char *const *keys, const char *const *values, size_t count,
                  unsigned int seed, char **model, size_t *length, char **error) {
  try {
    std::unordered_map<std::string, std::string> options;
    for (size_t i = 0; i < count; ++i) options[keys[i]] = values[i];
    sentencepiece::SetRandomGeneratorSeed(seed);
    std::string serialized;
    auto status = sentencepiece::SentencePieceTrainer::Train(options, nullptr, &serialized);
    if (!status.ok()) return fail(error, status);
    auto *buffer = static_cast<char *>(std::malloc(serialized.size() + 1));
    if (buffer == nullptr) return fail(error, "out of memory");
    std::memcpy(buffer, serialized.data(), serialized.size());
    *model = buffer;
    *length = serialized.size();
    return 0;
  } catch (const std::exception &e) {
    return fail(error, e.what());
  }
}

}  // extern "C"
