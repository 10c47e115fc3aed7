// json_schema_to_gbnf: a JSON Schema to GBNF rules generating the JSON texts it validates (or a stated
// subset of them). Never a looser grammar: a keyword that constrains values and is not implemented is
// an error ("unsupported JSON Schema keyword 'X' at #/pointer"), not ignored.
//
// Supported: type (and type arrays); properties (emitted in declared order, optional ones omissible),
// required, additionalProperties (absent or true: extra members after the declared ones, with any
// value and a key other than the declared names; false: none; a schema: extra members of that
// schema); items, prefixItems (and draft-4 array-form items), minItems, maxItems; enum and const (any
// JSON values, written compactly); anyOf; oneOf compiled as anyOf (exclusivity is not enforced: the
// one place the grammar is looser than the schema); allOf with a single subschema; $ref to local
// pointers (#, #/$defs/..., #/definitions/...), recursion included; minLength and maxLength (up to
// 1000); pattern (schema_regex.h); format date, time, date-time, uuid, email (a simple dot-atom
// address); integer minimum/maximum/exclusiveMinimum/exclusiveMaximum (digit-range rules); number:
// minimum 0 only. Annotations (title, description, examples, default, $schema, $id, $comment, ...) are
// ignored; keywords nobody defined (x-...) too, as validators do.
//
// Stricter than JSON Schema where a generator loses nothing: declared properties come in declared
// order; an untyped schema with object (array, string, number) keywords generates that type only;
// integers have no fraction or exponent; extra property keys use no escapes; enum values use one
// spelling; whitespace between tokens is bounded (one blank, or a newline and up to 32 blanks).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <unordered_map>

#include "engine/json.h"
#include "grammar/grammar.h"
#include "grammar/schema_regex.h"

namespace glm::grammar {
namespace {

constexpr int kMaxSchemaDepth = 64;           // nested subschemas on one path
constexpr size_t kMaxGrammarBytes = 1 << 20;  // generated GBNF text
constexpr size_t kMaxEnumBytes = 40000;       // serialised enum/const values (one grammar element per byte)
constexpr uint64_t kMaxCountBound = 1000;     // minItems/maxItems/minLength/maxLength (expanded as repetitions)
constexpr size_t kMaxSchemaNodes = 20000;     // subschemas compiled

const std::set<std::string>& ignored_keywords() {
  static const std::set<std::string> k = {"title", "description", "examples", "default", "$schema", "$id",
                                          "$comment", "deprecated", "readOnly", "writeOnly", "$anchor",
                                          "contentMediaType", "contentEncoding", "$vocabulary", "$defs", "definitions"};
  return k;
}
const std::set<std::string>& supported_keywords() {
  static const std::set<std::string> k = {"type", "properties", "required", "additionalProperties", "items",
                                          "prefixItems", "minItems", "maxItems", "enum", "const", "anyOf",
                                          "oneOf", "allOf", "$ref", "minLength", "maxLength", "pattern", "format",
                                          "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"};
  return k;
}
// Keywords that constrain values and are not implemented: refused by name.
const std::set<std::string>& refused_keywords() {
  static const std::set<std::string> k = {
      "patternProperties", "propertyNames", "dependentRequired", "dependentSchemas", "dependencies", "if", "then",
      "else", "not", "uniqueItems", "contains", "minContains", "maxContains", "minProperties", "maxProperties",
      "unevaluatedProperties", "unevaluatedItems", "multipleOf", "additionalItems", "$dynamicRef", "$recursiveRef",
      "$dynamicAnchor", "$recursiveAnchor", "contentSchema", "divisibleBy", "extends", "disallow"};
  return k;
}

std::string pointer_segment(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '~') out += "~0";
    else if (c == '/') out += "~1";
    else out += c;
  }
  return out;
}

void serialize_string(const std::string& s, std::string* out) {
  *out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"': *out += "\\\""; break;
      case '\\': *out += "\\\\"; break;
      case '\n': *out += "\\n"; break;
      case '\r': *out += "\\r"; break;
      case '\t': *out += "\\t"; break;
      case '\b': *out += "\\b"; break;
      case '\f': *out += "\\f"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", unsigned(c));
          *out += buf;
        } else {
          *out += char(c);
        }
    }
  }
  *out += '"';
}

// Compact JSON, minimal string escapes: the one spelling enum and const values are generated in.
void serialize(const JsonValue& v, std::string* out) {
  switch (v.kind()) {
    case JsonValue::Kind::Null: *out += "null"; break;
    case JsonValue::Kind::Bool: *out += v.as_bool() ? "true" : "false"; break;
    case JsonValue::Kind::Number: *out += std::string(v.number_text()); break;
    case JsonValue::Kind::String: serialize_string(v.as_string(), out); break;
    case JsonValue::Kind::Array: {
      *out += '[';
      for (size_t i = 0; i < v.as_array().size(); ++i) {
        if (i) *out += ',';
        serialize(v.as_array()[i], out);
      }
      *out += ']';
      break;
    }
    case JsonValue::Kind::Object: {
      *out += '{';
      for (size_t i = 0; i < v.as_object().size(); ++i) {
        if (i) *out += ',';
        serialize_string(v.as_object()[i].first, out);
        *out += ':';
        serialize(v.as_object()[i].second, out);
      }
      *out += '}';
      break;
    }
  }
}

// Joins the non-empty parts with spaces (an absent `ws` is an empty part).
std::string seq(std::initializer_list<std::string> parts) {
  std::string out;
  for (const auto& p : parts) {
    if (p.empty()) continue;
    if (!out.empty()) out += ' ';
    out += p;
  }
  return out.empty() ? "\"\"" : out;
}

std::string alternatives(const std::vector<std::string>& alts) {
  if (alts.size() == 1) return alts[0];
  std::string out = "(";
  for (size_t i = 0; i < alts.size(); ++i) out += (i ? " | " : "") + alts[i];
  return out + ")";
}

// Decimal strings of equal length n for the integers in [lo, hi] (inner digits may be zero).
void same_length_range(const std::string& lo, const std::string& hi, const std::string& prefix, std::vector<std::string>* out) {
  const size_t n = lo.size();
  auto all = [](const std::string& s, size_t from, char c) {
    for (size_t i = from; i < s.size(); ++i)
      if (s[i] != c) return false;
    return true;
  };
  auto join = [](const std::string& a, const std::string& b) { return a.empty() ? b : b.empty() ? a : a + " " + b; };
  const std::string tail_any = n > 1 ? "[0-9]" + (n > 2 ? "{" + std::to_string(n - 1) + "}" : std::string()) : "";
  if (n == 1) {
    out->push_back(join(prefix, lo[0] == hi[0] ? "\"" + lo + "\"" : "[" + lo + "-" + hi + "]"));
    return;
  }
  if (lo[0] == hi[0]) {
    same_length_range(lo.substr(1), hi.substr(1), join(prefix, "\"" + lo.substr(0, 1) + "\""), out);
    return;
  }
  const bool lo_zeros = all(lo, 1, '0'), hi_nines = all(hi, 1, '9');
  if (!lo_zeros) same_length_range(lo.substr(1), std::string(n - 1, '9'), join(prefix, "\"" + lo.substr(0, 1) + "\""), out);
  const char first = char(lo_zeros ? lo[0] : lo[0] + 1), last = char(hi_nines ? hi[0] : hi[0] - 1);
  if (first <= last) {
    const std::string lead = first == last ? "\"" + std::string(1, first) + "\"" : "[" + std::string(1, first) + "-" + std::string(1, last) + "]";
    out->push_back(join(prefix, join(lead, tail_any)));
  }
  if (!hi_nines) same_length_range(std::string(n - 1, '0'), hi.substr(1), join(prefix, "\"" + hi.substr(0, 1) + "\""), out);
}

// Naturals in [lo, hi] (hi < 0: unbounded) written without leading zeros.
std::vector<std::string> natural_range(int64_t lo, int64_t hi) {
  std::vector<std::string> out;
  const std::string los = std::to_string(lo);
  const size_t lo_digits = los.size();
  const size_t hi_digits = hi < 0 ? lo_digits : std::to_string(hi).size();
  for (size_t d = lo_digits; d <= hi_digits; ++d) {
    int64_t pow = 1;
    for (size_t k = 1; k < d; ++k) pow *= 10;
    const int64_t a = std::max(lo, d == 1 ? int64_t(0) : pow);
    const int64_t b = hi < 0 || d < hi_digits ? pow * 10 - 1 : hi;
    if (a > b) continue;
    same_length_range(std::to_string(a), std::to_string(b), "", &out);
  }
  if (hi < 0) out.push_back("[1-9] [0-9]{" + std::to_string(lo_digits) + ",}");  // longer numbers
  return out;
}

class SchemaCompiler {
 public:
  SchemaCompiler(const JsonValue& root, const SchemaOptions& options) : root_(root), opt_(options) {}

  Status compile(std::string* out) {
    // Reserved: the root and the shared building blocks (primitive()).
    for (const char* n : {"root", "ws", "char", "string", "number", "integer", "boolean", "null", "value", "object", "array",
                          "key-tail", "non-ascii-char"})
      used_names_.insert(n);
    std::string body;
    GLM_TRY(visit(root_, "", 0, &body));
    std::string text = opt_.rule_prefix + "root ::= " + body + "\n";
    for (const auto& [name, rule] : rules_) text += name + " ::= " + rule + "\n";
    if (text.size() > kMaxGrammarBytes) return too_large("");
    *out = std::move(text);
    return Status::ok();
  }

 private:
  static std::string at(const std::string& ptr) { return "#" + ptr; }
  Status invalid(const std::string& what) const { return Status::error(ErrorCode::InvalidParam, "JSON Schema: " + what); }
  Status too_large(const std::string& ptr) const {
    return invalid("schema too large to compile (at " + at(ptr) + "; over the grammar size budget)");
  }

  // A fresh rule name from a hint ([a-zA-Z0-9-] kept), unique within this grammar.
  std::string fresh_name(const std::string& hint) {
    std::string base;
    for (char c : hint) {
      const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
      if (ok) base += c;
      else if (!base.empty() && base.back() != '-') base += '-';
    }
    while (!base.empty() && base.back() == '-') base.pop_back();
    if (base.empty()) base = "schema";
    if (base.size() > 40) base.resize(40);
    std::string name = base;
    for (int k = 2; used_names_.count(name); ++k) name = base + "-" + std::to_string(k);
    used_names_.insert(name);
    return name;
  }
  Status add_rule(const std::string& name, const std::string& body, const std::string& ptr) {
    bytes_ += name.size() + body.size() + 8;
    if (bytes_ > kMaxGrammarBytes) return too_large(ptr);
    rules_.push_back({opt_.rule_prefix + name, body});
    return Status::ok();
  }
  std::string ref(const std::string& name) const { return opt_.rule_prefix + name; }

  // Shared building blocks, each emitted once when first used.
  std::string primitive(const std::string& kind) {
    if (!primitives_.count(kind)) {
      primitives_.insert(kind);
      std::string body;
      if (kind == "ws") {
        body = "( [ \\t] | \"\\n\" [ \\t]{0,32} )?";
      } else if (kind == "char") {
        body = "[^\"\\\\\\x00-\\x1F] | \"\\\\\" ( [\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{4} )";
      } else if (kind == "key-tail") {
        body = "[^\"\\\\\\x00-\\x1F]*";
      } else if (kind == "non-ascii-char") {
        body = "[\\x80-\\U0010FFFF]";
      } else if (kind == "string") {
        body = "\"\\\"\" " + primitive("char") + "* \"\\\"\"";
      } else if (kind == "number") {
        body = "\"-\"? ( \"0\" | [1-9] [0-9]* ) ( \".\" [0-9]+ )? ( [eE] [-+]? [0-9]+ )?";
      } else if (kind == "integer") {
        body = "\"-\"? ( \"0\" | [1-9] [0-9]* )";
      } else if (kind == "boolean") {
        body = "\"true\" | \"false\"";
      } else if (kind == "null") {
        body = "\"null\"";
      } else if (kind == "value") {
        body = primitive("object") + " | " + primitive("array") + " | " + primitive("string") + " | " +
               primitive("number") + " | " + primitive("boolean") + " | " + primitive("null");
      } else if (kind == "object") {
        const std::string member = seq({primitive("string"), ws(), "\":\"", ws(), primitive("value")});
        body = "\"{\" " + seq({ws(), "\"}\""}) + " | \"{\" " +
               seq({ws(), member, "(" + seq({ws(), "\",\"", ws(), member}) + ")*", ws(), "\"}\""});
      } else if (kind == "array") {
        body = "\"[\" " + seq({ws(), "\"]\""}) + " | \"[\" " +
               seq({ws(), primitive("value"), "(" + seq({ws(), "\",\"", ws(), primitive("value")}) + ")*", ws(), "\"]\""});
      }
      rules_.push_back({ref(kind), body});
    }
    return ref(kind);
  }
  std::string ws() { return opt_.allow_whitespace ? primitive("ws") : std::string(); }

  Status visit(const JsonValue& schema, const std::string& ptr, int depth, std::string* expr) {
    if (depth > kMaxSchemaDepth) return invalid("schema nested deeper than " + std::to_string(kMaxSchemaDepth) + " at " + at(ptr));
    if (++nodes_ > kMaxSchemaNodes) return too_large(ptr);
    if (schema.is_bool()) {
      if (!schema.as_bool()) return invalid("schema 'false' at " + at(ptr) + " matches nothing");
      *expr = primitive("value");
      return Status::ok();
    }
    if (!schema.is_object()) return invalid("schema at " + at(ptr) + " must be an object or a boolean");
    std::vector<std::string> constraining;
    for (const auto& [key, value] : schema.as_object()) {
      if (ignored_keywords().count(key)) continue;
      if (refused_keywords().count(key) || (key == "items" && value.is_array() && schema.find("additionalItems")))
        return invalid("unsupported JSON Schema keyword '" + key + "' at " + at(ptr));
      if (supported_keywords().count(key)) constraining.push_back(key);
    }
    auto only = [&](const std::string& main, std::initializer_list<const char*> allowed) -> Status {
      for (const auto& k : constraining) {
        if (k == main) continue;
        bool ok = false;
        for (const char* a : allowed) ok |= k == a;
        if (!ok) return invalid("keyword '" + k + "' next to '" + main + "' at " + at(ptr) + " is not supported");
      }
      return Status::ok();
    };
    if (const JsonValue* r = schema.find("$ref")) {
      GLM_TRY(only("$ref", {}));
      return visit_ref(*r, ptr, depth, expr);
    }
    if (schema.find("enum") || schema.find("const")) {
      GLM_TRY(only(schema.find("enum") ? "enum" : "const", {"type", "enum", "const"}));
      return visit_enum(schema, ptr, expr);
    }
    for (const char* combinator : {"anyOf", "oneOf", "allOf"}) {
      if (const JsonValue* subs = schema.find(combinator)) {
        GLM_TRY(only(combinator, {}));
        return visit_combinator(combinator, *subs, ptr, depth, expr);
      }
    }
    // The types: declared, or inferred from the keywords present (none: any JSON value).
    std::vector<std::string> types;
    if (const JsonValue* t = schema.find("type")) {
      if (t->is_string()) {
        types.push_back(t->as_string());
      } else if (t->is_array() && t->size() > 0) {
        for (const auto& x : t->as_array()) {
          if (!x.is_string()) return invalid("'type' at " + at(ptr) + " must be a string or an array of strings");
          types.push_back(x.as_string());
        }
      } else {
        return invalid("'type' at " + at(ptr) + " must be a string or a non-empty array of strings");
      }
    } else {
      auto has = [&](std::initializer_list<const char*> ks) {
        for (const char* k : ks)
          if (schema.find(k)) return true;
        return false;
      };
      if (has({"properties", "required", "additionalProperties"})) types.push_back("object");
      if (has({"items", "prefixItems", "minItems", "maxItems"})) types.push_back("array");
      if (has({"minLength", "maxLength", "pattern", "format"})) types.push_back("string");
      if (has({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"})) types.push_back("number");
      if (types.empty()) {
        *expr = primitive("value");
        return Status::ok();
      }
    }
    const bool has_number = std::find(types.begin(), types.end(), "number") != types.end();
    std::vector<std::string> alts;
    std::set<std::string> seen;
    for (const auto& t : types) {
      if (!seen.insert(t).second || (t == "integer" && has_number)) continue;
      std::string e;
      if (t == "object") {
        GLM_TRY(visit_object(schema, ptr, depth, &e));
      } else if (t == "array") {
        GLM_TRY(visit_array(schema, ptr, depth, &e));
      } else if (t == "string") {
        GLM_TRY(visit_string(schema, ptr, &e));
      } else if (t == "integer" || t == "number") {
        GLM_TRY(visit_number(schema, ptr, t == "integer", &e));
      } else if (t == "boolean" || t == "null") {
        e = primitive(t);
      } else {
        return invalid("unknown type '" + t + "' at " + at(ptr));
      }
      alts.push_back(e);
    }
    *expr = alternatives(alts);
    return Status::ok();
  }

  Status visit_ref(const JsonValue& r, const std::string& ptr, int depth, std::string* expr) {
    if (!r.is_string()) return invalid("'$ref' at " + at(ptr) + " must be a string");
    const std::string& target = r.as_string();
    if (target.empty() || target[0] != '#')
      return invalid("'$ref' '" + target + "' at " + at(ptr) + ": only local references (#...) are supported");
    auto known = ref_names_.find(target);
    if (known != ref_names_.end()) {
      *expr = ref(known->second);
      return Status::ok();
    }
    // Resolve the JSON pointer after '#'.
    const JsonValue* node = &root_;
    std::string rest = target.substr(1);
    if (!rest.empty() && rest[0] != '/') return invalid("'$ref' '" + target + "' at " + at(ptr) + ": anchors are not supported");
    size_t i = 0;
    std::string last = "root";
    while (i < rest.size()) {
      size_t j = rest.find('/', i + 1);
      if (j == std::string::npos) j = rest.size();
      std::string seg;
      for (size_t k = i + 1; k < j; ++k) {
        if (rest[k] == '~' && k + 1 < j && (rest[k + 1] == '0' || rest[k + 1] == '1')) {
          seg += rest[k + 1] == '0' ? '~' : '/';
          ++k;
        } else {
          seg += rest[k];
        }
      }
      const JsonValue* next = nullptr;
      if (node->is_object()) {
        next = node->find(seg);
      } else if (node->is_array()) {
        char* end = nullptr;
        const unsigned long idx = std::strtoul(seg.c_str(), &end, 10);
        if (!seg.empty() && *end == '\0' && idx < node->size()) next = &node->as_array()[idx];
      }
      if (!next) return invalid("'$ref' '" + target + "' at " + at(ptr) + " does not resolve");
      node = next;
      last = seg;
      i = j;
    }
    if (node == &root_) {
      ref_names_[target] = "root";
      *expr = ref("root");
      return Status::ok();
    }
    const std::string name = fresh_name("ref-" + last);
    ref_names_[target] = name;  // before compiling: recursive references find it
    std::string body;
    GLM_TRY(visit(*node, rest, depth + 1, &body));
    GLM_TRY(add_rule(name, body, ptr));
    *expr = ref(name);
    return Status::ok();
  }

  Status visit_enum(const JsonValue& schema, const std::string& ptr, std::string* expr) {
    std::vector<const JsonValue*> values;
    if (const JsonValue* e = schema.find("enum")) {
      if (!e->is_array() || e->size() == 0) return invalid("'enum' at " + at(ptr) + " must be a non-empty array");
      for (const auto& v : e->as_array()) values.push_back(&v);
    }
    const JsonValue* c = schema.find("const");
    if (c && !values.empty()) return invalid("'enum' and 'const' together at " + at(ptr) + " are not supported");
    if (c) values.push_back(c);
    std::set<std::string> types;
    if (const JsonValue* t = schema.find("type")) {
      if (t->is_string()) types.insert(t->as_string());
      for (const auto& x : t->as_array()) types.insert(x.as_string());
    }
    auto type_ok = [&](const JsonValue& v) {
      if (types.empty()) return true;
      switch (v.kind()) {
        case JsonValue::Kind::Null: return types.count("null") > 0;
        case JsonValue::Kind::Bool: return types.count("boolean") > 0;
        case JsonValue::Kind::String: return types.count("string") > 0;
        case JsonValue::Kind::Array: return types.count("array") > 0;
        case JsonValue::Kind::Object: return types.count("object") > 0;
        case JsonValue::Kind::Number: {
          int64_t i = 0;
          return types.count("number") > 0 || (types.count("integer") > 0 && v.as_i64(&i));
        }
      }
      return false;
    };
    std::vector<std::string> alts;
    std::set<std::string> distinct;
    size_t bytes = 0;
    for (const JsonValue* v : values) {
      if (!type_ok(*v)) continue;
      std::string text;
      serialize(*v, &text);
      bytes += text.size();
      if (bytes > kMaxEnumBytes)
        return invalid("'enum' at " + at(ptr) + " too large (over " + std::to_string(kMaxEnumBytes) + " bytes of values)");
      if (distinct.insert(text).second) alts.push_back(gbnf_literal(text));
    }
    if (alts.empty()) return invalid("'enum'/'const' at " + at(ptr) + " has no value of the schema's type");
    const std::string name = fresh_name(ptr.empty() ? "enum" : ptr + "-enum");
    std::string body;
    for (size_t i = 0; i < alts.size(); ++i) body += (i ? " | " : "") + alts[i];
    GLM_TRY(add_rule(name, body, ptr));
    *expr = ref(name);
    return Status::ok();
  }

  // oneOf is compiled as anyOf: the grammar does not enforce that exactly one branch matches (that
  // would need the branches' intersection removed, which a context-free grammar cannot express in
  // general); a generation valid for several branches is accepted.
  Status visit_combinator(const std::string& kind, const JsonValue& subs, const std::string& ptr, int depth, std::string* expr) {
    if (!subs.is_array() || subs.size() == 0) return invalid("'" + kind + "' at " + at(ptr) + " must be a non-empty array");
    if (kind == "allOf" && subs.size() != 1)
      return invalid("unsupported JSON Schema keyword 'allOf' at " + at(ptr) + " (only a single subschema is supported)");
    std::vector<std::string> alts;
    for (size_t i = 0; i < subs.size(); ++i) {
      std::string e;
      GLM_TRY(visit(subs.as_array()[i], ptr + "/" + kind + "/" + std::to_string(i), depth + 1, &e));
      alts.push_back(e);
    }
    *expr = alternatives(alts);
    return Status::ok();
  }

  // A key other than the declared names: a code-point trie of the names, leaving it by a character no
  // name continues with, or ending where no name ends. Keys here are written without escapes, so an
  // escaped spelling of a declared name cannot slip through.
  Status undeclared_key(const std::vector<std::string>& names, const std::string& ptr, std::string* expr) {
    if (names.empty()) {
      *expr = primitive("string");
      return Status::ok();
    }
    struct Node {
      std::map<uint32_t, size_t> children;
      bool word = false;
    };
    std::vector<Node> trie(1);
    for (const auto& name : names) {
      size_t n = 0, i = 0;
      uint32_t cp = 0;
      while (i < name.size() && decode_utf8(name, &i, &cp)) {
        auto it = trie[n].children.find(cp);
        if (it == trie[n].children.end()) {
          trie.push_back({});
          it = trie[n].children.emplace(cp, trie.size() - 1).first;
        }
        n = it->second;
      }
      trie[n].word = true;
    }
    // The free tail (and the non-ASCII first character) are rules shared by every trie node, so the
    // token tables of all nodes converge after one byte (token_tables.cc memoises per state).
    const std::string plain_char_free = primitive("key-tail");
    const std::string base = fresh_name(ptr + "-key");
    for (size_t n = 0; n < trie.size(); ++n) {
      std::vector<std::string> alts;
      if (!trie[n].word) alts.push_back("\"\"");
      std::string other = "[^\"\\\\\\x00-\\x1F";
      bool non_ascii_child = false;
      for (const auto& [cp, child] : trie[n].children) {
        non_ascii_child |= cp >= 0x80;
        std::vector<CodePointRange> one{{cp, cp}};
        alts.push_back(json_char_class(one) + " " + ref(base + "-" + std::to_string(child)));
        char buf[16];
        std::snprintf(buf, sizeof buf, cp <= 0xFFFF ? "\\u%04X" : "\\U%08X", unsigned(cp));
        other += buf;
      }
      if (non_ascii_child) {
        alts.push_back(other + "] " + plain_char_free);
      } else {
        alts.push_back(other + "\\x80-\\U0010FFFF] " + plain_char_free);
        alts.push_back(primitive("non-ascii-char") + " " + plain_char_free);
      }
      std::string body;
      for (size_t i = 0; i < alts.size(); ++i) body += (i ? " | " : "") + alts[i];
      GLM_TRY(add_rule(base + "-" + std::to_string(n), body, ptr));
    }
    *expr = "\"\\\"\" " + ref(base + "-0") + " \"\\\"\"";
    return Status::ok();
  }

  Status visit_object(const JsonValue& schema, const std::string& ptr, int depth, std::string* expr) {
    struct Prop {
      std::string name, kv;
      bool required = false;
    };
    std::vector<Prop> props;
    std::vector<std::string> names;
    const JsonValue* properties = schema.find("properties");
    if (properties && !properties->is_object()) return invalid("'properties' at " + at(ptr) + " must be an object");
    std::set<std::string> required;
    if (const JsonValue* r = schema.find("required")) {
      if (!r->is_array()) return invalid("'required' at " + at(ptr) + " must be an array of strings");
      for (const auto& x : r->as_array()) {
        if (!x.is_string()) return invalid("'required' at " + at(ptr) + " must be an array of strings");
        required.insert(x.as_string());
      }
    }
    auto member = [&](const std::string& name, const std::string& value) {
      std::string key;
      serialize_string(name, &key);
      return seq({gbnf_literal(key), ws(), "\":\"", ws(), value});
    };
    if (properties) {
      for (const auto& [name, sub] : properties->as_object()) {
        std::string value;
        GLM_TRY(visit(sub, ptr + "/properties/" + pointer_segment(name), depth + 1, &value));
        props.push_back({name, member(name, value), required.count(name) > 0});
        names.push_back(name);
      }
    }
    for (const auto& name : required) {  // required but not declared: any value
      if (std::find(names.begin(), names.end(), name) != names.end()) continue;
      props.push_back({name, member(name, primitive("value")), true});
      names.push_back(name);
    }
    std::string extra;  // one additional member, or empty when none are allowed
    const JsonValue* additional = schema.find("additionalProperties");
    if (!additional || !additional->is_bool() || additional->as_bool()) {
      std::string value = primitive("value");
      if (additional && !additional->is_bool())
        GLM_TRY(visit(*additional, ptr + "/additionalProperties", depth + 1, &value));
      std::string key;
      GLM_TRY(undeclared_key(names, ptr, &key));
      extra = seq({key, ws(), "\":\"", ws(), value});
    }
    const std::string sep = seq({ws(), "\",\"", ws()});
    const std::string extras_tail = extra.empty() ? "" : "(" + seq({sep, extra}) + ")*";
    // tail(i): the members after index i-1 once one member has been written, each with its comma.
    auto tail = [&](size_t i) {
      std::vector<std::string> parts;
      for (size_t j = i; j < props.size(); ++j)
        parts.push_back(props[j].required ? seq({sep, props[j].kv}) : "(" + seq({sep, props[j].kv}) + ")?");
      if (!extras_tail.empty()) parts.push_back(extras_tail);
      std::string out;
      for (const auto& p : parts) out += (out.empty() ? "" : " ") + p;
      return out;
    };
    // The first member written is some optional one before the first required one, or that one.
    std::vector<std::string> firsts;
    bool reached_required = false;
    for (size_t i = 0; i < props.size() && !reached_required; ++i) {
      firsts.push_back(seq({props[i].kv, tail(i + 1)}));
      reached_required = props[i].required;
      if (firsts.size() * props.size() > 40000) return too_large(ptr);
    }
    if (!reached_required && !extra.empty()) firsts.push_back(seq({extra, extras_tail}));
    std::vector<std::string> alts;
    if (!reached_required) alts.push_back("\"{\" " + seq({ws(), "\"}\""}));
    if (!firsts.empty()) alts.push_back("\"{\" " + seq({ws(), alternatives(firsts), ws(), "\"}\""}));
    const std::string name = fresh_name(ptr.empty() ? "object" : ptr);
    std::string body;
    for (size_t i = 0; i < alts.size(); ++i) body += (i ? " | " : "") + alts[i];
    GLM_TRY(add_rule(name, body, ptr));
    *expr = ref(name);
    return Status::ok();
  }

  Status count_bound(const JsonValue& schema, const char* key, const std::string& ptr, uint64_t* out, bool* present) {
    *present = false;
    const JsonValue* v = schema.find(key);
    if (!v) return Status::ok();
    if (!v->as_u64(out)) return invalid("'" + std::string(key) + "' at " + at(ptr) + " must be a non-negative integer");
    if (*out > kMaxCountBound)
      return invalid("'" + std::string(key) + "' at " + at(ptr) + " over " + std::to_string(kMaxCountBound) + " is not supported");
    *present = true;
    return Status::ok();
  }

  Status visit_array(const JsonValue& schema, const std::string& ptr, int depth, std::string* expr) {
    std::vector<std::string> prefix;
    std::string rest = primitive("value");
    bool rest_allowed = true;
    const JsonValue* prefix_items = schema.find("prefixItems");
    const JsonValue* items = schema.find("items");
    std::string prefix_key = "prefixItems";
    if (!prefix_items && items && items->is_array()) {  // draft-4 tuple form
      prefix_items = items;
      prefix_key = "items";
      items = nullptr;
    }
    if (prefix_items) {
      if (!prefix_items->is_array()) return invalid("'prefixItems' at " + at(ptr) + " must be an array");
      for (size_t i = 0; i < prefix_items->size(); ++i) {
        std::string e;
        GLM_TRY(visit(prefix_items->as_array()[i], ptr + "/" + prefix_key + "/" + std::to_string(i), depth + 1, &e));
        prefix.push_back(e);
      }
    }
    if (items) {
      if (items->is_bool() && !items->as_bool()) {
        rest_allowed = false;
      } else {
        GLM_TRY(visit(*items, ptr + "/items", depth + 1, &rest));
      }
    }
    uint64_t min = 0, max = 0;
    bool has_min = false, has_max = false;
    GLM_TRY(count_bound(schema, "minItems", ptr, &min, &has_min));
    GLM_TRY(count_bound(schema, "maxItems", ptr, &max, &has_max));
    const uint64_t p = prefix.size();
    if (!rest_allowed) {
      max = has_max ? std::min(max, p) : p;
      has_max = true;
    }
    if (has_max && max < min) return invalid("'maxItems' below 'minItems' at " + at(ptr) + ": no array matches");
    const std::string sep = seq({ws(), "\",\"", ws()});
    auto item = [&](uint64_t i) { return i < p ? prefix[i] : rest; };
    // After i items: the rest of the list, each item with its comma.
    std::string tail;
    {
      // Beyond the prefix: a bounded or unbounded repetition of (sep rest).
      const uint64_t from = std::max<uint64_t>(p, 1);
      if (!has_max || max > from) {
        const uint64_t lo = min > from ? min - from : 0;
        tail = "(" + seq({sep, rest}) + "){" + std::to_string(lo) + "," + (has_max ? std::to_string(max - from) : "") + "}";
      }
      // Inside the prefix, innermost first.
      for (uint64_t i = std::min<uint64_t>(p, has_max ? max : p); i-- > 1;) {
        const std::string s = seq({sep, item(i), tail});
        tail = i < min ? s : "(" + s + ")?";
      }
    }
    std::vector<std::string> alts;
    if (min == 0) alts.push_back("\"[\" " + seq({ws(), "\"]\""}));
    if (!has_max || max >= 1) alts.push_back("\"[\" " + seq({ws(), item(0), tail, ws(), "\"]\""}));
    const std::string name = fresh_name(ptr.empty() ? "array" : ptr);
    std::string body;
    for (size_t i = 0; i < alts.size(); ++i) body += (i ? " | " : "") + alts[i];
    GLM_TRY(add_rule(name, body, ptr));
    *expr = ref(name);
    return Status::ok();
  }

  Status visit_string(const JsonValue& schema, const std::string& ptr, std::string* expr) {
    const JsonValue* pattern = schema.find("pattern");
    const JsonValue* format = schema.find("format");
    uint64_t min = 0, max = 0;
    bool has_min = false, has_max = false;
    GLM_TRY(count_bound(schema, "minLength", ptr, &min, &has_min));
    GLM_TRY(count_bound(schema, "maxLength", ptr, &max, &has_max));
    const int constraints = (pattern ? 1 : 0) + (format ? 1 : 0) + (has_min || has_max ? 1 : 0);
    if (constraints > 1)
      return invalid("'pattern', 'format' and 'minLength'/'maxLength' combined at " + at(ptr) + " are not supported");
    std::string content;
    if (pattern) {
      if (!pattern->is_string()) return invalid("'pattern' at " + at(ptr) + " must be a string");
      GLM_TRY(regex_to_gbnf(pattern->as_string(), "'pattern' at " + at(ptr), &content));
    } else if (format) {
      if (!format->is_string()) return invalid("'format' at " + at(ptr) + " must be a string");
      const std::string& f = format->as_string();
      // Exactly RFC 3339's full-date (which ajv-formats checks the output against): days per month, and
      // 02-29 only in leap years (a multiple of 4 not ending in 00, or a multiple of 4 followed by 00).
      const std::string day31 = "( \"0\" [1-9] | [12] [0-9] | \"3\" [01] )";
      const std::string day30 = "( \"0\" [1-9] | [12] [0-9] | \"30\" )";
      const std::string day28 = "( \"0\" [1-9] | \"1\" [0-9] | \"2\" [0-8] )";
      const std::string multiple_of_4 = "( \"0\" [048] | [2468] [048] | [13579] [26] )";
      const std::string multiple_of_4_not_00 = "( \"0\" [48] | [2468] [048] | [13579] [26] )";
      const std::string date = "( [0-9]{4} \"-\" ( ( \"0\" [13578] | \"1\" [02] ) \"-\" " + day31 +
                               " | ( \"0\" [469] | \"11\" ) \"-\" " + day30 + " | \"02-\" " + day28 + " ) | ( [0-9] [0-9] " +
                               multiple_of_4_not_00 + " | " + multiple_of_4 + " \"00\" ) \"-02-29\" )";
      // A leap second (:60) is valid only at 23:59 UTC; it is offered with a zero offset only, a subset
      // that needs no arithmetic on the offset.
      const std::string hour = "( [01] [0-9] | \"2\" [0-3] )";
      const std::string minute = "[0-5] [0-9]";
      const std::string fraction = "( \".\" [0-9]+ )?";
      const std::string time = "( " + hour + " \":\" " + minute + " \":\" " + minute + " " + fraction + " ( [Zz] | [-+] " + hour +
                               " \":\" " + minute + " ) | \"23:59:60\" " + fraction + " ( [Zz] | [-+] \"00:00\" ) )";
      const std::string hex = "[0-9a-fA-F]";
      if (f == "date") content = date;
      else if (f == "time") content = time;
      else if (f == "date-time") content = date + " [Tt] " + time;
      else if (f == "uuid") content = hex + "{8} \"-\" " + hex + "{4} \"-\" " + hex + "{4} \"-\" " + hex + "{4} \"-\" " + hex + "{12}";
      else if (f == "email")
        content = "[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+ ( \".\" [A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+ )* \"@\" "
                  "[A-Za-z0-9] ( [A-Za-z0-9-]* [A-Za-z0-9] )? ( \".\" [A-Za-z0-9] ( [A-Za-z0-9-]* [A-Za-z0-9] )? )+";
      else return invalid("unsupported JSON Schema keyword 'format' at " + at(ptr) + " (format '" + f + "'; supported: date, time, date-time, uuid, email)");
      content = "( " + content + " )";
    } else if (has_min || has_max) {
      if (has_max && max < min) return invalid("'maxLength' below 'minLength' at " + at(ptr) + ": no string matches");
      content = primitive("char") + "{" + std::to_string(min) + "," + (has_max ? std::to_string(max) : "") + "}";
    } else {
      *expr = primitive("string");
      return Status::ok();
    }
    const std::string name = fresh_name(ptr.empty() ? "string" : ptr);
    GLM_TRY(add_rule(name, "\"\\\"\" " + content + " \"\\\"\"", ptr));
    *expr = ref(name);
    return Status::ok();
  }

  Status number_bound(const JsonValue& schema, const char* key, const std::string& ptr, const JsonValue** out) {
    *out = schema.find(key);
    if (*out && !(*out)->is_number() && !(std::string(key).rfind("exclusive", 0) == 0 && (*out)->is_bool()))
      return invalid("'" + std::string(key) + "' at " + at(ptr) + " must be a number");
    return Status::ok();
  }

  Status visit_number(const JsonValue& schema, const std::string& ptr, bool integer, std::string* expr) {
    const JsonValue *minimum, *maximum, *xmin, *xmax;
    GLM_TRY(number_bound(schema, "minimum", ptr, &minimum));
    GLM_TRY(number_bound(schema, "maximum", ptr, &maximum));
    GLM_TRY(number_bound(schema, "exclusiveMinimum", ptr, &xmin));
    GLM_TRY(number_bound(schema, "exclusiveMaximum", ptr, &xmax));
    if (!minimum && !maximum && !xmin && !xmax) {
      *expr = primitive(integer ? "integer" : "number");
      return Status::ok();
    }
    if (!integer) {
      // Real-valued bounds would need digit-by-digit comparison of fractions and exponents; only the
      // common "non-negative" bound is implemented.
      if (minimum && !maximum && !xmin && !xmax && minimum->as_double() == 0) {
        *expr = "( ( \"0\" | [1-9] [0-9]* ) ( \".\" [0-9]+ )? ( [eE] [-+]? [0-9]+ )? )";
        return Status::ok();
      }
      return invalid("unsupported JSON Schema keyword '" + std::string(minimum ? "minimum" : maximum ? "maximum" : xmin ? "exclusiveMinimum" : "exclusiveMaximum") +
                     "' at " + at(ptr) + " for type 'number' (only integer bounds and minimum 0 are supported)");
    }
    // Integer bounds, inclusive; |bound| limited so every step below is exact in int64.
    constexpr double kLimit = 1e15;
    bool has_lo = false, has_hi = false;
    int64_t lo = 0, hi = 0;
    auto tighten_lo = [&](double v, bool exclusive) {
      const double b = exclusive ? std::floor(v) + 1 : std::ceil(v);
      if (!has_lo || b > double(lo)) lo = int64_t(b);
      has_lo = true;
    };
    auto tighten_hi = [&](double v, bool exclusive) {
      const double b = exclusive ? std::ceil(v) - 1 : std::floor(v);
      if (!has_hi || b < double(hi)) hi = int64_t(b);
      has_hi = true;
    };
    for (const JsonValue* v : {minimum, maximum, xmin, xmax})
      if (v && v->is_number() && std::fabs(v->as_double()) > kLimit)
        return invalid("integer bound at " + at(ptr) + " beyond +-1e15 is not supported");
    const bool draft4_xmin = xmin && xmin->is_bool() && xmin->as_bool();
    const bool draft4_xmax = xmax && xmax->is_bool() && xmax->as_bool();
    if (minimum) tighten_lo(minimum->as_double(), draft4_xmin);
    if (maximum) tighten_hi(maximum->as_double(), draft4_xmax);
    if (xmin && xmin->is_number()) tighten_lo(xmin->as_double(), true);
    if (xmax && xmax->is_number()) tighten_hi(xmax->as_double(), true);
    if (has_lo && has_hi && lo > hi) return invalid("integer bounds at " + at(ptr) + " admit no value");
    std::vector<std::string> alts;
    // Non-negative part.
    if (!has_hi || hi >= 0) {
      for (auto& a : natural_range(has_lo ? std::max<int64_t>(lo, 0) : 0, has_hi ? hi : -1)) alts.push_back(a);
    }
    // Negative part: "-" and the magnitudes.
    if (!has_lo || lo < 0) {
      const int64_t mag_lo = has_hi && hi < 0 ? -hi : 1;
      const int64_t mag_hi = has_lo ? -lo : -1;
      for (auto& a : natural_range(mag_lo, mag_hi)) alts.push_back("\"-\" " + a);
    }
    const std::string name = fresh_name(ptr.empty() ? "integer" : ptr);
    std::string body;
    for (size_t i = 0; i < alts.size(); ++i) body += (i ? " | " : "") + alts[i];
    GLM_TRY(add_rule(name, body, ptr));
    *expr = ref(name);
    return Status::ok();
  }

  const JsonValue& root_;
  SchemaOptions opt_;
  std::vector<std::pair<std::string, std::string>> rules_;
  std::set<std::string> used_names_, primitives_;
  std::unordered_map<std::string, std::string> ref_names_;
  size_t bytes_ = 0, nodes_ = 0;
};

}  // namespace

Status json_schema_to_gbnf(std::string_view schema_json, const SchemaOptions& options, std::string* gbnf) {
  for (char c : options.rule_prefix) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    if (!ok) return Status::error(ErrorCode::InvalidParam, "JSON Schema: rule_prefix may hold only letters, digits, '-' and '_'");
  }
  JsonValue schema;
  JsonLimits limits;
  limits.max_values = 1 << 20;
  Status st = parse_json(schema_json, &schema, "JSON Schema", limits);
  if (!st.is_ok()) return Status::error(ErrorCode::InvalidParam, st.message());
  return SchemaCompiler(schema, options).compile(gbnf);
}

}  // namespace glm::grammar
