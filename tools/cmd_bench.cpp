// brisk bench: prompt-processing (pp) and generation (tg) speed of a model for one or more thread
// counts, with the generation speed set against the memory roofline (weight bytes per token x
// tokens/s over the measured read bandwidth). `--bandwidth` runs the memory probe alone.
// Results go to stdout (a Markdown table, or one JSON document with --json); progress to stderr.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "core/error.h"
#include "core/profile.h"
#include "engine/bench.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/isa.h"
#include "lora_options.h"

namespace brisk::cli {
namespace {

struct BenchArgs {
  std::string model;
  int64_t n_prompt = 512, n_gen = 128, batch = 512, bw_mib = 1024;
  int bw_streams = 8;
  int reps = 5, warmup = 1;
  std::vector<int> threads;
  std::vector<int64_t> decode_batch;
  bool json = false, bandwidth = false, profile = false;
  LoraOptions lora;
};

using nlohmann::ordered_json;

std::string fmt(const char* f, double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, x);
  return buf;
}

std::string human_count(uint64_t n) {
  const double x = static_cast<double>(n);
  if (x >= 1e9) return fmt("%.2f B", x / 1e9);
  if (x >= 1e6) return fmt("%.2f M", x / 1e6);
  if (x >= 1e3) return fmt("%.2f K", x / 1e3);
  return std::to_string(n);
}

std::string human_bytes(uint64_t n) {
  const double x = static_cast<double>(n);
  if (x >= 1024.0 * 1024 * 1024) return fmt("%.2f GiB", x / (1024.0 * 1024 * 1024));
  if (x >= 1024.0 * 1024) return fmt("%.2f MiB", x / (1024.0 * 1024));
  if (x >= 1024.0) return fmt("%.2f KiB", x / 1024.0);
  return std::to_string(n) + " B";
}

ordered_json stats_json(const engine::Stats& s, const std::vector<double>& samples) {
  return {{"mean", s.mean}, {"sd", s.sd},   {"median", s.median},
          {"min", s.min},   {"max", s.max}, {"samples", samples}};
}

engine::BandwidthResult probe(const BenchArgs& a, ThreadPool& pool) {
  engine::BandwidthConfig bc;
  bc.bytes = static_cast<uint64_t>(a.bw_mib) << 20;
  bc.reps = a.reps;
  bc.streams = a.bw_streams;
  std::fprintf(stderr, "bench: %d threads, bandwidth probe over %s, %d streams per thread ...\n",
               pool.size(), human_bytes(bc.bytes).c_str(), bc.streams);
  engine::BandwidthResult r = engine::probe_bandwidth(bc, pool);
  // The checksum keeps the reads observable; a mismatch would mean the probe read garbage.
  check(r.checksum == r.expected_sum, "bench: bandwidth probe checksum mismatch");
  std::fprintf(stderr, "bench: %d threads, bandwidth %.2f GB/s (median of %zu)\n", pool.size(),
               r.stats.median, r.gbps.size());
  return r;
}

void run_bandwidth(const BenchArgs& a) {
  ordered_json rows = ordered_json::array();
  std::string table =
      "| threads | buffer | GB/s median | GB/s mean ± sd | min | max |\n"
      "| ------: | -----: | ----------: | -------------: | --: | --: |\n";
  for (int t : a.threads) {
    ThreadPool pool(t);
    const engine::BandwidthResult r = probe(a, pool);
    rows.push_back({{"threads", t},
                    {"buffer_bytes", r.bytes},
                    {"streams", a.bw_streams},
                    {"gbps", stats_json(r.stats, r.gbps)}});
    table += "| " + std::to_string(t) + " | " + human_bytes(r.bytes) + " | " +
             fmt("%.2f", r.stats.median) + " | " + fmt("%.2f", r.stats.mean) + " ± " +
             fmt("%.2f", r.stats.sd) + " | " + fmt("%.2f", r.stats.min) + " | " +
             fmt("%.2f", r.stats.max) + " |\n";
  }
  if (a.json) {
    ordered_json j{{"reps", a.reps}, {"bandwidth", rows}};
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::fputs(table.c_str(), stdout);
  }
}

// The profile counters of one test (profile::Scope timers in the forward pass) as time per token
// and share per category; appends a Markdown table to `table` and returns the JSON form.
ordered_json profile_snapshot(const engine::BenchConfig& cfg, const engine::BenchResult& r,
                              int threads, std::string& table) {
  ordered_json j = ordered_json::object();
  if (!profile::enabled()) return j;
  const double tokens = static_cast<double>((cfg.warmup + cfg.reps) * r.n_tokens);
  const double wall = r.stats.median > 0 ? 1e3 / r.stats.median : 0;  // ms per token
  double total = 0;
  for (int i = 0; i < static_cast<int>(profile::Op::kCount); ++i)
    total += static_cast<double>(profile::counters().ns[static_cast<size_t>(i)].load());
  table += "\nprofile, " + std::to_string(threads) + " threads, " + r.test + " (" +
           fmt("%.3f", wall) +
           " ms per token):\n\n| op | ms per token | share |\n| -- | --: | --: |\n";
  for (int i = 0; i < static_cast<int>(profile::Op::kCount); ++i) {
    const profile::Op op = static_cast<profile::Op>(i);
    const double ns = static_cast<double>(profile::counters().ns[static_cast<size_t>(i)].load());
    const double ms = ns / tokens / 1e6;
    j[profile::op_name(op)] = {{"ms_per_token", ms}, {"share", total > 0 ? ns / total : 0}};
    table += "| " + std::string(profile::op_name(op)) + " | " + fmt("%.3f", ms) + " | " +
             fmt("%.1f%%", total > 0 ? 100.0 * ns / total : 0) + " |\n";
  }
  const double timed = total / tokens / 1e6;
  table +=
      "| (outside the timed ops: sampling, bench loop) | " + fmt("%.3f", wall - timed) + " | |\n";
  return j;
}

// Weight-matrix storage types, largest share first ("q4_0, q6_K").
std::string weight_types(const model::Model& m) {
  std::map<std::string, uint64_t> bytes;
  for (const auto& t : m.file().tensors)
    if (t.shape.size() == 2) bytes[dtype_name(t.type)] += t.nbytes;
  std::vector<std::pair<uint64_t, std::string>> v;
  for (const auto& [name, b] : bytes) v.emplace_back(b, name);
  std::sort(v.rbegin(), v.rend());
  std::string s;
  for (const auto& [b, name] : v) s += (s.empty() ? "" : ", ") + name;
  return s;
}

void run_model(const BenchArgs& a) {
  engine::BenchConfig cfg;
  cfg.n_prompt = a.n_prompt;
  cfg.n_gen = a.n_gen;
  cfg.n_batch = a.batch;
  cfg.reps = a.reps;
  cfg.warmup = a.warmup;
  cfg.validate();

  Loaded l = load(a.model, true);
  attach_loras(*l.model, a.lora);
  const model::Model& m = *l.model;
  std::string name = std::filesystem::path(a.model).filename().string();
  if (const gguf::Value* v = m.file().find("general.name")) name = v->as_string("general.name");
  if (m.n_lora() > 0) name += " + " + std::to_string(m.n_lora()) + " LoRA";
  const std::string types = weight_types(m);
  const uint64_t bpt = m.bytes_per_token();
  std::fprintf(stderr, "bench: %s (%s, %s params, %s, %s weights read per token)\n", name.c_str(),
               types.c_str(), human_count(m.n_params()).c_str(),
               human_bytes(m.weight_bytes()).c_str(), human_bytes(bpt).c_str());

  const uint64_t mpt = engine::macs_per_token(m);
  const std::string isa = kernels::active_isa();
  const DType gate_type = m.layer(0).gate.type;
  const bool packed = kernels::packed_gemm(gate_type) != nullptr;
  const bool float_weights =
      gate_type == DType::F32 || gate_type == DType::F16 || gate_type == DType::BF16;
  const std::string kernels_desc = isa + (packed ? " (packed int8 GEMM)" : " (row dot products)");
  std::fprintf(stderr, "bench: kernels %s\n", kernels_desc.c_str());

  // pp is set against the int8 multiply-accumulate peak (weight MACs per token x tokens/s), tg
  // against the read bandwidth (weight bytes per token x tokens/s): the bound of each.
  std::string table = "model: " + name + " (" + types + ", " + human_count(m.n_params()) +
                      " params, " + human_bytes(m.weight_bytes()) + "), kernels: " + kernels_desc +
                      "\n\n" +
                      "| threads | test | t/s | median t/s | bound | of bound |\n"
                      "| ------: | ---- | --: | ---------: | ----- | -------: |\n";
  ordered_json rows = ordered_json::array();
  std::string table_prof;
  profile::set_enabled(a.profile);
  for (int t : a.threads) {
    ThreadPool pool(t);
    auto progress = [t](const std::string& test, int i, bool warm, double tps) {
      if (warm)
        std::fprintf(stderr, "bench: %d threads, %s warmup %d: %.2f t/s\n", t, test.c_str(), i + 1,
                     tps);
      else
        std::fprintf(stderr, "bench: %d threads, %s rep %d: %.2f t/s\n", t, test.c_str(), i + 1,
                     tps);
    };
    profile::reset();
    const engine::BenchResult pp = engine::bench_prompt(m, cfg, pool, progress);
    const ordered_json pp_prof = profile_snapshot(cfg, pp, t, table_prof);
    profile::reset();
    const engine::BenchResult tg = engine::bench_generate(m, cfg, pool, progress);
    const ordered_json tg_prof = profile_snapshot(cfg, tg, t, table_prof);
    std::vector<engine::BenchResult> batched;
    std::vector<ordered_json> batched_prof;
    for (int64_t b : a.decode_batch) {
      batched.push_back(engine::bench_decode_batch(m, cfg, b, pool, progress));
      batched_prof.push_back(profile_snapshot(cfg, batched.back(), t, table_prof));
    }
    const engine::BandwidthResult bw = probe(a, pool);
    const engine::ComputePeak peak = engine::probe_compute(pool);
    std::fprintf(stderr, "bench: %d threads, int8 peak %.0f GMAC/s, f32 peak %.0f GFLOP/s\n", t,
                 peak.int8_gmacs, peak.f32_gflops);
    // Medians on both sides: one slow repetition (the machine is shared) should not move it.
    const double roofline = static_cast<double>(bpt) * tg.stats.median / (bw.stats.median * 1e9);
    // Quantised weights multiply int8 codes (the int8 peak bounds them); plain float weights are
    // f32 FMAs (the f32 peak, 2 flops per multiply-accumulate).
    const double peak_macs = float_weights ? peak.f32_gflops / 2 : peak.int8_gmacs;
    const double compute =
        static_cast<double>(mpt) * pp.stats.median / std::max(peak_macs * 1e9, 1.0);
    const std::string pp_bound = float_weights
                                     ? "f32 " + fmt("%.0f", peak.f32_gflops) + " GFLOP/s, "
                                     : "int8 " + fmt("%.0f", peak.int8_gmacs) + " GMAC/s, ";

    std::vector<const engine::BenchResult*> results{&pp, &tg};
    for (const engine::BenchResult& r : batched) results.push_back(&r);
    for (size_t ri = 0; ri < results.size(); ++ri) {
      const engine::BenchResult* r = results[ri];
      const bool is_tg = r == &tg;
      // Batched decoding is compute bound from a few sequences on: set against the int8 peak.
      const double frac =
          r == &pp ? compute
                   : static_cast<double>(mpt) * r->stats.median / std::max(peak_macs * 1e9, 1.0);
      table += "| " + std::to_string(t) + " | " + r->test + " | " + fmt("%.2f", r->stats.mean) +
               " ± " + fmt("%.2f", r->stats.sd) + " | " + fmt("%.2f", r->stats.median) + " | ";
      table += is_tg ? "read " + fmt("%.2f", bw.stats.median) + " GB/s, " + human_bytes(bpt) +
                           "/token | " + fmt("%.1f%%", 100.0 * roofline) + " |\n"
                     : pp_bound + fmt("%.2f", static_cast<double>(mpt) / 1e9) + " GMAC/token | " +
                           fmt("%.1f%%", 100.0 * frac) + " |\n";
      ordered_json row{{"threads", t},
                       {"test", r->test},
                       {"n_tokens", r->n_tokens},
                       {"tokens_per_s", stats_json(r->stats, r->tps)},
                       {"seconds", r->secs}};
      if (a.profile) row["profile"] = is_tg ? tg_prof : ri < 2 ? pp_prof : batched_prof[ri - 2];
      if (is_tg) {
        row["bytes_per_token"] = bpt;
        row["bandwidth_gbps"] = stats_json(bw.stats, bw.gbps);
        row["roofline"] = roofline;
      } else {
        row["macs_per_token"] = mpt;
        row["int8_peak_gmacs"] = peak.int8_gmacs;
        row["f32_peak_gflops"] = peak.f32_gflops;
        row["peak"] = float_weights ? "f32" : "int8";
        row["peak_fraction"] = frac;
        if (ri >= 2) row["sequences"] = a.decode_batch[ri - 2];
      }
      rows.push_back(std::move(row));
    }
  }
  if (a.json) {
    ordered_json j;
    j["model"] = {{"path", a.model},
                  {"name", name},
                  {"architecture", m.hparams().arch},
                  {"types", types},
                  {"n_params", m.n_params()},
                  {"size_bytes", m.weight_bytes()},
                  {"bytes_per_token", bpt},
                  {"macs_per_token", mpt}};
    if (m.n_lora() > 0) j["lora"] = {{"adapters", a.lora.files}, {"scales", a.lora.scales}};
    j["kernels"] = {{"isa", isa}, {"packed_gemm", packed}};
    j["config"] = {{"n_prompt", cfg.n_prompt},
                   {"n_gen", cfg.n_gen},
                   {"n_batch", cfg.n_batch},
                   {"reps", cfg.reps},
                   {"warmup", cfg.warmup},
                   {"bandwidth_buffer_bytes", a.bw_mib << 20},
                   {"bandwidth_streams", a.bw_streams}};
    j["results"] = rows;
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::fputs(table.c_str(), stdout);
    if (a.profile) std::fputs(table_prof.c_str(), stdout);
  }
}

void bench(BenchArgs a) {
  if (a.threads.empty()) a.threads.push_back(default_threads());
  if (a.bandwidth) {
    run_bandwidth(a);
    return;
  }
  if (a.model.empty()) fail("bench: give -m MODEL, or --bandwidth for the memory probe alone");
  run_model(a);
}

}  // namespace

void add_bench_command(CLI::App& app) {
  auto a = std::make_shared<BenchArgs>();
  CLI::App* c = app.add_subcommand(
      "bench", "Measure prompt processing (pp) and generation (tg) speed, and memory bandwidth");
  auto* m = c->add_option("-m,--model", a->model, "Model file (any format brisk run accepts)");
  c->add_option("-p,--n-prompt", a->n_prompt, "Prompt tokens for the pp test")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  c->add_option("-n,--n-gen", a->n_gen, "Generated tokens for the tg test")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  c->add_option("-r,--reps", a->reps, "Measured repetitions of each test")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  c->add_option("--warmup", a->warmup, "Unmeasured repetitions before them")
      ->capture_default_str()
      ->check(CLI::Range(0, 1000));
  c->add_option("-t,--threads", a->threads,
                "Thread counts to test (repeatable or comma list, e.g. 1,2; default: all cores)")
      ->delimiter(',')
      ->check(CLI::Range(1, 1024));
  c->add_option("--decode-batch", a->decode_batch,
                "Also measure batched decoding as the server runs it: N sequences with -p prompt "
                "tokens each in a paged KV cache, -n steps of one token per sequence (comma list, "
                "e.g. 8,16; test tg<n>x<N>)")
      ->delimiter(',')
      ->check(CLI::Range(int64_t{1}, int64_t{4096}));
  c->add_option("--batch", a->batch, "Most prompt tokens per forward pass in pp")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  c->add_option("--bw-mib", a->bw_mib,
                "Bandwidth probe buffer in MiB (keep it well above the last-level cache)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  c->add_option("--bw-streams", a->bw_streams,
                "Sequential streams each probe thread reads at once (1 shows a naive single-stream "
                "read; the default matches what the decode kernels achieve)")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  c->add_flag("--bandwidth", a->bandwidth, "Only probe main-memory read bandwidth")->excludes(m);
  c->add_flag("--json", a->json, "Print one JSON document instead of a Markdown table");
  c->add_flag("--profile", a->profile,
              "Time each part of the forward pass and print where a token's time goes");
  add_lora_options(c, a->lora);
  c->callback([a] { bench(*a); });
}

}  // namespace brisk::cli
