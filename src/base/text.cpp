// UTF-8 validation and newline translation (hiq/base/text.h).
#include "hiq/base/text.h"

#include <cstdint>

namespace hiq {

std::string_view NewlinesName(Newlines newlines) {
  return newlines == Newlines::kLf ? "lf" : "keep";
}

std::optional<Newlines> NewlinesFromName(std::string_view name) {
  if (name == "lf") return Newlines::kLf;
  if (name == "keep") return Newlines::kKeep;
  return std::nullopt;
}

size_t FirstInvalidUtf8(std::string_view bytes) {
  const size_t n = bytes.size();
  size_t i = 0;
  while (i < n) {
    const auto b0 = static_cast<uint8_t>(bytes[i]);
    if (b0 < 0x80) {
      ++i;
      continue;
    }
    // The allowed range of the second byte narrows for E0, ED, F0 and F4 (table 3-7), which is
    // what excludes overlong forms, surrogates and code points above U+10FFFF.
    size_t length = 0;
    uint8_t lo = 0x80, hi = 0xBF;
    if (b0 >= 0xC2 && b0 <= 0xDF) {
      length = 2;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
      length = 3;
      if (b0 == 0xE0) lo = 0xA0;
      if (b0 == 0xED) hi = 0x9F;
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
      length = 4;
      if (b0 == 0xF0) lo = 0x90;
      if (b0 == 0xF4) hi = 0x8F;
    } else {
      return i;
    }
    if (i + length > n) return i;
    for (size_t k = 1; k < length; ++k) {
      const auto b = static_cast<uint8_t>(bytes[i + k]);
      const uint8_t min = k == 1 ? lo : 0x80, max = k == 1 ? hi : 0xBF;
      if (b < min || b > max) return i;
    }
    i += length;
  }
  return std::string_view::npos;
}

std::string CrToLf(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '\r') {
      out += text[i];
      continue;
    }
    out += '\n';
    if (i + 1 < text.size() && text[i + 1] == '\n') ++i;
  }
  return out;
}

}  // namespace hiq
