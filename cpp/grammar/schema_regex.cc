#include "grammar/schema_regex.h"

#include <algorithm>
#include <cstdio>

namespace glm::grammar {
namespace {

constexpr uint32_t kMaxRegexRepetition = 1000;
constexpr int kMaxRegexNesting = 32;

std::string hex_escape(uint32_t cp) {
  char buf[16];
  if (cp <= 0xFFFF) {
    std::snprintf(buf, sizeof buf, "\\u%04X", unsigned(cp));
  } else {
    std::snprintf(buf, sizeof buf, "\\U%08X", unsigned(cp));
  }
  return buf;
}

// A code point inside a GBNF literal or class: printable ASCII as itself, the rest escaped.
std::string gbnf_char(uint32_t cp) {
  if (cp >= 0x20 && cp < 0x7F && cp != '"' && cp != '\\' && cp != ']' && cp != '[' && cp != '-' && cp != '^')
    return std::string(1, char(cp));
  return hex_escape(cp);
}

const std::vector<CodePointRange> kDigit = {{'0', '9'}};
const std::vector<CodePointRange> kWord = {{'0', '9'}, {'A', 'Z'}, {'_', '_'}, {'a', 'z'}};
// ECMAScript \s: WhiteSpace and LineTerminator code points.
const std::vector<CodePointRange> kSpace = {{0x09, 0x0D}, {0x20, 0x20}, {0xA0, 0xA0}, {0x1680, 0x1680},
                                            {0x2000, 0x200A}, {0x2028, 0x2029}, {0x202F, 0x202F},
                                            {0x205F, 0x205F}, {0x3000, 0x3000}, {0xFEFF, 0xFEFF}};

class RegexCompiler {
 public:
  RegexCompiler(std::string_view p, const std::string& where) : p_(p), where_(where) {}

  Status compile(std::string* out) {
    if (!p_.empty() && p_[0] == '^') ++pos_;
    std::string body;
    GLM_TRY(alternation(0, &body));
    if (pos_ < p_.size()) {
      if (p_[pos_] == ')') return fail("unbalanced ')'");
      return fail("unexpected character");
    }
    *out = "(" + body + ")";
    return Status::ok();
  }

 private:
  Status fail(const std::string& what) const {
    return Status::error(ErrorCode::InvalidParam, "unsupported or invalid regular expression in " + where_ + " at offset " +
                                                      std::to_string(pos_) + ": " + what);
  }
  bool at_end() const { return pos_ >= p_.size(); }
  char peek(size_t k = 0) const { return pos_ + k < p_.size() ? p_[pos_ + k] : '\0'; }
  // A trailing $ (not escaped) ends the pattern.
  bool at_final_dollar() const { return peek() == '$' && pos_ + 1 == p_.size(); }

  Status alternation(int depth, std::string* out) {
    std::string seq;
    GLM_TRY(sequence(depth, &seq));
    *out = seq;
    while (peek() == '|') {
      ++pos_;
      GLM_TRY(sequence(depth, &seq));
      *out += " | " + seq;
    }
    return Status::ok();
  }

  Status sequence(int depth, std::string* out) {
    out->clear();
    std::vector<std::string> atoms;
    while (!at_end() && peek() != '|' && peek() != ')') {
      if (at_final_dollar()) {
        ++pos_;
        break;
      }
      std::string atom;
      GLM_TRY(this->atom(depth, &atom));
      GLM_TRY(quantifier(&atom));
      atoms.push_back(atom);
    }
    if (atoms.empty()) {
      *out = "\"\"";
      return Status::ok();
    }
    for (size_t i = 0; i < atoms.size(); ++i) *out += (i ? " " : "") + atoms[i];
    return Status::ok();
  }

  Status number(uint32_t* v) {
    const size_t start = pos_;
    uint64_t x = 0;
    while (peek() >= '0' && peek() <= '9') {
      x = x * 10 + uint64_t(peek() - '0');
      if (x > kMaxRegexRepetition) return fail("repetition bound over " + std::to_string(kMaxRegexRepetition));
      ++pos_;
    }
    if (pos_ == start) return fail("expected a number");
    *v = uint32_t(x);
    return Status::ok();
  }

  Status quantifier(std::string* atom) {
    for (;;) {
      const char c = peek();
      std::string q;
      if (c == '*' || c == '+' || c == '?') {
        q = std::string(1, c);
        ++pos_;
      } else if (c == '{' && peek(1) >= '0' && peek(1) <= '9') {
        ++pos_;
        uint32_t m = 0, n = 0;
        GLM_TRY(number(&m));
        q = "{" + std::to_string(m);
        if (peek() == ',') {
          ++pos_;
          q += ",";
          if (peek() != '}') {
            GLM_TRY(number(&n));
            if (n < m) return fail("{m,n} with n < m");
            q += std::to_string(n);
          }
        }
        if (peek() != '}') return fail("expected '}'");
        ++pos_;
        q += "}";
      } else {
        return Status::ok();
      }
      if (peek() == '?') ++pos_;  // lazy: same language
      if (peek() == '+') return fail("possessive quantifiers are not supported");
      *atom = "(" + *atom + ")" + q;
    }
  }

  Status escape_class(char e, std::vector<CodePointRange>* ranges, bool* is_class) {
    *is_class = true;
    switch (e) {
      case 'd': *ranges = kDigit; return Status::ok();
      case 'w': *ranges = kWord; return Status::ok();
      case 's': *ranges = kSpace; return Status::ok();
      case 'D': *ranges = complement(kDigit); return Status::ok();
      case 'W': *ranges = complement(kWord); return Status::ok();
      case 'S': *ranges = complement(kSpace); return Status::ok();
      default: *is_class = false; return Status::ok();
    }
  }

  // After a backslash (pos_ at the escaped character): a single code point.
  Status escape_char(uint32_t* cp) {
    const char e = peek();
    ++pos_;
    auto hex = [&](int digits) -> Status {
      uint32_t v = 0;
      for (int k = 0; k < digits; ++k) {
        const char h = peek();
        int d = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10 : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
        if (d < 0) return fail("expected hex digits");
        v = v * 16 + uint32_t(d);
        ++pos_;
      }
      if (v >= 0xD800 && v <= 0xDFFF) return fail("surrogate escapes are not supported");
      *cp = v;
      return Status::ok();
    };
    switch (e) {
      case 'n': *cp = '\n'; return Status::ok();
      case 'r': *cp = '\r'; return Status::ok();
      case 't': *cp = '\t'; return Status::ok();
      case 'f': *cp = '\f'; return Status::ok();
      case 'v': *cp = '\v'; return Status::ok();
      case '0': *cp = 0; return Status::ok();
      case 'x': return hex(2);
      case 'u':
        if (peek() == '{') return fail("\\u{...} escapes are not supported");
        return hex(4);
      case 'b': case 'B': --pos_; return fail("word boundary assertions are not supported");
      case 'p': case 'P': --pos_; return fail("unicode property escapes are not supported");
      case 'c': case 'k': --pos_; return fail("this escape is not supported");
      default:
        if (e >= '1' && e <= '9') {
          --pos_;
          return fail("backreferences are not supported");
        }
        if ((e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z') || (e >= '0' && e <= '9') || e == '\0') {
          --pos_;
          return fail(std::string("unknown escape \\") + e);
        }
        *cp = uint8_t(e);  // an escaped metacharacter or punctuation: itself
        return Status::ok();
    }
  }

  Status literal_char(uint32_t* cp) {
    size_t i = pos_;
    if (!decode_utf8(p_, &i, cp)) return fail("invalid UTF-8");
    pos_ = i;
    return Status::ok();
  }

  Status char_class(std::string* out) {
    ++pos_;  // [
    bool negated = false;
    if (peek() == '^') {
      negated = true;
      ++pos_;
    }
    std::vector<CodePointRange> ranges;
    bool first = true;
    while (first || peek() != ']') {
      first = false;
      if (at_end()) return fail("unterminated character class");
      uint32_t lo = 0;
      if (peek() == '\\') {
        ++pos_;
        std::vector<CodePointRange> cls;
        bool is_class = false;
        GLM_TRY(escape_class(peek(), &cls, &is_class));
        if (is_class) {
          ++pos_;
          ranges.insert(ranges.end(), cls.begin(), cls.end());
          continue;
        }
        if (peek() == 'b') {  // [\b] is backspace inside a class
          ++pos_;
          lo = 8;
        } else {
          GLM_TRY(escape_char(&lo));
        }
      } else {
        GLM_TRY(literal_char(&lo));
      }
      uint32_t hi = lo;
      if (peek() == '-' && peek(1) != ']' && peek(1) != '\0') {
        ++pos_;
        if (peek() == '\\') {
          ++pos_;
          std::vector<CodePointRange> cls;
          bool is_class = false;
          GLM_TRY(escape_class(peek(), &cls, &is_class));
          if (is_class) return fail("a class escape cannot end a range");
          GLM_TRY(escape_char(&hi));
        } else {
          GLM_TRY(literal_char(&hi));
        }
        if (hi < lo) return fail("range out of order");
      }
      ranges.push_back({lo, hi});
    }
    ++pos_;  // ]
    if (negated) ranges = complement(ranges);
    if (ranges.empty()) return fail("class matches nothing");
    *out = json_char_class(ranges);
    return Status::ok();
  }

  Status atom(int depth, std::string* out) {
    const char c = peek();
    if (c == '(') {
      if (depth + 1 > kMaxRegexNesting) return fail("groups nested too deeply");
      ++pos_;
      if (peek() == '?') {
        if (peek(1) == ':') {
          pos_ += 2;
        } else if (peek(1) == '<' && peek(2) != '=' && peek(2) != '!') {
          pos_ += 2;
          while (!at_end() && peek() != '>') ++pos_;
          if (at_end()) return fail("unterminated group name");
          ++pos_;
        } else {
          return fail("lookaround assertions are not supported");
        }
      }
      std::string inner;
      GLM_TRY(alternation(depth + 1, &inner));
      if (peek() != ')') return fail("expected ')'");
      ++pos_;
      *out = "(" + inner + ")";
      return Status::ok();
    }
    if (c == '[') return char_class(out);
    if (c == '.') {
      ++pos_;
      *out = json_char_class(complement({{'\n', '\n'}, {'\r', '\r'}, {0x2028, 0x2029}}));
      return Status::ok();
    }
    if (c == '^' || c == '$') return fail("anchors are only supported at the start and end of the pattern");
    if (c == '*' || c == '+' || c == '?' || (c == '{' && peek(1) >= '0' && peek(1) <= '9'))
      return fail("quantifier without a preceding element");
    uint32_t cp = 0;
    if (c == '\\') {
      ++pos_;
      std::vector<CodePointRange> cls;
      bool is_class = false;
      GLM_TRY(escape_class(peek(), &cls, &is_class));
      if (is_class) {
        ++pos_;
        *out = json_char_class(cls);
        return Status::ok();
      }
      GLM_TRY(escape_char(&cp));
    } else {
      GLM_TRY(literal_char(&cp));
    }
    *out = json_char_class({{cp, cp}});
    return Status::ok();
  }

  std::string_view p_;
  const std::string& where_;
  size_t pos_ = 0;
};

}  // namespace

std::string gbnf_literal(std::string_view text) {
  std::string out = "\"";
  size_t i = 0;
  while (i < text.size()) {
    uint32_t cp = 0;
    if (!decode_utf8(text, &i, &cp)) {  // not reachable for parsed JSON text; keep the output valid
      ++i;
      continue;
    }
    out += gbnf_char(cp);
  }
  return out + "\"";
}

std::string json_char_class(const std::vector<CodePointRange>& input) {
  // Split: code points JSON text writes as themselves (plain), and those it must escape (control
  // characters, '"' and '\\'). Surrogates are dropped: they are not characters.
  std::vector<CodePointRange> plain;
  std::vector<uint32_t> escaped;
  for (const auto& r : complement(complement(input))) {  // sorted and merged
    for (uint32_t c = r.lo; c <= std::min(r.hi, uint32_t(0x5C)); ++c)
      if (c < 0x20 || c == '"' || c == '\\') escaped.push_back(c);
    uint32_t a = std::max(r.lo, uint32_t(0x20));
    for (uint32_t hole_lo : {uint32_t('"'), uint32_t('\\'), uint32_t(0xD800)}) {
      const uint32_t hole_hi = hole_lo == 0xD800 ? 0xDFFF : hole_lo;
      if (a > r.hi || hole_hi < a || hole_lo > r.hi) continue;
      if (hole_lo > a) plain.push_back({a, hole_lo - 1});
      a = hole_hi + 1;
    }
    if (a <= r.hi) plain.push_back({a, r.hi});
  }
  std::sort(escaped.begin(), escaped.end());
  escaped.erase(std::unique(escaped.begin(), escaped.end()), escaped.end());
  std::vector<std::string> alts;
  if (!plain.empty()) {
    if (plain.size() == 1 && plain[0].lo == plain[0].hi) {
      alts.push_back("\"" + gbnf_char(plain[0].lo) + "\"");
    } else {
      std::string cls = "[";
      for (const auto& r : plain) {
        cls += gbnf_char(r.lo);
        if (r.hi != r.lo) cls += "-" + gbnf_char(r.hi);
      }
      alts.push_back(cls + "]");
    }
  }
  size_t controls = 0;
  for (uint32_t c : escaped) controls += c < 0x20;
  for (uint32_t c : escaped) {
    if (c == '"') alts.push_back("\"\\\\\\\"\"");        // \"
    if (c == '\\') alts.push_back("\"\\\\\\\\\"");       // \\ (as JSON text)
  }
  if (controls == 32) {
    alts.push_back("\"\\\\\" [bfnrt]");
    alts.push_back("\"\\\\u00\" [01] [0-9a-fA-F]");
  } else {
    for (uint32_t c : escaped) {
      if (c >= 0x20) continue;
      const char* short_form = c == '\n' ? "n" : c == '\r' ? "r" : c == '\t' ? "t" : c == '\b' ? "b" : c == '\f' ? "f" : nullptr;
      char hex[8];
      std::snprintf(hex, sizeof hex, "%04X", unsigned(c));
      if (short_form) alts.push_back(std::string("\"\\\\") + short_form + "\"");
      alts.push_back(std::string("\"\\\\u") + hex + "\"");
    }
  }
  if (alts.size() == 1) return alts[0];
  std::string out = "(";
  for (size_t i = 0; i < alts.size(); ++i) out += (i ? " | " : "") + alts[i];
  return out + ")";
}

Status regex_to_gbnf(std::string_view pattern, const std::string& where, std::string* gbnf) {
  if (pattern.size() > 10000) return Status::error(ErrorCode::InvalidParam, where + ": pattern over 10000 bytes");
  return RegexCompiler(pattern, where).compile(gbnf);
}

}  // namespace glm::grammar
