// `brisk data prepare`: documents -> token shards PREFIX.train.bin and PREFIX.val.bin.
//
// Each document becomes [BOS if the tokenizer adds one] + its tokens + <|endoftext|> (the EOS
// token). Text documents are encoded without parsing special-token text (a literal
// "<|endoftext|>" in a fortune stays text). Chat documents are rendered as ChatML with the
// special tokens inserted by id and each message's "role\ncontent" encoded as one fragment, which
// gives exactly the ids brisk's encode gives for the rendered conversation; the loss mask is set
// on the assistant tokens only (its content and the <|im_end|> closing it).
//
// Train/validation split: a document goes to validation when hash(seed, its bytes) falls below
// val_fraction of the 64-bit range. The decision depends on nothing but the document and the
// seed (not on file order or thread count), and identical documents always land on the same
// side, so exact duplicates never leak from train into validation.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "io/tokenizer/tokenizer.h"
#include "train/corpus.h"

namespace brisk::train {

struct EncodedDoc {
  std::vector<int32_t> tokens;
  std::vector<uint8_t> mask;  // empty: every token is a target; else 1 = target
  int64_t n_bytes = 0;        // text bytes the document held (for bytes-per-token figures)
  int64_t n_added = 0;        // BOS / EOS tokens added around the text
};

// Throws brisk::Error when a chat document needs <|im_start|> / <|im_end|> and the vocabulary
// lacks them, or when the vocabulary has no EOS token.
EncodedDoc encode_document(const tok::Tokenizer& tk, const Document& doc);

bool is_validation_doc(const Document& doc, uint64_t seed, double val_fraction);

struct PrepareConfig {
  std::vector<std::string> inputs;  // files or directories, optionally FORMAT:PATH (expand_inputs)
  CorpusOptions corpus;             // format: the default for inputs without a FORMAT: prefix
  std::string out_prefix;
  double val_fraction = 0.01;
  uint64_t seed = 0;
  int threads = 1;
};

struct SplitSummary {
  int64_t docs = 0, tokens = 0, targets = 0, bytes = 0;
  int64_t added = 0;  // BOS / EOS tokens added to documents (not from the text)
  std::string path;
};

struct PrepareSummary {
  int64_t files = 0;
  SplitSummary train, val;
  // Text bytes per token, counting every token, or only those encoding text (not BOS / EOS).
  double bytes_per_token() const {
    const int64_t t = train.tokens + val.tokens;
    return t ? static_cast<double>(train.bytes + val.bytes) / static_cast<double>(t) : 0.0;
  }
  double bytes_per_text_token() const {
    const int64_t t = train.tokens + val.tokens - train.added - val.added;
    return t ? static_cast<double>(train.bytes + val.bytes) / static_cast<double>(t) : 0.0;
  }
};

// Reads, encodes (in parallel, results in input order) and writes both shards.
// progress(file_index, n_files, summary_so_far) runs after each file.
PrepareSummary prepare_dataset(const tok::Tokenizer& tk, const PrepareConfig& cfg,
                               const std::function<void(int64_t, int64_t, const std::string&,
                                                        const PrepareSummary&)>& progress = {});

}  // namespace brisk::train
