#include "grammar/stack_arena.h"

#include <algorithm>
#include <unordered_set>

namespace glm::grammar {
namespace {

uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

uint64_t key(uint32_t pos, uint32_t below) { return (uint64_t(pos) << 32) | below; }

}  // namespace

StackArena::StackArena(const Grammar* grammar) : grammar_(grammar) {
  nodes_.push_back({UINT32_MAX, 0});  // kEmpty
  table_.assign(1024, 0);
}

void StackArena::grow_table() {
  std::vector<uint32_t> bigger(table_.size() * 2, 0);
  const size_t mask = bigger.size() - 1;
  for (uint32_t id = 1; id < nodes_.size(); ++id) {
    size_t slot = mix(key(nodes_[id].pos, nodes_[id].below)) & mask;
    while (bigger[slot] != 0) slot = (slot + 1) & mask;
    bigger[slot] = id;
  }
  table_.swap(bigger);
}

uint32_t StackArena::node(uint32_t pos, uint32_t below) {
  const size_t mask = table_.size() - 1;
  size_t slot = mix(key(pos, below)) & mask;
  while (table_[slot] != 0) {
    const Node& n = nodes_[table_[slot]];
    if (n.pos == pos && n.below == below) return table_[slot];
    slot = (slot + 1) & mask;
  }
  const uint32_t id = uint32_t(nodes_.size());
  nodes_.push_back({pos, below});
  table_[slot] = id;
  if (nodes_.size() * 2 > table_.size()) grow_table();
  return id;
}

void StackArena::expand(uint32_t pos, uint32_t below, std::vector<uint32_t>* out) {
  using Kind = Element::Kind;
  const auto& code = grammar_->code;
  // Iterative, with a visited set: returning through many frames (a long chain of rules ending at
  // once) must not recurse natively, and an ambiguous grammar must not expand a pair twice.
  work_.clear();
  seen_.clear();
  std::unordered_set<uint64_t> seen_big;
  work_.push_back({pos, below});
  while (!work_.empty()) {
    const auto [p, b] = work_.back();
    work_.pop_back();
    if (p >= code.size()) {
      out->push_back(node(p, b));
      continue;
    }
    const Element e = code[p];
    if (e.kind == Kind::Bytes || e.kind == Kind::Token) {
      out->push_back(node(p, b));
      continue;
    }
    const uint64_t k = key(p, b);
    if (seen_.size() < 64) {
      if (std::find(seen_.begin(), seen_.end(), k) != seen_.end()) continue;
      seen_.push_back(k);
    } else {
      if (seen_big.empty()) seen_big.insert(seen_.begin(), seen_.end());
      if (!seen_big.insert(k).second) continue;
    }
    if (e.kind == Kind::End) {
      if (b == kEmpty) {
        out->push_back(kEmpty);
      } else {
        work_.push_back({nodes_[b].pos, nodes_[b].below});
      }
      continue;
    }
    // A call: push the return position unless it ends the alternative (tail call).
    const uint32_t ret = code[p + 1].kind == Kind::End ? b : node(p + 1, b);
    const auto& alts = grammar_->rules[e.value].alternatives;
    for (size_t a = alts.size(); a-- > 0;) work_.push_back({alts[a], ret});
  }
}

void StackArena::sort_unique(std::vector<uint32_t>* v) {
  std::sort(v->begin(), v->end());
  v->erase(std::unique(v->begin(), v->end()), v->end());
}

void StackArena::sort_unique_ids(std::vector<int32_t>* v) {
  std::sort(v->begin(), v->end());
  v->erase(std::unique(v->begin(), v->end()), v->end());
}

void StackArena::advance_byte(const std::vector<uint32_t>& stacks, uint8_t b, std::vector<uint32_t>* out) {
  out->clear();
  const auto& code = grammar_->code;
  for (uint32_t s : stacks) {
    if (s == kEmpty) continue;
    const uint32_t p = nodes_[s].pos;
    if (p >= code.size() || code[p].kind != Element::Kind::Bytes) continue;
    if (grammar_->byte_sets[code[p].value].has(b)) expand(p + 1, nodes_[s].below, out);
  }
  sort_unique(out);
}

bool StackArena::accepts_bytes(const std::vector<uint32_t>& stacks, std::string_view bytes) {
  scratch_a_ = stacks;
  for (unsigned char c : bytes) {
    advance_byte(scratch_a_, c, &scratch_b_);
    if (scratch_b_.empty()) return false;
    scratch_a_.swap(scratch_b_);
  }
  return !scratch_a_.empty();
}

}  // namespace glm::grammar
