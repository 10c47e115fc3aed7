// Token masks against the reference matcher (test_grammar_support.h): every mask the tables and their
// run-time checks produce must equal, bit for bit, what trying each token's bytes on the stacks gives.
// Metric: exact equality of masks, allows() and accept() at every state of random walks; budget:
// zero mismatches (a wrong bit either lets the model leave the grammar or forbids a valid token).
#include <string>
#include <vector>

#include "check.h"
#include "grammar/grammar.h"
#include "test_grammar_support.h"

using namespace grammar_test;

namespace {

// Tokens chosen to straddle grammar boundaries: JSON punctuation clusters that close a string and
// open the next thing, escapes cut in the middle, partial and whole UTF-8 characters, whitespace runs,
// digit runs, exponent pieces, and token_only specials whose bytes look like text.
std::vector<std::string> tricky_tokens() {
  std::vector<std::string> t;
  for (int b = 0; b < 256; ++b) t.push_back(std::string(1, char(b)));
  const char* multi[] = {
      "\",", "\"}", "}]", "\":\"", "\\\"", "\\u00", "\\u", "{\"", "],\n", "\":", "\", \"", "\"]", "\"},{\"", "},",
      "}}", "]]", "[[", "[{", "{}", "[]", "\"\"", "ab", "abc", "a\"", "a\",", "\"a", " a", "  ", "   ", "\n\n",
      "\n  ", "\t", " \"", "0", "12", "123", "007", "-1", "1.", ".5", "e+", "E-1", "e10", "1e", "true", "tru", "e,",
      "fal", "se", "null", "nul", "l}", "\xC3\xA9", "\xE4\xB8\xAD", "\xE4\xB8", "\xB8\xAD", "\xCE\xB1", "\xCE",
      "\"\xC3\xA9", "\xC3\xA9\"", "\xF0\x9F\x98\x80", "\xF0\x9F", "\x98\x80\"", "name", "\"name\"", "\"name\":",
      " name", "age", "\"age\":", "id", "\"id\"", "-", "--", "2024", "-01", "T12", ":00", "Z\"", "@", "a@b", ".com",
      "\\n", "\\\\", "\\/", "\\u0041", "\\uD83D", "ac", "ca", "bc", "cab", ",\n", ", ", "\" ", " }", " ]", "x", "xy",
      "yx", "yy", "xyz", "\x7f", "\x01"};
  for (const char* m : multi) t.push_back(m);
  t.push_back("");           // an unused padding row: never allowed
  t.push_back("<tool>");     // token_only (below)
  t.push_back("a");          // token_only with text a grammar could match: only <[id]> may take it
  t.push_back("</tool>");    // token_only
  return t;
}

struct TrickyVocab {
  std::shared_ptr<const Vocabulary> vocab;
  int32_t first_special = 0;
};

const TrickyVocab& tricky_vocabulary() {
  static TrickyVocab tv = [] {
    auto toks = tricky_tokens();
    std::vector<uint8_t> only(toks.size(), 0);
    for (size_t i = toks.size() - 3; i < toks.size(); ++i) only[i] = 1;
    TrickyVocab r;
    r.vocab = make_vocabulary(toks, only);
    r.first_special = int32_t(toks.size() - 3);
    return r;
  }();
  return tv;
}

// Random walks (steps tokens each) from the start: at every state the mask, allows() and the
// end flags are compared with the reference; accepted tokens are chosen among the allowed ones.
// Returns the number of states compared.
int differential_walks(const std::string& gbnf, int walks, int steps, uint64_t seed, int line) {
  const auto& tv = tricky_vocabulary();
  std::shared_ptr<const Grammar> g;
  std::string error;
  auto tg = compile(gbnf, tv.vocab, &error, &g);
  CHECK(tg != nullptr) << "line " << line << ": " << error << "\n" << gbnf;
  if (!tg) return 0;
  const size_t words = size_t(tv.vocab->mask_words());
  int compared = 0;
  for (int w = 0; w < walks; ++w) {
    Matcher m(tg);
    ReferenceMatcher ref(g, tv.vocab);
    std::vector<std::vector<uint32_t>> masks;
    size_t accepted_count = 0;
    for (int step = 0; step <= steps; ++step) {
      std::vector<uint32_t> got(words, 0xDEADBEEF);
      m.fill_mask(got.data());
      const std::vector<uint32_t> want = ref.mask();
      ++compared;
      if (got != want) {
        for (int32_t t = 0; t < tv.vocab->size(); ++t) {
          const bool a = (got[size_t(t) >> 5] >> (t & 31)) & 1, b = (want[size_t(t) >> 5] >> (t & 31)) & 1;
          CHECK(a == b) << "line " << line << " walk " << w << " step " << step << ": token " << t << " '"
                        << std::string(tv.vocab->token(t)) << "' mask " << a << " reference " << b << "\n" << gbnf;
        }
        return compared;
      }
      masks.push_back(got);
      CHECK(m.accepting() == ref.accepting()) << "line " << line << " step " << step << "\n" << gbnf;
      CHECK(m.can_continue() == ref.can_continue()) << "line " << line << " step " << step << "\n" << gbnf;
      std::vector<int32_t> allowed;
      for (int32_t t = 0; t < tv.vocab->size(); ++t) {
        const bool bit = (want[size_t(t) >> 5] >> (t & 31)) & 1;
        if (m.allows(t) != bit) {
          CHECK(false) << "line " << line << ": allows(" << t << ") != mask bit " << bit << "\n" << gbnf;
          return compared;
        }
        if (bit) allowed.push_back(t);
      }
      if (allowed.empty()) break;
      // Prefer multi-byte and special tokens: they are where tables can go wrong.
      int32_t pick = allowed[next_random(&seed) % allowed.size()];
      for (int tries = 0; tries < 3 && pick < 256; ++tries) pick = allowed[next_random(&seed) % allowed.size()];
      CHECK(m.accept(pick)) << "line " << line << ": accept of an allowed token failed";
      CHECK(ref.accept(pick));
      ++accepted_count;
    }
    // Rollback to a random earlier state restores its mask exactly (masks[k]: after k tokens).
    const size_t target = size_t(next_random(&seed) % masks.size());
    m.rollback(int64_t(accepted_count - target));
    std::vector<uint32_t> got(words, 0);
    m.fill_mask(got.data());
    CHECK(got == masks[target]) << "line " << line << ": rollback to state " << target << " mask differs";
  }
  return compared;
}
#define DIFF(gbnf, walks, steps, seed) differential_walks(gbnf, walks, steps, seed, __LINE__)

// A random grammar over the tricky vocabulary's alphabet: literals, code-point classes, references
// (recursive ones included), groups, every repetition operator and token elements.
std::string random_gbnf(uint64_t* seed, int32_t special) {
  const char* literals[] = {"\"a\"", "\"b\"", "\"ab\"", "\"\\\"\"", "\",\"", "\"}\"", "\"]\"", "\":\"", "\"\\u00e9\"",
                            "\"\xE4\xB8\xAD\"", "\"1\"", "\"0\"", "\"e\"", "\"true\"", "\"name\"", "\" \"", "\"x\"",
                            "\"\\\\\"", "\"{\"", "\"[\""};
  const char* classes[] = {"[a-c]", "[^\"\\\\]", "[0-9]", "[ \\t\\n]", ".", "[\\u03b1-\\u03c9]", "[^a]", "[xy]",
                           "[^\\x00-\\x7f]", "[\"]"};
  const char* postfix[] = {"", "", "", "*", "+", "?", "{0,2}", "{1,3}", "{2}", "{2,}"};
  auto pick = [&](int n) { return int(next_random(seed) % uint64_t(n)); };
  const int rules = 1 + pick(4);
  std::string out;
  for (int r = 0; r < rules; ++r) {
    out += (r == 0 ? std::string("root") : "r" + std::to_string(r)) + " ::= ";
    const int alts = 1 + pick(3);
    for (int a = 0; a < alts; ++a) {
      if (a) out += " | ";
      const int items = 1 + pick(4);
      for (int i = 0; i < items; ++i) {
        std::string item;
        const int kind = pick(10);
        if (kind < 4) {
          item = literals[pick(20)];
        } else if (kind < 7) {
          item = classes[pick(10)];
        } else if (kind < 9 && rules > 1) {
          // Later rules only in first position (no left recursion); any rule after a terminal.
          const int target = i == 0 ? r + 1 + pick(rules) : pick(rules);
          item = target < rules && target != 0 ? "r" + std::to_string(target) : (i == 0 ? "\"z\"" : "root");
        } else if (kind == 9 && pick(2)) {
          item = "<[" + std::to_string(special + pick(3)) + "]>";
        } else {
          item = std::string("(") + literals[pick(20)] + " | " + classes[pick(10)] + " " + literals[pick(20)] + ")";
        }
        out += item + postfix[pick(10)] + " ";
      }
    }
    out += "\n";
  }
  return out;
}

}  // namespace

TEST(grammar_mask_matches_reference_on_fixed_grammars) {
  // Strings whose content loop ends in the middle of tokens like `",` (uncertain tokens).
  DIFF("root ::= \"[\" (str (\",\" str)*)? \"]\"\nstr ::= \"\\\"\" ([^\"\\\\] | \"\\\\\" [\"\\\\nu/])* \"\\\"\"\n", 6, 30, 1);
  // A recursive value grammar (heads with several call sites, follow sets through recursion).
  DIFF(R"(root ::= value
value ::= obj | arr | str | num | "true" | "false" | "null"
obj ::= "{" ws ( str ws ":" ws value ws ("," ws str ws ":" ws value ws)* )? "}"
arr ::= "[" ws ( value ws ("," ws value ws)* )? "]"
str ::= "\"" ( [^"\\\x00-\x1f] | "\\" ["\\/bfnrt] | "\\u" [0-9a-fA-F]{4} )* "\""
num ::= "-"? ([0-9] | [1-9] [0-9]*) ("." [0-9]+)? ([eE] [-+]? [0-9]+)?
ws ::= [ \t\n]{0,3}
)", 8, 40, 2);
  // Token elements between text, and a token_only token whose bytes the grammar's text would match.
  DIFF("root ::= <[" + std::to_string(tricky_vocabulary().first_special) + "]> \"a\"+ <[" +
           std::to_string(tricky_vocabulary().first_special + 2) + "]> | \"x\" <[" +
           std::to_string(tricky_vocabulary().first_special + 1) + "]>?\n", 4, 10, 3);
  // Partial UTF-8 tokens against code-point classes.
  DIFF("root ::= [\\u00e0-\\u4e2d]* \"\\\"\"\n", 6, 12, 4);
  // A finished grammar: after "a" nothing can follow.
  DIFF("root ::= \"a\" | \"ab\" \"c\"?\n", 3, 5, 5);
}

TEST(grammar_mask_matches_reference_on_random_grammars) {
  uint64_t seed = 0x1234567;
  int grammars = 0, states = 0;
  for (int k = 0; k < 400 && grammars < 120; ++k) {
    const std::string text = random_gbnf(&seed, tricky_vocabulary().first_special);
    std::string error;
    std::shared_ptr<const Grammar> g;
    if (!compile(text, tricky_vocabulary().vocab, &error, &g)) continue;  // left recursion etc.: other tests
    ++grammars;
    states += differential_walks(text, 2, 12, seed, __LINE__);
  }
  CHECK(grammars >= 100) << "only " << grammars << " random grammars compiled";
  CHECK(states >= 1000) << "only " << states << " states compared";
}

TEST(grammar_mask_matches_reference_on_schema_grammars) {
  const char* schemas[] = {
      R"({"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer","minimum":0,"maximum":150},
          "tags":{"type":"array","items":{"type":"string"},"maxItems":3}},"required":["name"]})",
      R"({"type":"object","properties":{"id":{"enum":["a","ab","abc"]},"v":{"type":"number"}},"additionalProperties":false})",
      R"({"$defs":{"n":{"type":"object","properties":{"k":{"type":"array","items":{"$ref":"#/$defs/n"}}}}},"$ref":"#/$defs/n"})",
      R"({"type":"string","pattern":"^[a-c\u00e9]+\"?\\d{0,3}$"})",
      "{}",
  };
  int seed = 10;
  for (const char* schema : schemas) {
    for (bool ws : {true, false}) {
      glm::grammar::SchemaOptions opt;
      opt.allow_whitespace = ws;
      std::string gbnf;
      glm::Status st = glm::grammar::json_schema_to_gbnf(schema, opt, &gbnf);
      CHECK(st.is_ok()) << st.message();
      if (st.is_ok()) DIFF(gbnf, 4, 40, uint64_t(++seed));
    }
  }
}
