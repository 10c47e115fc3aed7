// Constrained decoding: grammars over bytes (GBNF text, or compiled from a JSON Schema) and the token
// masks that keep a generation inside them. The scheduler owns one Matcher per constrained generation;
// compiled grammars are immutable and shared between requests (GrammarCache).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "engine/status.h"

namespace glm::grammar {

// The model's tokens as the byte strings the tokenizer decodes them to. Tokens marked `token_only`
// (special and added tokens: roles, <think>, <tool_call>, ...) never match grammar text; a grammar
// names them by id with <[id]>. Tokens with no bytes (unused padding rows) are never allowed.
class Vocabulary {
 public:
  // bytes: every token's bytes back to back; offsets: size()+1 entries, token i is
  // bytes[offsets[i], offsets[i+1]); token_only: size() flags (empty: none).
  static Status create(std::string bytes, std::vector<uint32_t> offsets, std::vector<uint8_t> token_only,
                       std::shared_ptr<const Vocabulary>* out);
  int64_t size() const { return int64_t(offsets_.size()) - 1; }
  std::string_view token(int32_t id) const { return {bytes_.data() + offsets_[size_t(id)], offsets_[size_t(id) + 1] - offsets_[size_t(id)]}; }
  bool token_only(int32_t id) const { return !token_only_.empty() && token_only_[size_t(id)] != 0; }
  int64_t mask_words() const { return (size() + 31) / 32; }

 private:
  std::string bytes_;
  std::vector<uint32_t> offsets_;
  std::vector<uint8_t> token_only_;
  std::shared_ptr<const void> index_;  // the token trie (token_trie.h), built by create()
  friend struct VocabularyAccess;     // the implementation's access to index_
};

// A grammar's rules, parsed and normalised (opaque).
struct Grammar;

// GBNF, llama.cpp's grammar format (rules `name ::= ...`, "literals", [classes], [^negated], ., ( ),
// | * + ? {m} {m,} {m,n}, # comments) plus <[id]> for a token by id. The start rule is `root`. Errors
// are InvalidParam naming the line and column.
Status parse_gbnf(std::string_view text, std::shared_ptr<const Grammar>* out);

struct SchemaOptions {
  std::string rule_prefix;   // prefix of every rule name (several schemas in one grammar text)
  bool allow_whitespace = true;  // optional whitespace between JSON tokens (bounded runs)
};
// JSON Schema (JSON text) to GBNF rules whose start rule is `<rule_prefix>root`. Unsupported keywords
// and invalid schemas are InvalidParam naming the keyword and its JSON pointer; never a looser grammar.
Status json_schema_to_gbnf(std::string_view schema_json, const SchemaOptions& options, std::string* gbnf);

// A grammar bound to a vocabulary: the per-position token tables precomputed once and shared by every
// Matcher of it (thread-safe after build).
class TokenGrammar;
Status build_token_grammar(std::shared_ptr<const Grammar> grammar, std::shared_ptr<const Vocabulary> vocabulary,
                           std::shared_ptr<const TokenGrammar>* out);

// One generation's position in a grammar (engine thread only).
class Matcher {
 public:
  explicit Matcher(std::shared_ptr<const TokenGrammar> grammar);
  ~Matcher();
  Matcher(const Matcher&);
  Matcher& operator=(const Matcher&);
  // The tokens allowed next: bit (id % 32) of word (id / 32), mask_words() words, every word written.
  // End tokens are the caller's business: it allows them when accepting().
  void fill_mask(uint32_t* words) const;
  // Whether one token is allowed next (cheaper than fill_mask when the sampled token is checked first).
  bool allows(int32_t token) const;
  // Advances by a token; false (and no change) when it is not allowed.
  bool accept(int32_t token);
  // Undoes the last n accepted tokens (n <= accepted tokens).
  void rollback(int64_t n);
  // The bytes so far form a complete sentence of the grammar.
  bool accepting() const;
  // Some byte or token may still follow (false: the generation must end here).
  bool can_continue() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace glm::grammar
