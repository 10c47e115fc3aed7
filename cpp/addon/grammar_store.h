// A model's compiled grammars (constrained decoding): its vocabulary as the grammar engine sees it,
// built once, and the grammars bound to it, kept by their text so a schema sent with every request
// is compiled once. Compiles run on libuv's worker threads, never on the JS or engine thread.
#pragma once
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "grammar/grammar.h"

namespace glm::addon {

class GrammarStore {
 public:
  static constexpr size_t kCapacity = 64;  // compiled grammars kept (least recently used goes first)

  // The vocabulary is set once (the first compile supplies it); later calls keep the first.
  Status compile(const std::string& gbnf, std::string vocab_bytes, std::vector<uint32_t> offsets, std::vector<uint8_t> token_only,
                 std::shared_ptr<const grammar::TokenGrammar>* out) {
    std::shared_ptr<const grammar::Vocabulary> vocab;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto it = cache_.begin(); it != cache_.end(); ++it) {
        if (it->first == gbnf) {
          cache_.splice(cache_.begin(), cache_, it);
          *out = cache_.front().second;
          ++hits_;
          return Status::ok();
        }
      }
      vocab = vocab_;
    }
    if (!vocab) {
      if (offsets.empty()) return Status::error(ErrorCode::Internal, "constrained decoding: the model's vocabulary was not supplied");
      GLM_TRY(grammar::Vocabulary::create(std::move(vocab_bytes), std::move(offsets), std::move(token_only), &vocab));
      std::lock_guard<std::mutex> lock(mu_);
      if (!vocab_) vocab_ = vocab;
    }
    std::shared_ptr<const grammar::Grammar> g;
    GLM_TRY(grammar::parse_gbnf(gbnf, &g));
    std::shared_ptr<const grammar::TokenGrammar> tg;
    GLM_TRY(grammar::build_token_grammar(g, vocab, &tg));
    std::lock_guard<std::mutex> lock(mu_);
    cache_.emplace_front(gbnf, tg);
    if (cache_.size() > kCapacity) cache_.pop_back();
    ++compiles_;
    *out = tg;
    return Status::ok();
  }
  bool has_vocabulary() const {
    std::lock_guard<std::mutex> lock(mu_);
    return vocab_ != nullptr;
  }
  std::pair<uint64_t, uint64_t> counts() const {  // (compiles, cache hits)
    std::lock_guard<std::mutex> lock(mu_);
    return {compiles_, hits_};
  }

 private:
  mutable std::mutex mu_;
  std::shared_ptr<const grammar::Vocabulary> vocab_;
  std::list<std::pair<std::string, std::shared_ptr<const grammar::TokenGrammar>>> cache_;
  uint64_t compiles_ = 0, hits_ = 0;
};

}  // namespace glm::addon
