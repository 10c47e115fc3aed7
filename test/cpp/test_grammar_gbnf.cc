// GBNF parsing and validation: the syntax accepted, the languages it denotes (checked byte by byte),
// and the errors, each naming line:column, that bad grammars get instead of a crash or a hang.
#include <string>
#include <vector>

#include "check.h"
#include "grammar/grammar.h"
#include "test_grammar_support.h"

using namespace grammar_test;

namespace {

void expect_language(const std::string& gbnf, const std::vector<std::string>& good, const std::vector<std::string>& bad, int line) {
  std::string error;
  auto tg = compile(gbnf, byte_vocabulary(), &error);
  CHECK(tg != nullptr) << "line " << line << ": " << error;
  if (!tg) return;
  for (const auto& s : good) CHECK(matches_bytes(tg, s)) << "line " << line << ": rejected " << s;
  for (const auto& s : bad) CHECK(!matches_bytes(tg, s)) << "line " << line << ": accepted " << s;
}
#define LANG(g, good, bad) expect_language(g, good, bad, __LINE__)

void expect_error(const std::string& gbnf, const std::string& needle, int line) {
  std::shared_ptr<const Grammar> g;
  glm::Status st = glm::grammar::parse_gbnf(gbnf, &g);
  CHECK(!st.is_ok()) << "line " << line << ": accepted " << gbnf;
  if (st.is_ok()) return;
  CHECK(st.code() == glm::ErrorCode::InvalidParam) << "line " << line;
  CHECK(st.message().find(needle) != std::string::npos) << "line " << line << ": want '" << needle << "' in: " << st.message();
}
#define BAD(g, needle) expect_error(g, needle, __LINE__)

using V = std::vector<std::string>;

}  // namespace

TEST(grammar_gbnf_syntax_and_languages) {
  LANG("# comment\nroot ::= \"a\" b # trailing\nb ::= [0-9]+\n", (V{"a1", "a123"}), (V{"a", "1", "ab"}));
  LANG("root ::= (\"x\" | \"y\")* \"!\"", (V{"!", "xyx!"}), (V{"x", "z!"}));
  LANG("root ::= \"a\"{3}", (V{"aaa"}), (V{"aa", "aaaa"}));
  LANG("root ::= \"a\"{2,}", (V{"aa", "aaaaa"}), (V{"a"}));
  LANG("root ::= \"a\"{1,3} \"b\"{0,1}", (V{"a", "aaab", "ab"}), (V{"", "aaaa", "abb"}));
  LANG("root ::= ( \"ab\" ){0,2}", (V{"", "ab", "abab"}), (V{"a", "ababab"}));
  LANG("root ::= [^\"\\\\]", (V{"a", "\xC3\xA9", "\xF0\x9F\x98\x80", "\n"}), (V{"\"", "\\", "\xC3", "\xED\xA0\x80", "\xC0\x80"}));
  LANG("root ::= [a-z\\u03b1-\\u03c9]+", (V{"ab\xCE\xB1\xCF\x89"}), (V{"\xCE\x91", "A"}));
  LANG("root ::= .", (V{"x", "\xE4\xB8\xAD", "\xF4\x8F\xBF\xBF"}), (V{"", "xy", "\xF4\x90\x80\x80", "\xFF"}));
  LANG("root ::= \"\\x41\\u00e9\\U0001F600\\t\\n\\\\\\\"\"", (V{"A\xC3\xA9\xF0\x9F\x98\x80\t\n\\\""}), (V{"A"}));
  LANG("root ::= [\\x00-\\x08]", (V{std::string(1, '\0'), "\x08"}), (V{"\t"}));
  LANG("root ::=\n  \"a\"\n  | \"b\"\nother-rule_2 ::= \"c\"\n", (V{"a", "b"}), (V{"c"}));
  LANG("root ::= x\nx ::= \"(\" x \")\" | \"\"", (V{"", "()", "((()))"}), (V{"(()", ")"}));
}

TEST(grammar_gbnf_errors_name_line_and_column) {
  BAD("root ::= foo", "1:10: undefined rule 'foo'");
  BAD("a ::= \"x\"", "no rule named 'root'");
  BAD("root ::= \"a\"\nroot ::= \"b\"", "2:1: rule 'root' is defined twice");
  BAD("root ::= \"abc", "1:10: unterminated literal");
  BAD("root ::= [abc", "1:10: unterminated character class");
  BAD("root ::= (\"a\" | \"b\"", "expected ')'");
  BAD("root ::= \"a\" )", "unbalanced ')'");
  BAD("root = \"a\"", "1:6: expected '::='");
  BAD("root ::= \"\\q\"", "1:11: unknown escape");
  BAD("root ::= \"\\uD800\"", "surrogate");
  BAD("root ::= \"a\"{3,2}", "n < m");
  BAD("root ::= \"a\"{99999}", "repetition bound");
  BAD("root ::= * \"a\"", "must follow an element");
  BAD("root ::= [z-a]", "out of order");
  BAD("root ::= <[12x]>", "<[token id]>");
  BAD("root ::= root \"a\" | \"b\"", "left recursion: rule 'root'");
  BAD("root ::= a\na ::= b? a \"x\" | \"y\"\nb ::= \"b\"", "2:1: left recursion: rule 'a'");
  BAD("root ::= (\"a\"?)*", "left recursion");
  BAD("root ::= a\na ::= \"x\" a", "2:1: rule 'a' (2:1) matches no finite string");
  BAD("root ::= [^\\x00-\\U0010FFFF]", "matches nothing");
  BAD("root ::= \"\xC3\"", "invalid UTF-8");
  std::string deep = "root ::= ";
  for (int i = 0; i < 70; ++i) deep += "(";
  deep += "\"a\"";
  for (int i = 0; i < 70; ++i) deep += ")";
  BAD(deep, "nested deeper than 64");
  BAD("root ::= \"a\"{10000} \"b\"{10000} \"c\"{10000} \"d\"{10000} \"e\"{10000} \"f\"{10000}", "too large");
  // Token ids beyond the vocabulary are refused when the grammar is bound to it.
  std::string error;
  CHECK(compile("root ::= <[300]>", byte_vocabulary(), &error) == nullptr && error.find("<[300]>") != std::string::npos) << error;
}

TEST(grammar_matcher_end_flags_and_rollback) {
  auto tg = compile("root ::= \"a\" | \"ab\" \"c\"?", byte_vocabulary());
  CHECK(tg != nullptr);
  if (!tg) return;
  Matcher m(tg);
  CHECK(!m.accepting() && m.can_continue());
  CHECK(m.accept('a'));
  CHECK(m.accepting() && m.can_continue());  // "a" is complete; "ab..." may follow
  CHECK(!m.accept('x'));                    // refused: no change
  CHECK(m.accepting());
  CHECK(m.accept('b') && m.accepting() && m.can_continue());
  CHECK(m.accept('c') && m.accepting() && !m.can_continue());
  std::vector<uint32_t> words(8, 0xFFFFFFFF);
  m.fill_mask(words.data());
  for (uint32_t w : words) CHECK(w == 0) << "finished grammar allows nothing";
  m.rollback(2);
  CHECK(m.accepting() && m.can_continue());
  CHECK(m.allows('b') && !m.allows('c'));
  Matcher copy = m;  // copies are independent
  CHECK(copy.accept('b'));
  CHECK(m.allows('b'));
  m.rollback(5);  // more than accepted: back to the start
  CHECK(!m.accepting() && m.allows('a') && !m.allows('b'));

  auto finished = compile("root ::= \"a\"", byte_vocabulary());
  Matcher f(finished);
  CHECK(f.accept('a') && f.accepting() && !f.can_continue());
  CHECK(!f.allows(-1) && !f.allows(256) && !f.accept(1000));
}

TEST(grammar_vocabulary_validation) {
  std::shared_ptr<const Vocabulary> v;
  CHECK(!Vocabulary::create("ab", {0, 1}, {}, &v).is_ok());          // does not end at the byte count
  CHECK(!Vocabulary::create("ab", {0, 2, 1, 2}, {}, &v).is_ok());    // decreasing
  CHECK(!Vocabulary::create("ab", {0, 1, 2}, {1}, &v).is_ok());      // flag count
  CHECK(!Vocabulary::create("", {}, {}, &v).is_ok());
  CHECK(Vocabulary::create("ab", {0, 1, 1, 2}, {0, 0, 1}, &v).is_ok());
  CHECK(v && v->size() == 3 && v->token(1).empty() && v->token_only(2) && v->mask_words() == 1);
}
