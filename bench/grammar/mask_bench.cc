// Grammar mask benchmark (npm run bench:grammar:mask): compile time per JSON schema and the cost of a
// token mask per generated token, over a synthetic 151,552-token vocabulary shaped like a byte-level
// BPE vocabulary (GLM-4.5's size).
//
// Targets (issue 14): fill_mask median < 50 us and p99 < 500 us per token; compile < 50 ms per schema.
// A mask costs the OR of the current stack tops' accepted-token tables plus the run-time check of
// their uncertain tokens (cached per stack), so the numbers depend on where generations spend their
// tokens: the walk picks random allowed tokens, biased towards single bytes (punctuation) so that
// strings close and generations finish.
//
// Usage: glm_grammar_bench [generations per schema, default 40] [seed]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <vector>

#include "grammar/grammar.h"
#include "grammar/token_grammar.h"  // build statistics (internal)

using glm::grammar::Matcher;
using glm::grammar::TokenGrammar;
using glm::grammar::Vocabulary;
using Clock = std::chrono::steady_clock;

namespace {

constexpr int64_t kVocabSize = 151552;
constexpr int64_t kSpecialTokens = 200;

uint64_t next(uint64_t* s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

void utf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    *out += char(cp);
  } else if (cp < 0x800) {
    *out += char(0xC0 | (cp >> 6));
    *out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    *out += char(0xE0 | (cp >> 12));
    *out += char(0x80 | ((cp >> 6) & 0x3F));
    *out += char(0x80 | (cp & 0x3F));
  } else {
    *out += char(0xF0 | (cp >> 18));
    *out += char(0x80 | ((cp >> 12) & 0x3F));
    *out += char(0x80 | ((cp >> 6) & 0x3F));
    *out += char(0x80 | (cp & 0x3F));
  }
}

// Deterministic: the same vocabulary on every run and machine.
std::shared_ptr<const Vocabulary> synthetic_vocabulary() {
  std::vector<std::string> tokens;
  std::set<std::string> seen;
  auto add = [&](const std::string& t) {
    if (int64_t(tokens.size()) < kVocabSize - kSpecialTokens && seen.insert(t).second) tokens.push_back(t);
  };
  for (int b = 0; b < 256; ++b) tokens.push_back(std::string(1, char(b)));
  for (int b = 0; b < 256; ++b) seen.insert(std::string(1, char(b)));
  for (int n = 0; n < 1000; ++n) add(std::to_string(n));
  for (int n = 0; n < 100; ++n) add(" " + std::to_string(n));
  const char* punct[] = {"\",", "\"}", "}]", "\":\"", "{\"", "],\n", "\":", "\", \"", "\"]", "},{", "}}", "]]", "[[", "[{",
                         "{}", "[]", "\"\"", "\\\"", "\\u00", "\\n", "\":[", "\":{", "\"},", "\"],", "},\n", "}\n", "\",\n",
                         "e+", "e-", "E+", ".0", "0.", "-1", "://", "::", "->", "=>", "();", "()", "{\n", "\n}", "</", "/>",
                         "\":\"\"", "\":true", "\":false", "\":null", "\": ", ", ", ",\"", "\"\n", "true", "false", "null",
                         " true", " false", " null", " \"", "\"\"\"", "''", "\\\\", "\\/", "##", "**", "--", "==", "!=", "<=", ">="};
  for (const char* p : punct) add(p);
  for (int k = 1; k <= 32; ++k) {
    add(std::string(size_t(k), ' '));
    add("\n" + std::string(size_t(k), ' '));
    add(",\n" + std::string(size_t(k), ' '));
    add("\",\n" + std::string(size_t(k), ' '));
    add("\n" + std::string(size_t(k), ' ') + "\"");
    if (k <= 8) add(std::string(size_t(k), '\t'));
    if (k <= 8) add(std::string(size_t(k), '\n'));
  }
  // Multi-byte characters: CJK, Latin-1, Greek, Cyrillic, emoji; whole, and cut after their lead bytes.
  for (uint32_t cp = 0x4E00; cp < 0x4E00 + 6000; ++cp) {
    std::string s;
    utf8(cp, &s);
    add(s);
    if (cp % 7 == 0) add(s.substr(0, 2));
    if (cp % 3 == 0) {
      std::string two = s;
      utf8(cp + 1, &two);
      add(two);
    }
  }
  for (uint32_t cp : {0xC0u, 0x370u, 0x400u}) {
    for (uint32_t k = 0; k < 64; ++k) {
      std::string s;
      utf8(cp + k, &s);
      add(s);
      add(" " + s);
    }
  }
  for (uint32_t cp = 0x1F600; cp < 0x1F650; ++cp) {
    std::string s;
    utf8(cp, &s);
    add(s);
    add(s.substr(0, 3));
  }
  // Words from syllables: plain, with a leading space, capitalised, and some fused with JSON punctuation.
  const char* syl[] = {"a", "e", "i", "o", "u", "ka", "to", "ri", "en", "an", "er", "in", "on", "st", "th", "re", "ing",
                       "ion", "ed", "es", "al", "ar", "or", "ic", "le", "de", "co", "pro", "con", "ment", "ness", "ab",
                       "ex", "sub", "ul", "ve", "ly", "ty", "ch", "sh", "qu", "z", "x", "ph", "gr", "bl", "tr", "nd"};
  const int nsyl = int(sizeof(syl) / sizeof(syl[0]));
  uint64_t seed = 0x9E3779B97F4A7C15ULL;
  while (int64_t(tokens.size()) < kVocabSize - kSpecialTokens) {
    std::string w;
    const int parts = 1 + int(next(&seed) % 4);
    for (int k = 0; k < parts; ++k) w += syl[next(&seed) % uint64_t(nsyl)];
    const uint64_t r = next(&seed) % 100;
    if (r < 40) w = " " + w;
    else if (r < 50) w = " " + std::string(1, char(w[0] - 32)) + w.substr(1);
    else if (r < 58) w = std::string(1, char(w[0] - 32)) + w.substr(1);
    else if (r < 60) w = w + "\",";
    else if (r < 61) w = "\"" + w + "\":";
    else if (r < 62) w = "_" + w;
    add(w);
  }
  for (int64_t k = 0; k < kSpecialTokens; ++k) tokens.push_back("<|special_" + std::to_string(k) + "|>");
  std::string bytes;
  std::vector<uint32_t> offsets{0};
  std::vector<uint8_t> token_only(tokens.size(), 0);
  for (size_t i = 0; i < tokens.size(); ++i) {
    bytes += tokens[i];
    offsets.push_back(uint32_t(bytes.size()));
    if (int64_t(i) >= kVocabSize - kSpecialTokens) token_only[i] = 1;
  }
  std::shared_ptr<const Vocabulary> v;
  glm::Status st = Vocabulary::create(bytes, offsets, token_only, &v);
  if (!st.is_ok()) {
    std::fprintf(stderr, "vocabulary: %s\n", st.message().c_str());
    std::exit(1);
  }
  return v;
}

std::string enum_heavy_schema() {
  std::string countries = "[";
  const char* a[] = {"Ar", "Be", "Ca", "Do", "El", "Fi", "Gu", "Ho", "Is", "Ja", "Ke", "Li", "Ma", "No", "Om", "Pa", "Qa", "Ro", "Sa", "To"};
  const char* b[] = {"gentina", "lgium", "nada", "minica", "bonia", "nland", "yana", "nduras", "rael", "maica"};
  for (int i = 0; i < 200; ++i) countries += std::string(i ? "," : "") + "\"" + a[i % 20] + b[(i / 20) % 10] + (i >= 100 ? " Republic" : "") + "\"";
  countries += "]";
  return R"({"type":"object","properties":{"country":{"enum":)" + countries +
         R"(},"color":{"enum":["red","green","blue","cyan","magenta","yellow","black","white","orange","purple","brown","grey"]},
         "status":{"enum":["active","inactive","pending","archived","deleted"]},"level":{"enum":[1,2,3,4,5,10,20,50,100]},
         "flags":{"type":"array","items":{"enum":["a","ab","abc","b","bc"]},"maxItems":4}},
         "required":["country","color","status","level"],"additionalProperties":false})";
}

struct Schema {
  const char* name;
  std::string json;
};

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, size_t(p * double(v.size())))];
}

double us_since(Clock::time_point t) { return std::chrono::duration<double, std::micro>(Clock::now() - t).count(); }

}  // namespace

int main(int argc, char** argv) {
  const int generations = argc > 1 ? std::max(1, std::atoi(argv[1])) : 40;
  uint64_t seed = argc > 2 ? std::strtoull(argv[2], nullptr, 10) | 1 : 12345;
  auto t0 = Clock::now();
  auto vocab = synthetic_vocabulary();
  std::printf("vocabulary: %lld tokens (%lld token_only), built with its trie in %.1f ms\n", (long long)vocab->size(),
              (long long)kSpecialTokens, us_since(t0) / 1000);
  std::vector<Schema> schemas = {
      {"flat object", R"({"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"},
          "email":{"type":"string"},"active":{"type":"boolean"},"score":{"type":"number"}},"required":["name","age","active"]})"},
      {"nested+arrays", R"({"type":"object","properties":{"user":{"type":"object","properties":{"id":{"type":"integer"},
          "name":{"type":"string"},"tags":{"type":"array","items":{"type":"string"}}},"required":["id"]},
          "items":{"type":"array","items":{"type":"object","properties":{"sku":{"type":"string"},
          "qty":{"type":"integer","minimum":1,"maximum":100},"dims":{"type":"array","items":{"type":"number"},"maxItems":3}},
          "required":["sku","qty"],"additionalProperties":false}}},"required":["user","items"],"additionalProperties":false})"},
      {"enum-heavy", enum_heavy_schema()},
      {"string patterns", R"({"type":"object","properties":{"id":{"type":"string","pattern":"^[A-Z]{3}-[0-9]{4}$"},
          "when":{"type":"string","format":"date-time"},"uuid":{"type":"string","format":"uuid"},
          "code":{"type":"string","pattern":"^[a-z]+(_[a-z]+)*$"},"mail":{"type":"string","format":"email"}},
          "required":["id","when","uuid","code"],"additionalProperties":false})"},
  };
  const size_t words = size_t(vocab->mask_words());
  std::vector<uint32_t> mask(words);
  std::printf("%-16s %9s %9s %9s | %7s %7s %7s %7s | %9s %9s %9s | %8s %8s\n", "schema", "gbnf ms", "parse ms", "tables ms",
              "tables", "uncert", "tokens", "gens", "mask med", "mask p99", "mask max", "allows", "accept");
  for (const auto& schema : schemas) {
    auto c0 = Clock::now();
    std::string gbnf;
    glm::Status st = glm::grammar::json_schema_to_gbnf(schema.json, {}, &gbnf);
    const double gbnf_ms = us_since(c0) / 1000;
    std::shared_ptr<const glm::grammar::Grammar> grammar;
    auto c1 = Clock::now();
    if (st.is_ok()) st = glm::grammar::parse_gbnf(gbnf, &grammar);
    const double parse_ms = us_since(c1) / 1000;
    std::shared_ptr<const TokenGrammar> tg;
    auto c2 = Clock::now();
    if (st.is_ok()) st = glm::grammar::build_token_grammar(grammar, vocab, &tg);
    const double tables_ms = us_since(c2) / 1000;
    if (!st.is_ok()) {
      std::printf("%-16s error: %s\n", schema.name, st.message().c_str());
      continue;
    }
    std::vector<double> mask_us, allows_us, accept_us;
    size_t finished = 0;
    std::vector<int32_t> allowed;
    for (int g = 0; g < generations; ++g) {
      Matcher m(tg);
      for (int step = 0; step < 600; ++step) {
        // The allows()-first fast path: a token sampled from unconstrained logits, checked alone.
        const int32_t guess = int32_t(next(&seed) % uint64_t(vocab->size()));
        auto a0 = Clock::now();
        volatile bool ok = m.allows(guess);
        (void)ok;
        allows_us.push_back(us_since(a0));
        auto t = Clock::now();
        m.fill_mask(mask.data());
        mask_us.push_back(us_since(t));
        allowed.clear();
        for (size_t w = 0; w < words; ++w) {
          for (uint32_t bits = mask[w]; bits; bits &= bits - 1) allowed.push_back(int32_t(w * 32 + size_t(__builtin_ctz(bits))));
        }
        if (m.accepting() && (allowed.empty() || next(&seed) % 4 == 0)) {
          ++finished;
          break;
        }
        if (allowed.empty()) break;
        int32_t pick = allowed[next(&seed) % allowed.size()];
        if (next(&seed) % 3 != 0) {  // bias to single bytes: punctuation closes strings and objects
          std::vector<int32_t> single;
          for (int32_t id : allowed) {
            if (id >= 256) break;
            single.push_back(id);
          }
          if (!single.empty()) pick = single[next(&seed) % single.size()];
        }
        auto a1 = Clock::now();
        const bool accepted = m.accept(pick);
        accept_us.push_back(us_since(a1));
        if (!accepted) {
          std::printf("BUG: accept of an allowed token failed\n");
          return 1;
        }
      }
    }
    std::printf("%-16s %9.2f %9.2f %9.2f | %7zu %7zu %7zu %4zu/%-2d | %8.1fus %8.1fus %8.1fus | %7.2fus %7.2fus\n", schema.name, gbnf_ms,
                parse_ms, tables_ms, tg->stats.distinct_tables, tg->stats.uncertain_total, mask_us.size(), finished, generations, percentile(mask_us, 0.5),
                percentile(mask_us, 0.99), percentile(mask_us, 1.0), percentile(allows_us, 0.5), percentile(accept_us, 0.5));
    std::printf("%-16s allows p99 %.2fus, accept p99 %.2fus; %zu positions, %zu automaton states, %zu trie steps\n", "",
                percentile(allows_us, 0.99), percentile(accept_us, 0.99), tg->stats.positions, tg->stats.states, tg->stats.trie_steps);
  }
  return 0;
}
