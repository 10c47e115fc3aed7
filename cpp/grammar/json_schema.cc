#include "grammar/grammar.h"
namespace glm::grammar {
Status json_schema_to_gbnf(std::string_view, const SchemaOptions&, std::string*) {
  return Status::error(ErrorCode::InvalidParam, "not yet");
}
}  // namespace glm::grammar
