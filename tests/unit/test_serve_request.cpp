// OpenAI request parsing and validation (serve/request.h) and the step to an engine request
// (serve/prompt.h): every parameter, its default, and every refusal with its status and field.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "serve/api_error.h"
#include "serve/prompt.h"
#include "serve/request.h"
#include "unit/tokenizer_test_util.h"

namespace brisk::serve {
namespace {

ParseLimits limits() {
  ParseLimits l;
  l.n_vocab = 1000;
  return l;
}

ServeRequest completion(const std::string& body) {
  return parse_request(Endpoint::kCompletions, body, limits());
}
ServeRequest chat(const std::string& body) {
  return parse_request(Endpoint::kChat, body, limits());
}

// The ApiError a body raises (status 0 when it parses).
ApiError refusal(Endpoint ep, const std::string& body) {
  try {
    parse_request(ep, body, limits());
  } catch (const ApiError& e) {
    return e;
  }
  return ApiError(0, "accepted");
}

TEST(ServeRequest, CompletionDefaultsFollowOpenAI) {
  const ServeRequest r = completion(R"({"model": "m", "prompt": "hello"})");
  EXPECT_EQ(r.model, "m");
  EXPECT_FALSE(r.prompt_is_ids);
  EXPECT_EQ(r.prompt_text, "hello");
  EXPECT_FALSE(r.max_tokens.has_value());
  EXPECT_EQ(r.n, 1);
  EXPECT_EQ(r.sampling.temperature, 1.0f);
  EXPECT_EQ(r.sampling.top_p, 1.0f);
  EXPECT_EQ(r.sampling.top_k, 0);
  EXPECT_EQ(r.sampling.min_p, 0.0f);
  EXPECT_EQ(r.sampling.presence_penalty, 0.0f);
  EXPECT_EQ(r.sampling.frequency_penalty, 0.0f);
  EXPECT_EQ(r.sampling.repeat_penalty, 1.0f);
  EXPECT_TRUE(r.sampling.logit_bias.empty());
  EXPECT_FALSE(r.seed_given);
  EXPECT_TRUE(r.stop.empty());
  EXPECT_EQ(r.logprobs, -1);
  EXPECT_FALSE(r.stream);
  EXPECT_FALSE(r.include_usage);
  EXPECT_EQ(r.priority, 0);
  EXPECT_FALSE(r.ignore_eos);
}

TEST(ServeRequest, ModelIsOptional) {
  EXPECT_EQ(completion(R"({"prompt": "x"})").model, "");
}

TEST(ServeRequest, EveryParameter) {
  const ServeRequest r = completion(R"({
    "model": "m", "prompt": [1, 2, 3], "max_tokens": 7, "temperature": 0.5, "top_p": 0.9,
    "top_k": 40, "min_p": 0.1, "n": 3, "stop": ["a", "bc"], "seed": 1234,
    "presence_penalty": 0.5, "frequency_penalty": -1.5, "logit_bias": {"5": 10, "7": -100},
    "logprobs": 2, "stream": true, "stream_options": {"include_usage": true},
    "priority": -3, "ignore_eos": true, "user": "u1"})");
  EXPECT_TRUE(r.prompt_is_ids);
  EXPECT_EQ(r.prompt_ids, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(r.max_tokens, 7);
  EXPECT_FLOAT_EQ(r.sampling.temperature, 0.5f);
  EXPECT_FLOAT_EQ(r.sampling.top_p, 0.9f);
  EXPECT_EQ(r.sampling.top_k, 40);
  EXPECT_FLOAT_EQ(r.sampling.min_p, 0.1f);
  EXPECT_EQ(r.n, 3);
  EXPECT_EQ(r.stop, (std::vector<std::string>{"a", "bc"}));
  EXPECT_TRUE(r.seed_given);
  EXPECT_EQ(r.sampling.seed, 1234u);
  EXPECT_FLOAT_EQ(r.sampling.presence_penalty, 0.5f);
  EXPECT_FLOAT_EQ(r.sampling.frequency_penalty, -1.5f);
  ASSERT_EQ(r.sampling.logit_bias.size(), 2u);
  EXPECT_EQ(r.sampling.logit_bias[0], (std::pair<int32_t, float>{5, 10.0f}));
  EXPECT_EQ(r.sampling.logit_bias[1], (std::pair<int32_t, float>{7, -100.0f}));
  EXPECT_EQ(r.logprobs, 2);
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
  EXPECT_EQ(r.priority, -3);
  EXPECT_TRUE(r.ignore_eos);
}

TEST(ServeRequest, NullMeansDefault) {
  const ServeRequest r = completion(
      R"({"prompt": "x", "max_tokens": null, "temperature": null, "stop": null, "seed": null,
          "logprobs": null, "stream_options": null, "logit_bias": null, "n": null})");
  EXPECT_FALSE(r.max_tokens.has_value());
  EXPECT_EQ(r.sampling.temperature, 1.0f);
  EXPECT_TRUE(r.stop.empty());
  EXPECT_FALSE(r.seed_given);
  EXPECT_EQ(r.logprobs, -1);
  EXPECT_EQ(r.n, 1);
}

TEST(ServeRequest, PromptForms) {
  EXPECT_EQ(completion(R"({"prompt": ["one"]})").prompt_text, "one");
  const ServeRequest ids = completion(R"({"prompt": [[4, 5]]})");
  EXPECT_TRUE(ids.prompt_is_ids);
  EXPECT_EQ(ids.prompt_ids, (std::vector<int32_t>{4, 5}));
  EXPECT_EQ(completion(R"({"prompt": ""})").prompt_text, "");
}

TEST(ServeRequest, IntegralFloatsAreIntegers) {
  EXPECT_EQ(completion(R"({"prompt": "x", "max_tokens": 5.0})").max_tokens, 5);
}

TEST(ServeRequest, StopAsOneString) {
  EXPECT_EQ(completion(R"({"prompt": "x", "stop": "\n"})").stop, (std::vector<std::string>{"\n"}));
}

TEST(ServeRequest, TopKMinusOneIsOff) {
  EXPECT_EQ(completion(R"({"prompt": "x", "top_k": -1})").sampling.top_k, 0);
}

TEST(ServeRequest, NegativeAndHugeSeeds) {
  EXPECT_EQ(completion(R"({"prompt": "x", "seed": -1})").sampling.seed, ~uint64_t{0});
  EXPECT_EQ(completion(R"({"prompt": "x", "seed": 18446744073709551615})").sampling.seed,
            ~uint64_t{0});
}

TEST(ServeRequest, ChatMessagesAndParts) {
  const ServeRequest r = chat(R"({"messages": [
      {"role": "system", "content": "be brief"},
      {"role": "user", "content": [{"type": "text", "text": "hi "}, {"type": "text", "text": "there"}]},
      {"role": "assistant", "content": null},
      {"role": "developer", "content": "d"}]})");
  ASSERT_EQ(r.messages.size(), 4u);
  EXPECT_EQ(r.messages[0].role, "system");
  EXPECT_EQ(r.messages[0].content, "be brief");
  EXPECT_EQ(r.messages[1].content, "hi there");
  EXPECT_EQ(r.messages[2].role, "assistant");
  EXPECT_EQ(r.messages[2].content, "");
  EXPECT_EQ(r.messages[3].role, "system");
}

TEST(ServeRequest, ChatTokenLimitsAndLogprobs) {
  EXPECT_EQ(chat(R"({"messages": [{"role": "user", "content": "x"}], "max_tokens": 9})").max_tokens,
            9);
  // The newer name wins.
  EXPECT_EQ(chat(R"({"messages": [{"role": "user", "content": "x"}], "max_tokens": 9,
                     "max_completion_tokens": 4})")
                .max_tokens,
            4);
  EXPECT_EQ(chat(R"({"messages": [{"role": "user", "content": "x"}], "logprobs": true})").logprobs,
            0);
  EXPECT_EQ(chat(R"({"messages": [{"role": "user", "content": "x"}], "logprobs": true,
                     "top_logprobs": 20})")
                .logprobs,
            20);
  EXPECT_EQ(chat(R"({"messages": [{"role": "user", "content": "x"}], "logprobs": false})").logprobs,
            -1);
}

struct BadCase {
  Endpoint ep;
  const char* body;
  int status;
  const char* param;
  const char* in_message;
};

const BadCase kBad[] = {
    // the body itself
    {Endpoint::kCompletions, "", 400, "", "invalid JSON"},
    {Endpoint::kCompletions, "{\"prompt\": ", 400, "", "invalid JSON"},
    {Endpoint::kCompletions, "{\"prompt\": \"x\"} trailing", 400, "", "invalid JSON"},
    {Endpoint::kCompletions, "[1, 2]", 400, "", "must be a JSON object"},
    {Endpoint::kCompletions, "\"text\"", 400, "", "must be a JSON object"},
    {Endpoint::kCompletions, "{\"prompt\": \"\xff\xfe\"}", 400, "", "invalid JSON"},
    // prompt
    {Endpoint::kCompletions, R"({})", 400, "prompt", "required"},
    {Endpoint::kCompletions, R"({"prompt": 5})", 400, "prompt", "must be a string"},
    {Endpoint::kCompletions, R"({"prompt": []})", 400, "prompt", "must not be empty"},
    {Endpoint::kCompletions, R"({"prompt": [[]]})", 400, "prompt", "must not be empty"},
    {Endpoint::kCompletions, R"({"prompt": ["a", "b"]})", 400, "prompt", "only one prompt"},
    {Endpoint::kCompletions, R"({"prompt": [[1], [2]]})", 400, "prompt", "only one prompt"},
    {Endpoint::kCompletions, R"({"prompt": [1, "a"]})", 400, "prompt[1]", "integer"},
    {Endpoint::kCompletions, R"({"prompt": [1, 1000]})", 400, "prompt[1]", "[0, 999]"},
    {Endpoint::kCompletions, R"({"prompt": [-1]})", 400, "prompt[0]", "[0, 999]"},
    {Endpoint::kCompletions, R"({"prompt": [1.5]})", 400, "prompt[0]", "integer"},
    {Endpoint::kCompletions, R"({"prompt": [true]})", 400, "prompt", "must be a string"},
    // model
    {Endpoint::kCompletions, R"({"prompt": "x", "model": 3})", 400, "model", "string"},
    // lengths and counts
    {Endpoint::kCompletions, R"({"prompt": "x", "max_tokens": 0})", 400, "max_tokens", "[1,"},
    {Endpoint::kCompletions, R"({"prompt": "x", "max_tokens": -5})", 400, "max_tokens", "[1,"},
    {Endpoint::kCompletions, R"({"prompt": "x", "max_tokens": "10"})", 400, "max_tokens",
     "integer"},
    {Endpoint::kCompletions, R"({"prompt": "x", "max_tokens": 2.5})", 400, "max_tokens", "integer"},
    {Endpoint::kCompletions, R"({"prompt": "x", "max_tokens": 99999999999})", 400, "max_tokens",
     "[1,"},
    {Endpoint::kChat, R"({"messages": [{"role": "user", "content": "x"}],
      "max_completion_tokens": 0})",
     400, "max_completion_tokens", "[1,"},
    {Endpoint::kCompletions, R"({"prompt": "x", "n": 0})", 400, "n", "[1, 128]"},
    {Endpoint::kCompletions, R"({"prompt": "x", "n": 129})", 400, "n", "[1, 128]"},
    // sampling
    {Endpoint::kCompletions, R"({"prompt": "x", "temperature": -0.1})", 400, "temperature",
     "[0, 2]"},
    {Endpoint::kCompletions, R"({"prompt": "x", "temperature": 2.5})", 400, "temperature",
     "[0, 2]"},
    {Endpoint::kCompletions, R"({"prompt": "x", "temperature": "hot"})", 400, "temperature",
     "number"},
    {Endpoint::kCompletions, R"({"prompt": "x", "temperature": true})", 400, "temperature",
     "number"},
    {Endpoint::kCompletions, R"({"prompt": "x", "top_p": 0})", 400, "top_p", "(0, 1]"},
    {Endpoint::kCompletions, R"({"prompt": "x", "top_p": 1.5})", 400, "top_p", "(0, 1]"},
    {Endpoint::kCompletions, R"({"prompt": "x", "top_k": -2})", 400, "top_k", "[-1,"},
    {Endpoint::kCompletions, R"({"prompt": "x", "top_k": 0.5})", 400, "top_k", "integer"},
    {Endpoint::kCompletions, R"({"prompt": "x", "min_p": 1.5})", 400, "min_p", "[0, 1]"},
    {Endpoint::kCompletions, R"({"prompt": "x", "min_p": -0.5})", 400, "min_p", "[0, 1]"},
    {Endpoint::kCompletions, R"({"prompt": "x", "presence_penalty": 2.5})", 400, "presence_penalty",
     "[-2, 2]"},
    {Endpoint::kCompletions, R"({"prompt": "x", "frequency_penalty": -3})", 400,
     "frequency_penalty", "[-2, 2]"},
    {Endpoint::kCompletions, R"({"prompt": "x", "seed": "abc"})", 400, "seed", "integer"},
    {Endpoint::kCompletions, R"({"prompt": "x", "seed": 1.5})", 400, "seed", "integer"},
    // stop
    {Endpoint::kCompletions, R"({"prompt": "x", "stop": 3})", 400, "stop", "string or an array"},
    {Endpoint::kCompletions, R"({"prompt": "x", "stop": ["a", "b", "c", "d", "e"]})", 400, "stop",
     "at most 4"},
    {Endpoint::kCompletions, R"({"prompt": "x", "stop": ""})", 400, "stop", "must not be empty"},
    {Endpoint::kCompletions, R"({"prompt": "x", "stop": ["a", 1]})", 400, "stop[1]", "string"},
    // logit_bias
    {Endpoint::kCompletions, R"({"prompt": "x", "logit_bias": [1]})", 400, "logit_bias", "object"},
    {Endpoint::kCompletions, R"({"prompt": "x", "logit_bias": {"abc": 1}})", 400, "logit_bias",
     "not a token id"},
    {Endpoint::kCompletions, R"({"prompt": "x", "logit_bias": {"1000": 1}})", 400, "logit_bias",
     "not a token id"},
    {Endpoint::kCompletions, R"({"prompt": "x", "logit_bias": {"-1": 1}})", 400, "logit_bias",
     "not a token id"},
    {Endpoint::kCompletions, R"({"prompt": "x", "logit_bias": {"5x": 1}})", 400, "logit_bias",
     "not a token id"},
    {Endpoint::kCompletions, R"({"prompt": "x", "logit_bias": {"5": 101}})", 400, "logit_bias[5]",
     "[-100, 100]"},
    {Endpoint::kCompletions, R"({"prompt": "x", "logit_bias": {"5": "up"}})", 400, "logit_bias[5]",
     "number"},
    // logprobs
    {Endpoint::kCompletions, R"({"prompt": "x", "logprobs": 6})", 400, "logprobs", "[0, 5]"},
    {Endpoint::kCompletions, R"({"prompt": "x", "logprobs": true})", 400, "logprobs", "integer"},
    {Endpoint::kChat, R"({"messages": [{"role": "user", "content": "x"}], "logprobs": 3})", 400,
     "logprobs", "boolean"},
    {Endpoint::kChat, R"({"messages": [{"role": "user", "content": "x"}], "top_logprobs": 3})", 400,
     "top_logprobs", "requires"},
    {Endpoint::kChat, R"({"messages": [{"role": "user", "content": "x"}], "logprobs": true,
      "top_logprobs": 21})",
     400, "top_logprobs", "[0, 20]"},
    // streaming
    {Endpoint::kCompletions, R"({"prompt": "x", "stream": "yes"})", 400, "stream", "boolean"},
    {Endpoint::kCompletions, R"({"prompt": "x", "stream_options": {"include_usage": true}})", 400,
     "stream_options", "only allowed"},
    {Endpoint::kCompletions, R"({"prompt": "x", "stream": true, "stream_options": 1})", 400,
     "stream_options", "object"},
    {Endpoint::kCompletions, R"({"prompt": "x", "stream": true,
      "stream_options": {"include_usage": 1}})",
     400, "stream_options.include_usage", "boolean"},
    // extensions
    {Endpoint::kCompletions, R"({"prompt": "x", "priority": "high"})", 400, "priority", "integer"},
    {Endpoint::kCompletions, R"({"prompt": "x", "priority": 3000000000})", 400, "priority", "["},
    {Endpoint::kCompletions, R"({"prompt": "x", "ignore_eos": 1})", 400, "ignore_eos", "boolean"},
    {Endpoint::kCompletions, R"({"prompt": "x", "user": 1})", 400, "user", "string"},
    // known but not implemented
    {Endpoint::kCompletions, R"({"prompt": "x", "echo": true})", 400, "echo", "not supported"},
    {Endpoint::kCompletions, R"({"prompt": "x", "suffix": "y"})", 400, "suffix", "not supported"},
    {Endpoint::kCompletions, R"({"prompt": "x", "best_of": 3})", 400, "best_of", "not supported"},
    {Endpoint::kChat, R"({"messages": [{"role": "user", "content": "x"}], "tools": [{}]})", 400,
     "tools", "not supported"},
    {Endpoint::kChat, R"({"messages": [{"role": "user", "content": "x"}],
      "response_format": {"type": "json_object"}})",
     400, "response_format", "text"},
    // messages
    {Endpoint::kChat, R"({})", 400, "messages", "required"},
    {Endpoint::kChat, R"({"messages": "hi"})", 400, "messages", "array"},
    {Endpoint::kChat, R"({"messages": []})", 400, "messages", "must not be empty"},
    {Endpoint::kChat, R"({"messages": ["hi"]})", 400, "messages[0]", "object"},
    {Endpoint::kChat, R"({"messages": [{"content": "hi"}]})", 400, "messages[0].role", "required"},
    {Endpoint::kChat, R"({"messages": [{"role": "robot", "content": "hi"}]})", 400,
     "messages[0].role", "system, user or assistant"},
    {Endpoint::kChat, R"({"messages": [{"role": "tool", "content": "hi"}]})", 400,
     "messages[0].role", "system, user or assistant"},
    {Endpoint::kChat, R"({"messages": [{"role": "user", "content": 5}]})", 400,
     "messages[0].content", "string"},
    {Endpoint::kChat, R"({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]})",
     400, "messages[0].content[0].type", "only text"},
    {Endpoint::kChat, R"({"messages": [{"role": "user", "content": [{"type": "text"}]}]})", 400,
     "messages[0].content[0].text", "required"},
    {Endpoint::kChat, R"({"messages": [{"role": "user", "content": [7]}]})", 400,
     "messages[0].content[0]", "object"},
};

TEST(ServeRequest, EveryRefusal) {
  for (const BadCase& c : kBad) {
    SCOPED_TRACE(c.body);
    const ApiError e = refusal(c.ep, c.body);
    EXPECT_EQ(e.status(), c.status) << e.what();
    EXPECT_EQ(e.param(), c.param) << e.what();
    EXPECT_NE(std::string(e.what()).find(c.in_message), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << "one line";
  }
}

TEST(ServeRequest, DeepNestingIsRefusedWithoutRecursion) {
  const std::string deep =
      "{\"prompt\": " + std::string(200000, '[') + "1" + std::string(200000, ']') + "}";
  const ApiError e = refusal(Endpoint::kCompletions, deep);
  EXPECT_EQ(e.status(), 400);
  EXPECT_NE(std::string(e.what()).find("nested"), std::string::npos);
}

TEST(ServeRequest, BracketsInsideStringsDoNotCount) {
  const std::string s = "{\"prompt\": \"" + std::string(500, '[') + "\\\"" + "\"}";
  EXPECT_EQ(completion(s).prompt_text, std::string(500, '[') + "\"");
}

TEST(ServeRequest, GarbageNeverCrashes) {
  // Random bytes and mutations of a valid body: each either parses or is a 400, nothing else.
  const std::string valid =
      R"({"prompt": [1, 2], "max_tokens": 3, "stop": ["x"], "logit_bias": {"4": 1.5}})";
  uint64_t s = 12345;
  auto next = [&] {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  };
  for (int i = 0; i < 3000; ++i) {
    std::string b = valid;
    const int edits = 1 + static_cast<int>(next() % 4);
    for (int k = 0; k < edits; ++k) {
      const size_t at = next() % b.size();
      switch (next() % 3) {
        case 0:
          b[at] = static_cast<char>(next() % 256);
          break;
        case 1:
          b.erase(at, 1);
          break;
        default:
          b.insert(at, 1, "[]{}\",:0-e.9tn"[next() % 14]);
          break;
      }
    }
    for (Endpoint ep : {Endpoint::kCompletions, Endpoint::kChat}) {
      try {
        parse_request(ep, b, limits());
      } catch (const ApiError& e) {
        EXPECT_EQ(e.status(), 400) << b;
      }
    }
  }
}

// --- ServeRequest -> engine request -------------------------------------------------------------

class ServePrompt : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    phi3_ = test::load_vocab("tokenizer/ggml-vocab-phi-3.gguf");
    spm_ = test::load_vocab("tokenizer/ggml-vocab-llama-spm.gguf");
  }
  static std::shared_ptr<const tok::Tokenizer> phi3_, spm_;
  ParseLimits lim(const tok::Tokenizer& tk) {
    ParseLimits l;
    l.n_vocab = tk.n_vocab();
    return l;
  }
  ApiError refusal(const ServeRequest& r, const tok::Tokenizer& tk, const PromptSettings& s) {
    try {
      to_engine_request(r, tk, s);
    } catch (const ApiError& e) {
      return e;
    }
    return ApiError(0, "accepted");
  }
};
std::shared_ptr<const tok::Tokenizer> ServePrompt::phi3_, ServePrompt::spm_;

TEST_F(ServePrompt, TextPromptGetsBosAndDefaults) {
  const ServeRequest r =
      parse_request(Endpoint::kCompletions, R"({"prompt": "Hello world"})", lim(*spm_));
  const engine::CompletionRequest q = to_engine_request(r, *spm_, {});
  EXPECT_EQ(q.prompt, (std::vector<int32_t>{1, 15043, 3186}));
  EXPECT_EQ(q.max_tokens, 16);
  EXPECT_EQ(q.n, 1);
  EXPECT_EQ(q.logprobs, -1);
  EXPECT_EQ(q.sampling.temperature, 1.0f);
}

TEST_F(ServePrompt, TokenPromptIsUsedAsGiven) {
  const ServeRequest r =
      parse_request(Endpoint::kCompletions,
                    R"({"prompt": [5, 6, 7], "max_tokens": 4, "n": 2, "stop": ["z"], "priority": 2,
          "logprobs": 3, "ignore_eos": true, "seed": 9})",
                    lim(*spm_));
  const engine::CompletionRequest q = to_engine_request(r, *spm_, {});
  EXPECT_EQ(q.prompt, (std::vector<int32_t>{5, 6, 7}));
  EXPECT_EQ(q.max_tokens, 4);
  EXPECT_EQ(q.n, 2);
  EXPECT_EQ(q.stop, (std::vector<std::string>{"z"}));
  EXPECT_EQ(q.priority, 2);
  EXPECT_EQ(q.logprobs, 3);
  EXPECT_TRUE(q.ignore_eos);
  EXPECT_EQ(q.sampling.seed, 9u);
}

TEST_F(ServePrompt, SeedsDifferWhenNotGiven) {
  const ServeRequest r = parse_request(Endpoint::kCompletions, R"({"prompt": [5]})", lim(*spm_));
  EXPECT_NE(to_engine_request(r, *spm_, {}).sampling.seed,
            to_engine_request(r, *spm_, {}).sampling.seed);
}

TEST_F(ServePrompt, ChatUsesTheModelsTemplate) {
  const ServeRequest r = parse_request(
      Endpoint::kChat, R"({"messages": [{"role": "user", "content": "Hi"}]})", lim(*phi3_));
  PromptSettings s;
  s.max_model_len = 4096;
  const engine::CompletionRequest q = to_engine_request(r, *phi3_, s);
  const std::string text = phi3_->decode(q.prompt);
  EXPECT_NE(text.find("<|user|>"), std::string::npos) << text;
  EXPECT_NE(text.find("<|assistant|>"), std::string::npos) << text;
  EXPECT_EQ(q.prompt.front(), phi3_->bos_id());
  EXPECT_EQ(q.prompt[1], phi3_->find_token("<|user|>")) << "special tokens are parsed";
  // Chat's default: the rest of the context.
  EXPECT_EQ(q.max_tokens, 4096 - static_cast<int32_t>(q.prompt.size()));
}

TEST_F(ServePrompt, ChatTemplateOverride) {
  const ServeRequest r = parse_request(
      Endpoint::kChat, R"({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5})",
      lim(*spm_));
  PromptSettings s;
  s.chat_family = tok::ChatFamily::ChatML;
  const engine::CompletionRequest q = to_engine_request(r, *spm_, s);
  EXPECT_NE(spm_->decode(q.prompt).find("<|im_start|>user"), std::string::npos);
  EXPECT_EQ(q.max_tokens, 5);
}

TEST_F(ServePrompt, ChatWithoutTemplateIs400) {
  const ServeRequest r = parse_request(
      Endpoint::kChat, R"({"messages": [{"role": "user", "content": "Hi"}]})", lim(*spm_));
  const ApiError e = refusal(r, *spm_, {});
  EXPECT_EQ(e.status(), 400);
  EXPECT_NE(std::string(e.what()).find("--chat-template"), std::string::npos);
}

TEST_F(ServePrompt, TemplateRejectionIs400) {
  // Llama 2's template requires alternating user/assistant turns.
  const ServeRequest r = parse_request(
      Endpoint::kChat,
      R"({"messages": [{"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}]})",
      lim(*spm_));
  PromptSettings s;
  s.chat_family = tok::ChatFamily::Llama2;
  const ApiError e = refusal(r, *spm_, s);
  EXPECT_EQ(e.status(), 400);
  EXPECT_EQ(e.param(), "messages");
}

TEST_F(ServePrompt, ContextLimits) {
  PromptSettings s;
  s.max_model_len = 8;
  // Nine tokens of prompt: the prompt alone fills the context -> 413.
  ServeRequest r = parse_request(Endpoint::kCompletions,
                                 R"({"prompt": [1, 2, 3, 4, 5, 6, 7, 8, 9]})", lim(*spm_));
  ApiError e = refusal(r, *spm_, s);
  EXPECT_EQ(e.status(), 413);
  EXPECT_EQ(e.code(), "context_length_exceeded");
  // Prompt fits, prompt + max_tokens does not -> 400 naming max_tokens.
  r = parse_request(Endpoint::kCompletions, R"({"prompt": [1, 2, 3], "max_tokens": 6})",
                    lim(*spm_));
  e = refusal(r, *spm_, s);
  EXPECT_EQ(e.status(), 400);
  EXPECT_EQ(e.param(), "max_tokens");
  r = parse_request(Endpoint::kCompletions, R"({"prompt": [1, 2, 3], "max_tokens": 5})",
                    lim(*spm_));
  EXPECT_EQ(to_engine_request(r, *spm_, s).max_tokens, 5);
}

TEST_F(ServePrompt, EmptyTextPromptIsJustBos) {
  const ServeRequest r = parse_request(Endpoint::kCompletions, R"({"prompt": ""})", lim(*spm_));
  EXPECT_EQ(to_engine_request(r, *spm_, {}).prompt, (std::vector<int32_t>{1}));
}

}  // namespace
}  // namespace brisk::serve
