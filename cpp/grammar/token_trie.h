// The vocabulary's byte strings as a trie, for computing token tables (token_tables.cc): one walk
// visits each shared prefix once and abandons a whole subtree as soon as its prefix is rejected.
#pragma once
#include <cstdint>
#include <vector>

#include "grammar/grammar.h"

namespace glm::grammar {

// Nodes in depth-first preorder (children in byte order), node 0 the root (the empty prefix), so a
// walk is a loop over the arrays and skipping a subtree is a jump to subtree_end. Only tokens a byte
// grammar can match are in it: not token_only, not empty.
struct TokenTrie {
  std::vector<uint8_t> byte;          // the edge into the node (unused for the root)
  std::vector<uint32_t> depth;        // prefix length
  std::vector<uint32_t> subtree_end;  // one past the node's last descendant
  std::vector<uint32_t> tokens_begin;  // tokens ending at node i: token_ids[tokens_begin[i], tokens_begin[i+1])
  std::vector<int32_t> token_ids;      // several when tokens share bytes (duplicates exist in real vocabularies)
  int32_t root_child[256];             // the root's child for each first byte, or -1
  uint32_t max_depth = 0;
  size_t size() const { return byte.size(); }
};

struct VocabularyIndex {
  TokenTrie trie;
};

struct VocabularyAccess {
  static const VocabularyIndex& index(const Vocabulary& v) { return *static_cast<const VocabularyIndex*>(v.index_.get()); }
};

}  // namespace glm::grammar
