// hiq/base/text.h - text as evaluators read it: UTF-8 validation and newline translation.
//
// Evaluation datasets are read in Python's text mode, which turns CRLF and lone CR into LF; a
// CRLF file scored byte for byte gives CR tokens the model never saw. So every text the job
// reads (hiq/io/tokenizer.h's ReadTextFile) is checked to be UTF-8 and, by default, translated
// to LF; Newlines::kKeep keeps the bytes as they are. Pure functions of bytes, thread-safe.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace hiq {

enum class Newlines { kLf, kKeep };  // "lf" | "keep"
std::string_view NewlinesName(Newlines newlines);
std::optional<Newlines> NewlinesFromName(std::string_view name);

// Offset of the first byte of the first ill-formed UTF-8 sequence (Unicode 15, table 3-7:
// no overlong forms, no surrogates, nothing above U+10FFFF, no truncated sequence), or
// std::string_view::npos when all of `bytes` is well-formed.
size_t FirstInvalidUtf8(std::string_view bytes);

// `text` with every CRLF and every lone CR replaced by LF.
std::string CrToLf(std::string_view text);

}  // namespace hiq
