// brisk data: training data tools. `prepare` tokenizes documents into train/validation token
// shards; `inspect` summarises a shard.
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "core/error.h"
#include "train/dataset.h"
#include "train/prepare.h"

namespace brisk::cli {

namespace {

nlohmann::ordered_json split_json(const train::SplitSummary& s) {
  nlohmann::ordered_json j;
  j["path"] = s.path;
  j["docs"] = s.docs;
  j["tokens"] = s.tokens;
  j["loss_tokens"] = s.targets;
  j["bytes"] = s.bytes;
  return j;
}

void add_prepare(CLI::App& data) {
  struct Args {
    std::string tokenizer, out, format = "text", doc_sep = "blank";
    std::vector<std::string> inputs;
    double val_fraction = 0.01;
    uint64_t seed = 0;
    int threads = 0;
    bool json = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* c = data.add_subcommand(
      "prepare", "Tokenize documents into PREFIX.train.bin and PREFIX.val.bin token shards");
  c->add_option("--tokenizer", a->tokenizer, "Vocab-only GGUF (or any model with a tokenizer)")
      ->required();
  c->add_option("-i,--input", a->inputs,
                "Files or directories; FORMAT:PATH gives one input its own format")
      ->required();
  c->add_option("-o,--output", a->out, "Output prefix")->required();
  c->add_option("--val-fraction", a->val_fraction, "Share of documents for validation")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 0.999999));
  c->add_option("--seed", a->seed, "Seed of the train/validation split")->capture_default_str();
  c->add_option("--format", a->format, "Input format: text, fortune, gcide or chat")
      ->capture_default_str()
      ->check(CLI::IsMember({"text", "fortune", "gcide", "chat"}));
  c->add_option("--doc-separator", a->doc_sep,
                "text format: blank (blank lines), line, file, or a separator line's text")
      ->capture_default_str();
  c->add_option("-t,--threads", a->threads, "Encoding threads (default: all cores)")
      ->check(CLI::Range(1, 1024));
  c->add_flag("--json", a->json, "Print a JSON summary on stdout");
  c->callback([a] {
    const auto t0 = std::chrono::steady_clock::now();
    const Loaded l = load(a->tokenizer, false);
    if (!l.tokenizer) fail(a->tokenizer, ": no tokenizer metadata (tokenizer.ggml.tokens)");
    train::PrepareConfig cfg;
    cfg.inputs = a->inputs;
    cfg.corpus.format = *train::corpus_format_from_name(a->format);
    cfg.corpus.doc_separator = a->doc_sep;
    cfg.out_prefix = a->out;
    cfg.val_fraction = a->val_fraction;
    cfg.seed = a->seed;
    cfg.threads = a->threads > 0 ? a->threads : default_threads();
    const train::PrepareSummary s = train::prepare_dataset(
        *l.tokenizer, cfg,
        [](int64_t i, int64_t n, const std::string& file, const train::PrepareSummary& so_far) {
          std::fprintf(stderr, "data: [%lld/%lld] %s: %lld docs, %lld tokens so far\n",
                       static_cast<long long>(i + 1), static_cast<long long>(n), file.c_str(),
                       static_cast<long long>(so_far.train.docs + so_far.val.docs),
                       static_cast<long long>(so_far.train.tokens + so_far.val.tokens));
        });
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (s.val.docs == 0 && a->val_fraction > 0)
      std::fprintf(stderr, "data: warning: no document fell into the validation split\n");
    if (a->json) {
      nlohmann::ordered_json j;
      j["files"] = s.files;
      j["train"] = split_json(s.train);
      j["val"] = split_json(s.val);
      j["docs"] = s.train.docs + s.val.docs;
      j["tokens"] = s.train.tokens + s.val.tokens;
      j["bytes_per_token"] = s.bytes_per_token();
      j["bytes_per_text_token"] = s.bytes_per_text_token();
      j["seconds"] = secs;
      std::printf("%s\n", j.dump(2).c_str());
    } else {
      std::printf(
          "data: train %lld docs / %lld tokens -> %s; val %lld docs / %lld tokens -> %s; "
          "%.3f bytes per token (%.3f without BOS/EOS); %.1f s\n",
          static_cast<long long>(s.train.docs), static_cast<long long>(s.train.tokens),
          s.train.path.c_str(), static_cast<long long>(s.val.docs),
          static_cast<long long>(s.val.tokens), s.val.path.c_str(), s.bytes_per_token(),
          s.bytes_per_text_token(), secs);
    }
  });
}

void add_inspect(CLI::App& data) {
  struct Args {
    std::string shard, tokenizer;
    int64_t show = 0;
    bool json = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* c = data.add_subcommand("inspect", "Summarise a token shard (verifies its checksum)");
  c->add_option("shard", a->shard, "Token shard (.bin) written by data prepare")->required();
  c->add_option("--tokenizer", a->tokenizer, "Decode documents with this vocabulary");
  c->add_option("--show", a->show, "Print the first N documents (needs --tokenizer)")
      ->check(CLI::NonNegativeNumber);
  c->add_flag("--json", a->json, "Print a JSON summary on stdout");
  c->callback([a] {
    const auto d = train::TokenDataset::open(a->shard);
    int64_t targets = 0, longest = 0;
    for (int64_t p = 0; p < d->n_tokens(); ++p) targets += d->is_target(p);
    for (int64_t i = 0; i < d->n_docs(); ++i) longest = std::max(longest, d->doc_size(i));
    if (a->json) {
      nlohmann::ordered_json j;
      j["path"] = a->shard;
      j["docs"] = d->n_docs();
      j["tokens"] = d->n_tokens();
      j["loss_tokens"] = targets;
      j["vocab_size"] = d->vocab_size();
      j["token_bytes"] = d->token_bytes();
      j["has_mask"] = d->has_mask();
      j["longest_doc"] = longest;
      std::printf("%s\n", j.dump(2).c_str());
    } else {
      std::printf(
          "%s: %lld docs, %lld tokens (%lld loss targets), vocab %lld (%d-byte ids), "
          "longest doc %lld tokens%s\n",
          a->shard.c_str(), static_cast<long long>(d->n_docs()),
          static_cast<long long>(d->n_tokens()), static_cast<long long>(targets),
          static_cast<long long>(d->vocab_size()), d->token_bytes(),
          static_cast<long long>(longest), d->has_mask() ? ", loss mask" : "");
    }
    if (a->show > 0) {
      if (a->tokenizer.empty()) fail("--show needs --tokenizer");
      const Loaded l = load(a->tokenizer, false);
      if (!l.tokenizer) fail(a->tokenizer, ": no tokenizer metadata");
      for (int64_t i = 0; i < std::min(a->show, d->n_docs()); ++i) {
        const train::TokenDoc doc = d->doc(i);
        std::fprintf(a->json ? stderr : stdout, "--- doc %lld (%zu tokens)\n%s\n",
                     static_cast<long long>(i), doc.tokens.size(),
                     l.tokenizer->decode(doc.tokens).c_str());
      }
    }
  });
}

}  // namespace

void add_data_command(CLI::App& app) {
  CLI::App* data = app.add_subcommand("data", "Training data tools (prepare, inspect)");
  data->require_subcommand(1);
  add_prepare(*data);
  add_inspect(*data);
}

}  // namespace brisk::cli
