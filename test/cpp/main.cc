// Runs every registered native test; prints one line per test and the plain "N passed, N failed" total.
#include <cstring>
#include "check.h"

namespace glm_test {
std::vector<TestCase>& registry() { static std::vector<TestCase> r; return r; }
int& failures_in_current() { static int n = 0; return n; }
}  // namespace glm_test

int main(int argc, char** argv) {
  const char* filter = argc > 1 ? argv[1] : nullptr;
  int passed = 0, failed = 0;
  for (auto& t : glm_test::registry()) {
    if (filter && !std::strstr(t.name, filter)) continue;
    glm_test::failures_in_current() = 0;
    t.fn();
    const bool ok = glm_test::failures_in_current() == 0;
    std::printf("%s %s\n", ok ? "ok  " : "FAIL", t.name);
    ok ? ++passed : ++failed;
  }
  std::printf("native: %d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
