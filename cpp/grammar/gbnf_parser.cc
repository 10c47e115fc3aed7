// GBNF text to a RuleSet (then normalize_grammar). The format, as accepted here:
//
//   # a comment runs to the end of the line
//   root      ::= "{" ws pair ("," ws pair)* "}"      rules: name ::= alternatives
//   pair      ::= key ":" ws value                    names: letters, digits, '-' and '_'
//   key       ::= "\"" [a-z_]+ "\""
//   value     ::= [0-9]+ | "true" | "false" | <[151336]>
//   ws        ::= [ \t\n]{0,4}
//
//   "literal"        UTF-8 text; escapes \n \r \t \\ \" \' \[ \] \- \^ \/ \xHH \uHHHH \UHHHHHHHH
//   [abc] [a-z] [^"\\]  a code-point class (same escapes); ^ negates; ranges may be non-ASCII
//   .                any code point (any valid UTF-8 character, newline included)
//   ( ... )          a group; alternatives separated by |
//   x* x+ x?         repetition; x{m} x{m,} x{m,n} bounded repetition (m, n <= 10000)
//   <[id]>           exactly the token with this id (the way to name special tokens)
//
// Every escape and class bound is a code point, encoded as UTF-8 (\xFF is U+00FF, two bytes), as in
// llama.cpp. A rule's alternatives may span lines: a rule ends where the next `name ::=` starts. The
// start rule is `root`. Errors are InvalidParam "GBNF line:column: ...".
#include <algorithm>
#include <cstring>
#include <unordered_map>

#include "grammar/grammar_ir.h"
#include "grammar/utf8_ranges.h"

namespace glm::grammar {
namespace {

bool is_name_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

class GbnfParser {
 public:
  explicit GbnfParser(std::string_view text) : text_(text) {
    line_starts_.push_back(0);
    for (size_t i = 0; i < text.size(); ++i)
      if (text[i] == '\n') line_starts_.push_back(i + 1);
  }

  Status parse(RuleSet* out) {
    skip_space();
    while (pos_ < text_.size()) {
      GLM_TRY(parse_rule());
      skip_space();
    }
    auto root = names_.find("root");
    if (root == names_.end() || !set_.rules[root->second].defined)
      return Status::error(ErrorCode::InvalidParam, "GBNF: no rule named 'root' (the start rule)");
    for (size_t r = 0; r < set_.rules.size(); ++r) {
      if (!set_.rules[r].defined)
        return error_at(first_use_[r], "undefined rule '" + set_.rules[r].name + "'");
    }
    set_.root = root->second;
    *out = std::move(set_);
    return Status::ok();
  }

 private:
  SourceLocation location(size_t offset) const {
    size_t line = size_t(std::upper_bound(line_starts_.begin(), line_starts_.end(), offset) - line_starts_.begin());
    return {uint32_t(line), uint32_t(offset - line_starts_[line - 1] + 1)};
  }
  Status error_at(size_t offset, const std::string& what) const {
    return Status::error(ErrorCode::InvalidParam, "GBNF " + describe_location(location(offset)) + ": " + what);
  }
  bool at_end() const { return pos_ >= text_.size(); }
  char peek(size_t ahead = 0) const { return pos_ + ahead < text_.size() ? text_[pos_ + ahead] : '\0'; }

  // Blanks, newlines and comments (a rule's end is found by the next `name ::=`, not by a newline).
  void skip_space() {
    while (!at_end()) {
      const char c = text_[pos_];
      if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
        ++pos_;
      } else if (c == '#') {
        while (!at_end() && text_[pos_] != '\n') ++pos_;
      } else {
        break;
      }
    }
  }

  std::string_view name_at(size_t p) const {
    size_t e = p;
    while (e < text_.size() && is_name_char(text_[e])) ++e;
    return text_.substr(p, e - p);
  }

  // Whether a rule definition (`name ::=`) starts at the current position.
  bool at_rule_start() const {
    std::string_view name = name_at(pos_);
    if (name.empty()) return false;
    size_t p = pos_ + name.size();
    while (p < text_.size() && (text_[p] == ' ' || text_[p] == '\t')) ++p;
    return text_.compare(p, 3, "::=") == 0;
  }

  uint32_t rule_id(std::string_view name, size_t used_at) {
    auto it = names_.find(std::string(name));
    if (it != names_.end()) return it->second;
    const uint32_t id = uint32_t(set_.rules.size());
    RuleDef def;
    def.name = std::string(name);
    set_.rules.push_back(std::move(def));
    first_use_.push_back(used_at);
    names_.emplace(std::string(name), id);
    return id;
  }

  Status check_size(size_t offset) {
    if (set_.rules.size() > GrammarLimits::max_rules || elements_ > GrammarLimits::max_elements)
      return error_at(offset, "grammar too large (over " + std::to_string(GrammarLimits::max_elements) +
                                  " elements or " + std::to_string(GrammarLimits::max_rules) +
                                  " rules after expanding repetitions)");
    return Status::ok();
  }

  // A generated rule standing for the construct at `offset` inside rule `owner`.
  Status add_generated(uint32_t owner, size_t offset, std::vector<std::vector<Element>> alternatives, Element* ref) {
    RuleDef def;
    def.name = set_.rules[owner].name + "-" + std::to_string(++generated_count_);
    def.generated = true;
    def.defined = true;
    def.where = location(offset);
    for (const auto& a : alternatives) elements_ += a.size() + 1;
    def.alternatives = std::move(alternatives);
    set_.rules.push_back(std::move(def));
    first_use_.push_back(offset);
    *ref = Element{Element::Kind::Rule, uint32_t(set_.rules.size() - 1)};
    return check_size(offset);
  }

  Status parse_rule() {
    const size_t start = pos_;
    std::string_view name = name_at(pos_);
    if (name.empty()) return error_at(pos_, "expected a rule name");
    pos_ += name.size();
    while (peek() == ' ' || peek() == '\t') ++pos_;
    if (text_.compare(pos_, 3, "::=") != 0) return error_at(pos_, "expected '::=' after rule name '" + std::string(name) + "'");
    pos_ += 3;
    const uint32_t id = rule_id(name, start);
    if (set_.rules[id].defined) return error_at(start, "rule '" + std::string(name) + "' is defined twice");
    set_.rules[id].defined = true;
    set_.rules[id].where = location(start);
    std::vector<std::vector<Element>> alternatives;
    GLM_TRY(parse_alternatives(id, 0, &alternatives));
    if (!at_end()) {
      if (peek() == ')') return error_at(pos_, "unbalanced ')'");
      if (!at_rule_start()) return error_at(pos_, "unexpected character '" + std::string(1, peek()) + "'");
    }
    for (const auto& a : alternatives) elements_ += a.size() + 1;
    set_.rules[id].alternatives = std::move(alternatives);
    return check_size(start);
  }

  Status parse_alternatives(uint32_t owner, int depth, std::vector<std::vector<Element>>* out) {
    for (;;) {
      std::vector<Element> seq;
      GLM_TRY(parse_sequence(owner, depth, &seq));
      out->push_back(std::move(seq));
      if (peek() != '|') return Status::ok();
      ++pos_;
      skip_space();
    }
  }

  Status parse_sequence(uint32_t owner, int depth, std::vector<Element>* seq) {
    for (;;) {
      skip_space();
      if (at_end() || peek() == '|' || peek() == ')') return Status::ok();
      if (depth == 0 && at_rule_start()) return Status::ok();
      const size_t atom_start = pos_;
      std::vector<Element> atom;
      GLM_TRY(parse_atom(owner, depth, &atom));
      for (;;) {
        // Postfix operators bind to the atom just before them, with no space in between.
        const char c = peek();
        if (c == '*' || c == '+' || c == '?') {
          ++pos_;
          const uint32_t min = c == '+' ? 1 : 0, max = c == '?' ? 1 : UINT32_MAX;
          GLM_TRY(repeat(owner, atom_start, min, max, &atom));
        } else if (c == '{') {
          uint32_t min = 0, max = 0;
          GLM_TRY(parse_bounds(&min, &max));
          GLM_TRY(repeat(owner, atom_start, min, max, &atom));
        } else {
          break;
        }
      }
      elements_ += atom.size();
      GLM_TRY(check_size(atom_start));
      seq->insert(seq->end(), atom.begin(), atom.end());
    }
  }

  Status parse_number(uint32_t* out) {
    const size_t start = pos_;
    uint64_t v = 0;
    while (peek() >= '0' && peek() <= '9') {
      v = v * 10 + uint64_t(peek() - '0');
      if (v > GrammarLimits::max_repetition)
        return error_at(start, "repetition bound over " + std::to_string(GrammarLimits::max_repetition));
      ++pos_;
    }
    if (pos_ == start) return error_at(pos_, "expected a number in {m,n}");
    *out = uint32_t(v);
    return Status::ok();
  }

  // {m} {m,} {m,n}
  Status parse_bounds(uint32_t* min, uint32_t* max) {
    const size_t start = pos_;
    ++pos_;
    while (peek() == ' ') ++pos_;
    GLM_TRY(parse_number(min));
    while (peek() == ' ') ++pos_;
    if (peek() == '}') {
      *max = *min;
    } else if (peek() == ',') {
      ++pos_;
      while (peek() == ' ') ++pos_;
      if (peek() == '}') {
        *max = UINT32_MAX;
      } else {
        GLM_TRY(parse_number(max));
        while (peek() == ' ') ++pos_;
      }
    }
    if (peek() != '}') return error_at(pos_, "expected '}' to close the repetition bounds");
    ++pos_;
    if (*max < *min) return error_at(start, "repetition {m,n} with n < m");
    return Status::ok();
  }

  // Rewrites `atom` as atom{min,max}: copies for the required part, then a right-recursive star rule
  // (unbounded) or a chain of nested optionals (bounded). Both recurse only in tail position, which
  // the matcher runs without growing its stacks.
  Status repeat(uint32_t owner, size_t offset, uint32_t min, uint32_t max, std::vector<Element>* atom) {
    Element x;
    if (atom->size() == 1) {
      x = (*atom)[0];
    } else {
      GLM_TRY(add_generated(owner, offset, {*atom}, &x));
    }
    const uint64_t copies = uint64_t(min) + (max == UINT32_MAX ? 1 : uint64_t(max - min) * 2);
    if (elements_ + copies > GrammarLimits::max_elements) return check_size_error(offset);
    std::vector<Element> out(min, x);
    if (max == UINT32_MAX) {
      const uint32_t star = uint32_t(set_.rules.size());
      Element ref;
      GLM_TRY(add_generated(owner, offset, {{x, Element{Element::Kind::Rule, star}}, {}}, &ref));
      out.push_back(ref);
    } else if (max > min) {
      // Innermost optional first: opt_k ::= x opt_{k+1} | ""
      Element inner{};
      bool has_inner = false;
      for (uint32_t k = 0; k < max - min; ++k) {
        std::vector<Element> alt{x};
        if (has_inner) alt.push_back(inner);
        GLM_TRY(add_generated(owner, offset, {alt, {}}, &inner));
        has_inner = true;
      }
      out.push_back(inner);
    }
    *atom = std::move(out);
    return Status::ok();
  }
  Status check_size_error(size_t offset) {
    elements_ = GrammarLimits::max_elements + 1;
    return check_size(offset);
  }

  Status parse_atom(uint32_t owner, int depth, std::vector<Element>* atom) {
    const size_t start = pos_;
    const char c = peek();
    if (c == '"') return parse_literal(atom);
    if (c == '[') return parse_class(owner, atom);
    if (c == '.') {
      ++pos_;
      return add_class(owner, start, {{0, kMaxCodePoint}}, atom);
    }
    if (c == '(') {
      if (depth + 1 > GrammarLimits::max_nesting)
        return error_at(pos_, "groups nested deeper than " + std::to_string(GrammarLimits::max_nesting));
      ++pos_;
      skip_space();
      std::vector<std::vector<Element>> alternatives;
      GLM_TRY(parse_alternatives(owner, depth + 1, &alternatives));
      if (peek() != ')') return error_at(pos_, "expected ')' to close the group opened at " + describe_location(location(start)));
      ++pos_;
      if (alternatives.size() == 1) {  // a plain sequence needs no rule of its own
        *atom = std::move(alternatives[0]);
        return Status::ok();
      }
      Element ref;
      GLM_TRY(add_generated(owner, start, std::move(alternatives), &ref));
      atom->push_back(ref);
      return Status::ok();
    }
    if (c == '<' && peek(1) == '[') {
      pos_ += 2;
      uint64_t id = 0;
      const size_t digits = pos_;
      while (peek() >= '0' && peek() <= '9') {
        id = id * 10 + uint64_t(peek() - '0');
        if (id > uint64_t(INT32_MAX)) return error_at(digits, "token id out of range");
        ++pos_;
      }
      if (pos_ == digits || peek() != ']' || peek(1) != '>') return error_at(start, "expected <[token id]>");
      pos_ += 2;
      atom->push_back(Element{Element::Kind::Token, uint32_t(id)});
      return Status::ok();
    }
    if (is_name_char(c)) {
      std::string_view name = name_at(pos_);
      pos_ += name.size();
      atom->push_back(Element{Element::Kind::Rule, rule_id(name, start)});
      return Status::ok();
    }
    if (c == '*' || c == '+' || c == '?' || c == '{') return error_at(pos_, std::string("'") + c + "' must follow an element");
    return error_at(pos_, "unexpected character '" + std::string(1, c) + "'");
  }

  // One character of a literal or class: an escape or a UTF-8 encoded code point.
  Status parse_char(uint32_t* cp) {
    const size_t start = pos_;
    if (at_end()) return error_at(pos_, "unexpected end of grammar");
    if (peek() != '\\') {
      size_t i = pos_;
      if (!decode_utf8(text_, &i, cp)) return error_at(pos_, "invalid UTF-8");
      pos_ = i;
      return Status::ok();
    }
    ++pos_;
    const char e = peek();
    ++pos_;
    int digits = 0;
    switch (e) {
      case 'n': *cp = '\n'; return Status::ok();
      case 'r': *cp = '\r'; return Status::ok();
      case 't': *cp = '\t'; return Status::ok();
      case '\\': case '"': case '\'': case '[': case ']': case '-': case '^': case '/': *cp = uint8_t(e); return Status::ok();
      case 'x': digits = 2; break;
      case 'u': digits = 4; break;
      case 'U': digits = 8; break;
      default: return error_at(start, "unknown escape '\\" + std::string(1, e) + "'");
    }
    uint32_t v = 0;
    for (int k = 0; k < digits; ++k) {
      const int h = hex_value(peek());
      if (h < 0) return error_at(start, "expected " + std::to_string(digits) + " hex digits after \\" + std::string(1, e));
      v = v * 16 + uint32_t(h);
      ++pos_;
    }
    if (v > kMaxCodePoint || (v >= 0xD800 && v <= 0xDFFF))
      return error_at(start, "escape is not a Unicode scalar value (above U+10FFFF or a surrogate)");
    *cp = v;
    return Status::ok();
  }

  Status parse_literal(std::vector<Element>* atom) {
    const size_t start = pos_;
    ++pos_;
    std::string bytes;
    while (peek() != '"') {
      if (at_end() || peek() == '\n') return error_at(start, "unterminated literal");
      uint32_t cp = 0;
      GLM_TRY(parse_char(&cp));
      append_utf8(cp, &bytes);
    }
    ++pos_;
    for (unsigned char b : bytes) {
      ByteSet s;
      s.add(b);
      atom->push_back(Element{Element::Kind::Bytes, set_.intern(s)});
    }
    return Status::ok();
  }

  Status parse_class(uint32_t owner, std::vector<Element>* atom) {
    const size_t start = pos_;
    ++pos_;
    bool negated = false;
    if (peek() == '^') {
      negated = true;
      ++pos_;
    }
    std::vector<CodePointRange> ranges;
    while (peek() != ']') {
      if (at_end() || peek() == '\n') return error_at(start, "unterminated character class");
      uint32_t lo = 0, hi = 0;
      GLM_TRY(parse_char(&lo));
      hi = lo;
      if (peek() == '-' && peek(1) != ']' && pos_ + 1 < text_.size()) {
        ++pos_;
        const size_t range_at = pos_;
        GLM_TRY(parse_char(&hi));
        if (hi < lo) return error_at(range_at, "character range out of order");
      }
      ranges.push_back({lo, hi});
    }
    ++pos_;
    if (negated) ranges = complement(std::move(ranges));
    return add_class(owner, start, std::move(ranges), atom);
  }

  Status add_class(uint32_t owner, size_t offset, std::vector<CodePointRange> ranges, std::vector<Element>* atom) {
    auto seqs = utf8_sequences(std::move(ranges));
    if (seqs.empty()) return error_at(offset, "character class matches nothing");
    if (seqs.size() == 1 && seqs[0].size() == 1) {  // single-byte characters only: one element
      atom->push_back(Element{Element::Kind::Bytes, set_.intern(seqs[0][0])});
      return Status::ok();
    }
    std::vector<std::vector<Element>> alternatives;
    for (const auto& seq : seqs) {
      std::vector<Element> alt;
      for (const auto& b : seq) alt.push_back(Element{Element::Kind::Bytes, set_.intern(b)});
      alternatives.push_back(std::move(alt));
    }
    Element ref;
    GLM_TRY(add_generated(owner, offset, std::move(alternatives), &ref));
    atom->push_back(ref);
    return Status::ok();
  }

  std::string_view text_;
  size_t pos_ = 0;
  std::vector<size_t> line_starts_;
  RuleSet set_;
  std::unordered_map<std::string, uint32_t> names_;
  std::vector<size_t> first_use_;  // per rule: where it was first named (undefined-rule errors)
  size_t elements_ = 0;
  int generated_count_ = 0;
};

}  // namespace

uint32_t RuleSet::intern(const ByteSet& set) {
  const std::string key(reinterpret_cast<const char*>(set.words), sizeof(set.words));
  auto it = byte_set_index.find(key);
  if (it != byte_set_index.end()) return it->second;
  byte_sets.push_back(set);
  byte_set_index.emplace(key, uint32_t(byte_sets.size() - 1));
  return uint32_t(byte_sets.size() - 1);
}

size_t RuleSet::element_count() const {
  size_t n = 0;
  for (const auto& r : rules)
    for (const auto& a : r.alternatives) n += a.size() + 1;
  return n;
}

std::string describe_location(const SourceLocation& where) {
  return std::to_string(where.line) + ":" + std::to_string(where.column);
}

Status parse_gbnf(std::string_view text, std::shared_ptr<const Grammar>* out) {
  if (text.size() > (size_t(16) << 20)) return Status::error(ErrorCode::InvalidParam, "GBNF: grammar text over 16 MiB");
  RuleSet rules;
  GLM_TRY(GbnfParser(text).parse(&rules));
  return normalize_grammar(std::move(rules), out);
}

}  // namespace glm::grammar
