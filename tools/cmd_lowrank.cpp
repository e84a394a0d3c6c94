// brisk lowrank: truncated-SVD factorisation of chosen layer matrices (quant/lowrank.h), written as
// a GGUF whose factorised matrices are N.lr_a / N.lr_b pairs that the runtime multiplies in
// sequence (docs/ARCHITECTURE.md, "Low-rank factorised matrices").
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli.h"
#include "core/error.h"
#include "quant/lowrank.h"

namespace brisk::cli {

namespace {

// "0-3,5" -> {0, 1, 2, 3, 5}; throws brisk::Error on anything else.
std::vector<int64_t> parse_layers(const std::string& s) {
  std::vector<int64_t> out;
  auto num = [&](const std::string& t) {
    if (t.empty() || t.size() > 6 || t.find_first_not_of("0123456789") != std::string::npos)
      fail("--layers: '", t, "' is not a layer index (want e.g. 0-3,5)");
    return std::stoll(t);
  };
  size_t p = 0;
  while (p <= s.size()) {
    const size_t q = std::min(s.find(',', p), s.size());
    const std::string item = s.substr(p, q - p);
    const size_t dash = item.find('-');
    if (dash == std::string::npos) {
      out.push_back(num(item));
    } else {
      const int64_t a = num(item.substr(0, dash)), b = num(item.substr(dash + 1));
      if (b < a) fail("--layers: empty range '", item, "'");
      for (int64_t l = a; l <= b; ++l) out.push_back(l);
    }
    p = q + 1;
  }
  return out;
}

std::string energy_str(double e) {
  if (std::isnan(e)) return "-";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.4f", e);
  return buf;
}

struct Args {
  std::string in, out, layers, type = "f16";
  std::vector<std::string> tensors;
  int64_t rank = 0;
  double energy = 0;
  int threads = 0;
  bool json = false, quiet = false;
};

void run_lowrank(const Args& a) {
  const auto t0 = std::chrono::steady_clock::now();
  quant::LowRankOptions o;
  o.rank = a.rank;
  o.energy = a.energy;
  if ((a.rank != 0) == (a.energy != 0)) fail("give exactly one of --rank and --energy");
  if (a.type == "f16")
    o.type = DType::F16;
  else if (a.type == "f32")
    o.type = DType::F32;
  else
    fail("unknown --type '", a.type, "' (f16 or f32)");
  if (!a.layers.empty()) o.layers = parse_layers(a.layers);
  o.tensors = a.tensors;

  io::ModelFile m = io::load_model_file(a.in);
  // The input must be a model brisk can run (so that a bad file fails before the SVDs).
  (void)model::Model::load(m);
  ThreadPool pool(a.threads > 0 ? a.threads : default_threads());
  const quant::LowRankReport rep =
      quant::lowrank_model(m, o, pool, [&](size_t i, size_t n, const std::string& name) {
        if (!a.quiet) std::fprintf(stderr, "\rlowrank: [%zu/%zu] %-40s", i + 1, n, name.c_str());
      });
  if (!a.quiet) std::fprintf(stderr, "\n");
  // The result must load too (shapes, factor pairs) before it is written.
  (void)model::Model::load(m);
  io::write_gguf(m, a.out);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::error_code ec;
  const auto in_bytes = std::filesystem::file_size(a.in, ec);
  const uint64_t in_size = ec ? 0 : static_cast<uint64_t>(in_bytes);
  const uint64_t out_size = static_cast<uint64_t>(std::filesystem::file_size(a.out));

  if (!a.quiet) {
    std::fprintf(stderr, "%-32s %11s %6s %8s %8s  %s\n", "tensor", "shape", "rank", "energy",
                 "rel.err", "result");
    for (const quant::LowRankTensorReport& t : rep.tensors) {
      char shape[32];
      std::snprintf(shape, sizeof(shape), "%lldx%lld", static_cast<long long>(t.n_out),
                    static_cast<long long>(t.n_in));
      std::fprintf(stderr, "%-32s %11s %6lld %8s %8s  %s\n", t.name.c_str(), shape,
                   static_cast<long long>(t.rank), energy_str(t.energy).c_str(),
                   t.factorised ? energy_str(t.rel_error).c_str() : "-",
                   t.factorised ? "factorised" : ("kept dense: " + t.note).c_str());
    }
    std::fprintf(stderr,
                 "lowrank: %d of %zu matrices factorised (%s factors); parameters %llu -> %llu "
                 "(%.1f%%); file %llu -> %llu bytes; wrote %s in %.1f s\n",
                 rep.n_factorised, rep.tensors.size(), a.type.c_str(),
                 static_cast<unsigned long long>(rep.params_before),
                 static_cast<unsigned long long>(rep.params_after),
                 100.0 * static_cast<double>(rep.params_after) /
                     static_cast<double>(std::max<uint64_t>(rep.params_before, 1)),
                 static_cast<unsigned long long>(in_size),
                 static_cast<unsigned long long>(out_size), a.out.c_str(), secs);
  }
  if (a.json) {
    nlohmann::ordered_json j;
    j["input"] = a.in;
    j["output"] = a.out;
    if (a.rank) j["rank"] = a.rank;
    if (a.energy != 0) j["energy"] = a.energy;
    j["type"] = a.type;
    j["factorised"] = rep.n_factorised;
    j["selected"] = rep.tensors.size();
    j["params_before"] = rep.params_before;
    j["params_after"] = rep.params_after;
    j["bytes_before"] = in_size;
    j["bytes_after"] = out_size;
    j["seconds"] = secs;
    nlohmann::ordered_json ts = nlohmann::ordered_json::array();
    for (const quant::LowRankTensorReport& t : rep.tensors) {
      nlohmann::ordered_json x;
      x["name"] = t.name;
      x["n_in"] = t.n_in;
      x["n_out"] = t.n_out;
      x["rank"] = t.rank;
      x["energy"] =
          std::isnan(t.energy) ? nlohmann::ordered_json() : nlohmann::ordered_json(t.energy);
      x["rel_error"] =
          t.factorised ? nlohmann::ordered_json(t.rel_error) : nlohmann::ordered_json();
      x["factorised"] = t.factorised;
      x["params_before"] = t.params_before;
      x["params_after"] = t.params_after;
      if (!t.note.empty()) x["note"] = t.note;
      ts.push_back(std::move(x));
    }
    j["tensors"] = std::move(ts);
    std::printf("%s\n", j.dump().c_str());
  }
}

}  // namespace

void add_lowrank_command(CLI::App& app) {
  auto a = std::make_shared<Args>();
  CLI::App* c = app.add_subcommand(
      "lowrank", "Factorise layer matrices by truncated SVD (W ~= B A, stored as N.lr_a / N.lr_b)");
  c->add_option("input", a->in, "Model: GGUF, safetensors, Hugging Face directory")->required();
  c->add_option("output", a->out, "Output GGUF")->required();
  c->add_option("--rank", a->rank, "Keep this many singular values per matrix")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 30));
  c->add_option("--energy", a->energy,
                "Keep the smallest rank whose share of sum(s_i^2) is at least E, in (0, 1]")
      ->check(CLI::Range(1e-9, 1.0));
  c->add_option("--layers", a->layers, "Layers to factorise, e.g. 0-3,5 (default: all)");
  c->add_option("--tensors", a->tensors,
                "Matrices to factorise: attn_q, attn_k, attn_v, attn_output, ffn_gate, ffn_up, "
                "ffn_down (comma-separated; default: all seven)")
      ->delimiter(',');
  c->add_option("--type", a->type, "Storage of the factors: f16 or f32")->capture_default_str();
  c->add_option("-t,--threads", a->threads, "Threads (default: all cores)")
      ->check(CLI::Range(1, 1024));
  c->add_flag("--json", a->json, "Print a JSON summary on stdout");
  c->add_flag("--quiet", a->quiet, "No progress output");
  c->footer(
      "A matrix is kept dense when its factors would not be smaller (r * (n_in + n_out) >= "
      "n_in * n_out, which includes every r >= min(n_in, n_out)). Other tensors and metadata are "
      "copied unchanged.");
  c->callback([a] { run_lowrank(*a); });
}

}  // namespace brisk::cli
