// Prometheus text exposition of the engine's metrics (serve/metrics_text.h), read back with the
// bench client's parser (serve/client.h).
#include <gtest/gtest.h>

#include <sstream>

#include "serve/client.h"
#include "serve/metrics_text.h"

namespace brisk::serve {
namespace {

engine::MetricsSnapshot sample() {
  engine::MetricsSnapshot m;
  m.running = 3;
  m.waiting = 2;
  m.kv_blocks_total = 100;
  m.kv_blocks_used = 40;
  m.prefix_queries = 200;
  m.prefix_hits = 50;
  m.prompt_tokens = 1234;
  m.generated_tokens = 567;
  m.requests_finished = 9;
  m.requests_aborted = 1;
  m.requests_rejected = 4;
  m.preemptions = 2;
  m.ttft.bounds = {0.005, 0.1, 1};
  m.ttft.counts = {1, 5, 7};
  m.ttft.count = 8;
  m.ttft.sum = 3.25;
  return m;
}

TEST(ServeMetrics, GaugesAndCounters) {
  const std::string t = prometheus_text(sample());
  auto v = [&](const char* name) { return prometheus_value(t, name); };
  EXPECT_EQ(v("brisk_requests_running"), 3);
  EXPECT_EQ(v("brisk_requests_waiting"), 2);
  EXPECT_EQ(v("brisk_kv_blocks_used"), 40);
  EXPECT_EQ(v("brisk_kv_blocks_total"), 100);
  EXPECT_EQ(v("brisk_prefix_cache_hit_rate"), 0.25);
  EXPECT_EQ(v("brisk_prefix_cache_queries_total"), 200);
  EXPECT_EQ(v("brisk_prefix_cache_hits_total"), 50);
  EXPECT_EQ(v("brisk_prompt_tokens_total"), 1234);
  EXPECT_EQ(v("brisk_generation_tokens_total"), 567);
  EXPECT_EQ(v("brisk_requests_finished_total"), 9);
  EXPECT_EQ(v("brisk_requests_aborted_total"), 1);
  EXPECT_EQ(v("brisk_requests_rejected_total"), 4);
  EXPECT_EQ(v("brisk_preemptions_total"), 2);
  EXPECT_FALSE(v("brisk_no_such_metric"));
}

TEST(ServeMetrics, Histogram) {
  const std::string t = prometheus_text(sample());
  const char* want =
      "# TYPE brisk_time_to_first_token_seconds histogram\n"
      "brisk_time_to_first_token_seconds_bucket{le=\"0.005\"} 1\n"
      "brisk_time_to_first_token_seconds_bucket{le=\"0.1\"} 5\n"
      "brisk_time_to_first_token_seconds_bucket{le=\"1\"} 7\n"
      "brisk_time_to_first_token_seconds_bucket{le=\"+Inf\"} 8\n"
      "brisk_time_to_first_token_seconds_sum 3.25\n"
      "brisk_time_to_first_token_seconds_count 8\n";
  EXPECT_NE(t.find(want), std::string::npos) << t;
  // Empty histograms still expose +Inf, _sum and _count.
  EXPECT_NE(t.find("brisk_e2e_request_latency_seconds_bucket{le=\"+Inf\"} 0\n"), std::string::npos);
  EXPECT_EQ(prometheus_value(t, "brisk_time_per_output_token_seconds_count"), 0);
}

TEST(ServeMetrics, WellFormed) {
  // Every line: a comment (# HELP / # TYPE) or "name[{labels}] value"; every series has a TYPE
  // before its samples; the text ends with a newline.
  const std::string t = prometheus_text(sample());
  ASSERT_FALSE(t.empty());
  EXPECT_EQ(t.back(), '\n');
  std::istringstream in(t);
  std::string line, typed;
  int samples = 0;
  while (std::getline(in, line)) {
    ASSERT_FALSE(line.empty());
    if (line.rfind("# HELP ", 0) == 0) continue;
    if (line.rfind("# TYPE ", 0) == 0) {
      std::istringstream ls(line.substr(7));
      std::string type;
      ls >> typed >> type;
      EXPECT_TRUE(type == "gauge" || type == "counter" || type == "histogram") << line;
      continue;
    }
    ASSERT_EQ(line.rfind(typed, 0), 0u) << "sample before its TYPE: " << line;
    const size_t sp = line.rfind(' ');
    ASSERT_NE(sp, std::string::npos);
    const std::string value = line.substr(sp + 1);
    EXPECT_NO_THROW((void)std::stod(value)) << line;
    ++samples;
  }
  EXPECT_GT(samples, 20);
}

TEST(ServeMetrics, NoQueriesMeansZeroHitRate) {
  engine::MetricsSnapshot m;
  EXPECT_EQ(prometheus_value(prometheus_text(m), "brisk_prefix_cache_hit_rate"), 0);
}

}  // namespace
}  // namespace brisk::serve
