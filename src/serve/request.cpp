#include "serve/request.h"

#include <charconv>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "serve/api_error.h"

namespace brisk::serve {
namespace {

using nlohmann::json;

[[noreturn]] void bad(const std::string& param, const std::string& msg) {
  throw ApiError(400, msg, param);
}

const char* type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return "a boolean";
    case json::value_t::string:
      return "a string";
    case json::value_t::array:
      return "an array";
    case json::value_t::object:
      return "an object";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
      return "an integer";
    case json::value_t::number_float:
      return "a number";
    default:
      return "an unsupported value";
  }
}

std::string num_str(double x) {
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, x);
  return std::string(buf, r.ptr);
}

// The field when present and not null (clients send null for "default").
const json* field(const json& body, const char* key) {
  auto it = body.find(key);
  if (it == body.end() || it->is_null()) return nullptr;
  return &*it;
}

// Integers may arrive as 5 or 5.0; anything else that is not integral is a type error.
int64_t as_int(const json& v, const std::string& name, int64_t lo, int64_t hi) {
  int64_t x = 0;
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      bad(name, "'" + name + "' must be in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                    "], got " + std::to_string(u));
    x = static_cast<int64_t>(u);
  } else if (v.is_number_integer()) {
    x = v.get<int64_t>();
  } else if (v.is_number_float()) {
    const double d = v.get<double>();
    if (!std::isfinite(d) || d != std::floor(d) || std::fabs(d) > 9.0e18)
      bad(name, "'" + name + "' must be an integer, got " + num_str(d));
    x = static_cast<int64_t>(d);
  } else {
    bad(name, "'" + name + "' must be an integer, got " + type_name(v));
  }
  if (x < lo || x > hi)
    bad(name, "'" + name + "' must be in [" + std::to_string(lo) + ", " + std::to_string(hi) +
                  "], got " + std::to_string(x));
  return x;
}

double as_number(const json& v, const std::string& name) {
  if (!v.is_number()) bad(name, "'" + name + "' must be a number, got " + type_name(v));
  const double d = v.get<double>();
  if (!std::isfinite(d)) bad(name, "'" + name + "' must be a finite number");
  return d;
}

// lo_open: the low end is excluded, as for top_p.
double as_number(const json& v, const std::string& name, double lo, double hi,
                 bool lo_open = false) {
  const double d = as_number(v, name);
  if ((lo_open ? d <= lo : d < lo) || d > hi)
    bad(name, "'" + name + "' must be in " + (lo_open ? "(" : "[") + num_str(lo) + ", " +
                  num_str(hi) + "], got " + num_str(d));
  return d;
}

bool as_bool(const json& v, const std::string& name) {
  if (!v.is_boolean()) bad(name, "'" + name + "' must be a boolean, got " + type_name(v));
  return v.get<bool>();
}

const std::string& as_string(const json& v, const std::string& name) {
  if (!v.is_string()) bad(name, "'" + name + "' must be a string, got " + type_name(v));
  return v.get_ref<const std::string&>();
}

// Depth of the deepest array/object, found without recursion so that a hostile body of a million
// '[' cannot exhaust the stack of anything that walks the parsed tree later.
int32_t nesting_depth(std::string_view s) {
  int32_t depth = 0, deepest = 0;
  bool in_string = false;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return deepest;
}

json parse_body(std::string_view body, const ParseLimits& lim) {
  if (nesting_depth(body) > lim.max_nesting)
    bad("", "request body is nested deeper than " + std::to_string(lim.max_nesting) + " levels");
  json j;
  try {
    j = json::parse(body);
  } catch (const json::parse_error& e) {
    // "[json.exception.parse_error.101] parse error at line 1, column 2: ..." -> from "parse".
    std::string msg = e.what();
    if (auto p = msg.find("] "); p != std::string::npos) msg = msg.substr(p + 2);
    bad("", "invalid JSON in the request body: " + msg);
  }
  if (!j.is_object())
    bad("", std::string("the request body must be a JSON object, got ") + type_name(j));
  return j;
}

int32_t token_id(const json& v, const std::string& name, const ParseLimits& lim) {
  return static_cast<int32_t>(as_int(v, name, 0, static_cast<int64_t>(lim.n_vocab) - 1));
}

std::vector<int32_t> token_ids(const json& arr, const std::string& name, const ParseLimits& lim) {
  std::vector<int32_t> ids;
  ids.reserve(arr.size());
  for (size_t i = 0; i < arr.size(); ++i)
    ids.push_back(token_id(arr[i], name + "[" + std::to_string(i) + "]", lim));
  return ids;
}

// prompt: "text" | [ids...] | ["text"] | [[ids...]]. Several prompts are refused: one request is
// one sequence group here (n choices of one prompt), which keeps usage and ids simple.
void parse_prompt(const json& body, const ParseLimits& lim, ServeRequest& r) {
  const json* p = field(body, "prompt");
  if (!p) bad("prompt", "'prompt' is required");
  if (p->is_string()) {
    r.prompt_text = p->get<std::string>();
    return;
  }
  if (!p->is_array())
    bad("prompt",
        std::string("'prompt' must be a string or an array of token ids, got ") + type_name(*p));
  if (p->empty()) bad("prompt", "'prompt' must not be empty");
  const json& first = p->front();
  if (first.is_number()) {
    r.prompt_is_ids = true;
    r.prompt_ids = token_ids(*p, "prompt", lim);
    return;
  }
  if (p->size() > 1 && (first.is_string() || first.is_array()))
    bad("prompt", "only one prompt per request is supported, got " + std::to_string(p->size()));
  if (first.is_string()) {
    r.prompt_text = first.get<std::string>();
  } else if (first.is_array()) {
    if (first.empty()) bad("prompt", "'prompt' must not be empty");
    r.prompt_is_ids = true;
    r.prompt_ids = token_ids(first, "prompt[0]", lim);
  } else {
    bad("prompt", std::string("'prompt' must be a string, an array of token ids, or one of "
                              "those in an array; got an array of ") +
                      type_name(first));
  }
}

// content: "text" | [{"type": "text", "text": "..."}, ...] | null (an assistant turn that only
// called tools; we have no tools, so it reads as empty).
std::string message_content(const json& m, const std::string& name) {
  const json* c = field(m, "content");
  if (!c) return {};
  if (c->is_string()) return c->get<std::string>();
  if (!c->is_array())
    bad(name + ".content",
        "'" + name + ".content' must be a string or an array of text parts, got " + type_name(*c));
  std::string text;
  for (size_t i = 0; i < c->size(); ++i) {
    const std::string pn = name + ".content[" + std::to_string(i) + "]";
    const json& part = (*c)[i];
    if (!part.is_object()) bad(pn, "'" + pn + "' must be an object");
    const json* t = field(part, "type");
    if (!t || !t->is_string()) bad(pn + ".type", "'" + pn + ".type' must be a string");
    if (t->get<std::string>() != "text")
      bad(pn + ".type",
          "only text content parts are supported, got type '" + t->get<std::string>() + "'");
    const json* tx = field(part, "text");
    if (!tx) bad(pn + ".text", "'" + pn + ".text' is required");
    text += as_string(*tx, pn + ".text");
  }
  return text;
}

void parse_messages(const json& body, ServeRequest& r) {
  const json* ms = field(body, "messages");
  if (!ms) bad("messages", "'messages' is required");
  if (!ms->is_array())
    bad("messages", std::string("'messages' must be an array, got ") + type_name(*ms));
  if (ms->empty()) bad("messages", "'messages' must not be empty");
  for (size_t i = 0; i < ms->size(); ++i) {
    const std::string name = "messages[" + std::to_string(i) + "]";
    const json& m = (*ms)[i];
    if (!m.is_object()) bad(name, "'" + name + "' must be an object, got " + type_name(m));
    const json* role = field(m, "role");
    if (!role) bad(name + ".role", "'" + name + ".role' is required");
    std::string rs = as_string(*role, name + ".role");
    if (rs == "developer") rs = "system";  // OpenAI's newer name for the system role
    if (rs != "system" && rs != "user" && rs != "assistant")
      bad(name + ".role",
          "'" + name + ".role' must be system, user or assistant, got '" + rs + "'");
    if (field(m, "tool_calls")) bad(name + ".tool_calls", "tool calls are not supported");
    r.messages.push_back({rs, message_content(m, name)});
  }
}

void parse_stop(const json& body, ServeRequest& r) {
  const json* s = field(body, "stop");
  if (!s) return;
  auto add = [&](const json& v, const std::string& name) {
    const std::string& t = as_string(v, name);
    if (t.empty()) bad(name, "stop strings must not be empty");
    r.stop.push_back(t);
  };
  if (s->is_string()) {
    add(*s, "stop");
    return;
  }
  if (!s->is_array())
    bad("stop",
        std::string("'stop' must be a string or an array of strings, got ") + type_name(*s));
  if (s->size() > 4) bad("stop", "at most 4 stop strings, got " + std::to_string(s->size()));
  for (size_t i = 0; i < s->size(); ++i) add((*s)[i], "stop[" + std::to_string(i) + "]");
}

void parse_logit_bias(const json& body, const ParseLimits& lim, ServeRequest& r) {
  const json* lb = field(body, "logit_bias");
  if (!lb) return;
  if (!lb->is_object())
    bad("logit_bias", std::string("'logit_bias' must be an object mapping token ids to biases, "
                                  "got ") +
                          type_name(*lb));
  if (lb->size() > 1024)
    bad("logit_bias", "at most 1024 logit_bias entries, got " + std::to_string(lb->size()));
  for (const auto& [key, val] : lb->items()) {
    int64_t id = -1;
    auto res = std::from_chars(key.data(), key.data() + key.size(), id);
    if (key.empty() || res.ec != std::errc() || res.ptr != key.data() + key.size() || id < 0 ||
        id >= lim.n_vocab)
      bad("logit_bias", "logit_bias key '" + key.substr(0, 40) + "' is not a token id in [0, " +
                            std::to_string(lim.n_vocab) + ")");
    const double b = as_number(val, "logit_bias[" + key + "]", -100, 100);
    r.sampling.logit_bias.emplace_back(static_cast<int32_t>(id), static_cast<float>(b));
  }
}

void parse_logprobs(Endpoint ep, const json& body, ServeRequest& r) {
  const json* lp = field(body, "logprobs");
  const json* top = field(body, "top_logprobs");
  if (ep == Endpoint::kCompletions) {
    if (lp) r.logprobs = static_cast<int32_t>(as_int(*lp, "logprobs", 0, 5));
    return;
  }
  const bool on = lp && as_bool(*lp, "logprobs");
  if (top && !on) bad("top_logprobs", "'top_logprobs' requires 'logprobs' to be true");
  if (on) r.logprobs = top ? static_cast<int32_t>(as_int(*top, "top_logprobs", 0, 20)) : 0;
}

void refuse_unsupported(Endpoint ep, const json& body, int32_t n) {
  if (const json* e = field(body, "echo"); e && as_bool(*e, "echo"))
    bad("echo", "'echo' is not supported");
  if (const json* s = field(body, "suffix");
      s && !(s->is_string() && s->get_ref<const std::string&>().empty()))
    bad("suffix", "'suffix' is not supported");
  if (const json* b = field(body, "best_of")) {
    const int64_t v = as_int(*b, "best_of", 1, 128);
    if (v != 1 && v != n) bad("best_of", "'best_of' other than n is not supported");
  }
  for (const char* k : {"tools", "functions"})
    if (const json* t = field(body, k); t && !(t->is_array() && t->empty()))
      bad(k, std::string("'") + k + "' is not supported");
  if (ep == Endpoint::kChat) {
    if (const json* rf = field(body, "response_format")) {
      const json* t = rf->is_object() ? field(*rf, "type") : nullptr;
      if (!t || !t->is_string() || t->get<std::string>() != "text")
        bad("response_format", "only response_format {\"type\": \"text\"} is supported");
    }
  }
}

}  // namespace

engine::SamplingParams openai_default_sampling() {
  engine::SamplingParams sp;
  sp.temperature = 1.0f;
  sp.top_k = 0;
  sp.top_p = 1.0f;
  sp.min_p = 0.0f;
  sp.repeat_penalty = 1.0f;
  sp.frequency_penalty = 0.0f;
  sp.presence_penalty = 0.0f;
  return sp;
}

ServeRequest parse_request(Endpoint ep, std::string_view body_text, const ParseLimits& lim) {
  const json body = parse_body(body_text, lim);
  ServeRequest r;
  r.endpoint = ep;
  r.sampling = openai_default_sampling();

  if (const json* m = field(body, "model")) r.model = as_string(*m, "model");
  if (ep == Endpoint::kCompletions) {
    parse_prompt(body, lim, r);
  } else {
    parse_messages(body, r);
  }

  constexpr int64_t kMaxTokens = std::numeric_limits<int32_t>::max();
  if (const json* v = field(body, "max_tokens"))
    r.max_tokens = static_cast<int32_t>(as_int(*v, "max_tokens", 1, kMaxTokens));
  if (ep == Endpoint::kChat)  // the newer name wins over the deprecated one
    if (const json* v = field(body, "max_completion_tokens"))
      r.max_tokens = static_cast<int32_t>(as_int(*v, "max_completion_tokens", 1, kMaxTokens));
  if (const json* v = field(body, "n")) r.n = static_cast<int32_t>(as_int(*v, "n", 1, lim.max_n));

  engine::SamplingParams& sp = r.sampling;
  if (const json* v = field(body, "temperature"))
    sp.temperature = static_cast<float>(as_number(*v, "temperature", 0, 2));
  if (const json* v = field(body, "top_p"))
    sp.top_p = static_cast<float>(as_number(*v, "top_p", 0, 1, /*lo_open=*/true));
  if (const json* v = field(body, "top_k"))  // -1 and 0 both mean off (vLLM and llama.cpp use each)
    sp.top_k = static_cast<int32_t>(std::max<int64_t>(as_int(*v, "top_k", -1, 1 << 30), 0));
  if (const json* v = field(body, "min_p"))
    sp.min_p = static_cast<float>(as_number(*v, "min_p", 0, 1));
  if (const json* v = field(body, "presence_penalty"))
    sp.presence_penalty = static_cast<float>(as_number(*v, "presence_penalty", -2, 2));
  if (const json* v = field(body, "frequency_penalty"))
    sp.frequency_penalty = static_cast<float>(as_number(*v, "frequency_penalty", -2, 2));
  if (const json* v = field(body, "seed")) {
    // Any 64-bit integer, signed or not: only its bits matter.
    if (v->is_number_unsigned()) {
      sp.seed = v->get<uint64_t>();
    } else {
      sp.seed = static_cast<uint64_t>(as_int(*v, "seed", std::numeric_limits<int64_t>::min(),
                                             std::numeric_limits<int64_t>::max()));
    }
    r.seed_given = true;
  }
  parse_logit_bias(body, lim, r);
  parse_stop(body, r);
  parse_logprobs(ep, body, r);

  if (const json* v = field(body, "stream")) r.stream = as_bool(*v, "stream");
  if (const json* so = field(body, "stream_options")) {
    if (!r.stream) bad("stream_options", "'stream_options' is only allowed when 'stream' is true");
    if (!so->is_object())
      bad("stream_options",
          std::string("'stream_options' must be an object, got ") + type_name(*so));
    if (const json* iu = field(*so, "include_usage"))
      r.include_usage = as_bool(*iu, "stream_options.include_usage");
  }
  if (const json* v = field(body, "priority"))
    r.priority = static_cast<int32_t>(as_int(*v, "priority", std::numeric_limits<int32_t>::min(),
                                             std::numeric_limits<int32_t>::max()));
  if (const json* v = field(body, "ignore_eos")) r.ignore_eos = as_bool(*v, "ignore_eos");
  if (const json* v = field(body, "user")) as_string(*v, "user");
  refuse_unsupported(ep, body, r.n);
  return r;
}

}  // namespace brisk::serve
