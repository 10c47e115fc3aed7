// Strict JSON parser: what hostile headers and config files must not get past (RELIABILITY.md 1.6 item 5).
#include <string>

#include "check.h"
#include "engine/json.h"

using glm::ErrorCode;
using glm::JsonValue;
using glm::parse_json;

namespace {

// Expects a ModelFormat error whose message names the source and contains `needle`.
void expect_reject(const std::string& text, const std::string& needle, int line) {
  JsonValue v;
  glm::Status st = parse_json(text, &v, "in.json");
  CHECK(!st.is_ok()) << "line " << line << ": accepted " << text.substr(0, 60);
  if (st.is_ok()) return;
  CHECK(st.code() == ErrorCode::ModelFormat) << "line " << line << ": " << glm::error_code_name(st.code());
  CHECK(st.message().find("in.json: invalid JSON at byte ") == 0) << "line " << line << ": " << st.message();
  CHECK(st.message().find(needle) != std::string::npos) << "line " << line << ": want '" << needle << "' in: " << st.message();
}
#define REJECT(text, needle) expect_reject(text, needle, __LINE__)

JsonValue accept(const std::string& text, int line) {
  JsonValue v;
  glm::Status st = parse_json(text, &v, "in.json");
  CHECK(st.is_ok()) << "line " << line << ": " << st.message();
  return v;
}
#define ACCEPT(text) accept(text, __LINE__)

}  // namespace

TEST(json_parses_values_and_preserves_key_order) {
  JsonValue v = ACCEPT(" \t\r\n{\"b\": [1, -2.5e1, true, false, null], \"a\": \"x\", \"c\": {}} \n");
  CHECK(v.is_object());
  CHECK(v.size() == 3);
  CHECK(v.as_object()[0].first == "b" && v.as_object()[1].first == "a") << "order lost";
  const JsonValue* b = v.find("b");
  CHECK(b && b->is_array() && b->size() == 5);
  if (b && b->size() == 5) {
    CHECK(b->as_array()[1].as_double() == -25.0);
    CHECK(b->as_array()[1].number_text() == "-2.5e1");
    CHECK(b->as_array()[2].as_bool());
    CHECK(b->as_array()[4].is_null());
  }
  CHECK(v.find("a") && v.find("a")->as_string() == "x");
  CHECK(v.find("zz") == nullptr);
  CHECK(ACCEPT("[]").size() == 0);
  CHECK(ACCEPT("\"\"").as_string().empty());
}

TEST(json_rejects_duplicate_keys_naming_the_key) {
  REJECT("{\"a\": 1, \"b\": 2, \"a\": 3}", "duplicate key \"a\"");
  REJECT("{\"x\": {\"k\": 1, \"k\": 1}}", "duplicate key \"k\"");
  // Same key spelled through an escape is still the same key.
  REJECT("{\"ab\": 1, \"a\\u0062\": 2}", "duplicate key \"ab\"");
  // Large objects switch to hashed detection: duplicates of early and late keys both caught.
  std::string big = "{";
  for (int k = 0; k < 40; ++k) big += "\"k" + std::to_string(k) + "\":" + std::to_string(k) + ",";
  REJECT(big + "\"k3\":0}", "duplicate key \"k3\"");
  REJECT(big + "\"k39\":0}", "duplicate key \"k39\"");
  REJECT(big + "\"z\":0,\"z\":1}", "duplicate key \"z\"");
  CHECK(ACCEPT(big + "\"z\":0}").size() == 41);
  // Byte offset points at the second occurrence.
  JsonValue v;
  glm::Status st = parse_json("{\"a\":1,\"a\":2}", &v, "in.json");
  CHECK(st.message().find("at byte 7:") != std::string::npos) << st.message();
}

TEST(json_rejects_depth_bomb_without_recursing_deeply) {
  std::string ok(64, '['), okc(64, ']');
  ACCEPT(ok + okc);
  REJECT(std::string(65, '[') + std::string(65, ']'), "nesting deeper than 64");
  // A 1 MB bomb must fail fast at the limit, not blow the stack.
  REJECT(std::string(1 << 20, '['), "nesting deeper than 64");
  std::string objs;
  for (int i = 0; i < 100; ++i) objs += "{\"a\":";
  REJECT(objs, "nesting deeper than 64");
}

TEST(json_rejects_trailing_garbage_and_bad_syntax) {
  REJECT("{} x", "trailing characters");
  REJECT("{}{}", "trailing characters");
  REJECT("1 2", "trailing characters");
  REJECT("", "unexpected end of input");
  REJECT("   ", "unexpected end of input");
  REJECT("[1,]", "expected a value");
  REJECT("{\"a\":1,}", "expected a string key");
  REJECT("{'a':1}", "expected a string key");
  REJECT("{\"a\" 1}", "expected ':'");
  REJECT("[1 2]", "expected ',' or ']'");
  REJECT("{\"a\":1 \"b\":2}", "expected ',' or '}'");
  REJECT("[\"abc", "unterminated string");
  REJECT("tru", "expected a value");
  REJECT("\xEF\xBB\xBF{}", "expected a value");  // a BOM is not JSON
  REJECT(std::string("{\"a\":1}\0", 8), "trailing characters");
}

TEST(json_rejects_nonstandard_numbers) {
  REJECT("NaN", "expected a value");
  REJECT("Infinity", "expected a value");
  REJECT("-Infinity", "expected a digit");
  REJECT("01", "leading zero");
  REJECT("-01", "leading zero");
  REJECT("1.", "after the decimal point");
  REJECT(".5", "expected a value");
  REJECT("+1", "expected a value");
  REJECT("1e", "exponent");
  REJECT("1e+", "exponent");
  REJECT("0x10", "trailing characters");
  REJECT("1e400", "out of range");
  ACCEPT("-0");
  ACCEPT("0.5e-3");
  ACCEPT("1E+2");
}

TEST(json_rejects_bad_escapes_and_control_characters) {
  REJECT("\"\\x41\"", "invalid escape \\x");
  REJECT("\"\\U0041\"", "invalid escape \\U");
  REJECT("\"\\u12\"", "\\u escape");
  REJECT("\"\\u12", "truncated \\u escape");
  REJECT("\"\\u00g0\"", "invalid hex digit");
  REJECT("\"a\tb\"", "control character");
  REJECT("\"a\nb\"", "control character");
  REJECT(std::string("\"a\0b\"", 5), "control character");
  JsonValue v = ACCEPT("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u0041\\u00e9\\u20ac\\u0000\"");
  CHECK(v.as_string() == std::string("\"\\/\b\f\n\r\tA\xC3\xA9\xE2\x82\xAC\0", 15)) << v.as_string();
}

TEST(json_surrogates) {
  JsonValue v = ACCEPT("\"\\ud83d\\ude00\"");  // U+1F600
  CHECK(v.as_string() == "\xF0\x9F\x98\x80");
  REJECT("\"\\ud83d\"", "lone high surrogate");
  REJECT("\"\\ud83dx\"", "lone high surrogate");
  REJECT("\"\\ud83d\\u0041\"", "lone high surrogate");
  REJECT("\"\\ud83d\\ud83d\"", "lone high surrogate");
  REJECT("\"\\ude00\"", "lone low surrogate");
  REJECT("\"\\ude00\\ud83d\"", "lone low surrogate");
}

TEST(json_rejects_invalid_utf8) {
  REJECT("\"\x80\"", "invalid UTF-8");              // stray continuation
  REJECT("\"\xC3\"", "invalid UTF-8");              // truncated sequence
  REJECT("\"\xC0\xAF\"", "invalid UTF-8");          // overlong '/'
  REJECT("\"\xE0\x80\xAF\"", "invalid UTF-8");      // overlong 3-byte
  REJECT("\"\xED\xA0\x80\"", "invalid UTF-8");      // encoded surrogate U+D800
  REJECT("\"\xF4\x90\x80\x80\"", "invalid UTF-8");  // above U+10FFFF
  REJECT("\"\xFF\"", "invalid UTF-8");
  REJECT("\"\xF0\x9F\x98\"", "invalid UTF-8");      // 4-byte cut short
  REJECT("{\"k\xFE\": 1}", "invalid UTF-8");         // in a key too
  REJECT("[\xC3\xA9]", "expected a value");          // non-ASCII outside strings
  JsonValue v = ACCEPT("\"caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80 \xEF\xBF\xBF\"");
  CHECK(v.as_string() == "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80 \xEF\xBF\xBF");
}

TEST(json_big_integers_are_exact) {
  uint64_t u = 0;
  int64_t i = 0;
  CHECK(ACCEPT("18446744073709551615").as_u64(&u) && u == UINT64_MAX) << u;
  CHECK(!ACCEPT("18446744073709551616").as_u64(&u)) << "2^64 must overflow";
  CHECK(!ACCEPT("99999999999999999999999").as_u64(&u));
  CHECK(ACCEPT("9007199254740993").as_u64(&u) && u == 9007199254740993ull) << "2^53+1 must not round";
  CHECK(ACCEPT("9223372036854775807").as_i64(&i) && i == INT64_MAX);
  CHECK(!ACCEPT("9223372036854775808").as_i64(&i));
  CHECK(ACCEPT("-9223372036854775808").as_i64(&i) && i == INT64_MIN);
  CHECK(!ACCEPT("-9223372036854775809").as_i64(&i));
  CHECK(ACCEPT("-5").as_i64(&i) && i == -5);
  CHECK(!ACCEPT("-5").as_u64(&u)) << "negative as u64";
  CHECK(ACCEPT("-0").as_u64(&u) && u == 0);
  CHECK(!ACCEPT("1.5").as_u64(&u));
  CHECK(!ACCEPT("1e-1").as_u64(&u));
  CHECK(ACCEPT("7.0").as_u64(&u) && u == 7);
  CHECK(ACCEPT("1e3").as_u64(&u) && u == 1000);
  CHECK(ACCEPT("15e-1").as_u64(&u) == false);
  CHECK(ACCEPT("150e-1").as_u64(&u) && u == 15);
  CHECK(ACCEPT("1.8446744073709551615e19").as_u64(&u) && u == UINT64_MAX);
  CHECK(!ACCEPT("1e20").as_u64(&u));
  CHECK(ACCEPT("0.0e5").as_u64(&u) && u == 0);
  REJECT("1e99999999999999999999", "out of range");
  CHECK(!ACCEPT("\"5\"").as_u64(&u)) << "a string is not a number";
  CHECK(!ACCEPT("true").as_i64(&i));
}

TEST(json_value_cap_bounds_memory) {
  glm::JsonLimits lim;
  lim.max_values = 10;
  JsonValue v;
  glm::Status st = parse_json("[1,2,3,4,5,6,7,8,9,10,11]", &v, "in.json", lim);
  CHECK(!st.is_ok() && st.code() == ErrorCode::ModelFormat) << st.message();
  CHECK(st.message().find("more than 10 values") != std::string::npos) << st.message();
  // A failed parse leaves *out untouched.
  CHECK(v.is_null());
}

TEST(json_quote_for_message_escapes_hostile_names) {
  CHECK(glm::quote_for_message("a\"b\n") == "\"a\\x22b\\x0a\"") << glm::quote_for_message("a\"b\n");
  CHECK(glm::quote_for_message(std::string(300, 'x')).size() == 205);
  // Cutting never splits a UTF-8 sequence.
  std::string e;
  for (int k = 0; k < 100; ++k) e += "\xC3\xA9";
  std::string q = glm::quote_for_message(e, 5);
  CHECK(q == "\"\xC3\xA9\xC3\xA9\"...") << q;
}
