#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/error.h"
#include "io/tokenizer/chat_template.h"

using namespace brisk;
using namespace brisk::tok;

namespace {

// Short but faithful excerpts of each family's tokenizer_config.json chat_template (as decoded
// strings: "\n" inside a Jinja string literal is the two characters backslash, n).
const char* kLlama2 =
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set "
    "system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set "
    "system_message = false %}{% endif %}{% for message in loop_messages %}{% if loop.index0 == 0 "
    "and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + "
    "'\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% "
    "endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' "
    "[/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + "
    "eos_token }}{% endif %}{% endfor %}";
const char* kLlama3 =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | "
    "trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% "
    "endif "
    "%}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";
const char* kQwen2 =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ "
    "'<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif "
    "%}{{'<|im_start|>' "
    "+ message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if "
    "add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
const char* kMistral =
    "{%- if messages[0]['role'] == 'system' %}\n    {%- set system_message = "
    "messages[0]['content'] %}\n    {%- set loop_messages = messages[1:] %}\n{%- else %}\n    {%- "
    "set loop_messages = messages %}\n{%- endif %}\n\n{{- bos_token }}\n{%- for message in "
    "loop_messages %}\n    {%- if message['role'] == 'user' %}\n        {%- if loop.first and "
    "system_message is defined %}\n            {{- ' [INST] ' + system_message + '\\n\\n' + "
    "message['content'] + ' [/INST]' }}\n        {%- else %}\n            {{- ' [INST] ' + "
    "message['content'] + ' [/INST]' }}\n        {%- endif %}\n    {%- elif message['role'] == "
    "'assistant' %}\n        {{- ' ' + message['content'] + eos_token}}\n    {%- endif %}\n{%- "
    "endfor %}\n";
const char* kPhi3 =
    "{% for message in messages %}{% if message['role'] == 'system' and message['content'] "
    "%}{{'<|system|>\\n' + message['content'] + '<|end|>\\n'}}{% elif message['role'] == 'user' "
    "%}{{'<|user|>\\n' + message['content'] + '<|end|>\\n'}}{% elif message['role'] == 'assistant' "
    "%}{{'<|assistant|>\\n' + message['content'] + '<|end|>\\n'}}{% endif %}{% endfor %}{% if "
    "add_generation_prompt %}{{ '<|assistant|>\\n' }}{% else %}{{ eos_token }}{% endif %}";
const char* kZephyr =
    "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\\n' + "
    "message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\\n' "
    "+ message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n{{ "
    "'<|assistant|>\\n'  + message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and "
    "add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}";
const char* kGemma =
    "{{ bos_token }}\n{%- if messages[0]['role'] == 'system' -%}\n    {%- set first_user_prefix = "
    "messages[0]['content'] + '\\n\\n' -%}\n    {%- set loop_messages = messages[1:] -%}\n{%- else "
    "-%}\n    {%- set first_user_prefix = \"\" -%}\n    {%- set loop_messages = messages -%}\n{%- "
    "endif -%}\n{%- for message in loop_messages -%}\n    {%- if (message['role'] == 'assistant') "
    "-%}\n        {%- set role = \"model\" -%}\n    {%- else -%}\n        {%- set role = "
    "message['role'] -%}\n    {%- endif -%}\n    {{ '<start_of_turn>' + role + '\\n' + "
    "(first_user_prefix if loop.first else \"\") }}\n    {{ message['content'] | trim }}\n    {{ "
    "'<end_of_turn>\\n' }}\n{%- endfor -%}\n{%- if add_generation_prompt -%}\n    "
    "{{'<start_of_turn>model\\n'}}\n{%- endif -%}\n";

// system + user + assistant + user; the whitespace around contents exercises each family's
// trimming (or lack of it).
const std::vector<ChatMessage> kChat = {
    {"system", "You are terse."},
    {"user", "Hi there"},
    {"assistant", " Hello! "},
    {"user", "What is 2+2?"},
};

struct Expected {
  ChatFamily family;
  const char* bos;
  const char* eos;
  const char* without_gen;
  const char* with_gen;
};

}  // namespace

TEST(ChatTemplate, DetectsEachFamily) {
  EXPECT_EQ(detect_chat_family(kLlama2), ChatFamily::Llama2);
  EXPECT_EQ(detect_chat_family(kLlama3), ChatFamily::Llama3);
  EXPECT_EQ(detect_chat_family(kQwen2), ChatFamily::ChatML);
  EXPECT_EQ(detect_chat_family(kMistral), ChatFamily::Mistral);
  EXPECT_EQ(detect_chat_family(kPhi3), ChatFamily::Phi3);
  EXPECT_EQ(detect_chat_family(kZephyr), ChatFamily::Zephyr);
  EXPECT_EQ(detect_chat_family(kGemma), ChatFamily::Gemma);
  EXPECT_EQ(detect_chat_family(""), std::nullopt);
  EXPECT_EQ(detect_chat_family(
                "{% for m in messages %}{{ m['role'] + ': ' + m['content'] }}{% endfor %}"),
            std::nullopt);
  // Mistral v0.3-style templates render "[INST]" without spaces: not claimed.
  EXPECT_EQ(detect_chat_family(
                "{{ '[AVAILABLE_TOOLS] ' }}{{ '[INST]' + message['content'] + '[/INST]' }}"),
            std::nullopt);
}

TEST(ChatTemplate, FamilyNamesRoundTrip) {
  for (ChatFamily f :
       {ChatFamily::Llama2, ChatFamily::Llama3, ChatFamily::ChatML, ChatFamily::Mistral,
        ChatFamily::Phi3, ChatFamily::Zephyr, ChatFamily::Gemma}) {
    EXPECT_EQ(chat_family_from_name(chat_family_name(f)), f);
  }
  EXPECT_STREQ(chat_family_name(ChatFamily::ChatML), "chatml");
  EXPECT_EQ(chat_family_from_name("qwen-not-a-family"), std::nullopt);
}

TEST(ChatTemplate, RendersEachFamilyExactly) {
  const std::vector<Expected> cases = {
      {ChatFamily::Llama2, "<s>", "</s>",
       "<s>[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHi there [/INST] Hello! </s><s>[INST] What "
       "is 2+2? [/INST]",
       "<s>[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHi there [/INST] Hello! </s><s>[INST] What "
       "is 2+2? [/INST]"},
      {ChatFamily::Llama3, "<|begin_of_text|>", "<|eot_id|>",
       "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
       "<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>"
       "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
       "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>",
       "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
       "<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>"
       "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
       "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
       "<|start_header_id|>assistant<|end_header_id|>\n\n"},
      {ChatFamily::ChatML, "", "<|im_end|>",
       "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n"
       "<|im_start|>assistant\n Hello! <|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n",
       "<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n"
       "<|im_start|>assistant\n Hello! <|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
       "<|im_start|>assistant\n"},
      {ChatFamily::Mistral, "<s>", "</s>",
       "<s> [INST] You are terse.\n\nHi there [/INST]  Hello! </s> [INST] What is 2+2? [/INST]",
       "<s> [INST] You are terse.\n\nHi there [/INST]  Hello! </s> [INST] What is 2+2? [/INST]"},
      {ChatFamily::Phi3, "<s>", "<|endoftext|>",
       "<|system|>\nYou are terse.<|end|>\n<|user|>\nHi there<|end|>\n<|assistant|>\n Hello! "
       "<|end|>\n"
       "<|user|>\nWhat is 2+2?<|end|>\n<|endoftext|>",
       "<|system|>\nYou are terse.<|end|>\n<|user|>\nHi there<|end|>\n<|assistant|>\n Hello! "
       "<|end|>\n"
       "<|user|>\nWhat is 2+2?<|end|>\n<|assistant|>\n"},
      {ChatFamily::Zephyr, "<s>", "</s>",
       "<|system|>\nYou are terse.</s>\n<|user|>\nHi there</s>\n<|assistant|>\n Hello! </s>\n"
       "<|user|>\nWhat is 2+2?</s>\n",
       "<|system|>\nYou are terse.</s>\n<|user|>\nHi there</s>\n<|assistant|>\n Hello! </s>\n"
       "<|user|>\nWhat is 2+2?</s>\n<|assistant|>\n"},
      {ChatFamily::Gemma, "<bos>", "<eos>",
       "<bos><start_of_turn>user\nYou are terse.\n\nHi there<end_of_turn>\n<start_of_turn>model\n"
       "Hello!<end_of_turn>\n<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n",
       "<bos><start_of_turn>user\nYou are terse.\n\nHi there<end_of_turn>\n<start_of_turn>model\n"
       "Hello!<end_of_turn>\n<start_of_turn>user\nWhat is "
       "2+2?<end_of_turn>\n<start_of_turn>model\n"},
  };
  for (const Expected& e : cases) {
    SCOPED_TRACE(chat_family_name(e.family));
    EXPECT_EQ(apply_chat_template(e.family, kChat, false, e.bos, e.eos), e.without_gen);
    EXPECT_EQ(apply_chat_template(e.family, kChat, true, e.bos, e.eos), e.with_gen);
  }
}

TEST(ChatTemplate, RendersWithoutSystemMessage) {
  const std::vector<ChatMessage> chat = {{"user", "  Hi  "}};
  EXPECT_EQ(apply_chat_template(ChatFamily::Llama2, chat, true, "<s>", "</s>"),
            "<s>[INST] Hi [/INST]");
  EXPECT_EQ(apply_chat_template(ChatFamily::Mistral, chat, true, "<s>", "</s>"),
            "<s> [INST]   Hi   [/INST]");
  EXPECT_EQ(apply_chat_template(ChatFamily::Gemma, chat, true, "<bos>", "<eos>"),
            "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n");
  // Phi-3.5 skips an empty system message.
  EXPECT_EQ(apply_chat_template(ChatFamily::Phi3, {{"system", ""}, {"user", "Hi"}}, true, "<s>",
                                "<|endoftext|>"),
            "<|user|>\nHi<|end|>\n<|assistant|>\n");
}

TEST(ChatTemplate, TemplateStringOverloadDetects) {
  EXPECT_EQ(
      apply_chat_template(kLlama3, kChat, true, "<|begin_of_text|>", "<|eot_id|>"),
      apply_chat_template(ChatFamily::Llama3, kChat, true, "<|begin_of_text|>", "<|eot_id|>"));
  EXPECT_EQ(apply_chat_template(kZephyr, kChat, false, "<s>", "</s>"),
            apply_chat_template(ChatFamily::Zephyr, kChat, false, "<s>", "</s>"));
}

TEST(ChatTemplate, UnknownTemplateIsAnError) {
  try {
    apply_chat_template("{{ messages[0]['content'] }}", kChat, true, "<s>", "</s>");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(
        std::string(e.what()),
        "unsupported chat template (not one of: llama2, llama3, chatml, mistral, phi3, zephyr, "
        "gemma); pass --chat-template NAME");
  }
}

TEST(ChatTemplate, BadRoleIsAnError) {
  const std::vector<ChatMessage> bad = {{"user", "hi"}, {"tool", "42"}};
  for (ChatFamily f :
       {ChatFamily::Llama2, ChatFamily::Llama3, ChatFamily::ChatML, ChatFamily::Mistral,
        ChatFamily::Phi3, ChatFamily::Zephyr, ChatFamily::Gemma}) {
    try {
      apply_chat_template(f, bad, true, "<s>", "</s>");
      ADD_FAILURE() << "no error for " << chat_family_name(f);
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("'tool'"), std::string::npos) << e.what();
    }
  }
  // Families whose reference template requires alternating turns reject two users in a row.
  const std::vector<ChatMessage> twice = {{"user", "a"}, {"user", "b"}};
  EXPECT_THROW(apply_chat_template(ChatFamily::Llama2, twice, true, "<s>", "</s>"), Error);
  EXPECT_THROW(apply_chat_template(ChatFamily::Mistral, twice, true, "<s>", "</s>"), Error);
  EXPECT_THROW(apply_chat_template(ChatFamily::Gemma, twice, true, "<bos>", "<eos>"), Error);
  EXPECT_NO_THROW(apply_chat_template(ChatFamily::ChatML, twice, true, "", ""));
}
