// Strict JSON (RFC 8259) DOM parser for hostile files: safetensors headers, index and config files.
// Unlike JSON.parse or most permissive parsers it rejects duplicate object keys (last-wins lets two
// readers of one file disagree), invalid UTF-8, lone surrogates, NaN/Infinity, leading zeros, control
// characters in strings, nesting deeper than JsonLimits::max_depth and trailing garbage.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "engine/status.h"

namespace glm {

class JsonValue {
 public:
  enum class Kind : uint8_t { Null, Bool, Number, String, Array, Object };
  using Member = std::pair<std::string, JsonValue>;

  JsonValue() = default;

  Kind kind() const { return kind_; }
  bool is_null() const { return kind_ == Kind::Null; }
  bool is_bool() const { return kind_ == Kind::Bool; }
  bool is_number() const { return kind_ == Kind::Number; }
  bool is_string() const { return kind_ == Kind::String; }
  bool is_array() const { return kind_ == Kind::Array; }
  bool is_object() const { return kind_ == Kind::Object; }

  // Accessors return a neutral value (false, 0, empty) for the wrong kind; check kind() first.
  bool as_bool() const { return kind_ == Kind::Bool && bool_; }
  double as_double() const { return kind_ == Kind::Number ? number_ : 0.0; }
  // The number exactly as written in the file (empty for non-numbers).
  std::string_view number_text() const { return kind_ == Kind::Number ? std::string_view(text_) : std::string_view(); }
  // Exact integer reads from the number text (a double loses precision above 2^53). Accept any
  // spelling of an integral value ("7", "7.0", "7e0", "70e-1"); fail (return false, *out untouched)
  // for non-numbers, non-integral values, out-of-range values, and negative values for as_u64.
  bool as_u64(uint64_t* out) const;
  bool as_i64(int64_t* out) const;
  bool is_negative_number() const { return kind_ == Kind::Number && !text_.empty() && text_[0] == '-'; }

  const std::string& as_string() const { return kind_ == Kind::String ? text_ : empty_string(); }
  const std::vector<JsonValue>& as_array() const { return kind_ == Kind::Array ? items_ : empty_array(); }
  const std::vector<Member>& as_object() const { return kind_ == Kind::Object ? members_ : empty_object(); }
  size_t size() const { return kind_ == Kind::Array ? items_.size() : kind_ == Kind::Object ? members_.size() : 0; }

  // Linear search (keys are unique: the parser rejects duplicates). nullptr if absent or not an object.
  const JsonValue* find(std::string_view key) const;

  static const char* kind_name(Kind k);

 private:
  friend class JsonParser;
  static const std::string& empty_string();
  static const std::vector<JsonValue>& empty_array();
  static const std::vector<Member>& empty_object();

  Kind kind_ = Kind::Null;
  bool bool_ = false;
  double number_ = 0.0;
  std::string text_;               // String: decoded UTF-8; Number: the source text
  std::vector<JsonValue> items_;   // Array
  std::vector<Member> members_;    // Object, in file order
};

struct JsonLimits {
  size_t max_depth = 64;  // nested arrays/objects; bounds recursion (stack) on hostile input
  // Bounds DOM memory: ~100 bytes per value, so a 100 MB file of "[]," cannot become a 3 GB tree.
  size_t max_values = size_t(1) << 24;
};

// Parses one JSON value (surrounding whitespace allowed, nothing else). Errors are
// ErrorCode::ModelFormat: "<what>: invalid JSON at byte <offset>: <reason>".
Status parse_json(std::string_view text, JsonValue* out, std::string_view what, const JsonLimits& limits = {});

// Renders an untrusted string for an error message: double-quoted, control/non-ASCII-unsafe bytes as
// \xNN, and cut at max_len bytes with "..." so a hostile name cannot flood or forge log lines.
std::string quote_for_message(std::string_view s, size_t max_len = 200);

}  // namespace glm
