#include "train/prepare.h"

#include <filesystem>
#include <mutex>

#include "core/error.h"
#include "core/thread_pool.h"
#include "train/dataset.h"
#include "train/rng.h"

namespace brisk::train {

namespace {

int32_t control_token(const tok::Tokenizer& tk, const char* text) {
  const int32_t id = tk.find_token(text);
  if (id < 0 || tk.token_type(id) != tok::TokenType::kControl)
    fail("chat documents need the control token ", text, " in the vocabulary");
  return id;
}

}  // namespace

EncodedDoc encode_document(const tok::Tokenizer& tk, const Document& doc) {
  const int32_t eos = tk.eos_id();
  if (eos < 0) fail("the tokenizer has no EOS token to end documents with");
  EncodedDoc out;
  const bool bos = tk.add_bos() && tk.bos_id() >= 0;
  out.n_added = bos ? 2 : 1;
  if (!doc.is_chat()) {
    if (bos) out.tokens.push_back(tk.bos_id());
    const std::vector<int32_t> ids = tk.encode(doc.text, false, false);
    out.tokens.insert(out.tokens.end(), ids.begin(), ids.end());
    out.tokens.push_back(eos);
    out.n_bytes = static_cast<int64_t>(doc.text.size());
    return out;
  }

  const int32_t im_start = control_token(tk, "<|im_start|>");
  const int32_t im_end = control_token(tk, "<|im_end|>");
  auto push = [&](int32_t id, bool target) {
    out.tokens.push_back(id);
    out.mask.push_back(target ? 1 : 0);
  };
  if (bos) push(tk.bos_id(), false);
  const int64_t special_bytes =
      static_cast<int64_t>(tk.token_text(im_start).size() + tk.token_text(im_end).size());
  for (const tok::ChatMessage& m : doc.messages) {
    const bool assistant = m.role == "assistant";
    push(im_start, false);
    // "role\ncontent" is one fragment between two special tokens, as in the rendered text.
    const std::string frag = m.role + "\n" + m.content;
    const size_t content_at = m.role.size() + 1;
    size_t off = 0;
    for (int32_t id : tk.encode(frag, false, false)) {
      off += tk.token_to_piece(id).size();
      // A token is the assistant's when it ends inside its content.
      push(id, assistant && off > content_at);
    }
    push(im_end, assistant);
    for (int32_t id : tk.encode("\n", false, false)) push(id, false);
    out.n_bytes += special_bytes + static_cast<int64_t>(frag.size()) + 1;
  }
  push(eos, false);
  return out;
}

bool is_validation_doc(const Document& doc, uint64_t seed, double val_fraction) {
  if (val_fraction <= 0) return false;
  if (val_fraction >= 1) return true;
  uint64_t h;
  if (!doc.is_chat()) {
    h = hash_bytes(doc.text, seed);
  } else {
    std::string key;
    for (const auto& m : doc.messages) {
      key += m.role;
      key += '\0';
      key += m.content;
      key += '\0';
    }
    h = hash_bytes(key, seed);
  }
  // 2^64 * fraction, computed in long double so fractions near 1 do not overflow.
  const auto limit =
      static_cast<uint64_t>(static_cast<long double>(val_fraction) * 18446744073709551616.0L);
  return h < limit;
}

PrepareSummary prepare_dataset(const tok::Tokenizer& tk, const PrepareConfig& cfg,
                               const std::function<void(int64_t, int64_t, const std::string&,
                                                        const PrepareSummary&)>& progress) {
  if (cfg.out_prefix.empty()) fail("data prepare: the output prefix is empty");
  if (!(cfg.val_fraction >= 0 && cfg.val_fraction < 1))
    fail("data prepare: --val-fraction ", cfg.val_fraction, " must be in [0, 1)");
  if (cfg.threads < 1) fail("data prepare: --threads must be at least 1");
  const std::vector<InputFile> files = expand_inputs(cfg.inputs, cfg.corpus.format);
  // The prefix may name a new folder (data/run1 -> data/run1.train.bin).
  if (const auto dir = std::filesystem::path(cfg.out_prefix).parent_path(); !dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) fail(dir.string(), ": cannot create directory: ", ec.message());
  }

  PrepareSummary s;
  s.files = static_cast<int64_t>(files.size());
  s.train.path = cfg.out_prefix + ".train.bin";
  s.val.path = cfg.out_prefix + ".val.bin";
  TokenShardWriter train(tk.n_vocab()), val(tk.n_vocab());
  ThreadPool pool(cfg.threads);
  for (size_t f = 0; f < files.size(); ++f) {
    std::vector<Document> docs;
    CorpusOptions copts = cfg.corpus;
    copts.format = files[f].format;
    read_documents(files[f].path, copts, [&](Document& d) {
      docs.push_back(std::move(d));
      return true;
    });
    std::vector<EncodedDoc> enc(docs.size());
    std::mutex mu;
    std::string first_error;
    pool.parallel_for(
        static_cast<int64_t>(docs.size()),
        [&](int64_t b, int64_t e, int) {
          for (int64_t i = b; i < e; ++i) {
            try {
              enc[static_cast<size_t>(i)] = encode_document(tk, docs[static_cast<size_t>(i)]);
            } catch (const std::exception& err) {
              std::lock_guard<std::mutex> lock(mu);
              if (first_error.empty())
                first_error = str_cat(docs[static_cast<size_t>(i)].where, ": ", err.what());
              return;
            }
          }
        },
        16);
    if (!first_error.empty()) fail(first_error);
    // Shards are filled in input order whatever the thread count.
    for (size_t i = 0; i < docs.size(); ++i) {
      const bool is_val = is_validation_doc(docs[i], cfg.seed, cfg.val_fraction);
      TokenShardWriter& w = is_val ? val : train;
      SplitSummary& ss = is_val ? s.val : s.train;
      const int64_t before = w.n_targets();
      w.add(enc[i].tokens, enc[i].mask);
      ss.docs += 1;
      ss.tokens += static_cast<int64_t>(enc[i].tokens.size());
      ss.targets += w.n_targets() - before;
      ss.bytes += enc[i].n_bytes;
      ss.added += enc[i].n_added;
    }
    if (progress)
      progress(static_cast<int64_t>(f), static_cast<int64_t>(files.size()), files[f].path, s);
  }
  train.write(s.train.path);
  val.write(s.val.path);
  return s;
}

}  // namespace brisk::train
