// Small Unicode helpers shared by the tokenizers: UTF-8 <-> code points, the character classes the
// pre-tokenizer regexes need (letters, numbers, punctuation, white space; taken from ICU), and the
// GPT-2 byte <-> printable-code-point table used by byte-level BPE vocabularies.
//
// Decoding never fails: a byte that does not start a valid UTF-8 sequence becomes one code point
// of its own (kInvalidCodepoint) spanning that single byte, so every byte of the input stays
// covered by exactly one code point and splits can always be mapped back to byte ranges.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace brisk::tok {

inline constexpr char32_t kInvalidCodepoint = 0xFFFFFFFF;

// Length of the UTF-8 sequence announced by a lead byte (1 for stray continuation bytes).
inline size_t utf8_len(uint8_t lead) {
  if (lead < 0x80) return 1;
  if ((lead & 0xE0) == 0xC0) return 2;
  if ((lead & 0xF0) == 0xE0) return 3;
  if ((lead & 0xF8) == 0xF0) return 4;
  return 1;
}

// Decodes one code point at text[pos]; `len` receives its byte length (>= 1).
char32_t utf8_decode_one(std::string_view text, size_t pos, size_t* len);
void utf8_append(std::string& out, char32_t cp);
std::string utf8_encode(char32_t cp);

// Number of bytes at the end of `s` that form an incomplete (but so far valid) UTF-8 sequence.
size_t utf8_incomplete_tail(std::string_view s);

// Category bits of one code point.
enum CpFlags : uint8_t {
  kLetter = 1,
  kNumber = 2,
  kPunct = 4,
  kSpace = 8,  // Unicode White_Space
};
uint8_t codepoint_flags(char32_t cp);

// GPT-2's reversible mapping of the 256 byte values onto printable code points.
char32_t byte_to_unicode(uint8_t b);
// -1 when `cp` is not the image of a byte.
int unicode_to_byte(char32_t cp);
// Maps every byte of `bytes` to its printable code point (UTF-8 encoded).
std::string bytes_to_unicode_text(std::string_view bytes);
// Inverse of bytes_to_unicode_text; code points outside the table are kept as UTF-8.
std::string unicode_text_to_bytes(std::string_view text);

}  // namespace brisk::tok
