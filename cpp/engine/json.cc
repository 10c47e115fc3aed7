#include "engine/json.h"

#include <charconv>
#include <cmath>
#include <unordered_set>

namespace glm {

const std::string& JsonValue::empty_string() { static const std::string s; return s; }
const std::vector<JsonValue>& JsonValue::empty_array() { static const std::vector<JsonValue> v; return v; }
const std::vector<JsonValue::Member>& JsonValue::empty_object() { static const std::vector<Member> v; return v; }

const char* JsonValue::kind_name(Kind k) {
  switch (k) {
    case Kind::Null: return "null";
    case Kind::Bool: return "boolean";
    case Kind::Number: return "number";
    case Kind::String: return "string";
    case Kind::Array: return "array";
    case Kind::Object: return "object";
  }
  return "?";
}

const JsonValue* JsonValue::find(std::string_view key) const {
  if (kind_ != Kind::Object) return nullptr;
  for (const auto& m : members_) {
    if (m.first == key) return &m.second;
  }
  return nullptr;
}

namespace {

// Exact integer value of a validated JSON number text: sign, magnitude. False if not integral or if
// the magnitude exceeds 2^64-1. Works on the decimal digits, never through a double.
bool exact_integer(std::string_view t, bool* negative, uint64_t* magnitude) {
  size_t i = 0;
  *negative = false;
  if (i < t.size() && t[i] == '-') { *negative = true; ++i; }
  // Significant digits (integer and fraction parts) and the power of ten they are scaled by.
  std::string digits;
  int64_t scale = 0;
  while (i < t.size() && t[i] >= '0' && t[i] <= '9') digits.push_back(t[i++]);
  if (i < t.size() && t[i] == '.') {
    ++i;
    while (i < t.size() && t[i] >= '0' && t[i] <= '9') { digits.push_back(t[i++]); --scale; }
  }
  if (i < t.size() && (t[i] == 'e' || t[i] == 'E')) {
    ++i;
    bool exp_negative = false;
    if (i < t.size() && (t[i] == '+' || t[i] == '-')) exp_negative = t[i++] == '-';
    int64_t e = 0;
    // Saturate: any exponent beyond 10^9 is either overflow or (for zero mantissa) irrelevant.
    while (i < t.size() && t[i] >= '0' && t[i] <= '9') {
      if (e < 1000000000) e = e * 10 + (t[i] - '0');
      ++i;
    }
    scale += exp_negative ? -e : e;
  }
  // Strip leading zeros; an all-zero mantissa is 0 whatever the exponent.
  size_t first = digits.find_first_not_of('0');
  if (first == std::string::npos) { *magnitude = 0; return true; }
  digits.erase(0, first);
  // A negative scale must only remove trailing zeros, else the value has a fraction.
  while (scale < 0) {
    if (digits.empty() || digits.back() != '0') return false;
    digits.pop_back();
    ++scale;
  }
  if (digits.size() + uint64_t(scale) > 20) return false;  // > 2^64-1 for sure
  uint64_t v = 0;
  for (char c : digits) {
    if (__builtin_mul_overflow(v, uint64_t(10), &v) || __builtin_add_overflow(v, uint64_t(c - '0'), &v)) return false;
  }
  for (int64_t k = 0; k < scale; ++k) {
    if (__builtin_mul_overflow(v, uint64_t(10), &v)) return false;
  }
  *magnitude = v;
  return true;
}

}  // namespace

bool JsonValue::as_u64(uint64_t* out) const {
  if (kind_ != Kind::Number) return false;
  bool neg;
  uint64_t mag;
  if (!exact_integer(text_, &neg, &mag)) return false;
  if (neg && mag != 0) return false;  // "-0" is 0
  *out = mag;
  return true;
}

bool JsonValue::as_i64(int64_t* out) const {
  if (kind_ != Kind::Number) return false;
  bool neg;
  uint64_t mag;
  if (!exact_integer(text_, &neg, &mag)) return false;
  if (neg) {
    if (mag > uint64_t(INT64_MAX) + 1) return false;
    *out = mag == uint64_t(INT64_MAX) + 1 ? INT64_MIN : -int64_t(mag);
  } else {
    if (mag > uint64_t(INT64_MAX)) return false;
    *out = int64_t(mag);
  }
  return true;
}

std::string quote_for_message(std::string_view s, size_t max_len) {
  bool cut = false;
  if (s.size() > max_len) {
    size_t n = max_len;
    while (n > 0 && (uint8_t(s[n]) & 0xC0) == 0x80) --n;  // do not split a UTF-8 sequence
    s = s.substr(0, n);
    cut = true;
  }
  std::string out = "\"";
  static const char kHex[] = "0123456789abcdef";
  for (char ch : s) {
    const uint8_t c = uint8_t(ch);
    if (c < 0x20 || c == 0x7f || c == '"' || c == '\\') {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += ch;
    }
  }
  out += cut ? "\"..." : "\"";
  return out;
}

// Recursive descent over the input; depth is bounded by limits.max_depth, so recursion is bounded.
class JsonParser {
 public:
  JsonParser(std::string_view text, std::string_view what, const JsonLimits& limits)
      : s_(text), what_(what), limits_(limits) {}

  Status parse(JsonValue* out) {
    skip_ws();
    GLM_TRY(parse_value(out, 0));
    skip_ws();
    if (pos_ != s_.size()) return fail(pos_, "trailing characters after the JSON value");
    return Status::ok();
  }

 private:
  Status fail(size_t at, const std::string& reason) const {
    return format_error(std::string(what_) + ": invalid JSON at byte " + std::to_string(at) + ": " + reason);
  }

  static std::string byte_desc(uint8_t c) {
    static const char kHex[] = "0123456789abcdef";
    std::string r = "byte 0x";
    r += kHex[c >> 4];
    r += kHex[c & 15];
    if (c >= 0x20 && c < 0x7f) { r += " '"; r += char(c); r += "'"; }
    return r;
  }

  void skip_ws() {
    while (pos_ < s_.size()) {
      const char c = s_[pos_];
      if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
      ++pos_;
    }
  }

  bool literal(std::string_view word) {
    if (s_.substr(pos_, word.size()) != word) return false;
    pos_ += word.size();
    return true;
  }

  Status parse_value(JsonValue* out, size_t depth) {
    if (++values_ > limits_.max_values) {
      return fail(pos_, "more than " + std::to_string(limits_.max_values) + " values");
    }
    if (pos_ >= s_.size()) return fail(pos_, "unexpected end of input, expected a value");
    const char c = s_[pos_];
    switch (c) {
      case '{': return parse_object(out, depth + 1);
      case '[': return parse_array(out, depth + 1);
      case '"': out->kind_ = JsonValue::Kind::String; return parse_string(&out->text_);
      case 't':
        if (!literal("true")) break;
        out->kind_ = JsonValue::Kind::Bool;
        out->bool_ = true;
        return Status::ok();
      case 'f':
        if (!literal("false")) break;
        out->kind_ = JsonValue::Kind::Bool;
        out->bool_ = false;
        return Status::ok();
      case 'n':
        if (!literal("null")) break;
        out->kind_ = JsonValue::Kind::Null;
        return Status::ok();
      default:
        if (c == '-' || (c >= '0' && c <= '9')) return parse_number(out);
        break;
    }
    return fail(pos_, "unexpected " + byte_desc(uint8_t(c)) + ", expected a value");
  }

  Status check_depth(size_t depth) const {
    if (depth > limits_.max_depth) {
      return fail(pos_, "nesting deeper than " + std::to_string(limits_.max_depth) + " levels");
    }
    return Status::ok();
  }

  Status parse_array(JsonValue* out, size_t depth) {
    GLM_TRY(check_depth(depth));
    out->kind_ = JsonValue::Kind::Array;
    ++pos_;  // '['
    skip_ws();
    if (pos_ < s_.size() && s_[pos_] == ']') { ++pos_; return Status::ok(); }
    for (;;) {
      out->items_.emplace_back();
      GLM_TRY(parse_value(&out->items_.back(), depth));
      skip_ws();
      if (pos_ >= s_.size()) return fail(pos_, "unexpected end of input inside an array");
      if (s_[pos_] == ',') { ++pos_; skip_ws(); continue; }
      if (s_[pos_] == ']') { ++pos_; return Status::ok(); }
      return fail(pos_, "unexpected " + byte_desc(uint8_t(s_[pos_])) + " in an array, expected ',' or ']'");
    }
  }

  Status parse_object(JsonValue* out, size_t depth) {
    GLM_TRY(check_depth(depth));
    out->kind_ = JsonValue::Kind::Object;
    ++pos_;  // '{'
    skip_ws();
    if (pos_ < s_.size() && s_[pos_] == '}') { ++pos_; return Status::ok(); }
    // Small objects (tensor entries, most configs) check duplicates by a scan with no allocation;
    // past kScanLimit keys a hash set keeps index weight maps with 10^5+ keys linear.
    constexpr size_t kScanLimit = 16;
    std::unordered_set<std::string> seen;  // owns copies: views into members_ would dangle on growth
    for (;;) {
      if (pos_ >= s_.size()) return fail(pos_, "unexpected end of input, expected an object key");
      if (s_[pos_] != '"') return fail(pos_, "unexpected " + byte_desc(uint8_t(s_[pos_])) + ", expected a string key");
      const size_t key_pos = pos_;
      std::string key;
      GLM_TRY(parse_string(&key));
      bool duplicate = false;
      if (out->members_.size() < kScanLimit) {
        for (const auto& m : out->members_) duplicate = duplicate || m.first == key;
      } else {
        if (seen.empty()) {
          for (const auto& m : out->members_) seen.insert(m.first);
        }
        duplicate = seen.count(key) != 0;
      }
      if (duplicate) return fail(key_pos, "duplicate key " + quote_for_message(key));
      skip_ws();
      if (pos_ >= s_.size() || s_[pos_] != ':') return fail(pos_, "expected ':' after an object key");
      ++pos_;
      skip_ws();
      out->members_.emplace_back(std::move(key), JsonValue());
      if (!seen.empty()) seen.insert(out->members_.back().first);
      GLM_TRY(parse_value(&out->members_.back().second, depth));
      skip_ws();
      if (pos_ >= s_.size()) return fail(pos_, "unexpected end of input inside an object");
      if (s_[pos_] == ',') { ++pos_; skip_ws(); continue; }
      if (s_[pos_] == '}') { ++pos_; return Status::ok(); }
      return fail(pos_, "unexpected " + byte_desc(uint8_t(s_[pos_])) + " in an object, expected ',' or '}'");
    }
  }

  static bool is_digit(char c) { return c >= '0' && c <= '9'; }

  Status parse_number(JsonValue* out) {
    const size_t start = pos_;
    if (s_[pos_] == '-') ++pos_;
    if (pos_ >= s_.size() || !is_digit(s_[pos_])) return fail(pos_, "expected a digit in a number");
    if (s_[pos_] == '0') {
      ++pos_;
      if (pos_ < s_.size() && is_digit(s_[pos_])) return fail(start, "number with a leading zero");
    } else {
      while (pos_ < s_.size() && is_digit(s_[pos_])) ++pos_;
    }
    if (pos_ < s_.size() && s_[pos_] == '.') {
      ++pos_;
      if (pos_ >= s_.size() || !is_digit(s_[pos_])) return fail(pos_, "expected a digit after the decimal point");
      while (pos_ < s_.size() && is_digit(s_[pos_])) ++pos_;
    }
    if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      ++pos_;
      if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) ++pos_;
      if (pos_ >= s_.size() || !is_digit(s_[pos_])) return fail(pos_, "expected a digit in the exponent");
      while (pos_ < s_.size() && is_digit(s_[pos_])) ++pos_;
    }
    const std::string_view text = s_.substr(start, pos_ - start);
    // from_chars is locale-independent (strtod would honour a host process's LC_NUMERIC).
    double v = 0.0;
    const auto r = std::from_chars(text.data(), text.data() + text.size(), v);
    // Out of double range (either way) is rejected: no real file needs 1e400 or 1e-400.
    if (r.ec != std::errc() || r.ptr != text.data() + text.size() || !std::isfinite(v)) {
      return fail(start, "number out of range");
    }
    out->kind_ = JsonValue::Kind::Number;
    out->number_ = v;
    out->text_.assign(text.data(), text.size());
    return Status::ok();
  }

  Status hex4(size_t at, uint32_t* out) {
    if (s_.size() - pos_ < 4) return fail(at, "truncated \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = s_[pos_ + i];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= uint32_t(c - '0');
      else if (c >= 'a' && c <= 'f') v |= uint32_t(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= uint32_t(c - 'A' + 10);
      else return fail(at, "invalid hex digit in \\u escape");
    }
    pos_ += 4;
    *out = v;
    return Status::ok();
  }

  static void append_utf8(std::string* s, uint32_t cp) {
    if (cp < 0x80) {
      s->push_back(char(cp));
    } else if (cp < 0x800) {
      s->push_back(char(0xC0 | (cp >> 6)));
      s->push_back(char(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      s->push_back(char(0xE0 | (cp >> 12)));
      s->push_back(char(0x80 | ((cp >> 6) & 0x3F)));
      s->push_back(char(0x80 | (cp & 0x3F)));
    } else {
      s->push_back(char(0xF0 | (cp >> 18)));
      s->push_back(char(0x80 | ((cp >> 12) & 0x3F)));
      s->push_back(char(0x80 | ((cp >> 6) & 0x3F)));
      s->push_back(char(0x80 | (cp & 0x3F)));
    }
  }

  // Length of the well-formed UTF-8 sequence at pos_ (Unicode table 3-7: no overlongs, no
  // surrogates, nothing above U+10FFFF), or 0 if ill-formed.
  size_t utf8_sequence_length() const {
    const size_t n = s_.size() - pos_;
    const auto b = [&](size_t i) { return uint8_t(s_[pos_ + i]); };
    const uint8_t c = b(0);
    auto cont = [&](size_t i, uint8_t lo = 0x80, uint8_t hi = 0xBF) { return i < n && b(i) >= lo && b(i) <= hi; };
    if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
    if (c == 0xE0) return cont(1, 0xA0) && cont(2) ? 3 : 0;
    if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) return cont(1) && cont(2) ? 3 : 0;
    if (c == 0xED) return cont(1, 0x80, 0x9F) && cont(2) ? 3 : 0;
    if (c == 0xF0) return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;
    if (c >= 0xF1 && c <= 0xF3) return cont(1) && cont(2) && cont(3) ? 4 : 0;
    if (c == 0xF4) return cont(1, 0x80, 0x8F) && cont(2) && cont(3) ? 4 : 0;
    return 0;
  }

  Status parse_string(std::string* out) {
    ++pos_;  // opening quote
    out->clear();
    for (;;) {
      // Copy the run of plain ASCII in one go; most strings are nothing else.
      size_t run = pos_;
      while (run < s_.size()) {
        const uint8_t c = uint8_t(s_[run]);
        if (c == '"' || c == '\\' || c < 0x20 || c >= 0x80) break;
        ++run;
      }
      out->append(s_.data() + pos_, run - pos_);
      pos_ = run;
      if (pos_ >= s_.size()) return fail(pos_, "unterminated string");
      const uint8_t c = uint8_t(s_[pos_]);
      if (c == '"') { ++pos_; return Status::ok(); }
      if (c < 0x20) return fail(pos_, "unescaped control character 0x" + byte_desc(c).substr(7) + " in a string");
      if (c >= 0x80) {
        const size_t len = utf8_sequence_length();
        if (len == 0) return fail(pos_, "invalid UTF-8 in a string");
        out->append(s_.data() + pos_, len);
        pos_ += len;
        continue;
      }
      // Backslash escape.
      const size_t esc = pos_;
      ++pos_;
      if (pos_ >= s_.size()) return fail(esc, "unterminated escape");
      const char e = s_[pos_++];
      switch (e) {
        case '"': out->push_back('"'); break;
        case '\\': out->push_back('\\'); break;
        case '/': out->push_back('/'); break;
        case 'b': out->push_back('\b'); break;
        case 'f': out->push_back('\f'); break;
        case 'n': out->push_back('\n'); break;
        case 'r': out->push_back('\r'); break;
        case 't': out->push_back('\t'); break;
        case 'u': {
          uint32_t cp = 0;
          GLM_TRY(hex4(esc, &cp));
          if (cp >= 0xDC00 && cp <= 0xDFFF) return fail(esc, "lone low surrogate in \\u escape");
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            // A high surrogate must be followed at once by an escaped low surrogate.
            if (s_.size() - pos_ < 2 || s_[pos_] != '\\' || s_[pos_ + 1] != 'u') {
              return fail(esc, "lone high surrogate in \\u escape");
            }
            const size_t esc2 = pos_;
            pos_ += 2;
            uint32_t lo = 0;
            GLM_TRY(hex4(esc2, &lo));
            if (lo < 0xDC00 || lo > 0xDFFF) return fail(esc, "lone high surrogate in \\u escape");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          append_utf8(out, cp);
          break;
        }
        default:
          return fail(esc, "invalid escape \\" + std::string(1, e));
      }
    }
  }

  std::string_view s_;
  std::string_view what_;
  const JsonLimits& limits_;
  size_t pos_ = 0;
  size_t values_ = 0;
};

Status parse_json(std::string_view text, JsonValue* out, std::string_view what, const JsonLimits& limits) {
  JsonValue v;
  JsonParser p(text, what, limits);
  GLM_TRY(p.parse(&v));
  *out = std::move(v);
  return Status::ok();
}

}  // namespace glm
