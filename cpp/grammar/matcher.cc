// Matcher: one generation's set of pushdown stacks (stack_arena.h), advanced token by token, with the
// history kept for rollback, and masks read from the token tables (token_grammar.h).
#include <algorithm>
#include <cstring>
#include <unordered_map>

#include "grammar/stack_arena.h"
#include "grammar/token_grammar.h"

namespace glm::grammar {

struct Matcher::State {
  explicit State(std::shared_ptr<const TokenGrammar> g) : grammar(std::move(g)), arena(grammar->grammar.get()) {}

  std::shared_ptr<const TokenGrammar> grammar;
  // Grows with the generation (hash-consed stacks are never freed, so ids in history and in the cache
  // below stay valid across rollback).
  StackArena arena;
  std::vector<std::vector<uint32_t>> history;  // history[k]: the stacks after k accepted tokens
  // The uncertain tokens of a stack's top that its real stack accepts, per stack node: the same stack
  // recurs at every step of a loop (string content, digits), so each is checked once per generation.
  std::unordered_map<uint32_t, std::vector<int32_t>> uncertain_accepted;

  const std::vector<uint32_t>& stacks() const { return history.back(); }
  const TokenTable& table_of(uint32_t stack) const {
    return grammar->tables[grammar->position_table[arena.pos(stack)]];
  }
  // The uncertain tokens the real stack accepts: what lies below the top's head (the frames under its
  // fixed chain) is resumed once, and each distinct remainder is tried on it once.
  const std::vector<int32_t>& uncertain_for(uint32_t stack, const TokenTable& table) {
    auto it = uncertain_accepted.find(stack);
    if (it != uncertain_accepted.end()) return it->second;
    const Grammar& g = *grammar->grammar;
    size_t frames = g.rules[g.position_rule[arena.pos(stack)]].chain.size() + 1;
    uint32_t below = stack;
    while (frames-- > 0) below = arena.below(below);
    std::vector<uint32_t> after_head;
    if (below != StackArena::kEmpty) {  // empty: the head was the whole grammar, nothing may follow it
      arena.expand(arena.pos(below), arena.below(below), &after_head);
      StackArena::sort_unique(&after_head);
    }
    std::vector<uint8_t> remainder_ok(table.remainders.size(), 0);
    for (size_t k = 0; k < table.remainders.size(); ++k)
      remainder_ok[k] = !after_head.empty() && arena.accepts_bytes(after_head, table.remainders[k]);
    std::vector<int32_t> ok;
    for (const auto& split : table.splits)
      if (remainder_ok[split.remainder]) ok.push_back(split.token);
    StackArena::sort_unique_ids(&ok);
    return uncertain_accepted.emplace(stack, std::move(ok)).first->second;
  }
};

Matcher::Matcher(std::shared_ptr<const TokenGrammar> grammar) : state_(std::make_unique<State>(std::move(grammar))) {
  const Grammar& g = *state_->grammar->grammar;
  std::vector<uint32_t> start;
  for (uint32_t alt : g.rules[g.root].alternatives) state_->arena.expand(alt, StackArena::kEmpty, &start);
  StackArena::sort_unique(&start);
  state_->history.push_back(std::move(start));
}

Matcher::~Matcher() = default;
Matcher::Matcher(const Matcher& o) : state_(std::make_unique<State>(*o.state_)) {}
Matcher& Matcher::operator=(const Matcher& o) {
  if (this != &o) state_ = std::make_unique<State>(*o.state_);
  return *this;
}

void Matcher::fill_mask(uint32_t* words) const {
  State& st = *state_;
  const size_t n = size_t(st.grammar->vocabulary->mask_words());
  std::memset(words, 0, n * sizeof(uint32_t));
  for (uint32_t s : st.stacks()) {
    if (s == StackArena::kEmpty) continue;
    const TokenTable& t = st.table_of(s);
    if (!t.accepted_bits.empty()) {
      const uint32_t* bits = t.accepted_bits.data();
      for (size_t w = 0; w < n; ++w) words[w] |= bits[w];
    } else {
      for (int32_t id : t.accepted_ids) words[size_t(id) >> 5] |= uint32_t(1) << (id & 31);
    }
    if (t.uncertain.empty()) continue;
    for (int32_t id : st.uncertain_for(s, t)) words[size_t(id) >> 5] |= uint32_t(1) << (id & 31);
  }
}

bool Matcher::allows(int32_t token) const {
  State& st = *state_;
  if (token < 0 || token >= st.grammar->vocabulary->size()) return false;
  for (uint32_t s : st.stacks()) {
    if (s == StackArena::kEmpty) continue;
    const TokenTable& t = st.table_of(s);
    if (t.accepts(token)) return true;
    if (!std::binary_search(t.uncertain.begin(), t.uncertain.end(), token)) continue;
    const std::vector<int32_t>& ok = st.uncertain_for(s, t);
    if (std::binary_search(ok.begin(), ok.end(), token)) return true;
  }
  return false;
}

bool Matcher::accept(int32_t token) {
  State& st = *state_;
  const Vocabulary& vocab = *st.grammar->vocabulary;
  if (token < 0 || token >= vocab.size()) return false;
  const Grammar& g = *st.grammar->grammar;
  std::vector<uint32_t> next;
  for (uint32_t s : st.stacks()) {  // token elements
    if (s == StackArena::kEmpty) continue;
    const Element& e = g.code[st.arena.pos(s)];
    if (e.kind == Element::Kind::Token && e.value == uint32_t(token)) st.arena.expand(st.arena.pos(s) + 1, st.arena.below(s), &next);
  }
  const std::string_view bytes = vocab.token(token);
  if (!vocab.token_only(token) && !bytes.empty()) {
    std::vector<uint32_t> cur = st.stacks(), after;
    for (unsigned char c : bytes) {
      st.arena.advance_byte(cur, c, &after);
      cur.swap(after);
      if (cur.empty()) break;
    }
    next.insert(next.end(), cur.begin(), cur.end());
  }
  StackArena::sort_unique(&next);
  if (next.empty()) return false;
  st.history.push_back(std::move(next));
  return true;
}

void Matcher::rollback(int64_t n) {
  State& st = *state_;
  const int64_t accepted = int64_t(st.history.size()) - 1;
  n = std::max<int64_t>(0, std::min(n, accepted));
  st.history.resize(st.history.size() - size_t(n));
}

bool Matcher::accepting() const {
  const auto& s = state_->stacks();
  return !s.empty() && s.front() == StackArena::kEmpty;  // sorted: the empty stack (0) comes first
}

bool Matcher::can_continue() const {
  const auto& s = state_->stacks();
  return !s.empty() && s.back() != StackArena::kEmpty;
}

}  // namespace glm::grammar
