// Read-only whole-file memory mapping for checkpoint files.
//
// Caveat (RELIABILITY.md G7): the size is taken from fstat at open. If another process truncates the
// file while it is mapped, touching the lost pages raises SIGBUS; callers validate every range against
// size() before reading, which protects against malformed files but not against concurrent truncation.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "engine/status.h"

namespace glm {

class MappedFile {
 public:
  // Opens and maps `path`. ErrorCode::ModelLoad (naming the path and the OS reason) when it cannot be
  // opened or stat'ed, is a directory or not a regular file, or cannot be mapped. An empty file gives
  // size() == 0 and a non-null data() that must not be read.
  static Status open(const std::string& path, std::unique_ptr<MappedFile>* out);

  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }

  // Hint that the range will be read soon (MADV_WILLNEED); a no-op for bad ranges or on failure.
  void advise_willneed(uint64_t offset, uint64_t length) const;

 private:
  MappedFile() = default;
  std::string path_;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
  bool mapped_ = false;
};

}  // namespace glm
