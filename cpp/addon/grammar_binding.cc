// N-API glue for constrained decoding: compiling a GBNF grammar for a model (off the JS thread, cached
// by text), handing the compiled grammar to generate() as an opaque handle, and the JSON Schema to
// GBNF translation lib/ composes grammars from.
#include "addon/grammar_binding.h"

#include <memory>

namespace glm::addon {

namespace {

using Compiled = std::shared_ptr<const grammar::TokenGrammar>;

class CompileWorker final : public Napi::AsyncWorker {
 public:
  CompileWorker(Napi::Env env, std::shared_ptr<ModelHost> host, std::string gbnf, std::string bytes, std::vector<uint32_t> offsets,
                std::vector<uint8_t> token_only)
      : Napi::AsyncWorker(env, "glm-node grammar"), deferred_(Napi::Promise::Deferred::New(env)), host_(std::move(host)),
        gbnf_(std::move(gbnf)), bytes_(std::move(bytes)), offsets_(std::move(offsets)), token_only_(std::move(token_only)) {}
  Napi::Promise promise() { return deferred_.Promise(); }

  void Execute() override {
    try {
      status_ = host_->grammars.compile(gbnf_, std::move(bytes_), std::move(offsets_), std::move(token_only_), &compiled_);
    } catch (const std::bad_alloc&) {
      status_ = Status::error(ErrorCode::InsufficientMemory, "out of memory while compiling a grammar");
    }
  }
  void OnOK() override {
    Napi::Env env = Env();
    if (!status_.is_ok()) {
      deferred_.Reject(status_error(env, status_).Value());
      return;
    }
    auto* held = new Compiled(compiled_);
    deferred_.Resolve(Napi::External<Compiled>::New(env, held, [](Napi::Env, Compiled* p) { delete p; }));
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  std::shared_ptr<ModelHost> host_;
  std::string gbnf_, bytes_;
  std::vector<uint32_t> offsets_;
  std::vector<uint8_t> token_only_;
  Status status_;
  Compiled compiled_;
};

}  // namespace

// compileGrammar(gbnf, vocabulary | null) -> Promise<handle>; vocabulary = {bytes: Uint8Array,
// offsets: Uint32Array (n + 1), tokenOnly: Uint8Array (n)}, needed until hasGrammarVocabulary().
Napi::Value compile_grammar(const Napi::CallbackInfo& info, const std::shared_ptr<ModelHost>& host) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "compileGrammar: the grammar must be a string");
  std::string bytes;
  std::vector<uint32_t> offsets;
  std::vector<uint8_t> token_only;
  if (info.Length() > 1 && info[1].IsObject()) {
    Napi::Object v = info[1].As<Napi::Object>();
    if (!v.Get("bytes").IsTypedArray() || !v.Get("offsets").IsTypedArray() || !v.Get("tokenOnly").IsTypedArray()) {
      throw Napi::TypeError::New(env, "compileGrammar: vocabulary must be {bytes: Uint8Array, offsets: Uint32Array, tokenOnly: Uint8Array}");
    }
    auto b = v.Get("bytes").As<Napi::Uint8Array>();
    auto o = v.Get("offsets").As<Napi::Uint32Array>();
    auto t = v.Get("tokenOnly").As<Napi::Uint8Array>();
    bytes.assign(reinterpret_cast<const char*>(b.Data()), b.ElementLength());
    offsets.assign(o.Data(), o.Data() + o.ElementLength());
    token_only.assign(t.Data(), t.Data() + t.ElementLength());
  }
  auto* worker = new CompileWorker(env, host, info[0].As<Napi::String>().Utf8Value(), std::move(bytes), std::move(offsets),
                                   std::move(token_only));
  Napi::Promise p = worker->promise();
  worker->Queue();
  return p;
}

std::shared_ptr<const grammar::TokenGrammar> grammar_from(const Napi::Value& v) {
  if (!v.IsExternal()) return nullptr;
  return *v.As<Napi::External<Compiled>>().Data();
}

// jsonSchemaToGbnf(schemaJson, rulePrefix, allowWhitespace) -> string; InvalidParam names the keyword.
Napi::Value json_schema_to_gbnf_js(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 3 || !info[0].IsString() || !info[1].IsString() || !info[2].IsBoolean()) {
    throw Napi::TypeError::New(env, "jsonSchemaToGbnf(schemaJson: string, rulePrefix: string, allowWhitespace: boolean)");
  }
  grammar::SchemaOptions options;
  options.rule_prefix = info[1].As<Napi::String>().Utf8Value();
  options.allow_whitespace = info[2].As<Napi::Boolean>().Value();
  std::string gbnf;
  const Status st = grammar::json_schema_to_gbnf(info[0].As<Napi::String>().Utf8Value(), options, &gbnf);
  if (!st.is_ok()) throw status_error(env, st);
  return Napi::String::New(env, gbnf);
}

}  // namespace glm::addon
