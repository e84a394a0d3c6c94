#include "io/tokenizer/chat_template.h"

#include <array>
#include <utility>

#include "core/error.h"

namespace brisk::tok {

namespace {

bool has(std::string_view s, std::string_view marker) {
  return s.find(marker) != std::string_view::npos;
}

// Python's str.strip() / Jinja's |trim over the ASCII whitespace set (including the \x1c-\x1f
// separators Python counts as whitespace); non-ASCII spaces are left alone.
std::string_view strip(std::string_view s) {
  constexpr std::string_view kSpace = " \t\n\r\v\f\x1c\x1d\x1e\x1f";
  const size_t b = s.find_first_not_of(kSpace);
  if (b == std::string_view::npos) return {};
  const size_t e = s.find_last_not_of(kSpace);
  return s.substr(b, e - b + 1);
}

void check_roles(const std::vector<ChatMessage>& messages) {
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string& r = messages[i].role;
    check(r == "system" || r == "user" || r == "assistant", "chat template: message ", i,
          " has role '", r, "' (expected system, user or assistant)");
  }
}

// For the families whose reference template takes an optional leading system message and then
// strictly alternating user/assistant turns (and raises otherwise). Returns the system content,
// or nullptr when there is none; loop_begin is the index of the first non-system message.
const std::string* leading_system(const std::vector<ChatMessage>& messages, const char* family,
                                  size_t& loop_begin) {
  const std::string* sys = nullptr;
  loop_begin = 0;
  if (!messages.empty() && messages[0].role == "system") {
    sys = &messages[0].content;
    loop_begin = 1;
  }
  for (size_t i = loop_begin; i < messages.size(); ++i) {
    const char* want = (i - loop_begin) % 2 == 0 ? "user" : "assistant";
    check(messages[i].role == want, "chat template ", family, ": message ", i, " has role '",
          messages[i].role, "', expected '", want,
          "' (after an optional first system message, roles must alternate user/assistant)");
  }
  return sys;
}

// meta-llama/Llama-2-7b-chat-hf tokenizer_config.json: every user turn is
// bos + "[INST] " + strip(content) + " [/INST]", every assistant turn " " + strip(content) + " " +
// eos, and the system message is wrapped in <<SYS>> at the head of the first turn before stripping.
// The template has no generation prompt: " [/INST]" already hands over to the model.
std::string render_llama2(const std::vector<ChatMessage>& m, std::string_view bos,
                          std::string_view eos) {
  size_t begin = 0;
  const std::string* sys = leading_system(m, "llama2", begin);
  std::string out;
  for (size_t i = begin; i < m.size(); ++i) {
    std::string content;
    if (i == begin && sys != nullptr) {
      content = str_cat("<<SYS>>\n", *sys, "\n<</SYS>>\n\n", m[i].content);
    } else {
      content = m[i].content;
    }
    if (m[i].role == "user") {
      out += str_cat(bos, "[INST] ", strip(content), " [/INST]");
    } else {
      out += str_cat(" ", strip(content), " ", eos);
    }
  }
  return out;
}

// meta-llama/Meta-Llama-3-8B-Instruct tokenizer_config.json: bos, then for each message
// "<|start_header_id|>" + role + "<|end_header_id|>\n\n" + trim(content) + "<|eot_id|>".
// (Llama 3.1+ templates use the same markers but add a dated system preamble; we render 3.0.)
std::string render_llama3(const std::vector<ChatMessage>& m, bool gen, std::string_view bos) {
  std::string out;
  for (size_t i = 0; i < m.size(); ++i) {
    if (i == 0) out += bos;
    out += str_cat("<|start_header_id|>", m[i].role, "<|end_header_id|>\n\n", strip(m[i].content),
                   "<|eot_id|>");
  }
  if (gen) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return out;
}

// The generic ChatML template (as in Qwen2-Instruct and OpenHermes, without Qwen's injected
// default system prompt): "<|im_start|>" + role + "\n" + content + "<|im_end|>\n", no bos.
std::string render_chatml(const std::vector<ChatMessage>& m, bool gen) {
  std::string out;
  for (const ChatMessage& msg : m)
    out += str_cat("<|im_start|>", msg.role, "\n", msg.content, "<|im_end|>\n");
  if (gen) out += "<|im_start|>assistant\n";
  return out;
}

// mistralai/Mistral-7B-Instruct-v0.2 and Mixtral-8x7B-Instruct-v0.1 (current tokenizer_config):
// bos, then user turns " [INST] " + content + " [/INST]" (the system message is folded into the
// first one as system + "\n\n" + content) and assistant turns " " + content + eos. No trimming
// and no generation prompt.
std::string render_mistral(const std::vector<ChatMessage>& m, std::string_view bos,
                           std::string_view eos) {
  size_t begin = 0;
  const std::string* sys = leading_system(m, "mistral", begin);
  std::string out(bos);
  for (size_t i = begin; i < m.size(); ++i) {
    if (m[i].role == "user") {
      if (i == begin && sys != nullptr) {
        out += str_cat(" [INST] ", *sys, "\n\n", m[i].content, " [/INST]");
      } else {
        out += str_cat(" [INST] ", m[i].content, " [/INST]");
      }
    } else {
      out += str_cat(" ", m[i].content, eos);
    }
  }
  return out;
}

// microsoft/Phi-3.5-mini-instruct (same as Phi-3-mini-4k-instruct for non-empty system
// messages): "<|" + role + "|>\n" + content + "<|end|>\n", an empty system message is skipped, no
// bos; the conversation ends with "<|assistant|>\n" as generation prompt, or else with eos.
std::string render_phi3(const std::vector<ChatMessage>& m, bool gen, std::string_view eos) {
  std::string out;
  for (const ChatMessage& msg : m) {
    if (msg.role == "system" && msg.content.empty()) continue;
    out += str_cat("<|", msg.role, "|>\n", msg.content, "<|end|>\n");
  }
  if (gen) {
    out += "<|assistant|>\n";
  } else {
    out += eos;
  }
  return out;
}

// HuggingFaceH4/zephyr-7b-beta (also TinyLlama-Chat), rendered with transformers' trim_blocks
// and lstrip_blocks: "<|" + role + "|>\n" + content + eos + "\n"; the generation prompt
// "<|assistant|>\n" is emitted inside the loop, so only after at least one message.
std::string render_zephyr(const std::vector<ChatMessage>& m, bool gen, std::string_view eos) {
  std::string out;
  for (const ChatMessage& msg : m) out += str_cat("<|", msg.role, "|>\n", msg.content, eos, "\n");
  if (gen && !m.empty()) out += "<|assistant|>\n";
  return out;
}

// google/gemma-3-*-it: bos, then "<start_of_turn>" + ("model" for assistant, else role) + "\n"
// + trim(content) + "<end_of_turn>\n"; a system message becomes system + "\n\n" in front of the
// first user turn. Gemma 1 and 2 templates render the same when there is no system message
// (they reject one).
std::string render_gemma(const std::vector<ChatMessage>& m, bool gen, std::string_view bos) {
  size_t begin = 0;
  const std::string* sys = leading_system(m, "gemma", begin);
  std::string out(bos);
  for (size_t i = begin; i < m.size(); ++i) {
    const char* role = m[i].role == "assistant" ? "model" : "user";
    out += str_cat("<start_of_turn>", role, "\n");
    if (i == begin && sys != nullptr) out += str_cat(*sys, "\n\n");
    out += str_cat(strip(m[i].content), "<end_of_turn>\n");
  }
  if (gen) out += "<start_of_turn>model\n";
  return out;
}

constexpr std::array<std::pair<ChatFamily, const char*>, 7> kNames = {{
    {ChatFamily::Llama2, "llama2"},
    {ChatFamily::Llama3, "llama3"},
    {ChatFamily::ChatML, "chatml"},
    {ChatFamily::Mistral, "mistral"},
    {ChatFamily::Phi3, "phi3"},
    {ChatFamily::Zephyr, "zephyr"},
    {ChatFamily::Gemma, "gemma"},
}};

}  // namespace

std::optional<ChatFamily> detect_chat_family(std::string_view t) {
  // Most specific markers first: a Llama 3 or ChatML template may well mention other markers in
  // passing, but never the other way round.
  if (has(t, "<|start_header_id|>")) return ChatFamily::Llama3;
  if (has(t, "<|im_start|>")) return ChatFamily::ChatML;
  if (has(t, "<start_of_turn>")) return ChatFamily::Gemma;
  if (has(t, "<|user|>")) {
    if (has(t, "<|end|>")) return ChatFamily::Phi3;  // Phi-3 also mentions eos_token: test first
    if (has(t, "eos_token") || has(t, "</s>")) return ChatFamily::Zephyr;
    return std::nullopt;
  }
  if (has(t, "[INST]")) {
    // Mistral v0.3 / v7 / Tekken templates write "[INST]" without the surrounding spaces and add
    // tool and system-prompt tokens: a different rendering, so we do not claim them.
    if (has(t, "[AVAILABLE_TOOLS]") || has(t, "[SYSTEM_PROMPT]") || has(t, "[TOOL_CALLS]"))
      return std::nullopt;
    return has(t, "<<SYS>>") ? ChatFamily::Llama2 : ChatFamily::Mistral;
  }
  return std::nullopt;
}

const char* chat_family_name(ChatFamily f) {
  for (const auto& [family, name] : kNames) {
    if (family == f) return name;
  }
  return "unknown";
}

std::optional<ChatFamily> chat_family_from_name(std::string_view name) {
  for (const auto& [family, n] : kNames) {
    if (name == n) return family;
  }
  return std::nullopt;
}

std::string apply_chat_template(ChatFamily family, const std::vector<ChatMessage>& messages,
                                bool add_generation_prompt, std::string_view bos_token,
                                std::string_view eos_token) {
  check_roles(messages);
  switch (family) {
    case ChatFamily::Llama2:
      return render_llama2(messages, bos_token, eos_token);
    case ChatFamily::Llama3:
      return render_llama3(messages, add_generation_prompt, bos_token);
    case ChatFamily::ChatML:
      return render_chatml(messages, add_generation_prompt);
    case ChatFamily::Mistral:
      return render_mistral(messages, bos_token, eos_token);
    case ChatFamily::Phi3:
      return render_phi3(messages, add_generation_prompt, eos_token);
    case ChatFamily::Zephyr:
      return render_zephyr(messages, add_generation_prompt, eos_token);
    case ChatFamily::Gemma:
      return render_gemma(messages, add_generation_prompt, bos_token);
  }
  fail("chat template: invalid family value ", static_cast<int>(family));
}

std::string apply_chat_template(std::string_view jinja_template,
                                const std::vector<ChatMessage>& messages,
                                bool add_generation_prompt, std::string_view bos_token,
                                std::string_view eos_token) {
  const std::optional<ChatFamily> family = detect_chat_family(jinja_template);
  if (!family) {
    fail(
        "unsupported chat template (not one of: llama2, llama3, chatml, mistral, phi3, zephyr, "
        "gemma); pass --chat-template NAME");
  }
  return apply_chat_template(*family, messages, add_generation_prompt, bos_token, eos_token);
}

}  // namespace brisk::tok
