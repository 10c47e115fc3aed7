// One safetensors file, validated as hostile input and memory-mapped.
//
// Layout: u64 little-endian header length N, N bytes of JSON header, then the data section. open()
// checks the whole header (lengths, dtypes, shapes, byte counts, and that the tensors tile the data
// section exactly: sorted, from 0, no gaps, no overlaps, no trailing bytes) before any data page is
// touched, with checked 64-bit arithmetic throughout (RELIABILITY.md 1.6, table B1-B4).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "engine/dtype.h"
#include "engine/mapped_file.h"
#include "engine/status.h"

namespace glm {

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;  // each dim in [0, 2^48]
  uint64_t numel = 0;          // product of shape (1 for rank 0)
  uint64_t nbytes = 0;         // numel * dtype_bits / 8
  const uint8_t* data = nullptr;  // into the file mapping; valid while the SafetensorsFile lives
  std::string file;            // path of the file holding it
};

class SafetensorsFile {
 public:
  // Caps beyond which a header is rejected (hostile-size defence, not format limits).
  static constexpr uint64_t kMaxHeaderBytes = 100ull * 1000 * 1000;  // as the reference implementation
  static constexpr size_t kMaxTensors = 1000000;
  static constexpr size_t kMaxNameBytes = 1024;
  static constexpr size_t kMaxRank = 8;
  static constexpr uint64_t kMaxDim = uint64_t(1) << 48;

  // Errors: ModelLoad for I/O (see MappedFile::open); UnsupportedFormat for an unknown dtype string;
  // ModelFormat for everything else. Messages start with the path, then the tensor when there is one:
  //   <path>: tensor "<name>": <reason>
  static Status open(const std::string& path, std::unique_ptr<SafetensorsFile>* out);

  const std::vector<TensorInfo>& tensors() const { return tensors_; }  // header order
  const TensorInfo* find(std::string_view name) const;
  // __metadata__ entries, header order (values are always strings).
  const std::vector<std::pair<std::string, std::string>>& metadata() const { return metadata_; }
  uint64_t file_size() const { return file_->size(); }
  uint64_t data_offset() const { return data_offset_; }  // 8 + N
  const std::string& path() const { return file_->path(); }
  const MappedFile& mapping() const { return *file_; }

 private:
  SafetensorsFile() = default;
  std::unique_ptr<MappedFile> file_;
  uint64_t data_offset_ = 0;
  std::vector<TensorInfo> tensors_;
  std::vector<std::pair<std::string, std::string>> metadata_;
  // Keys view tensors_[i].name; tensors_ is never resized after open, so the views stay valid.
  std::unordered_map<std::string_view, size_t> by_name_;
};

}  // namespace glm
