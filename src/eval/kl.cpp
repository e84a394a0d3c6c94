#include "eval/kl.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/error.h"

namespace brisk::eval {
namespace {

constexpr char kMagic[4] = {'B', 'R', 'K', 'L'};
constexpr uint32_t kVersion = 1;
constexpr size_t kHeaderBytes = 48;

int64_t argmax(const float* z, int64_t V) {
  int64_t b = 0;
  for (int64_t i = 1; i < V; ++i)
    if (z[i] > z[b]) b = i;
  return b;
}

}  // namespace

double log_sum_exp(const float* z, int64_t n) {
  float mx = z[0];
  for (int64_t i = 1; i < n; ++i) mx = std::max(mx, z[i]);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(static_cast<double>(z[i] - mx));
  return static_cast<double>(mx) + std::log(sum);
}

uint64_t hash_tokens(std::span<const int32_t> tokens) {
  uint64_t h = 0xCBF29CE484222325ull;  // FNV-1a over the little-endian ids
  for (int32_t t : tokens)
    for (int k = 0; k < 4; ++k) {
      h ^= (static_cast<uint32_t>(t) >> (8 * k)) & 0xFFu;
      h *= 0x100000001B3ull;
    }
  return h;
}

struct LogprobWriter::Impl {
  AtomicFileWriter w;
  LogprobHeader h;
  uint64_t rows = 0;
  std::vector<float> buf;
  Impl(const std::string& path, const LogprobHeader& hh) : w(path), h(hh) {}
};

LogprobWriter::LogprobWriter(const std::string& path, const LogprobHeader& h)
    : impl_(std::make_unique<Impl>(path, h)) {
  check(h.n_vocab > 0, path, ": logits file needs a vocabulary");
  uint8_t hdr[kHeaderBytes] = {};
  std::memcpy(hdr, kMagic, 4);
  std::memcpy(hdr + 4, &kVersion, 4);
  std::memcpy(hdr + 8, &h.n_vocab, 4);
  std::memcpy(hdr + 16, &h.n_rows, 8);
  std::memcpy(hdr + 24, &h.ctx, 8);
  std::memcpy(hdr + 32, &h.stride, 8);
  std::memcpy(hdr + 40, &h.tokens_hash, 8);
  impl_->w.write(hdr, kHeaderBytes);
  impl_->buf.resize(h.n_vocab);
}

LogprobWriter::~LogprobWriter() = default;

void LogprobWriter::add(const float* logits) {
  add(logits, log_sum_exp(logits, impl_->h.n_vocab));
}

void LogprobWriter::add(const float* logits, double lse) {
  check(impl_->rows < impl_->h.n_rows, "logits file: more rows than announced");
  for (size_t i = 0; i < impl_->buf.size(); ++i)
    impl_->buf[i] = static_cast<float>(static_cast<double>(logits[i]) - lse);
  impl_->w.write(impl_->buf.data(), impl_->buf.size() * sizeof(float));
  ++impl_->rows;
}

void LogprobWriter::commit() {
  check(impl_->rows == impl_->h.n_rows, "logits file: ", impl_->rows, " rows written, ",
        impl_->h.n_rows, " announced");
  impl_->w.commit();
}

LogprobReader::LogprobReader(const std::string& path) : f_(MappedFile::open(path)) {
  const uint8_t* p = f_->data();
  check(f_->size() >= kHeaderBytes && std::memcmp(p, kMagic, 4) == 0, path,
        ": not a brisk logits file (written by brisk perplexity --save-logits)");
  uint32_t version = 0;
  std::memcpy(&version, p + 4, 4);
  check(version == kVersion, path, ": logits file version ", version, ", expected ", kVersion);
  std::memcpy(&h_.n_vocab, p + 8, 4);
  std::memcpy(&h_.n_rows, p + 16, 8);
  std::memcpy(&h_.ctx, p + 24, 8);
  std::memcpy(&h_.stride, p + 32, 8);
  std::memcpy(&h_.tokens_hash, p + 40, 8);
  check(h_.n_vocab > 0 && h_.n_rows < (uint64_t{1} << 40), path, ": corrupt logits header");
  const uint64_t want = kHeaderBytes + h_.n_rows * h_.n_vocab * sizeof(float);
  check(f_->size() == want, path, ": ", f_->size(), " bytes, the header announces ", want,
        " (truncated or corrupt)");
}

const float* LogprobReader::row(uint64_t i) const {
  check(i < h_.n_rows, "logits file: row ", i, " of ", h_.n_rows);
  return reinterpret_cast<const float*>(f_->data() + kHeaderBytes) + i * h_.n_vocab;
}

void KlAccumulator::add(const float* base, const float* logits, int32_t target) {
  add(base, logits, target, log_sum_exp(logits, V_));
}

void KlAccumulator::add(const float* base, const float* logits, int32_t target, double lse) {
  // log p_model = z - lse(z); KL = sum p_b (lp_b - (z - lse)).
  double kl = 0;
  for (int64_t i = 0; i < V_; ++i) {
    const double lb = base[i];
    const double pb = std::exp(lb);
    if (pb > 0) kl += pb * (lb - (static_cast<double>(logits[i]) - lse));
  }
  kl_.push_back(std::max(0.0, kl));  // rounding can make a ~0 divergence slightly negative
  base_nll_ -= base[target];
  agree_ += argmax(base, V_) == argmax(logits, V_);
}

KlStats KlAccumulator::result() const {
  KlStats s;
  s.n = static_cast<int64_t>(kl_.size());
  if (s.n == 0) return s;
  double sum = 0;
  for (double k : kl_) sum += k;
  s.kl_mean = sum / static_cast<double>(s.n);
  double s2 = 0;
  for (double k : kl_) s2 += (k - s.kl_mean) * (k - s.kl_mean);
  s.kl_stderr =
      s.n > 1 ? std::sqrt(s2 / static_cast<double>(s.n - 1) / static_cast<double>(s.n)) : 0.0;
  std::vector<double> v = kl_;
  std::sort(v.begin(), v.end());
  auto q = [&](double f) {
    return v[std::min(v.size() - 1,
                      static_cast<size_t>(f * static_cast<double>(v.size() - 1) + 0.5))];
  };
  s.kl_median = q(0.5);
  s.kl_p99 = q(0.99);
  s.kl_max = v.back();
  s.top1_agree = static_cast<double>(agree_) / static_cast<double>(s.n);
  s.base_mean_nll = base_nll_ / static_cast<double>(s.n);
  s.base_ppl = std::exp(s.base_mean_nll);
  return s;
}

}  // namespace brisk::eval
