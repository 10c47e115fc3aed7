// The grammar core's internal representation, shared by the GBNF parser, the normaliser, the token
// tables and the matcher (never seen outside cpp/grammar/ and its tests).
//
// Two stages:
//  * RuleSet: what the parser produces: named rules of alternatives of element sequences, with the
//    auxiliary rules its groups and repetitions need, not yet validated.
//  * Grammar: the validated, normalised program the matcher runs: every alternative laid out back to
//    back in one `code` array and closed by an End element, so a grammar position is one index and a
//    pushdown stack is a list of return positions (cpp/grammar/stack_arena.h).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "grammar/grammar.h"

namespace glm::grammar {

// A set of bytes (one bit per byte value): the only terminal over text. Code-point classes are
// compiled to sequences of these (utf8_ranges.h), so matching is per byte.
struct ByteSet {
  uint64_t words[4] = {0, 0, 0, 0};
  bool has(uint8_t b) const { return (words[b >> 6] >> (b & 63)) & 1; }
  void add(uint8_t b) { words[b >> 6] |= uint64_t(1) << (b & 63); }
  void add_range(uint8_t lo, uint8_t hi) {
    for (unsigned b = lo; b <= hi; ++b) add(uint8_t(b));
  }
  void add_all(const ByteSet& o) {
    for (int i = 0; i < 4; ++i) words[i] |= o.words[i];
  }
  bool empty() const { return (words[0] | words[1] | words[2] | words[3]) == 0; }
  int count() const {
    return __builtin_popcountll(words[0]) + __builtin_popcountll(words[1]) + __builtin_popcountll(words[2]) +
           __builtin_popcountll(words[3]);
  }
  bool operator==(const ByteSet& o) const {
    return words[0] == o.words[0] && words[1] == o.words[1] && words[2] == o.words[2] && words[3] == o.words[3];
  }
};

struct Element {
  enum class Kind : uint8_t {
    Bytes,  // value: index into byte_sets; consumes one byte in the set
    Rule,   // value: rule id
    Token,  // value: token id; consumes exactly that token (never bytes of another token)
    End,    // value: the rule whose alternative ends here (Grammar::code only)
  };
  Kind kind = Kind::End;
  uint32_t value = 0;
  bool operator==(const Element& o) const { return kind == o.kind && value == o.value; }
};

struct SourceLocation {
  uint32_t line = 0, column = 0;  // 1-based; 0: not from grammar text
};

struct RuleDef {
  std::string name;       // user name, or "<user rule>-<n>" for a generated (auxiliary) rule
  bool generated = false;  // made by the parser for a group, class or repetition
  bool defined = false;    // false: only referenced so far (an undefined rule if it stays so)
  SourceLocation where;    // the definition, or the construct a generated rule stands for
  std::vector<std::vector<Element>> alternatives;
};

struct RuleSet {
  std::vector<RuleDef> rules;
  uint32_t root = 0;  // the rule named root
  std::vector<ByteSet> byte_sets;
  std::unordered_map<std::string, uint32_t> byte_set_index;  // raw bits -> index in byte_sets
  // Index of `set` in byte_sets, added if new (identical sets share an index).
  uint32_t intern(const ByteSet& set);
  size_t element_count() const;
};

// Size limits: a grammar is compiled per request, so hostile or runaway input is refused before it
// costs memory or time (element counts are after repetition expansion and rule cloning).
struct GrammarLimits {
  static constexpr size_t max_elements = 50000;
  static constexpr size_t max_rules = 20000;
  static constexpr int max_nesting = 64;          // parenthesised groups inside one another
  static constexpr uint32_t max_repetition = 10000;  // the m and n of {m,n}
};

struct Grammar {
  struct Rule {
    std::string name;
    std::vector<uint32_t> alternatives;  // start position of each alternative in code
    // Heads are the rules whose token tables are computed independently of where they are called
    // from (token_tables.cc). Every other rule has exactly one call site, so the frames between a
    // position in it and its head are fixed: `chain`, bottom first (return positions pushed by its
    // non-tail call sites on the way down from the head).
    bool head = false;
    uint32_t family_head = 0;     // the head whose frames this rule lives above (itself for a head)
    std::vector<uint32_t> chain;  // empty for a head
  };
  std::vector<Element> code;
  std::vector<uint32_t> position_rule;  // rule owning each code position
  std::vector<ByteSet> byte_sets;
  std::vector<Rule> rules;
  uint32_t root = 0;
  // For each rule: the code positions of Rule elements calling it (its call sites).
  std::vector<std::vector<uint32_t>> call_sites;

  bool is_tail(uint32_t call_position) const { return code[call_position + 1].kind == Element::Kind::End; }
};

// Validates a parsed rule set (root defined, no undefined rule, no rule with an empty language, no
// left recursion, within the limits), drops unreachable rules, clones small helper rules per call
// site (token_tables.cc: fewer heads, sharper tables) and lays the program out.
Status normalize_grammar(RuleSet rules, std::shared_ptr<const Grammar>* out);

// "line:column" of a location, or the rule name when the location is unknown.
std::string describe_location(const SourceLocation& where);

}  // namespace glm::grammar
