// brisk tokenizer train: learn a byte-level BPE vocabulary from text and write it as a vocab-only
// GGUF (and optionally as a Hugging Face tokenizer.json + tokenizer_config.json).
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "core/error.h"
#include "io/tokenizer/chat_template.h"
#include "train/bpe_trainer.h"
#include "train/corpus.h"

namespace brisk::cli {

namespace {

void write_text(const std::string& path, const std::string& text) {
  AtomicFileWriter w(path);
  w.write(text.data(), text.size());
  w.commit();
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

void add_tokenizer_command(CLI::App& app) {
  struct Args {
    std::vector<std::string> inputs;
    std::string out, hf_json, format = "text", doc_sep = "blank", pre = "llama3";
    int64_t vocab_size = 8192, max_bytes = 0, min_frequency = 2;
    bool no_bos = false, json = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* t = app.add_subcommand("tokenizer", "Tokenizer tools (train a BPE vocabulary)");
  t->require_subcommand(1);
  CLI::App* c = t->add_subcommand(
      "train", "Train a byte-level BPE tokenizer on text and write a vocab-only GGUF");
  c->add_option("-i,--input", a->inputs,
                "Files or directories; FORMAT:PATH gives one input its own format")
      ->required();
  c->add_option("--vocab-size", a->vocab_size, "Tokens in all: special tokens + 256 bytes + merges")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{259}, int64_t{1} << 24));
  c->add_option("-o,--output", a->out, "Output vocab-only GGUF")->required();
  c->add_option("--tokenizer-json", a->hf_json,
                "Also write a Hugging Face tokenizer.json here (tokenizer_config.json beside it)");
  c->add_option("--max-bytes", a->max_bytes, "Train on at most this many bytes of text (0: all)")
      ->check(CLI::NonNegativeNumber);
  c->add_option("--format", a->format, "Input format: text, fortune, gcide or chat")
      ->capture_default_str()
      ->check(CLI::IsMember({"text", "fortune", "gcide", "chat"}));
  c->add_option("--doc-separator", a->doc_sep,
                "text format: blank (blank lines), line, file, or a separator line's text")
      ->capture_default_str();
  c->add_option("--pre", a->pre,
                "Pre-tokenizer (a tokenizer.ggml.pre name: llama3, gpt2, qwen2...)")
      ->capture_default_str();
  c->add_option("--min-frequency", a->min_frequency, "Stop when the best pair is rarer than this")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  c->add_flag("--no-bos", a->no_bos, "Do not prepend <|endoftext|> as BOS when encoding");
  c->add_flag("--json", a->json, "Print a JSON summary on stdout");
  c->callback([a] {
    const auto t0 = std::chrono::steady_clock::now();
    train::BpeTrainerConfig cfg;
    cfg.vocab_size = static_cast<int32_t>(a->vocab_size);
    cfg.pre = a->pre;
    cfg.min_frequency = a->min_frequency;
    cfg.add_bos = !a->no_bos;
    cfg.validate();
    train::CorpusOptions copts;
    copts.format = *train::corpus_format_from_name(a->format);
    copts.doc_separator = a->doc_sep;
    const std::vector<train::InputFile> files = train::expand_inputs(a->inputs, copts.format);
    if (!a->hf_json.empty()) {
      // The Hugging Face files may go to a new model directory.
      const auto dir = std::filesystem::path(a->hf_json).parent_path();
      std::error_code ec;
      if (!dir.empty()) std::filesystem::create_directories(dir, ec);
      if (ec) fail(dir.string(), ": cannot create directory: ", ec.message());
    }

    train::BpeTrainer trainer(cfg);
    int64_t n_docs = 0, n_files = 0;
    bool full = false;
    for (const auto& f : files) {
      if (full) break;
      ++n_files;
      const int64_t docs_before = n_docs, bytes_before = trainer.n_bytes();
      train::CorpusOptions fopts = copts;
      fopts.format = f.format;
      train::read_documents(f.path, fopts, [&](train::Document& d) {
        std::string text = d.is_chat() ? tok::apply_chat_template(tok::ChatFamily::ChatML,
                                                                  d.messages, false, "", "")
                                       : std::move(d.text);
        if (a->max_bytes > 0) {
          const int64_t room = a->max_bytes - trainer.n_bytes();
          if (static_cast<int64_t>(text.size()) >= room) {
            text.resize(static_cast<size_t>(std::max<int64_t>(room, 0)));
            full = true;
          }
        }
        trainer.add_text(text);
        ++n_docs;
        return !full;
      });
      std::fprintf(stderr, "tokenizer: %s: %lld docs, %.2f MB (%lld unique words so far)\n",
                   f.path.c_str(), static_cast<long long>(n_docs - docs_before),
                   static_cast<double>(trainer.n_bytes() - bytes_before) / 1e6,
                   static_cast<long long>(trainer.n_unique_words()));
    }
    if (trainer.n_bytes() == 0) fail("tokenizer train: the inputs hold no text");
    const double count_s = seconds_since(t0);

    const auto t1 = std::chrono::steady_clock::now();
    train::BpeTrainStats st;
    // A live counter on a terminal; in a log, a line per 2048 merges.
    const bool tty = isatty(fileno(stderr)) != 0;
    int64_t last_line = -1;
    const train::BpeVocab v = trainer.train(
        [&](int64_t done, int64_t want) {
          if (tty) {
            std::fprintf(stderr, "\rtokenizer: %lld / %lld merges", static_cast<long long>(done),
                         static_cast<long long>(want));
          } else if (done / 2048 != last_line || done == want) {
            last_line = done / 2048;
            std::fprintf(stderr, "tokenizer: %lld / %lld merges\n", static_cast<long long>(done),
                         static_cast<long long>(want));
          }
        },
        &st);
    if (tty) std::fprintf(stderr, "\n");
    const double merge_s = seconds_since(t1);
    if (st.hit_min_frequency)
      std::fprintf(stderr,
                   "tokenizer: stopped at %d tokens: no pair occurs %lld times (more text "
                   "would fill the vocabulary)\n",
                   v.n_vocab(), static_cast<long long>(cfg.min_frequency));

    train::write_vocab_gguf(v, a->out);
    std::string config_path;
    if (!a->hf_json.empty()) {
      write_text(a->hf_json, train::bpe_vocab_tokenizer_json(v));
      config_path =
          (std::filesystem::path(a->hf_json).parent_path() / "tokenizer_config.json").string();
      write_text(config_path, train::bpe_vocab_tokenizer_config_json(v));
    }
    // Load what was written, through the same path every other command uses.
    const Loaded l = load(a->out, false);
    if (!l.tokenizer || l.tokenizer->n_vocab() != v.n_vocab())
      fail(a->out, ": the written vocabulary does not load back");

    if (a->json) {
      nlohmann::ordered_json j;
      j["output"] = a->out;
      if (!a->hf_json.empty()) {
        j["tokenizer_json"] = a->hf_json;
        j["tokenizer_config_json"] = config_path;
      }
      j["n_vocab"] = v.n_vocab();
      j["n_merges"] = st.n_merges;
      j["n_special"] = static_cast<int64_t>(cfg.special_tokens.size());
      j["pre"] = v.pre;
      j["add_bos"] = v.add_bos;
      j["files"] = n_files;
      j["docs"] = n_docs;
      j["bytes"] = trainer.n_bytes();
      j["unique_words"] = st.n_words;
      j["stopped_early"] = st.hit_min_frequency;
      j["count_seconds"] = count_s;
      j["merge_seconds"] = merge_s;
      std::printf("%s\n", j.dump(2).c_str());
    } else {
      std::printf(
          "tokenizer: %d tokens (%lld merges) from %.2f MB in %lld docs; counting %.2f s, "
          "merging %.2f s; wrote %s%s%s\n",
          v.n_vocab(), static_cast<long long>(st.n_merges),
          static_cast<double>(trainer.n_bytes()) / 1e6, static_cast<long long>(n_docs), count_s,
          merge_s, a->out.c_str(), a->hf_json.empty() ? "" : " and ", a->hf_json.c_str());
    }
  });
}

}  // namespace brisk::cli
