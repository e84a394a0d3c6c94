#include "io/tokenizer/unicode.h"

#include <unicode/uchar.h>

#include <array>

namespace brisk::tok {

char32_t utf8_decode_one(std::string_view text, size_t pos, size_t* len) {
  const auto b0 = static_cast<uint8_t>(text[pos]);
  const size_t n = utf8_len(b0);
  if (n == 1) {
    *len = 1;
    return b0 < 0x80 ? b0 : kInvalidCodepoint;
  }
  if (pos + n > text.size()) {
    *len = 1;
    return kInvalidCodepoint;
  }
  char32_t cp = b0 & (0x7F >> n);
  for (size_t i = 1; i < n; ++i) {
    const auto b = static_cast<uint8_t>(text[pos + i]);
    if ((b & 0xC0) != 0x80) {
      *len = 1;
      return kInvalidCodepoint;
    }
    cp = (cp << 6) | (b & 0x3F);
  }
  // Reject overlong forms, surrogates and values past U+10FFFF so that decode/encode is a
  // bijection on the accepted sequences.
  static constexpr char32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
    *len = 1;
    return kInvalidCodepoint;
  }
  *len = n;
  return cp;
}

void utf8_append(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

std::string utf8_encode(char32_t cp) {
  std::string s;
  utf8_append(s, cp);
  return s;
}

size_t utf8_incomplete_tail(std::string_view s) {
  // Look back at most 3 bytes for a lead byte whose sequence runs past the end.
  const size_t n = s.size();
  for (size_t back = 1; back <= 3 && back <= n; ++back) {
    const auto b = static_cast<uint8_t>(s[n - back]);
    if ((b & 0xC0) == 0x80) continue;  // continuation byte: keep looking for the lead
    const size_t need = utf8_len(b);
    return need > back ? back : 0;
  }
  return 0;
}

namespace {

uint8_t flags_from_icu(char32_t cp) {
  uint8_t f = 0;
  const auto c = static_cast<UChar32>(cp);
  switch (u_charType(c)) {
    case U_UPPERCASE_LETTER:
    case U_LOWERCASE_LETTER:
    case U_TITLECASE_LETTER:
    case U_MODIFIER_LETTER:
    case U_OTHER_LETTER:
      f |= kLetter;
      break;
    case U_DECIMAL_DIGIT_NUMBER:
    case U_LETTER_NUMBER:
    case U_OTHER_NUMBER:
      f |= kNumber;
      break;
    case U_CONNECTOR_PUNCTUATION:
    case U_DASH_PUNCTUATION:
    case U_START_PUNCTUATION:
    case U_END_PUNCTUATION:
    case U_INITIAL_PUNCTUATION:
    case U_FINAL_PUNCTUATION:
    case U_OTHER_PUNCTUATION:
      f |= kPunct;
      break;
    default:
      break;
  }
  if (u_isUWhiteSpace(c)) f |= kSpace;
  return f;
}

}  // namespace

uint8_t codepoint_flags(char32_t cp) {
  if (cp == kInvalidCodepoint) return 0;
  if (cp < 0x80) {
    // ASCII dominates real text: answer it from a table built once.
    static const std::array<uint8_t, 128> table = [] {
      std::array<uint8_t, 128> t{};
      for (char32_t c = 0; c < 128; ++c) t[c] = flags_from_icu(c);
      return t;
    }();
    return table[cp];
  }
  return flags_from_icu(cp);
}

namespace {

struct ByteTables {
  std::array<char32_t, 256> to_cp{};
  // Images lie below 256 + 256; anything else is not a byte image.
  std::array<int16_t, 512> to_byte{};
  ByteTables() {
    to_byte.fill(-1);
    int next = 256;
    for (int b = 0; b < 256; ++b) {
      // Printable Latin-1 bytes map to themselves; the rest are shifted past 255 in order.
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      const int cp = printable ? b : next++;
      to_cp[b] = static_cast<char32_t>(cp);
      to_byte[cp] = static_cast<int16_t>(b);
    }
  }
};

const ByteTables& byte_tables() {
  static const ByteTables t;
  return t;
}

}  // namespace

char32_t byte_to_unicode(uint8_t b) {
  return byte_tables().to_cp[b];
}

int unicode_to_byte(char32_t cp) {
  if (cp >= 512) return -1;
  return byte_tables().to_byte[cp];
}

std::string bytes_to_unicode_text(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) utf8_append(out, byte_to_unicode(static_cast<uint8_t>(c)));
  return out;
}

std::string unicode_text_to_bytes(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size();) {
    size_t len = 0;
    const char32_t cp = utf8_decode_one(text, i, &len);
    const int b = cp == kInvalidCodepoint ? -1 : unicode_to_byte(cp);
    if (b >= 0) {
      out += static_cast<char>(b);
    } else {
      out.append(text.substr(i, len));
    }
    i += len;
  }
  return out;
}

}  // namespace brisk::tok
