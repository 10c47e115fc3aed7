// Pushdown stacks over a Grammar's positions, hash-consed: a stack is a node (its top position and the
// node below it), so stacks sharing a bottom share memory, equal stacks are equal ids, and a set of
// stacks is a sorted vector of ids. Node 0 is the empty stack (the grammar has ended).
//
// A stack's top is always a terminal (Bytes or Token element); the nodes below hold return positions
// (where to continue when the rule above ends). Calls in tail position push nothing, so repetitions
// (right-recursive helper rules) run in constant stack depth.
#pragma once
#include <cstdint>
#include <vector>

#include "grammar/grammar_ir.h"

namespace glm::grammar {

class StackArena {
 public:
  static constexpr uint32_t kEmpty = 0;

  explicit StackArena(const Grammar* grammar);

  uint32_t node(uint32_t pos, uint32_t below);
  uint32_t pos(uint32_t node) const { return nodes_[node].pos; }
  uint32_t below(uint32_t node) const { return nodes_[node].below; }
  size_t size() const { return nodes_.size(); }

  // Appends to *out the stacks with a terminal on top that continuing at `pos` (with `below`
  // underneath) leads to: rule references are entered, ended alternatives return. Positions past the
  // grammar's code (>= code.size(), token_tables.cc's boundary markers) count as terminals. May append
  // duplicates; callers normalise with sort_unique.
  void expand(uint32_t pos, uint32_t below, std::vector<uint32_t>* out);
  // The stacks after `stacks` consume byte b (sorted, unique).
  void advance_byte(const std::vector<uint32_t>& stacks, uint8_t b, std::vector<uint32_t>* out);
  // Whether the bytes can be consumed from `stacks` (any stack surviving them all).
  bool accepts_bytes(const std::vector<uint32_t>& stacks, std::string_view bytes);

  static void sort_unique(std::vector<uint32_t>* v);
  static void sort_unique_ids(std::vector<int32_t>* v);

 private:
  struct Node {
    uint32_t pos, below;
  };
  uint32_t find_or_add(uint32_t pos, uint32_t below);
  void grow_table();

  const Grammar* grammar_;
  std::vector<Node> nodes_;
  std::vector<uint32_t> table_;  // open addressing over nodes_ ids (0: free slot; node 0 is never hashed)
  std::vector<std::pair<uint32_t, uint32_t>> work_;  // expand()'s worklist, kept for its capacity
  std::vector<uint64_t> seen_;                       // expand()'s visited (pos, below) pairs
  std::vector<uint32_t> scratch_a_, scratch_b_;
};

}  // namespace glm::grammar
