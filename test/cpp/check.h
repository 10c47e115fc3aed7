// A minimal test registry for the native tests (no third-party framework needed in CI).
// TEST(name) { CHECK(cond) << "context"; } ; failures are counted, never abort.
#pragma once
#include <cstdio>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

namespace glm_test {

struct TestCase { const char* name; std::function<void()> fn; };
std::vector<TestCase>& registry();
int& failures_in_current();

struct Registrar {
  Registrar(const char* name, std::function<void()> fn) { registry().push_back({name, std::move(fn)}); }
};

// Streams extra context into a failure message; prints on destruction.
class Failure {
 public:
  Failure(const char* file, int line, const char* expr) { os_ << file << ":" << line << ": CHECK(" << expr << ") failed "; }
  ~Failure() { std::fprintf(stderr, "  %s\n", os_.str().c_str()); ++failures_in_current(); }
  template <class T> Failure& operator<<(const T& v) { os_ << v; return *this; }
 private:
  std::ostringstream os_;
};

}  // namespace glm_test

#define GLM_TEST_CAT2(a, b) a##b
#define GLM_TEST_CAT(a, b) GLM_TEST_CAT2(a, b)
#define TEST(name)                                                                        \
  static void name();                                                                     \
  static ::glm_test::Registrar GLM_TEST_CAT(registrar_, name)(#name, name);               \
  static void name()
#define CHECK(cond) if (cond) {} else ::glm_test::Failure(__FILE__, __LINE__, #cond)
