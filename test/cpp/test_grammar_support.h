// Shared by the grammar tests: small vocabularies, a reference matcher that knows nothing of token
// tables or hash-consed stacks (plain vectors, no tail calls), and helpers to run text through a
// Matcher.
#pragma once
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "grammar/grammar.h"
#include "grammar/grammar_ir.h"

namespace grammar_test {

using glm::grammar::Element;
using glm::grammar::Grammar;
using glm::grammar::Matcher;
using glm::grammar::TokenGrammar;
using glm::grammar::Vocabulary;

inline std::shared_ptr<const Vocabulary> make_vocabulary(const std::vector<std::string>& tokens,
                                                         const std::vector<uint8_t>& token_only = {}) {
  std::string bytes;
  std::vector<uint32_t> offsets{0};
  for (const auto& t : tokens) {
    bytes += t;
    offsets.push_back(uint32_t(bytes.size()));
  }
  std::shared_ptr<const Vocabulary> v;
  glm::Status st = Vocabulary::create(bytes, offsets, token_only, &v);
  return st.is_ok() ? v : nullptr;
}

// Token i is the single byte i: feeding text byte by byte checks the grammar's language exactly.
inline std::shared_ptr<const Vocabulary> byte_vocabulary() {
  std::vector<std::string> tokens;
  for (int b = 0; b < 256; ++b) tokens.push_back(std::string(1, char(b)));
  return make_vocabulary(tokens);
}

// A pushdown matcher straight from the definition: stacks are vectors of positions (bottom first, top
// a terminal), every call pushes its return position, nothing is shared or cached.
class ReferenceMatcher {
 public:
  using Stack = std::vector<uint32_t>;
  ReferenceMatcher(std::shared_ptr<const Grammar> g, std::shared_ptr<const Vocabulary> v) : g_(std::move(g)), v_(std::move(v)) {
    for (uint32_t alt : g_->rules[g_->root].alternatives) expand({alt}, &stacks_);
  }

  bool accepting() const { return stacks_.count(Stack{}) > 0; }
  bool can_continue() const { return !stacks_.empty() && (stacks_.size() > 1 || !accepting()); }
  bool allows(int32_t token) const { return !after(token).empty(); }
  bool accept(int32_t token) {
    auto next = after(token);
    if (next.empty()) return false;
    stacks_ = std::move(next);
    return true;
  }
  std::vector<uint32_t> mask() const {
    std::vector<uint32_t> words(size_t(v_->mask_words()), 0);
    for (int32_t t = 0; t < v_->size(); ++t)
      if (allows(t)) words[size_t(t) >> 5] |= uint32_t(1) << (t & 31);
    return words;
  }
  size_t stack_count() const { return stacks_.size(); }

 private:
  void expand(Stack s, std::set<Stack>* out) const {
    if (s.empty()) {
      out->insert(s);
      return;
    }
    const uint32_t p = s.back();
    const Element e = g_->code[p];
    if (e.kind == Element::Kind::Bytes || e.kind == Element::Kind::Token) {
      out->insert(s);
    } else if (e.kind == Element::Kind::End) {
      s.pop_back();
      expand(std::move(s), out);
    } else {
      s.back() = p + 1;
      for (uint32_t alt : g_->rules[e.value].alternatives) {
        Stack t = s;
        t.push_back(alt);
        expand(std::move(t), out);
      }
    }
  }
  std::set<Stack> after(int32_t token) const {
    std::set<Stack> result;
    if (token < 0 || token >= v_->size()) return result;
    for (const auto& s : stacks_) {
      if (s.empty()) continue;
      const Element e = g_->code[s.back()];
      if (e.kind == Element::Kind::Token && e.value == uint32_t(token)) {
        Stack t = s;
        t.back() += 1;
        expand(std::move(t), &result);
      }
    }
    const std::string_view bytes = v_->token(token);
    if (v_->token_only(token) || bytes.empty()) return result;
    std::set<Stack> cur = stacks_;
    for (unsigned char b : bytes) {
      std::set<Stack> next;
      for (const auto& s : cur) {
        if (s.empty()) continue;
        const Element e = g_->code[s.back()];
        if (e.kind != Element::Kind::Bytes || !g_->byte_sets[e.value].has(b)) continue;
        Stack t = s;
        t.back() += 1;
        expand(std::move(t), &next);
      }
      cur.swap(next);
      if (cur.empty()) break;
    }
    result.insert(cur.begin(), cur.end());
    return result;
  }

  std::shared_ptr<const Grammar> g_;
  std::shared_ptr<const Vocabulary> v_;
  std::set<Stack> stacks_;
};

// Compiles GBNF against a vocabulary; nullptr (and *error set) on failure.
inline std::shared_ptr<const TokenGrammar> compile(const std::string& gbnf, std::shared_ptr<const Vocabulary> vocab,
                                                   std::string* error = nullptr,
                                                   std::shared_ptr<const Grammar>* grammar_out = nullptr) {
  std::shared_ptr<const Grammar> g;
  glm::Status st = glm::grammar::parse_gbnf(gbnf, &g);
  if (!st.is_ok()) {
    if (error) *error = st.message();
    return nullptr;
  }
  std::shared_ptr<const TokenGrammar> tg;
  st = glm::grammar::build_token_grammar(g, vocab, &tg);
  if (!st.is_ok()) {
    if (error) *error = st.message();
    return nullptr;
  }
  if (grammar_out) *grammar_out = g;
  return tg;
}

// Feeds text one byte-token at a time (byte vocabulary); true when every byte is accepted and the
// grammar is then accepting.
inline bool matches_bytes(const std::shared_ptr<const TokenGrammar>& tg, const std::string& text) {
  Matcher m(tg);
  for (unsigned char c : text)
    if (!m.accept(int32_t(c))) return false;
  return m.accepting();
}

inline uint64_t next_random(uint64_t* s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

}  // namespace grammar_test
