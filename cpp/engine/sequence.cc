#include "engine/sequence.h"

#include "engine/scheduler.h"

namespace glm {

Sequence::~Sequence() {
  if (scheduler) scheduler->dispose(this);
}

}  // namespace glm
