// A grammar bound to a vocabulary (build_token_grammar in token_tables.cc; used by matcher.cc).
//
// For each terminal position p of the grammar, a table classifies every token as it would be matched
// from a stack whose top is p, knowing only the frames that p's rule family puts above its head
// (Grammar::Rule::chain):
//   accepted:  consumed entirely within those frames (or exactly up to the head's end);
//   uncertain: the head can end inside the token and some context of the head might take the rest
//              (checked against the real stack at run time);
//   rejected:  everything else (nothing stored).
// A mask is then the OR of the accepted sets of the current stack tops plus the uncertain tokens that
// pass on the real stacks.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "grammar/grammar.h"
#include "grammar/grammar_ir.h"

namespace glm::grammar {

struct TokenTable {
  std::vector<uint32_t> accepted_bits;  // a mask_words() bitset when accepted tokens are many, else empty
  std::vector<int32_t> accepted_ids;    // sorted, when they are few
  std::vector<int32_t> uncertain;       // sorted, unique
  // How each uncertain token can still pass: its head ends after some of its bytes, and what follows
  // the head on the real stack must take the rest (remainders[remainder]). Tokens share remainders
  // (`abc",` and `",` both leave `,`), so the run-time check costs one test per distinct remainder.
  struct Split {
    int32_t token;
    uint32_t remainder;
  };
  std::vector<Split> splits;
  std::vector<std::string> remainders;
  bool accepts(int32_t token) const;
};

class TokenGrammar {
 public:
  std::shared_ptr<const Grammar> grammar;
  std::shared_ptr<const Vocabulary> vocabulary;
  std::vector<TokenTable> tables;         // distinct tables (positions with equal tables share one)
  std::vector<uint32_t> position_table;   // per code position (terminals only): index into tables
  // Build statistics, for the benchmark and tests.
  struct Stats {
    size_t positions = 0, distinct_tables = 0, uncertain_total = 0, states = 0, trie_steps = 0;
  } stats;
};

}  // namespace glm::grammar
