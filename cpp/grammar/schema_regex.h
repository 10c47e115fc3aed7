// The regular-expression subset of JSON Schema's `pattern` keyword, compiled to a GBNF expression over
// the *JSON text* of a string's content (between the quotes): a character the regex matches appears
// as itself, or escaped where JSON requires it (\" \\ and control characters).
//
// Supported: literals (any UTF-8), escapes \n \r \t \f \v \0 \xHH \uHHHH and escaped metacharacters,
// classes [...] [^...] with ranges, \d \w \s \D \W \S (ASCII meanings for \d \w; \s is ECMAScript's
// whitespace set), `.` (anything but line terminators), groups ( ), (?: ), (?<name> ), alternation |,
// quantifiers * + ? {m} {m,} {m,n} (lazy `?` suffixes allowed: same language), ^ and $ at the ends.
// The pattern is matched against the whole string: ^ and $ are implied when absent (JSON Schema's
// search semantics would let any text surround the match; the anchored reading is the stricter one).
// Refused (InvalidParam naming `pattern`): backreferences, lookaround, \b \B, anchors elsewhere,
// bounds over 1000, unicode property escapes, and malformed patterns.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "engine/status.h"
#include "grammar/utf8_ranges.h"

namespace glm::grammar {

// `where` names the keyword in errors (e.g. "'pattern' at #/properties/id").
Status regex_to_gbnf(std::string_view pattern, const std::string& where, std::string* gbnf);

// A GBNF expression for one character of JSON string content whose decoded code point is in `ranges`.
std::string json_char_class(const std::vector<CodePointRange>& ranges);

// A GBNF "literal" of UTF-8 text (escaped for GBNF).
std::string gbnf_literal(std::string_view text);

}  // namespace glm::grammar
