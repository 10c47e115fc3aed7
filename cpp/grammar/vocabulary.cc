// Vocabulary::create: validates the token byte table (it comes from a tokenizer file: hostile input)
// and builds the token trie the grammar tables are computed over.
#include <algorithm>
#include <cstring>

#include "grammar/token_trie.h"

namespace glm::grammar {
namespace {

Status invalid(const std::string& what) { return Status::error(ErrorCode::InvalidParam, "vocabulary: " + what); }

void build_trie(const Vocabulary& v, TokenTrie* trie) {
  std::vector<int32_t> ids;
  for (int32_t id = 0; id < int32_t(v.size()); ++id)
    if (!v.token_only(id) && !v.token(id).empty()) ids.push_back(id);
  // Sorted by bytes (ties by id: deterministic), the tokens come in the trie's preorder.
  std::sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) {
    const int c = v.token(a).compare(v.token(b));
    return c < 0 || (c == 0 && a < b);
  });
  trie->byte.push_back(0);
  trie->depth.push_back(0);
  std::vector<uint32_t> path{0};  // path[d]: the node of the current prefix of length d
  std::vector<uint32_t> token_node;
  std::string_view prev;
  for (int32_t id : ids) {
    const std::string_view s = v.token(id);
    size_t common = 0;
    while (common < prev.size() && common < s.size() && prev[common] == s[common]) ++common;
    path.resize(common + 1);
    for (size_t d = common; d < s.size(); ++d) {
      path.push_back(uint32_t(trie->byte.size()));
      trie->byte.push_back(uint8_t(s[d]));
      trie->depth.push_back(uint32_t(d + 1));
    }
    token_node.push_back(path[s.size()]);
    trie->token_ids.push_back(id);
    trie->max_depth = std::max(trie->max_depth, uint32_t(s.size()));
    prev = s;
  }
  const size_t n = trie->byte.size();
  // Tokens were attached in nondecreasing node order: a prefix sum gives each node's range.
  trie->tokens_begin.assign(n + 1, 0);
  for (uint32_t node : token_node) ++trie->tokens_begin[node + 1];
  for (size_t i = 0; i < n; ++i) trie->tokens_begin[i + 1] += trie->tokens_begin[i];
  // A node's subtree ends at the next node not deeper than it.
  trie->subtree_end.assign(n, uint32_t(n));
  std::vector<uint32_t> open;
  for (uint32_t i = 0; i < n; ++i) {
    while (!open.empty() && trie->depth[open.back()] >= trie->depth[i]) {
      trie->subtree_end[open.back()] = i;
      open.pop_back();
    }
    open.push_back(i);
  }
  std::fill(std::begin(trie->root_child), std::end(trie->root_child), -1);
  for (uint32_t i = 1; i < n; i = trie->subtree_end[i]) trie->root_child[trie->byte[i]] = int32_t(i);
}

}  // namespace

Status Vocabulary::create(std::string bytes, std::vector<uint32_t> offsets, std::vector<uint8_t> token_only,
                          std::shared_ptr<const Vocabulary>* out) {
  if (offsets.empty()) return invalid("offsets must have size()+1 entries");
  const size_t n = offsets.size() - 1;
  if (n > size_t(INT32_MAX)) return invalid("more than 2^31-1 tokens");
  if (bytes.size() > UINT32_MAX) return invalid("token bytes over 4 GiB");
  if (offsets[0] != 0 || offsets[n] != bytes.size())
    return invalid("offsets must start at 0 and end at the byte count (" + std::to_string(bytes.size()) + ")");
  for (size_t i = 0; i < n; ++i)
    if (offsets[i + 1] < offsets[i]) return invalid("offsets decrease at token " + std::to_string(i));
  if (!token_only.empty() && token_only.size() != n)
    return invalid("token_only has " + std::to_string(token_only.size()) + " flags for " + std::to_string(n) + " tokens");
  auto v = std::shared_ptr<Vocabulary>(new Vocabulary());
  v->bytes_ = std::move(bytes);
  v->offsets_ = std::move(offsets);
  v->token_only_ = std::move(token_only);
  auto index = std::make_shared<VocabularyIndex>();
  build_trie(*v, &index->trie);
  v->index_ = std::move(index);
  *out = std::move(v);
  return Status::ok();
}

}  // namespace glm::grammar
