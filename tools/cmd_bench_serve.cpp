// brisk bench-serve: load test of a running OpenAI-compatible server (brisk serve or another).
//
// Sends --requests streamed completions from --concurrency client threads. Every prompt is an
// array of exactly --prompt-len token ids (so lengths do not depend on a tokenizer); with
// --shared-prefix F the first F x prompt-len ids are the same in every request, the rest differ.
// Each request asks for --gen-len tokens with ignore_eos (a brisk extension) at temperature 0, so
// the work per request is fixed. Reports generated tokens/s and requests/s over the wall time,
// time to first token, time per output token and end-to-end latency (mean, p50, p99), errors,
// and the prefix-cache hit rate over the run (from /metrics, when the server has brisk's).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "cli.h"
#include "core/error.h"
#include "serve/client.h"

namespace brisk::cli {
namespace {

using nlohmann::json;
using nlohmann::ordered_json;

struct BenchServeArgs {
  std::string url = "http://127.0.0.1:8080", api_key, model;
  int concurrency = 8, requests = 64;
  int64_t prompt_len = 128, gen_len = 64;
  double shared_prefix = 0;
  uint64_t seed = 1;
  bool json = false;
};

struct Summary {
  double mean = 0, p50 = 0, p99 = 0;
};

// Linear interpolation between closest ranks.
double percentile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  const double pos = q * static_cast<double>(sorted.size() - 1);
  const size_t lo = static_cast<size_t>(pos);
  const size_t hi = std::min(lo + 1, sorted.size() - 1);
  return sorted[lo] + (pos - static_cast<double>(lo)) * (sorted[hi] - sorted[lo]);
}

Summary summarize(std::vector<double> v) {
  Summary s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  double sum = 0;
  for (double x : v) sum += x;
  s.mean = sum / static_cast<double>(v.size());
  s.p50 = percentile(v, 0.5);
  s.p99 = percentile(v, 0.99);
  return s;
}

uint64_t splitmix(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Token ids from the middle of the vocabulary: away from the control and byte tokens that most
// vocabularies put first.
std::vector<int32_t> make_prompt(int64_t len, int64_t shared, uint64_t seed, int request,
                                 int64_t n_vocab) {
  const int64_t lo = std::max<int64_t>(3, n_vocab / 8);
  const int64_t span = std::max<int64_t>(1, n_vocab / 2 - lo);
  std::vector<int32_t> ids;
  ids.reserve(static_cast<size_t>(len));
  uint64_t common = seed, own = seed ^ (0xA5A5A5A5ull * static_cast<uint64_t>(request + 1));
  for (int64_t i = 0; i < len; ++i) {
    uint64_t& s = i < shared ? common : own;
    ids.push_back(
        static_cast<int32_t>(lo + static_cast<int64_t>(splitmix(s) % static_cast<uint64_t>(span))));
  }
  return ids;
}

// Prefix-cache counters from brisk's /metrics; nullopt for servers without them.
std::optional<std::pair<double, double>> prefix_counters(const serve::ServerUrl& u,
                                                         const std::string& key) {
  serve::HttpReply r = serve::http_get(u, "/metrics", key);
  if (r.status != 200) return std::nullopt;
  auto q = serve::prometheus_value(r.body, "brisk_prefix_cache_queries_total");
  auto h = serve::prometheus_value(r.body, "brisk_prefix_cache_hits_total");
  if (!q || !h) return std::nullopt;
  return std::make_pair(*q, *h);
}

std::string fmt(const char* f, double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, x);
  return buf;
}

void bench_serve(const BenchServeArgs& a) {
  check(a.shared_prefix >= 0 && a.shared_prefix <= 1, "--shared-prefix must be in [0, 1], got ",
        a.shared_prefix);
  const serve::ServerUrl url = serve::parse_server_url(a.url);

  // The model, its vocabulary and context, from /v1/models.
  serve::HttpReply models = serve::http_get(url, "/v1/models", a.api_key);
  if (models.status == 0) fail("bench-serve: cannot reach ", a.url, ": ", models.error);
  if (models.status != 200)
    fail("bench-serve: GET /v1/models answered HTTP ", models.status, ": ",
         models.body.substr(0, 200));
  const json mj = json::parse(models.body, nullptr, false);
  if (mj.is_discarded() || !mj.contains("data") || !mj["data"].is_array() || mj["data"].empty())
    fail("bench-serve: GET /v1/models returned no model");
  const json& m0 = mj["data"][0];
  const std::string model = !a.model.empty() ? a.model : m0.value("id", std::string());
  const int64_t n_vocab = m0.value("vocab_size", int64_t{256});
  const int64_t max_len = m0.value("max_model_len", int64_t{0});
  if (max_len > 0 && a.prompt_len + a.gen_len > max_len)
    fail("bench-serve: --prompt-len + --gen-len = ", a.prompt_len + a.gen_len,
         " exceeds the model's context of ", max_len);

  const int64_t shared = static_cast<int64_t>(a.shared_prefix * static_cast<double>(a.prompt_len));
  const auto before = prefix_counters(url, a.api_key);
  std::fprintf(stderr,
               "bench-serve: %s, model %s, %d requests, concurrency %d, prompt %lld tokens "
               "(%lld shared), %lld generated each\n",
               a.url.c_str(), model.c_str(), a.requests, a.concurrency,
               static_cast<long long>(a.prompt_len), static_cast<long long>(shared),
               static_cast<long long>(a.gen_len));

  std::vector<serve::StreamResult> results(static_cast<size_t>(a.requests));
  std::atomic<int> next{0};
  std::atomic<int> finished{0};
  std::mutex log_mu;
  auto worker = [&] {
    for (int i = next.fetch_add(1); i < a.requests; i = next.fetch_add(1)) {
      ordered_json body{{"model", model},
                        {"prompt", make_prompt(a.prompt_len, shared, a.seed, i, n_vocab)},
                        {"max_tokens", a.gen_len},
                        {"temperature", 0},
                        {"ignore_eos", true},
                        {"stream", true},
                        {"stream_options", {{"include_usage", true}}}};
      results[static_cast<size_t>(i)] =
          serve::stream_completion(url, "/v1/completions", a.api_key, body.dump());
      const int done = finished.fetch_add(1) + 1;
      if (done % std::max(10, a.requests / 10) == 0 || done == a.requests) {
        std::lock_guard<std::mutex> lk(log_mu);
        std::fprintf(stderr, "bench-serve: %d / %d done\n", done, a.requests);
      }
    }
  };
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (int t = 0; t < std::min(a.concurrency, a.requests); ++t) threads.emplace_back(worker);
  for (std::thread& t : threads) t.join();
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const auto after = prefix_counters(url, a.api_key);

  std::vector<double> ttft, tpot, e2e;
  int64_t gen_tokens = 0, prompt_tokens = 0, cached_tokens = 0;
  int errors = 0;
  std::string first_error;
  for (const serve::StreamResult& r : results) {
    if (!r.error.empty()) {
      if (errors++ == 0) first_error = r.error;
      continue;
    }
    gen_tokens += r.completion_tokens;
    prompt_tokens += r.prompt_tokens;
    cached_tokens += r.cached_tokens;
    ttft.push_back(r.ttft_s);
    e2e.push_back(r.e2e_s);
    if (r.completion_tokens > 1)
      tpot.push_back((r.e2e_s - r.ttft_s) / static_cast<double>(r.completion_tokens - 1));
  }
  const int ok = a.requests - errors;
  const double tok_s = wall > 0 ? static_cast<double>(gen_tokens) / wall : 0;
  const double req_s = wall > 0 ? ok / wall : 0;
  const Summary st = summarize(ttft), sp = summarize(tpot), se = summarize(e2e);
  std::optional<double> hit_rate;
  if (before && after && after->first > before->first)
    hit_rate = (after->second - before->second) / (after->first - before->first);

  if (a.json) {
    auto sj = [](const Summary& s) {
      return ordered_json{{"mean", s.mean}, {"p50", s.p50}, {"p99", s.p99}};
    };
    ordered_json j{
        {"url", a.url},
        {"model", model},
        {"config",
         {{"concurrency", a.concurrency},
          {"requests", a.requests},
          {"prompt_len", a.prompt_len},
          {"gen_len", a.gen_len},
          {"shared_prefix", a.shared_prefix},
          {"shared_prefix_tokens", shared}}},
        {"wall_s", wall},
        {"completed", ok},
        {"errors", errors},
        {"first_error", first_error.empty() ? ordered_json(nullptr) : ordered_json(first_error)},
        {"generated_tokens", gen_tokens},
        {"prompt_tokens", prompt_tokens},
        {"cached_prompt_tokens", cached_tokens},
        {"output_tokens_per_s", tok_s},
        {"requests_per_s", req_s},
        {"ttft_s", sj(st)},
        {"tpot_s", sj(sp)},
        {"e2e_s", sj(se)},
        {"prefix_cache_hit_rate", hit_rate ? ordered_json(*hit_rate) : ordered_json(nullptr)}};
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    auto ms = [](double s) { return fmt("%.1f", s * 1e3); };
    std::string t = "| metric | value |\n| --- | --: |\n";
    t += "| requests ok / errors | " + std::to_string(ok) + " / " + std::to_string(errors) + " |\n";
    t += "| wall time | " + fmt("%.2f s", wall) + " |\n";
    t += "| generated tokens/s | " + fmt("%.1f", tok_s) + " |\n";
    t += "| requests/s | " + fmt("%.2f", req_s) + " |\n";
    t += "| TTFT mean / p50 / p99 (ms) | " + ms(st.mean) + " / " + ms(st.p50) + " / " + ms(st.p99) +
         " |\n";
    t += "| TPOT mean / p50 / p99 (ms) | " + ms(sp.mean) + " / " + ms(sp.p50) + " / " + ms(sp.p99) +
         " |\n";
    t += "| e2e latency mean / p50 / p99 (ms) | " + ms(se.mean) + " / " + ms(se.p50) + " / " +
         ms(se.p99) + " |\n";
    t += "| prefix-cache hit rate | " +
         (hit_rate ? fmt("%.1f%%", 100.0 * *hit_rate) : std::string("n/a")) + " |\n";
    std::fputs(t.c_str(), stdout);
    if (errors > 0) std::fprintf(stderr, "bench-serve: first error: %s\n", first_error.c_str());
  }
  if (ok == 0) fail("bench-serve: every request failed (first error: ", first_error, ")");
}

}  // namespace

void add_bench_serve_command(CLI::App& app) {
  auto a = std::make_shared<BenchServeArgs>();
  CLI::App* c = app.add_subcommand(
      "bench-serve", "Load-test a running server: throughput, TTFT, TPOT, latency percentiles");
  c->add_option("--url", a->url, "Server root URL")->capture_default_str();
  c->add_option("--api-key", a->api_key, "Bearer key, when the server requires one");
  c->add_option("--model", a->model, "Model id to request (default: the server's first)");
  c->add_option("-c,--concurrency", a->concurrency, "Requests in flight at once")
      ->capture_default_str()
      ->check(CLI::Range(1, 4096));
  c->add_option("-n,--requests", a->requests, "Requests in all")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  c->add_option("-p,--prompt-len", a->prompt_len, "Prompt tokens per request (exact)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  c->add_option("-g,--gen-len", a->gen_len, "Generated tokens per request (exact: ignore_eos)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  c->add_option("--shared-prefix", a->shared_prefix,
                "Fraction of each prompt common to all requests (prefix-cache test)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  c->add_option("--seed", a->seed, "Seed of the synthetic prompts")->capture_default_str();
  c->add_flag("--json", a->json, "Print one JSON document instead of a Markdown table");
  c->callback([a] { bench_serve(*a); });
}

}  // namespace brisk::cli
