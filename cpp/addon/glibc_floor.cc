// Keeps the prebuilt addon's GLIBC floor at 2.34 (README "Prebuilt binaries"). The statically linked
// libstdc++ of a glibc-2.36 build machine calls arc4random (new in glibc 2.36) from std::random_device,
// which glm-node never uses but cannot leave out of the link; this local definition satisfies that
// reference, so the addon still loads on glibc 2.34/2.35 (RHEL 9, Ubuntu 22.04). Hidden: nothing
// outside the addon sees it. <stdlib.h> is not included because glibc 2.36 declares arc4random there.
#include <sys/random.h>

#include <cerrno>
#include <cstdint>

extern "C" __attribute__((visibility("hidden"))) uint32_t arc4random(void) {
  uint32_t value = 0;
  for (int tries = 0; tries < 16; ++tries) {
    if (getrandom(&value, sizeof value, 0) == static_cast<ssize_t>(sizeof value)) return value;
    if (errno != EINTR) break;
  }
  return value;  // random_device is never used by glm-node; an old kernel without getrandom gets zeros
}
