// Validation and layout of a parsed RuleSet (grammar_ir.h): what makes a grammar safe to run (every
// rule defined, productive and free of left recursion, so expanding a position always terminates and
// always yields a byte or token to match) and cheap to tabulate (small helper rules cloned per call
// site, so most positions have a single, known context).
#include <algorithm>
#include <deque>

#include "grammar/grammar_ir.h"

namespace glm::grammar {
namespace {

using Kind = Element::Kind;

// A byte set this wide makes a position's token table walk most of the vocabulary; rules holding one
// are never cloned (token_tables.cc: cloning such a rule per call site would repeat that walk).
constexpr int kBroadByteSet = 32;
// Rules up to this many elements (their clonable callees included) are cloned per call site.
constexpr uint64_t kCloneMaxElements = 256;

Status invalid(const std::string& what) { return Status::error(ErrorCode::InvalidParam, "GBNF " + what); }

std::string describe_rule(const RuleDef& r) {
  if (r.generated) return "the group, class or repetition at " + describe_location(r.where);
  return "rule '" + r.name + "' (" + describe_location(r.where) + ")";
}

struct Site {
  uint32_t rule, alt, index;
};

class Normalizer {
 public:
  explicit Normalizer(RuleSet set) : set_(std::move(set)) {}

  Status run(std::shared_ptr<const Grammar>* out) {
    if (set_.rules.size() > GrammarLimits::max_rules || set_.element_count() > GrammarLimits::max_elements)
      return invalid("grammar too large");
    mark_reachable();
    GLM_TRY(check_productive());
    compute_nullable();
    GLM_TRY(check_left_recursion());
    clone_small_rules();
    lay_out(out);
    return Status::ok();
  }

 private:
  size_t n() const { return set_.rules.size(); }
  template <class F>
  void for_each_ref(uint32_t r, F f) const {
    const auto& alts = set_.rules[r].alternatives;
    for (uint32_t a = 0; a < alts.size(); ++a)
      for (uint32_t i = 0; i < alts[a].size(); ++i)
        if (alts[a][i].kind == Kind::Rule) f(alts[a][i].value, a, i);
  }
  bool is_self_tail(uint32_t r, uint32_t a, uint32_t i, uint32_t callee) const {
    return callee == r && i + 1 == set_.rules[r].alternatives[a].size();
  }

  void mark_reachable() {
    reachable_.assign(n(), 0);
    std::vector<uint32_t> work{set_.root};
    reachable_[set_.root] = 1;
    while (!work.empty()) {
      const uint32_t r = work.back();
      work.pop_back();
      for_each_ref(r, [&](uint32_t c, uint32_t, uint32_t) {
        if (!reachable_[c]) {
          reachable_[c] = 1;
          work.push_back(c);
        }
      });
    }
  }

  // A rule is productive when some alternative can match a finite string: a rule that cannot (only
  // self-feeding alternatives, e.g. `a ::= "x" a`) would leave the matcher with stacks that never end.
  Status check_productive() {
    std::vector<char> productive(n(), 0);
    for (bool changed = true; changed;) {
      changed = false;
      for (uint32_t r = 0; r < n(); ++r) {
        if (productive[r] || !reachable_[r]) continue;
        for (const auto& alt : set_.rules[r].alternatives) {
          bool ok = true;
          for (const auto& e : alt) {
            if ((e.kind == Kind::Rule && !productive[e.value]) ||
                (e.kind == Kind::Bytes && set_.byte_sets[e.value].empty())) {
              ok = false;
              break;
            }
          }
          if (ok) {
            productive[r] = 1;
            changed = true;
            break;
          }
        }
      }
    }
    // Name a rule that needs itself (the cause), not one that merely calls it.
    uint32_t culprit = UINT32_MAX;
    for (uint32_t r = 0; r < n(); ++r) {
      if (!reachable_[r] || productive[r]) continue;
      bool self = false;
      for_each_ref(r, [&](uint32_t c, uint32_t, uint32_t) { self |= c == r; });
      if (culprit == UINT32_MAX || (self && !set_.rules[r].generated)) culprit = r;
      if (self && !set_.rules[r].generated) break;
    }
    if (culprit != UINT32_MAX)
      return invalid(describe_location(set_.rules[culprit].where) + ": " + describe_rule(set_.rules[culprit]) +
                     " matches no finite string (every alternative needs itself again)");
    return Status::ok();
  }

  void compute_nullable() {
    nullable_.assign(n(), 0);
    for (bool changed = true; changed;) {
      changed = false;
      for (uint32_t r = 0; r < n(); ++r) {
        if (nullable_[r] || !reachable_[r]) continue;
        for (const auto& alt : set_.rules[r].alternatives) {
          bool all = true;
          for (const auto& e : alt) {
            if (e.kind != Kind::Rule || !nullable_[e.value]) {
              all = false;
              break;
            }
          }
          if (all) {
            nullable_[r] = 1;
            changed = true;
            break;
          }
        }
      }
    }
  }

  // Left recursion (a rule reaching itself before consuming a byte, possibly through rules that can
  // match nothing) would make the matcher's expansion loop forever: refused.
  Status check_left_recursion() {
    std::vector<std::vector<uint32_t>> edges(n());
    for (uint32_t r = 0; r < n(); ++r) {
      if (!reachable_[r]) continue;
      for (const auto& alt : set_.rules[r].alternatives) {
        for (const auto& e : alt) {
          if (e.kind == Kind::Rule) edges[r].push_back(e.value);
          if (e.kind != Kind::Rule || !nullable_[e.value]) break;
        }
      }
    }
    // Iterative DFS (a deep chain of rules must not overflow the native stack).
    std::vector<uint8_t> color(n(), 0);  // 0 new, 1 on the path, 2 done
    std::vector<std::pair<uint32_t, size_t>> path;
    for (uint32_t s = 0; s < n(); ++s) {
      if (color[s] || !reachable_[s]) continue;
      path.push_back({s, 0});
      color[s] = 1;
      while (!path.empty()) {
        auto& [r, next] = path.back();
        if (next < edges[r].size()) {
          const uint32_t c = edges[r][next++];
          if (color[c] == 1) {
            // Name the cycle by a user rule on it where there is one.
            uint32_t culprit = c;
            for (size_t k = path.size(); k-- > 0;) {
              if (!set_.rules[path[k].first].generated) culprit = path[k].first;
              if (path[k].first == c) break;
            }
            const RuleDef& d = set_.rules[culprit];
            return invalid(describe_location(d.where) + ": left recursion: " + describe_rule(d) +
                           " can reach itself without consuming input" +
                           (d.generated ? " (a repetition of something that can match the empty string?)" : ""));
          }
          if (color[c] == 0) {
            color[c] = 1;
            path.push_back({c, 0});
          }
        } else {
          color[r] = 2;
          path.pop_back();
        }
      }
    }
    return Status::ok();
  }

  // Tarjan's SCCs, iteratively; returns them callees first.
  std::vector<std::vector<uint32_t>> strongly_connected() const {
    std::vector<int> index(n(), -1), low(n(), 0);
    std::vector<char> on_stack(n(), 0);
    std::vector<uint32_t> stack;
    std::vector<std::vector<uint32_t>> out;
    std::vector<std::vector<uint32_t>> callees(n());
    for (uint32_t r = 0; r < n(); ++r)
      if (reachable_[r]) for_each_ref(r, [&](uint32_t c, uint32_t, uint32_t) { callees[r].push_back(c); });
    int counter = 0;
    std::vector<std::pair<uint32_t, size_t>> frames;
    for (uint32_t s = 0; s < n(); ++s) {
      if (!reachable_[s] || index[s] >= 0) continue;
      frames.push_back({s, 0});
      index[s] = low[s] = counter++;
      stack.push_back(s);
      on_stack[s] = 1;
      while (!frames.empty()) {
        auto& [r, next] = frames.back();
        if (next < callees[r].size()) {
          const uint32_t c = callees[r][next++];
          if (index[c] < 0) {
            index[c] = low[c] = counter++;
            stack.push_back(c);
            on_stack[c] = 1;
            frames.push_back({c, 0});
          } else if (on_stack[c]) {
            low[r] = std::min(low[r], index[c]);
          }
        } else {
          const uint32_t done = r;
          frames.pop_back();
          if (!frames.empty()) low[frames.back().first] = std::min(low[frames.back().first], low[done]);
          if (low[done] == index[done]) {
            std::vector<uint32_t> scc;
            for (;;) {
              const uint32_t m = stack.back();
              stack.pop_back();
              on_stack[m] = 0;
              scc.push_back(m);
              if (m == done) break;
            }
            out.push_back(std::move(scc));
          }
        }
      }
    }
    return out;
  }

  // A helper rule called from k places is copied k-1 times, so that each copy has one call site and
  // its positions one context: their token tables are then exact instead of "uncertain until the rule
  // ends" (token_tables.cc). Copied: rules that are not recursive, small (kCloneMaxElements) and hold no
  // broad byte set (whose tables would be recomputed per copy); all within the element budget.
  void clone_small_rules() {
    auto sccs = strongly_connected();
    std::vector<char> recursive(n(), 0);
    for (const auto& scc : sccs) {
      if (scc.size() > 1) {
        for (uint32_t r : scc) recursive[r] = 1;
      } else {
        const uint32_t r = scc[0];
        for_each_ref(r, [&](uint32_t c, uint32_t a, uint32_t i) {
          if (c == r && !is_self_tail(r, a, i, c)) recursive[r] = 1;
        });
      }
    }
    // Sizes and breadth, callees first (sccs is in that order).
    std::vector<uint64_t> size(n(), 0);
    std::vector<char> broad(n(), 0);
    for (const auto& scc : sccs) {
      for (uint32_t r : scc) {
        uint64_t s = 0;
        for (const auto& alt : set_.rules[r].alternatives) {
          s += alt.size() + 1;
          for (const auto& e : alt)
            if (e.kind == Kind::Bytes && set_.byte_sets[e.value].count() > kBroadByteSet) broad[r] = 1;
        }
        for_each_ref(r, [&](uint32_t c, uint32_t, uint32_t) {
          if (recursive[c] || c == r) return;
          s = std::min<uint64_t>(s + size[c], uint64_t(1) << 40);
          if (broad[c]) broad[r] = 1;
        });
        size[r] = s;
      }
    }
    std::vector<std::vector<Site>> sites(n());
    for (uint32_t r = 0; r < n(); ++r) {
      if (!reachable_[r]) continue;
      for_each_ref(r, [&](uint32_t c, uint32_t a, uint32_t i) {
        if (!is_self_tail(r, a, i, c)) sites[c].push_back({r, a, i});
      });
    }
    uint64_t total = set_.element_count();
    for (size_t k = sccs.size(); k-- > 0;) {  // callers first
      if (sccs[k].size() != 1) continue;
      const uint32_t r = sccs[k][0];
      if (recursive[r] || r == set_.root || broad[r] || sites[r].size() < 2 || size[r] > kCloneMaxElements) continue;
      // The copies' own elements (callees are copied, and counted, when their turn comes).
      uint64_t own = 0;
      for (const auto& alt : set_.rules[r].alternatives) own += alt.size() + 1;
      const uint64_t cost = (sites[r].size() - 1) * own;
      if (total + cost > GrammarLimits::max_elements || set_.rules.size() + sites[r].size() > GrammarLimits::max_rules)
        continue;
      total += cost;
      const std::vector<Site> all = sites[r];
      sites[r].resize(1);
      for (size_t s = 1; s < all.size(); ++s) {
        const uint32_t copy = uint32_t(set_.rules.size());
        RuleDef def = set_.rules[r];
        for (auto& alt : def.alternatives)
          for (auto& e : alt)
            if (e.kind == Kind::Rule && e.value == r) e.value = copy;
        set_.rules.push_back(std::move(def));
        reachable_.push_back(1);
        sites.emplace_back();
        set_.rules[all[s].rule].alternatives[all[s].alt][all[s].index].value = copy;
        for_each_ref(copy, [&](uint32_t c, uint32_t a, uint32_t i) {
          if (!is_self_tail(copy, a, i, c)) sites[c].push_back({copy, a, i});
        });
        sites[copy].push_back(all[s]);
      }
    }
  }

  void lay_out(std::shared_ptr<const Grammar>* out) {
    auto g = std::make_shared<Grammar>();
    // Rules renumbered in breadth-first order from root: a rule with one call site then comes after
    // the rule calling it, so chains are computed in one pass.
    std::vector<uint32_t> order{set_.root}, new_id(n(), UINT32_MAX);
    new_id[set_.root] = 0;
    for (size_t k = 0; k < order.size(); ++k) {
      for_each_ref(order[k], [&](uint32_t c, uint32_t, uint32_t) {
        if (new_id[c] == UINT32_MAX) {
          new_id[c] = uint32_t(order.size());
          order.push_back(c);
        }
      });
    }
    g->byte_sets = set_.byte_sets;
    g->rules.resize(order.size());
    g->call_sites.resize(order.size());
    g->root = 0;
    for (uint32_t id = 0; id < order.size(); ++id) {
      const RuleDef& def = set_.rules[order[id]];
      g->rules[id].name = def.name;
      for (const auto& alt : def.alternatives) {
        g->rules[id].alternatives.push_back(uint32_t(g->code.size()));
        for (Element e : alt) {
          if (e.kind == Kind::Rule) e.value = new_id[e.value];
          g->code.push_back(e);
          g->position_rule.push_back(id);
        }
        g->code.push_back(Element{Kind::End, id});
        g->position_rule.push_back(id);
      }
    }
    for (uint32_t p = 0; p < g->code.size(); ++p) {
      const Element& e = g->code[p];
      if (e.kind != Kind::Rule) continue;
      if (e.value == g->position_rule[p] && g->is_tail(p)) continue;  // a loop, not a call site
      g->call_sites[e.value].push_back(p);
    }
    for (uint32_t id = 0; id < order.size(); ++id) {
      auto& rule = g->rules[id];
      rule.head = id == g->root || g->call_sites[id].size() != 1;
      if (rule.head) {
        rule.family_head = id;
        continue;
      }
      const uint32_t site = g->call_sites[id][0];
      const auto& caller = g->rules[g->position_rule[site]];
      rule.family_head = caller.family_head;
      rule.chain = caller.chain;
      if (!g->is_tail(site)) rule.chain.push_back(site + 1);
    }
    *out = std::move(g);
  }

  RuleSet set_;
  std::vector<char> reachable_, nullable_;
};

}  // namespace

Status normalize_grammar(RuleSet rules, std::shared_ptr<const Grammar>* out) {
  return Normalizer(std::move(rules)).run(out);
}

}  // namespace glm::grammar
