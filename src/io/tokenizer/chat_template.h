// Chat templates without a Jinja interpreter.
//
// Models ship a Jinja chat_template; nearly all of them are one of a handful of families. We
// recognise the family from markers in the template text and render it natively, reproducing
// byte for byte what the family's reference template renders (each renderer names its source).
// A template we do not recognise is an error, never a guess: the user picks a family by name.
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace brisk::tok {

enum class ChatFamily { Llama2, Llama3, ChatML, Mistral, Phi3, Zephyr, Gemma };

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

// The family whose markers the Jinja text carries, or nullopt when it is none we render exactly.
std::optional<ChatFamily> detect_chat_family(std::string_view jinja_template);

// Names used by --chat-template: llama2, llama3, chatml, mistral, phi3, zephyr, gemma.
const char* chat_family_name(ChatFamily f);
std::optional<ChatFamily> chat_family_from_name(std::string_view name);

// Renders the conversation as the family's reference template does. bos_token / eos_token are the
// model's special-token texts (e.g. "<s>", "</s>"); families whose template does not use them
// ignore them. Throws brisk::Error for an unknown role, or a conversation the reference template
// rejects (e.g. roles not alternating user/assistant where the template requires it).
std::string apply_chat_template(ChatFamily family, const std::vector<ChatMessage>& messages,
                                bool add_generation_prompt, std::string_view bos_token,
                                std::string_view eos_token);

// Detects the family from the model's Jinja template, then renders; throws when unrecognised.
std::string apply_chat_template(std::string_view jinja_template,
                                const std::vector<ChatMessage>& messages,
                                bool add_generation_prompt, std::string_view bos_token,
                                std::string_view eos_token);

}  // namespace brisk::tok
