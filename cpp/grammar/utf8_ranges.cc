#include "grammar/utf8_ranges.h"

#include <algorithm>
#include <map>

namespace glm::grammar {
namespace {

// Sorted, overlapping and adjacent ranges merged, clamped to the code space.
std::vector<CodePointRange> normalized(std::vector<CodePointRange> ranges) {
  std::vector<CodePointRange> out;
  for (auto& r : ranges) {
    if (r.lo > kMaxCodePoint || r.lo > r.hi) continue;
    r.hi = std::min(r.hi, kMaxCodePoint);
    out.push_back(r);
  }
  std::sort(out.begin(), out.end(), [](const CodePointRange& a, const CodePointRange& b) { return a.lo < b.lo; });
  std::vector<CodePointRange> merged;
  for (const auto& r : out) {
    if (!merged.empty() && r.lo <= merged.back().hi + 1) {
      merged.back().hi = std::max(merged.back().hi, r.hi);
    } else {
      merged.push_back(r);
    }
  }
  return merged;
}

int encoded_length(uint32_t cp) { return cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4; }

void encode(uint32_t cp, uint8_t* b) {
  switch (encoded_length(cp)) {
    case 1: b[0] = uint8_t(cp); break;
    case 2: b[0] = uint8_t(0xC0 | (cp >> 6)); b[1] = uint8_t(0x80 | (cp & 0x3F)); break;
    case 3:
      b[0] = uint8_t(0xE0 | (cp >> 12)); b[1] = uint8_t(0x80 | ((cp >> 6) & 0x3F)); b[2] = uint8_t(0x80 | (cp & 0x3F));
      break;
    default:
      b[0] = uint8_t(0xF0 | (cp >> 18)); b[1] = uint8_t(0x80 | ((cp >> 12) & 0x3F));
      b[2] = uint8_t(0x80 | ((cp >> 6) & 0x3F)); b[3] = uint8_t(0x80 | (cp & 0x3F));
  }
}

using Sequence = std::vector<std::pair<uint8_t, uint8_t>>;  // a byte range per encoded byte

// Splits [lo, hi] (same encoded length) until each piece's encodings vary independently per byte:
// then the piece is exactly the product of the per-byte ranges of its two ends.
void split_same_length(uint32_t lo, uint32_t hi, std::vector<Sequence>* out) {
  const int n = encoded_length(lo);
  for (int i = 1; i < n; ++i) {
    const uint32_t m = (uint32_t(1) << (6 * i)) - 1;  // the low i continuation bytes
    if ((lo & ~m) != (hi & ~m)) {
      if ((lo & m) != 0) {
        split_same_length(lo, lo | m, out);
        split_same_length((lo | m) + 1, hi, out);
        return;
      }
      if ((hi & m) != m) {
        split_same_length(lo, (hi & ~m) - 1, out);
        split_same_length(hi & ~m, hi, out);
        return;
      }
    }
  }
  uint8_t a[4], b[4];
  encode(lo, a);
  encode(hi, b);
  Sequence s;
  for (int i = 0; i < n; ++i) s.push_back({a[i], b[i]});
  out->push_back(std::move(s));
}

}  // namespace

std::vector<CodePointRange> complement(std::vector<CodePointRange> ranges) {
  std::vector<CodePointRange> out;
  uint32_t next = 0;
  for (const auto& r : normalized(std::move(ranges))) {
    if (r.lo > next) out.push_back({next, r.lo - 1});
    next = r.hi + 1;
  }
  if (next <= kMaxCodePoint) out.push_back({next, kMaxCodePoint});
  return out;
}

std::vector<std::vector<ByteSet>> utf8_sequences(std::vector<CodePointRange> ranges) {
  // Surrogates removed first: a class like [^a] must not admit the bytes ED A0 80.
  std::vector<CodePointRange> pieces;
  for (const auto& r : normalized(std::move(ranges))) {
    if (r.hi < 0xD800 || r.lo > 0xDFFF) {
      pieces.push_back(r);
      continue;
    }
    if (r.lo < 0xD800) pieces.push_back({r.lo, 0xD7FF});
    if (r.hi > 0xDFFF) pieces.push_back({0xE000, r.hi});
  }
  std::vector<Sequence> seqs;
  const uint32_t length_ends[4] = {0x7F, 0x7FF, 0xFFFF, kMaxCodePoint};
  for (const auto& r : pieces) {
    uint32_t lo = r.lo;
    for (uint32_t end : length_ends) {
      if (lo > r.hi) break;
      if (lo > end) continue;
      const uint32_t hi = std::min(r.hi, end);
      split_same_length(lo, hi, &seqs);
      lo = hi + 1;
    }
  }
  // Merge sequences with identical tails: their first bytes form one set.
  std::map<Sequence, ByteSet> by_tail;  // ordered: deterministic output
  std::vector<Sequence> order;
  for (const auto& s : seqs) {
    Sequence tail(s.begin() + 1, s.end());
    auto it = by_tail.find(tail);
    if (it == by_tail.end()) {
      order.push_back(tail);
      it = by_tail.emplace(tail, ByteSet{}).first;
    }
    it->second.add_range(s[0].first, s[0].second);
  }
  std::vector<std::vector<ByteSet>> out;
  for (const auto& tail : order) {
    std::vector<ByteSet> seq{by_tail[tail]};
    for (const auto& [lo, hi] : tail) {
      ByteSet b;
      b.add_range(lo, hi);
      seq.push_back(b);
    }
    out.push_back(std::move(seq));
  }
  return out;
}

void append_utf8(uint32_t cp, std::string* out) {
  uint8_t b[4];
  encode(cp, b);
  out->append(reinterpret_cast<const char*>(b), size_t(encoded_length(cp)));
}

bool decode_utf8(const std::string_view s, size_t* i, uint32_t* cp) {
  const size_t n = s.size();
  size_t p = *i;
  if (p >= n) return false;
  const uint8_t b0 = uint8_t(s[p]);
  int len;
  uint32_t c;
  if (b0 < 0x80) { *cp = b0; *i = p + 1; return true; }
  if (b0 >= 0xC2 && b0 <= 0xDF) { len = 2; c = b0 & 0x1F; }
  else if (b0 >= 0xE0 && b0 <= 0xEF) { len = 3; c = b0 & 0x0F; }
  else if (b0 >= 0xF0 && b0 <= 0xF4) { len = 4; c = b0 & 0x07; }
  else return false;
  if (p + size_t(len) > n) return false;
  for (int k = 1; k < len; ++k) {
    const uint8_t b = uint8_t(s[p + size_t(k)]);
    if ((b & 0xC0) != 0x80) return false;
    c = (c << 6) | (b & 0x3F);
  }
  if (encoded_length(c) != len || c > kMaxCodePoint || (c >= 0xD800 && c <= 0xDFFF)) return false;
  *cp = c;
  *i = p + size_t(len);
  return true;
}

}  // namespace glm::grammar
