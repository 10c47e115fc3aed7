// build_token_grammar: the per-position token tables (token_grammar.h), in the spirit of xgrammar's
// adaptive token mask cache.
//
// The table of terminal position p is one walk of the token trie from the relative stack
//   [boundary(H), chain(p)..., p]
// where H is the head of p's rule family and chain(p) the frames its family always has above H. The
// walk runs a small automaton whose states are sets of such relative stacks (hash-consed, so states
// and their byte transitions are memoised across positions and trie nodes). When a stack returns
// through boundary(H) (the head ended) with bytes left, the walk does not stop at "uncertain": it goes
// on speculatively from every place H is called from (follow(H): the continuations after each call
// site, themselves relative to their own heads, and so on up to the end of the grammar). Tokens that
// no context could take are rejected at build time; only tokens some context takes stay uncertain.
//
// Cost: a position costs the trie nodes whose prefixes it keeps alive; broad classes (string content)
// walk most of the trie, which is why rules holding them are shared heads rather than per-site clones
// (grammar_normalize.cc).
#include <algorithm>
#include <unordered_map>

#include "grammar/stack_arena.h"
#include "grammar/token_grammar.h"
#include "grammar/token_trie.h"

namespace glm::grammar {
namespace {

using Kind = Element::Kind;

struct VectorHash {
  size_t operator()(const std::vector<uint32_t>& v) const {
    uint64_t h = 0x9E3779B97F4A7C15ULL ^ v.size();
    for (uint32_t x : v) h = (h ^ x) * 0x100000001B3ULL + (h >> 29);
    return size_t(h);
  }
};

class TableBuilder {
 public:
  TableBuilder(const Grammar& g, const Vocabulary& v)
      : g_(g), v_(v), trie_(VocabularyAccess::index(v).trie), arena_(&g), n_(uint32_t(g.code.size())) {
    intern({});  // state 0: the dead (empty) state
  }

  Status build(TokenGrammar* out) {
    compute_follows();
    out->position_table.assign(n_, UINT32_MAX);
    const size_t words = size_t(v_.mask_words());
    std::unordered_map<uint64_t, std::vector<uint32_t>> by_hash;  // content hash -> tables with it
    std::vector<const SubtreeResult*> parts;
    std::vector<int32_t> accepted, uncertain;
    std::vector<uint32_t> bits;
    state_stack_.assign(trie_.max_depth + 1, 0);
    for (uint32_t p = 0; p < n_; ++p) {
      const Element e = g_.code[p];
      parts.clear();
      accepted.clear();
      uncertain.clear();
      if (e.kind == Kind::Token) {
        if (int64_t(e.value) >= v_.size())
          return Status::error(ErrorCode::InvalidParam, "grammar names token <[" + std::to_string(e.value) +
                                                            "]> but the vocabulary has " + std::to_string(v_.size()) + " tokens");
        accepted.push_back(int32_t(e.value));
      } else if (e.kind == Kind::Bytes) {
        walk(p, &parts);
      } else {
        continue;
      }
      ++out->stats.positions;
      size_t n_accepted = accepted.size();
      TokenTable t;
      std::unordered_map<std::string_view, uint32_t> remainder_index;
      for (const SubtreeResult* r : parts) {
        n_accepted += r->accepted.size();
        uncertain.insert(uncertain.end(), r->uncertain.begin(), r->uncertain.end());
        for (const auto& [id, at] : r->splits) {
          const std::string_view rest = v_.token(id).substr(at);
          auto it = remainder_index.find(rest);
          if (it == remainder_index.end()) {
            it = remainder_index.emplace(rest, uint32_t(t.remainders.size())).first;
            t.remainders.emplace_back(rest);
          }
          t.splits.push_back({id, it->second});
        }
      }
      std::sort(uncertain.begin(), uncertain.end());
      uncertain.erase(std::unique(uncertain.begin(), uncertain.end()), uncertain.end());
      // Dense when a bitset is smaller than the id list (a list costs a word per id).
      const bool dense = n_accepted * 2 >= words;
      if (dense) {
        bits.assign(words, 0);
        for (const SubtreeResult* r : parts)
          for (int32_t id : r->accepted) bits[size_t(id) >> 5] |= uint32_t(1) << (id & 31);
        t.accepted_bits = bits;
      } else {
        for (const SubtreeResult* r : parts) accepted.insert(accepted.end(), r->accepted.begin(), r->accepted.end());
        std::sort(accepted.begin(), accepted.end());
        t.accepted_ids = accepted;
      }
      t.uncertain = uncertain;
      uint64_t h = dense ? 1 : 2;
      auto mix = [&h](uint64_t x) { h = (h ^ x) * 0x100000001B3ULL + (h >> 31); };
      for (uint32_t w : t.accepted_bits) mix(w);
      for (int32_t id : t.accepted_ids) mix(uint32_t(id));
      mix(UINT64_MAX);
      for (const auto& sp : t.splits) mix((uint64_t(uint32_t(sp.token)) << 32) | sp.remainder);
      auto& same_hash = by_hash[h];
      uint32_t index = UINT32_MAX;
      for (uint32_t k : same_hash) {
        const TokenTable& o = out->tables[k];
        if (o.accepted_bits == t.accepted_bits && o.accepted_ids == t.accepted_ids && o.uncertain == t.uncertain &&
            o.remainders == t.remainders && o.splits.size() == t.splits.size() &&
            std::equal(o.splits.begin(), o.splits.end(), t.splits.begin(),
                       [](const TokenTable::Split& a, const TokenTable::Split& b) { return a.token == b.token && a.remainder == b.remainder; }))
          index = k;
      }
      if (index == UINT32_MAX) {
        out->stats.uncertain_total += t.uncertain.size();
        index = uint32_t(out->tables.size());
        out->tables.push_back(std::move(t));
        same_hash.push_back(index);
      }
      out->position_table[p] = index;
    }
    out->stats.distinct_tables = out->tables.size();
    out->stats.states = states_.size();
    out->stats.trie_steps = trie_steps_;
    return Status::ok();
  }

 private:
  struct StateInfo {
    bool local = false;  // some entry is in the position's own context: a token ending here is accepted
    bool spec = false;   // some entry is speculative (after the head ended): a token ending here is uncertain
    bool live = false;   // some entry can consume another byte
    bool crossed = false;  // a stack of the position's own context has just returned through its head's end
  };
  // Entries: stack node << 1 | speculative.
  static uint32_t entry(uint32_t node, bool spec) { return (node << 1) | (spec ? 1 : 0); }

  uint32_t boundary(uint32_t head) const { return n_ + head; }

  uint32_t relative_base(uint32_t rule_id) {
    const auto& rule = g_.rules[rule_id];
    uint32_t s = arena_.node(boundary(rule.family_head), StackArena::kEmpty);
    for (uint32_t f : rule.chain) s = arena_.node(f, s);
    return s;
  }

  // follow_[H]: the stacks (relative to their own heads) that can continue after head H ends, and
  // kEmpty when the grammar itself can end there.
  void compute_follows() {
    const size_t rules = g_.rules.size();
    std::vector<std::vector<uint32_t>> direct(rules), pops(rules);
    follow_.assign(rules, {});
    std::vector<uint32_t> tmp;
    for (uint32_t h = 0; h < rules; ++h) {
      if (!g_.rules[h].head) continue;
      if (h == g_.root) direct[h].push_back(StackArena::kEmpty);
      for (uint32_t site : g_.call_sites[h]) {
        tmp.clear();
        arena_.expand(site + 1, relative_base(g_.position_rule[site]), &tmp);
        for (uint32_t r : tmp) {
          if (arena_.pos(r) >= n_) {
            pops[h].push_back(arena_.pos(r) - n_);
          } else {
            direct[h].push_back(r);
          }
        }
      }
    }
    std::vector<char> seen(rules, 0);
    for (uint32_t h = 0; h < rules; ++h) {
      if (!g_.rules[h].head) continue;
      std::fill(seen.begin(), seen.end(), 0);
      std::vector<uint32_t> work{h};
      seen[h] = 1;
      while (!work.empty()) {
        const uint32_t x = work.back();
        work.pop_back();
        follow_[h].insert(follow_[h].end(), direct[x].begin(), direct[x].end());
        for (uint32_t y : pops[x])
          if (!seen[y]) {
            seen[y] = 1;
            work.push_back(y);
          }
      }
      StackArena::sort_unique(&follow_[h]);
    }
  }

  uint32_t intern(std::vector<uint32_t> entries) {
    auto it = state_ids_.find(entries);
    if (it != state_ids_.end()) return it->second;
    StateInfo info;
    for (uint32_t e : entries) {
      const uint32_t node = e >> 1;
      if (e & 1) {
        info.spec = true;
      } else {
        info.local = true;
      }
      if (node != StackArena::kEmpty) {
        const uint32_t p = arena_.pos(node);
        if (p < n_ && g_.code[p].kind == Kind::Bytes) info.live = true;
        if (p >= n_ && !(e & 1)) info.crossed = true;
      }
    }
    const uint32_t id = uint32_t(states_.size());
    states_.push_back(entries);
    infos_.push_back(info);
    transitions_.resize(transitions_.size() + 256, -1);
    state_ids_.emplace(std::move(entries), id);
    return id;
  }

  uint32_t transition(uint32_t state, uint8_t b) {
    int32_t& memo = transitions_[size_t(state) * 256 + b];
    if (memo >= 0) return uint32_t(memo);
    next_.clear();
    // states_ may grow (intern) while we read: copy the entries first.
    const std::vector<uint32_t> entries = states_[state];
    for (uint32_t e : entries) {
      const uint32_t node = e >> 1;
      const bool spec = e & 1;
      if (node == StackArena::kEmpty) continue;
      const uint32_t p = arena_.pos(node);
      if (p >= n_ || g_.code[p].kind != Kind::Bytes || !g_.byte_sets[g_.code[p].value].has(b)) continue;
      expanded_.clear();
      arena_.expand(p + 1, arena_.below(node), &expanded_);
      for (uint32_t r : expanded_) {
        const uint32_t rp = arena_.pos(r);
        if (rp >= n_) {  // returned through a head's boundary
          if (!spec) next_.push_back(entry(r, false));
          for (uint32_t f : follow_[rp - n_]) next_.push_back(entry(f, true));
        } else {
          next_.push_back(entry(r, spec));
        }
      }
    }
    StackArena::sort_unique(&next_);
    const uint32_t id = intern(next_);
    transitions_[size_t(state) * 256 + b] = int32_t(id);  // (re-indexed: intern may have grown the vector)
    return id;
  }

  // The classification of the tokens under the first byte's trie node depends only on the state
  // after that byte, and positions converge there (every position of a string's content reaches the
  // same content-loop state after one character): memoised per (first byte, state).
  struct SubtreeResult {
    std::vector<int32_t> accepted, uncertain;
    std::vector<std::pair<int32_t, uint32_t>> splits;  // (uncertain token, bytes before its head ends)
  };

  void walk(uint32_t p, std::vector<const SubtreeResult*>* parts) {
    const uint32_t init = intern({entry(local_stack(p), false)});
    const ByteSet& first = g_.byte_sets[g_.code[p].value];
    for (unsigned b = 0; b < 256; ++b) {
      if (!first.has(uint8_t(b)) || trie_.root_child[b] < 0) continue;
      const uint32_t after_first = transition(init, uint8_t(b));
      if (after_first == 0) continue;
      const uint64_t key = (uint64_t(after_first) << 8) | b;
      auto it = subtree_memo_.find(key);
      if (it == subtree_memo_.end()) {
        SubtreeResult r;
        walk_subtree(uint32_t(trie_.root_child[b]), init, &r);
        it = subtree_memo_.emplace(key, std::move(r)).first;
      }
      parts->push_back(&it->second);  // (unordered_map: references stay valid as it grows)
    }
  }

  void walk_subtree(uint32_t start, uint32_t init, SubtreeResult* out) {
    {
      const uint32_t end = trie_.subtree_end[start];
      state_stack_[0] = init;
      for (uint32_t i = start; i < end;) {
        ++trie_steps_;
        const uint32_t d = trie_.depth[i];
        const uint32_t s = transition(state_stack_[d - 1], trie_.byte[i]);
        if (s == 0) {
          i = trie_.subtree_end[i];
          continue;
        }
        const StateInfo& info = infos_[s];
        for (uint32_t k = trie_.tokens_begin[i]; k < trie_.tokens_begin[i + 1]; ++k) {
          const int32_t id = trie_.token_ids[k];
          if (info.local) {
            out->accepted.push_back(id);
          } else if (info.spec) {
            out->uncertain.push_back(id);
            for (uint32_t at = 1; at < d; ++at)
              if (infos_[state_stack_[at]].crossed) out->splits.push_back({id, at});
          }
        }
        if (!info.live) {
          i = trie_.subtree_end[i];
          continue;
        }
        state_stack_[d] = s;
        ++i;
      }
    }
  }

  uint32_t local_stack(uint32_t p) { return arena_.node(p, relative_base(g_.position_rule[p])); }

  const Grammar& g_;
  const Vocabulary& v_;
  const TokenTrie& trie_;
  StackArena arena_;
  const uint32_t n_;
  std::vector<std::vector<uint32_t>> follow_;
  std::vector<std::vector<uint32_t>> states_;
  std::vector<StateInfo> infos_;
  std::unordered_map<std::vector<uint32_t>, uint32_t, VectorHash> state_ids_;
  std::vector<int32_t> transitions_;  // state * 256 + byte -> state, -1 unknown
  std::vector<uint32_t> next_, expanded_, state_stack_;
  std::unordered_map<uint64_t, SubtreeResult> subtree_memo_;  // (state after the first byte, byte) -> tokens
  size_t trie_steps_ = 0;
};

}  // namespace

bool TokenTable::accepts(int32_t token) const {
  if (!accepted_bits.empty()) return (accepted_bits[size_t(token) >> 5] >> (token & 31)) & 1;
  return std::binary_search(accepted_ids.begin(), accepted_ids.end(), token);
}

Status build_token_grammar(std::shared_ptr<const Grammar> grammar, std::shared_ptr<const Vocabulary> vocabulary,
                           std::shared_ptr<const TokenGrammar>* out) {
  if (!grammar || !vocabulary) return Status::error(ErrorCode::InvalidParam, "build_token_grammar: null grammar or vocabulary");
  auto tg = std::make_shared<TokenGrammar>();
  tg->grammar = grammar;
  tg->vocabulary = vocabulary;
  GLM_TRY(TableBuilder(*grammar, *vocabulary).build(tg.get()));
  *out = std::move(tg);
  return Status::ok();
}

}  // namespace glm::grammar
