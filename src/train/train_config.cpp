#include "train/train_config.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace brisk::train {
namespace {

std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return "";
  const size_t e = s.find_last_not_of(" \t\r");
  return s.substr(b, e - b + 1);
}

}  // namespace

ConfigFile ConfigFile::parse(const std::string& text, const std::string& name) {
  ConfigFile c;
  c.name_ = name;
  c.text_ = text;
  std::istringstream in(text);
  std::string line, section;
  int no = 0;
  while (std::getline(in, line)) {
    ++no;
    const size_t hash = line.find('#');
    if (hash != std::string::npos) line = line.substr(0, hash);
    line = trim(line);
    if (line.empty()) continue;
    if (line.front() == '[') {
      check(line.back() == ']' && line.size() > 2, name, ":", no, ": malformed section header '",
            line, "'");
      section = trim(line.substr(1, line.size() - 2));
      check(section == "model" || section == "data" || section == "optim" || section == "train" ||
                section == "lora" || section == "distill",
            name, ":", no, ": unknown section [", section,
            "] (model, data, optim, train, lora, distill)");
      continue;
    }
    const size_t eq = line.find('=');
    check(eq != std::string::npos, name, ":", no, ": expected 'key = value', got '", line, "'");
    check(!section.empty(), name, ":", no, ": key outside a [section]");
    const std::string key = trim(line.substr(0, eq)), value = trim(line.substr(eq + 1));
    check(!key.empty(), name, ":", no, ": empty key");
    const std::string full = section + "." + key;
    check(c.kv_.count(full) == 0, name, ":", no, ": '", full, "' is set twice");
    c.kv_[full] = {value, no};
  }
  return c;
}

ConfigFile ConfigFile::load(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  check(f.good(), path, ": cannot open the config file");
  std::stringstream ss;
  ss << f.rdbuf();
  return parse(ss.str(), path);
}

std::string ConfigFile::str(const std::string& key, const std::string& def) const {
  used_[key] = true;
  auto it = kv_.find(key);
  return it == kv_.end() ? def : it->second.first;
}

int64_t ConfigFile::integer(const std::string& key, int64_t def, int64_t lo, int64_t hi) const {
  used_[key] = true;
  auto it = kv_.find(key);
  if (it == kv_.end()) return def;
  const std::string& v = it->second.first;
  char* end = nullptr;
  errno = 0;
  const long long x = std::strtoll(v.c_str(), &end, 10);
  check(!v.empty() && *end == '\0' && errno == 0, name_, ":", it->second.second, ": ", key, " = '",
        v, "' is not an integer");
  check(x >= lo && x <= hi, name_, ":", it->second.second, ": ", key, " = ", x, " is outside [", lo,
        ", ", hi, "]");
  return x;
}

double ConfigFile::number(const std::string& key, double def, double lo, double hi) const {
  used_[key] = true;
  auto it = kv_.find(key);
  if (it == kv_.end()) return def;
  const std::string& v = it->second.first;
  char* end = nullptr;
  const double x = std::strtod(v.c_str(), &end);
  check(!v.empty() && *end == '\0' && std::isfinite(x), name_, ":", it->second.second, ": ", key,
        " = '", v, "' is not a number");
  check(x >= lo && x <= hi, name_, ":", it->second.second, ": ", key, " = ", x, " is outside [", lo,
        ", ", hi, "]");
  return x;
}

bool ConfigFile::boolean(const std::string& key, bool def) const {
  used_[key] = true;
  auto it = kv_.find(key);
  if (it == kv_.end()) return def;
  const std::string& v = it->second.first;
  if (v == "true" || v == "on" || v == "yes" || v == "1") return true;
  if (v == "false" || v == "off" || v == "no" || v == "0") return false;
  fail(name_, ":", it->second.second, ": ", key, " = '", v, "' is not true/false");
}

void ConfigFile::check_all_used() const {
  for (const auto& [k, v] : kv_)
    check(used_.count(k) != 0, name_, ":", v.second, ": unknown key '", k, "'");
}

TrainConfig read_train_config(const ConfigFile& f) {
  TrainConfig c;
  c.text = f.text();
  ModelShape& s = c.shape;
  const std::string preset = f.str("model.preset", "");
  if (!preset.empty())
    check(train_preset(preset, s), f.name(), ": unknown model.preset '", preset,
          "' (gpt2-124m, default, tiny)");
  c.init = f.str("model.init", "");
  s.dim = f.integer("model.dim", s.dim, 2, 1 << 16);
  s.layers = f.integer("model.layers", s.layers, 1, 1024);
  s.heads = f.integer("model.heads", s.heads, 1, 1024);
  s.kv_heads = f.integer("model.kv_heads", s.kv_heads, 1, 1024);
  s.ffn = f.integer("model.ffn", s.ffn, 1, 1 << 18);
  s.context = f.integer("model.context", s.context, 2, 1 << 20);
  s.rope_base = f.number("model.rope_base", s.rope_base, 1.0001, 1e9);
  s.norm_eps = f.number("model.norm_eps", s.norm_eps, 1e-12, 1e-1);
  s.tied = f.boolean("model.tied", s.tied);

  c.tokenizer = f.str("data.tokenizer", "");
  c.train_data = f.str("data.train", "");
  c.val_data = f.str("data.val", "");
  const std::string mode = f.str("data.mode", "windows");
  check(mode == "windows" || mode == "budget", f.name(), ": data.mode '", mode,
        "' (windows or budget)");
  c.budget_mode = mode == "budget";
  c.seq_len = f.integer("data.seq_len", c.seq_len, 1, 1 << 20);
  c.batch_size = f.integer("data.batch_size", c.batch_size, 1, 1 << 16);
  c.token_budget = f.integer("data.token_budget", c.token_budget, 2, 1 << 24);
  c.max_seq_len = f.integer("data.max_seq_len", c.max_seq_len, 1, 1 << 20);
  check(!c.train_data.empty(), f.name(), ": data.train is required");

  OptimizerConfig& o = c.optim;
  o.kind = parse_optimizer(f.str("optim.optimizer", "adamw"));
  o.lr = f.number("optim.lr", o.kind == OptimizerKind::Lion ? 1e-4 : 1e-3, 1e-12, 10);
  o.min_lr = f.number("optim.min_lr", o.lr / 10, 0, o.lr);
  o.warmup_steps = f.integer("optim.warmup", 100, 0, 1 << 30);
  o.beta1 = f.number("optim.beta1", 0.9, 0, 0.999999);
  o.beta2 = f.number("optim.beta2", o.kind == OptimizerKind::Lion ? 0.99 : 0.95, 0, 0.999999);
  o.eps = f.number("optim.eps", 1e-8, 1e-30, 1);
  o.weight_decay = f.number("optim.weight_decay", 0.1, 0, 10);
  o.grad_clip = f.number("optim.grad_clip", 1.0, 0, 1e6);

  c.steps = f.integer("train.steps", c.steps, 1, 1LL << 40);
  o.total_steps = c.steps;
  c.micro_batches = f.integer("train.micro_batches", c.micro_batches, 1, 1 << 20);
  c.global_tokens = f.integer("train.global_tokens", 0, 0, 1LL << 40);
  c.precision = parse_precision(f.str("train.precision", "fp32"));
  c.checkpointing = f.boolean("train.checkpointing", false);
  c.seed = static_cast<uint64_t>(f.integer("train.seed", 1, 0, INT64_MAX));
  c.threads = static_cast<int>(f.integer("train.threads", 0, 0, 1024));
  c.log_interval = f.integer("train.log_interval", c.log_interval, 1, 1LL << 40);
  c.eval_interval = f.integer("train.eval_interval", c.eval_interval, 0, 1LL << 40);
  c.eval_batches = f.integer("train.eval_batches", c.eval_batches, 1, 1 << 20);
  c.checkpoint_interval =
      f.integer("train.checkpoint_interval", c.checkpoint_interval, 0, 1LL << 40);
  c.out = f.str("train.out", c.out);
  const std::string et = f.str("train.export_type", "f32");
  const std::optional<DType> t = dtype_from_name(et);
  check(t && dtype_layout(*t).storage, f.name(), ": train.export_type '", et,
        "' is not a storage type");
  c.export_type = *t;
  c.export_hf = f.boolean("train.export_hf", false);

  c.lora_rank = f.integer("lora.rank", 0, 0, 1 << 16);
  c.lora.rank = std::max<int64_t>(1, c.lora_rank);
  c.lora.alpha = f.number("lora.alpha", 2.0 * static_cast<double>(c.lora.rank), 1e-6, 1e6);
  c.lora.dropout = f.number("lora.dropout", 0.0, 0.0, 0.9);
  c.lora.targets = parse_lora_targets(f.str("lora.targets", "attn_q,attn_v"));
  const std::string bt = f.str("lora.base_type", "f32");
  const std::optional<DType> btt = dtype_from_name(bt);
  check(btt && (*btt == DType::F32 || dtype_layout(*btt).storage), f.name(), ": lora.base_type '",
        bt, "' is not a storage type");
  c.lora.base_type = *btt;
  c.lora.seed = c.seed;
  check(c.lora_rank == 0 || !c.init.empty(), f.name(), ": [lora] needs model.init (the base)");

  c.teacher = f.str("distill.teacher", "");
  c.kd_alpha = f.number("distill.alpha", 0.5, 0.0, 1.0);
  c.kd_tau = f.number("distill.tau", 2.0, 0.05, 100.0);
  f.check_all_used();
  return c;
}

}  // namespace brisk::train
