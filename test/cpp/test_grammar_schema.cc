// json_schema_to_gbnf: for each schema, instances that must be generable and ones that must not, fed
// byte by byte through a Matcher (byte vocabulary: the grammar's language is checked exactly), and
// the refusals (unsupported keywords named with their pointer, pathological schemas refused fast).
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "check.h"
#include "grammar/grammar.h"
#include "test_grammar_support.h"

using namespace grammar_test;

namespace {

std::shared_ptr<const TokenGrammar> compile_schema(const std::string& schema, int line, bool whitespace = true,
                                                   std::string* gbnf_out = nullptr) {
  glm::grammar::SchemaOptions opt;
  opt.allow_whitespace = whitespace;
  std::string gbnf;
  glm::Status st = glm::grammar::json_schema_to_gbnf(schema, opt, &gbnf);
  CHECK(st.is_ok()) << "line " << line << ": " << st.message() << "\n" << schema;
  if (!st.is_ok()) return nullptr;
  if (gbnf_out) *gbnf_out = gbnf;
  static auto bytes = byte_vocabulary();
  std::string error;
  auto tg = compile(gbnf, bytes, &error);
  CHECK(tg != nullptr) << "line " << line << ": generated GBNF does not compile: " << error << "\n" << gbnf;
  return tg;
}

void expect_language(const std::string& schema, const std::vector<std::string>& good, const std::vector<std::string>& bad,
                     int line, bool whitespace = true) {
  std::string gbnf;
  auto tg = compile_schema(schema, line, whitespace, &gbnf);
  if (!tg) return;
  for (const auto& s : good) CHECK(matches_bytes(tg, s)) << "line " << line << ": rejected valid " << s << "\n" << gbnf;
  for (const auto& s : bad) CHECK(!matches_bytes(tg, s)) << "line " << line << ": accepted invalid " << s << "\n" << gbnf;
}
#define LANG(schema, good, bad) expect_language(schema, good, bad, __LINE__)

void expect_refused(const std::string& schema, const std::string& needle, int line) {
  std::string gbnf;
  glm::Status st = glm::grammar::json_schema_to_gbnf(schema, {}, &gbnf);
  CHECK(!st.is_ok()) << "line " << line << ": accepted " << schema;
  if (st.is_ok()) return;
  CHECK(st.code() == glm::ErrorCode::InvalidParam) << "line " << line;
  CHECK(st.message().find(needle) != std::string::npos) << "line " << line << ": want '" << needle << "' in: " << st.message();
}
#define REFUSED(schema, needle) expect_refused(schema, needle, __LINE__)

}  // namespace

TEST(grammar_schema_primitives) {
  LANG(R"({"type":"string"})",
       (std::vector<std::string>{"\"\"", "\"abc\"", "\"a\\\"b\"", "\"\\u00e9\\uD83D\\uDE00\"", "\"\\n\\t\\/\\\\\"",
                                 "\"\xC3\xA9\xE4\xB8\xAD\xF0\x9F\x98\x80\""}),
       (std::vector<std::string>{"abc", "\"abc", "\"a\nb\"", "\"\\x\"", "\"\\u12G4\"", "\"\xC3\"", "\"\xED\xA0\x80\"", "1"}));
  LANG(R"({"type":"number"})", (std::vector<std::string>{"0", "-0", "12", "-3.25", "1e10", "2E-3", "6.02e+23"}),
       (std::vector<std::string>{"01", "1.", ".5", "+1", "1e", "--1", "NaN", "0x1"}));
  LANG(R"({"type":"integer"})", (std::vector<std::string>{"0", "-7", "123456789012345"}),
       (std::vector<std::string>{"1.0", "1e3", "00", "-"}));
  LANG(R"({"type":"boolean"})", (std::vector<std::string>{"true", "false"}), (std::vector<std::string>{"True", "1", "null"}));
  LANG(R"({"type":["string","null"]})", (std::vector<std::string>{"null", "\"x\""}), (std::vector<std::string>{"0"}));
  LANG("{}", (std::vector<std::string>{"{}", "[1,{\"a\":[null,true]}]", "\"s\"", "-1.5e3", "{ \"k\" : [ ] }"}),
       (std::vector<std::string>{"{,}", "[1,]", "{\"a\"}", "'x'"}));
  LANG("true", (std::vector<std::string>{std::string(40, '[') + "1" + std::string(40, ']')}), (std::vector<std::string>{"[[1]"}));
}

TEST(grammar_schema_objects) {
  // Declared order, optional members omissible in every combination, commas right.
  const std::string s = R"({"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"string"},"c":{"type":"boolean"}},
      "required":["b"],"additionalProperties":false})";
  LANG(s, (std::vector<std::string>{"{\"b\":\"x\"}", "{\"a\":1,\"b\":\"x\"}", "{\"b\":\"x\",\"c\":true}", "{\"a\":1,\"b\":\"\",\"c\":false}",
                                    "{ \"a\" : 1 ,\n  \"b\": \"x\"\n}"}),
       (std::vector<std::string>{"{}", "{\"a\":1}", "{\"b\":\"x\",}", "{,\"b\":\"x\"}", "{\"b\":\"x\",\"a\":1}", "{\"b\":\"x\",\"d\":1}",
                                 "{\"a\":1,,\"b\":\"x\"}", "{\"b\":1}"}));
  // All optional: the empty object too.
  LANG(R"({"properties":{"x":{"type":"null"},"y":{"type":"null"}},"additionalProperties":false})",
       (std::vector<std::string>{"{}", "{\"x\":null}", "{\"y\":null}", "{\"x\":null,\"y\":null}"}),
       (std::vector<std::string>{"{\"y\":null,\"x\":null}", "{,}", "{\"x\":null,}"}));
  // additionalProperties absent: extra members after the declared ones, keys other than declared.
  LANG(R"({"type":"object","properties":{"name":{"type":"string"}},"required":["name"]})",
       (std::vector<std::string>{"{\"name\":\"n\"}", "{\"name\":\"n\",\"extra\":[1,2]}", "{\"name\":\"n\",\"nam\":1,\"names\":2,\"x\":{}}"}),
       (std::vector<std::string>{"{\"name\":\"n\",\"name\":1}", "{\"extra\":1,\"name\":\"n\"}"}));
  // additionalProperties as a schema; no declared properties.
  LANG(R"({"type":"object","additionalProperties":{"type":"integer"}})",
       (std::vector<std::string>{"{}", "{\"a\":1}", "{\"a\":1,\"b\":-2}"}), (std::vector<std::string>{"{\"a\":\"x\"}"}));
  // Escaped and non-ASCII keys, nested objects, empty nested objects.
  LANG(R"({"type":"object","properties":{"q\"k":{"type":"object","properties":{"\u00e9":{"type":"object"}},
      "required":["\u00e9"],"additionalProperties":false}},"required":["q\"k"],"additionalProperties":false})",
       (std::vector<std::string>{"{\"q\\\"k\":{\"\xC3\xA9\":{}}}", "{\"q\\\"k\":{\"\xC3\xA9\":{\"z\":1}}}"}),
       (std::vector<std::string>{"{\"q\\\"k\":{}}", "{\"qk\":{\"\xC3\xA9\":{}}}"}));
  // Required but undeclared: any value.
  LANG(R"({"required":["id"],"additionalProperties":false})", (std::vector<std::string>{"{\"id\":[1]}"}),
       (std::vector<std::string>{"{}", "{\"id\":1,\"x\":2}"}));
}

TEST(grammar_schema_arrays_enums_refs) {
  LANG(R"({"type":"array","items":{"type":"integer"},"minItems":1,"maxItems":3})",
       (std::vector<std::string>{"[1]", "[1,2]", "[1, 2, 3]"}), (std::vector<std::string>{"[]", "[1,2,3,4]", "[1,]", "[\"a\"]"}));
  LANG(R"({"type":"array","prefixItems":[{"type":"string"},{"type":"integer"}],"items":false})",
       (std::vector<std::string>{"[]", "[\"a\"]", "[\"a\",1]"}), (std::vector<std::string>{"[1]", "[\"a\",1,2]"}));
  LANG(R"({"type":"array","prefixItems":[{"const":1}],"minItems":2})",
       (std::vector<std::string>{"[1,null]", "[1,\"x\",3]"}), (std::vector<std::string>{"[1]", "[2,2]"}));
  LANG(R"({"type":"array","items":{"type":"array","items":{"type":"array"}}})",
       (std::vector<std::string>{"[[[]]]", "[[[1,[2]]],[]]", "[]"}), (std::vector<std::string>{"[1]", "[[1]]"}));
  // Enum strings sharing prefixes, mixed-type enums, const objects.
  LANG(R"({"enum":["a","ab","abc",1,null,{"k":[true]}]})",
       (std::vector<std::string>{"\"a\"", "\"ab\"", "\"abc\"", "1", "null", "{\"k\":[true]}"}),
       (std::vector<std::string>{"\"abcd\"", "\"b\"", "2", "{\"k\": [true]}"}));
  LANG(R"({"type":"string","enum":["x",1]})", (std::vector<std::string>{"\"x\""}), (std::vector<std::string>{"1"}));
  LANG(R"({"const":"q\"\n"})", (std::vector<std::string>{"\"q\\\"\\n\""}), (std::vector<std::string>{"\"q\""}));
  // $ref with recursion, $defs and definitions; anyOf/oneOf; allOf with one schema.
  LANG(R"({"$defs":{"node":{"type":"object","properties":{"v":{"type":"integer"},"kids":{"type":"array","items":{"$ref":"#/$defs/node"}}},
      "required":["v"],"additionalProperties":false}},"$ref":"#/$defs/node"})",
       (std::vector<std::string>{"{\"v\":1}", "{\"v\":1,\"kids\":[{\"v\":2,\"kids\":[]},{\"v\":3}]}"}),
       (std::vector<std::string>{"{\"kids\":[]}", "{\"v\":1,\"kids\":[{}]}"}));
  LANG(R"({"definitions":{"a":{"type":"integer"}},"anyOf":[{"$ref":"#/definitions/a"},{"type":"string","maxLength":2}]})",
       (std::vector<std::string>{"5", "\"ab\""}), (std::vector<std::string>{"\"abc\"", "true"}));
  LANG(R"({"oneOf":[{"type":"null"},{"type":"boolean"}]})", (std::vector<std::string>{"null", "true"}), (std::vector<std::string>{"1"}));
  LANG(R"({"allOf":[{"type":"integer","minimum":3}]})", (std::vector<std::string>{"3", "40"}), (std::vector<std::string>{"2", "-3"}));
}

// The library checks constrained output with ajv-formats, so a format grammar that lets through a string
// the format rejects (2023-02-29, 2024-04-31, 12:00:60Z) turns a generation into an internal error.
// Reference: RFC 3339 as written here (the rule ajv-formats implements), over every case that matters.
namespace {
bool leap_year(int y) { return y % 4 == 0 && (y % 100 != 0 || y % 400 == 0); }
std::string two_digits(int v) { char b[8]; std::snprintf(b, sizeof b, "%02d", v); return b; }
}  // namespace

TEST(grammar_schema_date_format_is_exactly_rfc3339_full_date) {
  auto tg = compile_schema(R"({"type":"string","format":"date"})", __LINE__);
  if (!tg) return;
  const int days_in_month[13] = {0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  int checked = 0;
  for (int y : {0, 4, 100, 200, 400, 1900, 1996, 2000, 2023, 2024, 2100, 2400, 9996, 9999}) {
    char year[8];
    std::snprintf(year, sizeof year, "%04d", y);
    for (int m = 0; m <= 13; ++m) {
      for (int d = 0; d <= 32; ++d) {
        const bool valid = m >= 1 && m <= 12 && d >= 1 && d <= (m == 2 && leap_year(y) ? 29 : days_in_month[m]);
        const std::string text = "\"" + std::string(year) + "-" + two_digits(m) + "-" + two_digits(d) + "\"";
        CHECK(matches_bytes(tg, text) == valid) << text;
        ++checked;
      }
    }
  }
  // February 29th of every year: the leap-year rule itself.
  for (int y = 0; y <= 9999; ++y) {
    char text[32];
    std::snprintf(text, sizeof text, "\"%04d-02-29\"", y);
    CHECK(matches_bytes(tg, text) == leap_year(y)) << text;
  }
  CHECK(checked == 14 * 14 * 33);
}

TEST(grammar_schema_time_format_offers_only_valid_times) {
  auto tg = compile_schema(R"({"type":"string","format":"time"})", __LINE__);
  if (!tg) return;
  struct Zone { const char* text; int sign, hours, minutes; };
  const Zone zones[] = {{"Z", 1, 0, 0}, {"z", 1, 0, 0}, {"+00:00", 1, 0, 0}, {"-00:00", -1, 0, 0}, {"+05:30", 1, 5, 30},
                        {"-23:59", -1, 23, 59}, {"+24:00", 1, 24, 0}, {"+01:60", 1, 1, 60}};
  for (int hr : {0, 9, 19, 22, 23, 24, 29}) {
    for (int min : {0, 30, 59, 60}) {
      for (int sec : {0, 59, 60, 61}) {
        for (const Zone& z : zones) {
          // ajv-formats' rule, as it is: out-of-range fields are accepted only as a leap second at 23:59 UTC.
          bool valid = z.hours <= 23 && z.minutes <= 59;
          if (valid && !(hr <= 23 && min <= 59 && sec < 60)) {
            const int utc_min = min - z.minutes * z.sign;
            const int utc_hr = hr - z.hours * z.sign - (utc_min < 0 ? 1 : 0);
            valid = (utc_hr == 23 || utc_hr == -1) && (utc_min == 59 || utc_min == -1) && sec < 61;
          }
          // What the grammar offers: in-range times, and leap seconds at 23:59 with a zero offset only.
          const bool zero_offset = z.hours == 0 && z.minutes == 0;
          const bool offered = z.hours <= 23 && z.minutes <= 59 &&
                               ((hr <= 23 && min <= 59 && sec <= 59) || (hr == 23 && min == 59 && sec == 60 && zero_offset));
          const std::string text = "\"" + two_digits(hr) + ":" + two_digits(min) + ":" + two_digits(sec) + z.text + "\"";
          const bool accepted = matches_bytes(tg, text);
          CHECK(accepted == offered) << text;
          CHECK(!accepted || valid) << text << " is not a valid RFC 3339 time";
        }
      }
    }
  }
  CHECK(matches_bytes(tg, "\"23:59:60.25Z\""));
  CHECK(!matches_bytes(tg, "\"12:00:00\""));  // the offset is required
}

TEST(grammar_schema_strings_and_numbers) {
  LANG(R"({"type":"string","minLength":2,"maxLength":3})", (std::vector<std::string>{"\"ab\"", "\"a\\nc\"", "\"\xC3\xA9\xC3\xA9\""}),
       (std::vector<std::string>{"\"a\"", "\"abcd\""}));
  LANG(R"({"type":"string","pattern":"^[A-Z]{2}-\\d{3}$"})", (std::vector<std::string>{"\"AB-123\""}),
       (std::vector<std::string>{"\"AB-12\"", "\"ab-123\"", "\"xAB-123\""}));
  LANG(R"({"type":"string","pattern":"(a|bc)+x?"})", (std::vector<std::string>{"\"a\"", "\"bcabc\"", "\"ax\""}),
       (std::vector<std::string>{"\"\"", "\"x\"", "\"b\""}));
  LANG(R"({"type":"string","pattern":"^[^a]\"\\\\.$"})", (std::vector<std::string>{"\"b\\\"\\\\z\"", "\"\\n\\\"\\\\z\""}),
       (std::vector<std::string>{"\"a\\\"\\\\z\"", "\"b\"\\\\z\""}));
  LANG(R"({"type":"string","format":"date"})", (std::vector<std::string>{"\"2024-02-29\""}), (std::vector<std::string>{"\"2024-13-01\"", "\"24-01-01\""}));
  LANG(R"({"type":"string","format":"date-time"})", (std::vector<std::string>{"\"2024-01-31T23:59:60.5Z\"", "\"2024-01-31t00:00:00+05:30\""}),
       (std::vector<std::string>{"\"2024-01-31T24:00:00Z\"", "\"2024-01-31T12:00:00\""}));
  LANG(R"({"type":"string","format":"uuid"})", (std::vector<std::string>{"\"123e4567-e89b-12d3-a456-426614174000\""}),
       (std::vector<std::string>{"\"123e4567e89b12d3a456426614174000\""}));
  LANG(R"({"type":"string","format":"email"})", (std::vector<std::string>{"\"a.b+c@example.co.uk\""}),
       (std::vector<std::string>{"\"a@b\"", "\"@b.com\"", "\"a@-b.com\""}));
  LANG(R"({"type":"integer","minimum":-15,"maximum":127})",
       (std::vector<std::string>{"-15", "-9", "0", "7", "99", "100", "127"}),
       (std::vector<std::string>{"-16", "-0", "128", "200", "1000", "007"}));
  LANG(R"({"type":"integer","exclusiveMinimum":9,"exclusiveMaximum":1000})", (std::vector<std::string>{"10", "999"}),
       (std::vector<std::string>{"9", "1000", "5"}));
  LANG(R"({"type":"integer","minimum":250})", (std::vector<std::string>{"250", "999", "1000", "123456"}),
       (std::vector<std::string>{"249", "99", "-300"}));
  LANG(R"({"type":"integer","maximum":-20})", (std::vector<std::string>{"-20", "-21", "-1000"}), (std::vector<std::string>{"-19", "0", "5"}));
  LANG(R"({"type":"number","minimum":0})", (std::vector<std::string>{"0", "1.5e3"}), (std::vector<std::string>{"-1"}));
  // No whitespace option: compact only.
  expect_language(R"({"type":"object","properties":{"a":{"type":"array"}}})", {"{\"a\":[1,2]}"}, {"{ \"a\":[1,2]}", "{\"a\":[1, 2]}"},
                  __LINE__, false);
  // Whitespace is bounded.
  LANG(R"({"type":"array"})", (std::vector<std::string>{"[\n    1]"}), (std::vector<std::string>{"[" + std::string(40, ' ') + "1]", "[\n" + std::string(40, ' ') + "1]"}));
}

TEST(grammar_schema_refusals) {
  REFUSED(R"({"type":"object","properties":{"a":{"type":"string","not":{"const":"x"}}}})", "unsupported JSON Schema keyword 'not' at #/properties/a");
  for (const char* k : {"patternProperties", "propertyNames", "dependentRequired", "if", "uniqueItems", "contains", "minProperties",
                        "maxProperties", "unevaluatedProperties", "multipleOf"}) {
    REFUSED(std::string("{\"type\":\"array\",\"items\":{\"") + k + "\":{}}}", std::string("'") + k + "' at #/items");
  }
  REFUSED(R"({"type":"string","pattern":"(a)\\1"})", "'pattern' at #");
  REFUSED(R"J({"type":"string","pattern":"a(?=b)"})J", "lookaround");
  REFUSED(R"({"type":"string","format":"uri"})", "'format' at #");
  REFUSED(R"({"type":"number","maximum":2.5})", "'maximum' at #");
  REFUSED(R"({"allOf":[{"type":"string"},{"maxLength":3}]})", "'allOf' at #");
  REFUSED("false", "matches nothing");
  REFUSED(R"({"properties":{"a":false},"required":["a"]})", "matches nothing");
  REFUSED(R"({"$ref":"https://example.com/s.json"})", "only local references");
  REFUSED(R"({"$ref":"#/$defs/missing"})", "does not resolve");
  REFUSED("{\"type\":", "JSON Schema");
  // Annotations are ignored.
  std::string gbnf;
  CHECK(glm::grammar::json_schema_to_gbnf(R"({"title":"t","description":"d","examples":[1],"default":1,"$schema":"x","$comment":"c",
      "deprecated":false,"readOnly":true,"type":"integer"})", {}, &gbnf).is_ok());
}

TEST(grammar_schema_pathological_refused_quickly) {
  const auto start = std::chrono::steady_clock::now();
  std::string big_enum = "{\"enum\":[";
  for (int i = 0; i < 100000; ++i) big_enum += (i ? ",\"value" : "\"value") + std::to_string(i) + "\"";
  big_enum += "]}";
  REFUSED(big_enum, "too large");
  std::string deep;
  for (int i = 0; i < 70; ++i) deep += "{\"type\":\"array\",\"items\":";
  deep += "{}";
  for (int i = 0; i < 70; ++i) deep += "}";
  REFUSED(deep, "JSON Schema");  // nesting beyond the JSON parser's or the compiler's depth
  // $ref fan-out: each level references the next one many times (compiled once per target, not inlined).
  std::string defs = "{\"$defs\":{";
  for (int d = 0; d < 30; ++d) {
    defs += (d ? ",\"d" : "\"d") + std::to_string(d) + "\":{\"type\":\"array\",\"prefixItems\":[";
    for (int k = 0; k < 8; ++k) defs += (k ? "," : "") + std::string(d < 29 ? "{\"$ref\":\"#/$defs/d" + std::to_string(d + 1) + "\"}" : "{}");
    defs += "]}";
  }
  defs += "},\"$ref\":\"#/$defs/d0\"}";
  std::string gbnf;
  CHECK(glm::grammar::json_schema_to_gbnf(defs, {}, &gbnf).is_ok()) << "shared $ref targets compile once";
  std::string many_props = "{\"type\":\"object\",\"properties\":{";
  for (int i = 0; i < 3000; ++i) many_props += (i ? ",\"p" : "\"p") + std::to_string(i) + "\":{\"type\":\"integer\"}";
  many_props += "}}";
  glm::Status st = glm::grammar::json_schema_to_gbnf(many_props, {}, &gbnf);
  if (st.is_ok()) {
    std::shared_ptr<const Grammar> g;
    st = glm::grammar::parse_gbnf(gbnf, &g);
  }
  CHECK(!st.is_ok() && st.code() == glm::ErrorCode::InvalidParam) << "3000 optional properties: quadratic grammar refused";
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  // Budget: a request thread may spend this long refusing hostile schemas (generous for slow CI cores).
  CHECK(ms < 2000) << "pathological schemas took " << ms << " ms";
}
