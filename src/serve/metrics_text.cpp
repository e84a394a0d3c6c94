#include "serve/metrics_text.h"

#include <charconv>
#include <cmath>

namespace brisk::serve {
namespace {

std::string num(double x) {
  if (std::isnan(x)) return "NaN";
  if (std::isinf(x)) return x > 0 ? "+Inf" : "-Inf";
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, x);
  return std::string(buf, r.ptr);
}

void header(std::string& out, const std::string& name, const char* type, const char* help) {
  out += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
}

void gauge(std::string& out, const char* name, double v, const char* help) {
  const std::string n = std::string("brisk_") + name;
  header(out, n, "gauge", help);
  out += n + " " + num(v) + "\n";
}

void counter(std::string& out, const char* name, uint64_t v, const char* help) {
  const std::string n = std::string("brisk_") + name + "_total";
  header(out, n, "counter", help);
  out += n + " " + std::to_string(v) + "\n";
}

void histogram(std::string& out, const char* name, const engine::Histogram& h, const char* help) {
  const std::string n = std::string("brisk_") + name;
  header(out, n, "histogram", help);
  for (size_t i = 0; i < h.bounds.size(); ++i) {
    const uint64_t c = i < h.counts.size() ? h.counts[i] : h.count;
    out += n + "_bucket{le=\"" + num(h.bounds[i]) + "\"} " + std::to_string(c) + "\n";
  }
  out += n + "_bucket{le=\"+Inf\"} " + std::to_string(h.count) + "\n";
  out += n + "_sum " + num(h.sum) + "\n";
  out += n + "_count " + std::to_string(h.count) + "\n";
}

}  // namespace

std::string prometheus_text(const engine::MetricsSnapshot& m) {
  std::string out;
  out.reserve(4096);
  gauge(out, "requests_running", static_cast<double>(m.running),
        "Requests being processed (prompt or decoding).");
  gauge(out, "requests_waiting", static_cast<double>(m.waiting),
        "Requests queued, waiting for KV blocks or a batch slot.");
  gauge(out, "kv_blocks_used", static_cast<double>(m.kv_blocks_used),
        "KV cache blocks held by requests.");
  gauge(out, "kv_blocks_total", static_cast<double>(m.kv_blocks_total), "KV cache blocks in all.");
  gauge(out, "prefix_cache_hit_rate",
        m.prefix_queries > 0
            ? static_cast<double>(m.prefix_hits) / static_cast<double>(m.prefix_queries)
            : 0.0,
        "Fraction of prompt tokens found in the prefix cache, since start.");
  counter(out, "prefix_cache_queries", m.prefix_queries,
          "Prompt tokens looked up in the prefix cache.");
  counter(out, "prefix_cache_hits", m.prefix_hits, "Prompt tokens found in the prefix cache.");
  counter(out, "prompt_tokens", m.prompt_tokens, "Prompt tokens processed.");
  counter(out, "generation_tokens", m.generated_tokens, "Tokens generated.");
  counter(out, "requests_finished", m.requests_finished,
          "Requests finished normally (stop or length).");
  counter(out, "requests_aborted", m.requests_aborted,
          "Requests cancelled (client gone, shutdown).");
  counter(out, "requests_rejected", m.requests_rejected,
          "Requests refused at submission (invalid, too long, queue full, draining).");
  counter(out, "preemptions", m.preemptions,
          "Requests preempted to free KV blocks (recomputed later).");
  histogram(out, "time_to_first_token_seconds", m.ttft,
            "Time from arrival to the first generated token.");
  histogram(out, "time_per_output_token_seconds", m.tpot,
            "Time between consecutive generated tokens.");
  histogram(out, "e2e_request_latency_seconds", m.e2e, "Time from arrival to the last token.");
  return out;
}

}  // namespace brisk::serve
