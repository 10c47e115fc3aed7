// N-API glue for constrained decoding (grammar_binding.cc).
#pragma once
#include <napi.h>

#include <memory>

#include "addon/host.h"

namespace glm::addon {

Napi::Value compile_grammar(const Napi::CallbackInfo& info, const std::shared_ptr<ModelHost>& host);
// The compiled grammar behind a compileGrammar() handle (null for anything else).
std::shared_ptr<const grammar::TokenGrammar> grammar_from(const Napi::Value& v);
Napi::Value json_schema_to_gbnf_js(const Napi::CallbackInfo& info);

}  // namespace glm::addon
