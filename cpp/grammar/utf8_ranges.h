// Code-point classes as byte-level UTF-8: the grammar matches bytes only, so a class such as [^"\\]
// or [a-zα-ω] becomes alternatives of byte-set sequences (one per encoded length and range piece).
// A byte-level BPE token may then end in the middle of a character and still be matched.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "grammar/grammar_ir.h"

namespace glm::grammar {

struct CodePointRange {
  uint32_t lo = 0, hi = 0;  // inclusive
};

constexpr uint32_t kMaxCodePoint = 0x10FFFF;

// The byte sequences whose UTF-8 decodings are exactly the code points in `ranges` (surrogates
// U+D800..U+DFFF excluded: they have no valid UTF-8 encoding). Sequences that differ only in their
// first byte are merged, so ASCII is one sequence of length 1 and each longer length a few.
std::vector<std::vector<ByteSet>> utf8_sequences(std::vector<CodePointRange> ranges);

// The complement of `ranges` within [0, kMaxCodePoint].
std::vector<CodePointRange> complement(std::vector<CodePointRange> ranges);

// Appends the UTF-8 encoding of a code point (cp <= kMaxCodePoint, not a surrogate).
void append_utf8(uint32_t cp, std::string* out);

// Decodes one code point from s[*i...] and advances *i; false for invalid UTF-8 (overlong forms,
// surrogates, truncated sequences, values above U+10FFFF).
bool decode_utf8(const std::string_view s, size_t* i, uint32_t* cp);

}  // namespace glm::grammar
