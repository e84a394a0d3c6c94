#include "train/trainer.h"

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace brisk::train {
namespace {

constexpr char kMagic[8] = {'B', 'R', 'I', 'S', 'K', 'C', 'K', 'P'};
constexpr uint32_t kVersion = 1;

uint64_t fnv1a(const uint8_t* p, size_t n, uint64_t h = 1469598103934665603ull) {
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

std::string to_hex(const std::vector<uint8_t>& v) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (uint8_t b : v) {
    s.push_back(d[b >> 4]);
    s.push_back(d[b & 15]);
  }
  return s;
}

std::vector<uint8_t> from_hex(const std::string& s, const std::string& what) {
  check(s.size() % 2 == 0, what, ": bad hex string");
  std::vector<uint8_t> v(s.size() / 2);
  auto nib = [&](char c) -> uint8_t {
    if (c >= '0' && c <= '9') return static_cast<uint8_t>(c - '0');
    if (c >= 'a' && c <= 'f') return static_cast<uint8_t>(c - 'a' + 10);
    fail(what, ": bad hex digit");
  };
  for (size_t i = 0; i < v.size(); ++i)
    v[i] = static_cast<uint8_t>(nib(s[2 * i]) << 4 | nib(s[2 * i + 1]));
  return v;
}

void append(std::vector<uint8_t>& out, const void* p, size_t n) {
  const uint8_t* b = static_cast<const uint8_t*>(p);
  out.insert(out.end(), b, b + n);
}

void append_floats(std::vector<uint8_t>& out, const float* p, size_t n) {
  const uint64_t cnt = n;
  append(out, &cnt, 8);
  append(out, p, n * sizeof(float));
}

}  // namespace

Trainer::Trainer(LlamaTrainer<float>& model, std::vector<float> params, const OptimizerConfig& opt,
                 const LoopConfig& loop, BatchSource& source)
    : model_(model), params_(std::move(params)), opt_cfg_(opt), loop_(loop), source_(source) {
  check(params_.size() == model_.layout().total(), "trainer: ", params_.size(),
        " parameters given for a model of ", model_.layout().total());
  check(loop.micro_batches > 0 || loop.global_tokens > 0,
        "trainer: need micro_batches > 0 or global_tokens > 0");
  grads_.assign(params_.size(), 0.0f);
  std::vector<DecayRange> ranges;
  for (const ParamInfo& p : model_.layout().params())
    ranges.push_back({p.offset, p.offset + p.size(), p.decay});
  opt_ = std::make_unique<Optimizer>(opt, params_.size(), std::move(ranges));
  loss_scale_ = loop.precision == Precision::F16 ? loop.init_loss_scale : 1.0;
}

void Trainer::set_adapter_params(float* adapter_params, float* adapter_grads, size_t n,
                                 std::vector<DecayRange> ranges) {
  adapter_ = adapter_params;
  adapter_grads_ = adapter_grads;
  n_adapter_ = n;
  grads_.clear();
  grads_.shrink_to_fit();
  opt_ = std::make_unique<Optimizer>(opt_cfg_, n, std::move(ranges));
}

StepStats Trainer::step() {
  const auto t0 = std::chrono::steady_clock::now();
  StepStats st;
  // The step's micro-batches first: the mean needs the loss-token count of all of them.
  std::vector<Batch> mbs;
  int64_t tokens = 0, loss_tokens = 0;
  do {
    mbs.push_back(source_.next());
    tokens += mbs.back().n_tokens();
    loss_tokens += mbs.back().n_loss_tokens();
  } while (loop_.global_tokens > 0 ? tokens < loop_.global_tokens
                                   : static_cast<int64_t>(mbs.size()) < loop_.micro_batches);
  check(loss_tokens > 0, "train: a step's batches have no token to predict");

  float* g = train_grads();
  std::fill(g, g + n_train(), 0.0f);
  StepOptions o;
  o.checkpointing = loop_.checkpointing;
  o.precision = loop_.precision;
  o.loss_scale = loss_scale_;
  o.denominator = static_cast<double>(loss_tokens);
  o.train_base = adapter_ == nullptr;
  double loss = 0, kl = 0;
  uint64_t micro = 0;
  for (const Batch& b : mbs) {
    if (model_.hook()) model_.hook()->set_step(static_cast<uint64_t>(step_), micro++);
    if (teacher_) {
      teacher_(b, loop_.kd_tau, teacher_probs_);
      o.teacher_probs = teacher_probs_.data();
      o.kd_alpha = loop_.kd_alpha;
      o.kd_tau = loop_.kd_tau;
    }
    const StepResult r = model_.step(b, params_.data(), adapter_ ? nullptr : grads_.data(), o);
    loss += r.loss_sum;
    kl += r.kl_sum;
    peak_act_ = std::max(peak_act_, model_.activation_bytes());
  }
  ++step_;
  st.step = step_;
  st.loss = loss / static_cast<double>(loss_tokens);
  st.kl = kl / static_cast<double>(loss_tokens);
  st.tokens = tokens;
  st.loss_tokens = loss_tokens;
  st.micro_batches = static_cast<int64_t>(mbs.size());
  st.loss_scale = loss_scale_;
  ThreadPool& pool = model_.pool();
  if (!all_finite(g, n_train(), pool)) {
    check(loop_.precision == Precision::F16, "train: the gradient is not finite at step ", step_,
          " (loss ", st.loss, "): training diverged; lower the learning rate");
    // fp16 overflow: skip the update and halve the scale (dynamic loss scaling).
    st.skipped = true;
    loss_scale_ = std::max(1.0, loss_scale_ / 2);
    good_steps_ = 0;
  } else {
    if (loss_scale_ != 1.0) scale_grads(g, n_train(), static_cast<float>(1.0 / loss_scale_), pool);
    st.grad_norm = global_norm(g, n_train(), pool);
    if (opt_cfg_.grad_clip > 0 && st.grad_norm > opt_cfg_.grad_clip)
      scale_grads(g, n_train(), static_cast<float>(opt_cfg_.grad_clip / st.grad_norm), pool);
    st.lr = lr_at(opt_cfg_, opt_->steps());
    opt_->update(train_params(), g, st.lr, pool);
    if (loop_.precision == Precision::F16 && ++good_steps_ >= loop_.loss_scale_growth) {
      loss_scale_ *= 2;
      good_steps_ = 0;
    }
  }
  st.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return st;
}

double Trainer::evaluate(BatchSource& val, int64_t n_batches) {
  const std::vector<uint8_t> keep = val.state();
  StepOptions o;
  o.grad = false;
  o.precision = loop_.precision;
  double loss = 0;
  int64_t n = 0;
  for (int64_t i = 0; i < n_batches; ++i) {
    const StepResult r = model_.step(val.next(), params_.data(), nullptr, o);
    loss += r.loss_sum;
    n += r.n_counted;
  }
  val.restore(keep);
  return n > 0 ? loss / static_cast<double>(n) : 0.0;
}

void Trainer::save(const std::string& path, const std::string& config_text) const {
  nlohmann::json h;
  h["step"] = step_;
  h["loss_scale"] = loss_scale_;
  h["good_steps"] = good_steps_;
  h["optimizer"] = optimizer_name(opt_cfg_.kind);
  h["optimizer_steps"] = opt_->steps();
  h["n_params"] = params_.size();
  h["n_adapter"] = n_adapter_;
  h["source_state"] = to_hex(source_.state());
  h["config"] = config_text;
  const std::string hs = h.dump();
  std::vector<uint8_t> out;
  append(out, kMagic, 8);
  append(out, &kVersion, 4);
  const uint64_t hl = hs.size();
  append(out, &hl, 8);
  append(out, hs.data(), hs.size());
  append_floats(out, params_.data(), params_.size());
  if (adapter_) append_floats(out, adapter_, n_adapter_);
  Optimizer& opt = *opt_;
  append_floats(out, opt.m().data(), opt.m().size());
  append_floats(out, opt.v().data(), opt.v().size());
  const uint64_t sum = fnv1a(out.data(), out.size());
  append(out, &sum, 8);

  // Atomic: a temporary file in the same directory, fsync, rename, fsync of the directory. A
  // crash leaves either the old checkpoint or the new one, never a torn file.
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  check(fd >= 0, path, ": cannot create checkpoint: ", std::strerror(errno));
  size_t off = 0;
  while (off < out.size()) {
    const ssize_t w = ::write(fd, out.data() + off, out.size() - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      const int e = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      fail(path, ": writing checkpoint failed: ", std::strerror(e));
    }
    off += static_cast<size_t>(w);
  }
  const bool synced = ::fsync(fd) == 0;
  ::close(fd);
  if (!synced) {
    ::unlink(tmp.c_str());
    fail(path, ": fsync of checkpoint failed");
  }
  check(std::rename(tmp.c_str(), path.c_str()) == 0, path,
        ": rename failed: ", std::strerror(errno));
  std::filesystem::path dir = std::filesystem::path(path).parent_path();
  if (dir.empty()) dir = ".";
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

void Trainer::load(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  check(f != nullptr, path, ": cannot open checkpoint: ", std::strerror(errno));
  std::vector<uint8_t> d;
  uint8_t buf[1 << 16];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) d.insert(d.end(), buf, buf + n);
  std::fclose(f);
  check(d.size() >= 8 + 4 + 8 + 8 && std::memcmp(d.data(), kMagic, 8) == 0, path,
        ": not a brisk checkpoint");
  uint64_t sum;
  std::memcpy(&sum, d.data() + d.size() - 8, 8);
  check(fnv1a(d.data(), d.size() - 8) == sum, path, ": checkpoint is corrupt (checksum mismatch)");
  size_t pos = 8;
  auto take = [&](void* dst, size_t len) {
    check(pos + len <= d.size() - 8, path, ": checkpoint is truncated");
    std::memcpy(dst, d.data() + pos, len);
    pos += len;
  };
  uint32_t ver;
  take(&ver, 4);
  check(ver == kVersion, path, ": checkpoint version ", ver, " (this brisk reads ", kVersion, ")");
  uint64_t hl;
  take(&hl, 8);
  check(hl <= d.size(), path, ": checkpoint header is truncated");
  std::string hs(hl, '\0');
  take(hs.data(), hl);
  nlohmann::json h;
  try {
    h = nlohmann::json::parse(hs);
  } catch (const std::exception& e) {
    fail(path, ": checkpoint header: ", e.what());
  }
  auto floats = [&](float* dst, size_t expect, const char* what) {
    uint64_t cnt;
    take(&cnt, 8);
    check(cnt == expect, path, ": ", what, " has ", cnt, " values, this run expects ", expect,
          " (different model shape or optimizer?)");
    take(dst, expect * sizeof(float));
  };
  try {
    check(h.at("optimizer").get<std::string>() == optimizer_name(opt_cfg_.kind), path,
          ": checkpoint was written with optimizer ", h.at("optimizer").get<std::string>());
    floats(params_.data(), params_.size(), "parameters");
    if (adapter_) floats(adapter_, n_adapter_, "adapter parameters");
    floats(opt_->m().data(), opt_->m().size(), "first moment");
    floats(opt_->v().data(), opt_->v().size(), "second moment");
    step_ = h.at("step").get<int64_t>();
    loss_scale_ = h.at("loss_scale").get<double>();
    good_steps_ = h.at("good_steps").get<int64_t>();
    opt_->set_steps(h.at("optimizer_steps").get<int64_t>());
    source_.restore(from_hex(h.at("source_state").get<std::string>(), path));
  } catch (const nlohmann::json::exception& e) {
    fail(path, ": checkpoint header: ", e.what());
  }
}

}  // namespace brisk::train
