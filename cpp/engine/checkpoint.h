// A Hugging Face checkpoint folder: model.safetensors, or model.safetensors.index.json plus shards.
//
// The folder is hostile input too (RELIABILITY.md B5, B9): shard names from the index must be plain
// relative paths that resolve (after symlinks) inside the folder; every tensor must live in exactly
// the shard the index names; pickle-only folders are refused, never unpickled.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/safetensors.h"
#include "engine/status.h"

namespace glm {

class Checkpoint {
 public:
  // done_bytes / total_bytes are shard file sizes; return false to cancel (-> ErrorCode::Aborted).
  using Progress = std::function<bool(uint64_t done_bytes, uint64_t total_bytes)>;

  static constexpr uint64_t kMaxIndexBytes = 256ull << 20;

  // Errors: ModelLoad (dir missing / not a directory / unreadable file), ModelFormat (bad index, shard
  // name, missing shard, tensor/shard mismatch, no weights), UnsupportedFormat (pickle-only folder,
  // unknown dtype), Aborted (progress returned false). `progress` may be empty; it is called once with
  // (0, total) before the first shard and after each shard.
  static Status open(const std::string& dir, const Progress& progress, std::unique_ptr<Checkpoint>* out);

  const TensorInfo* find(std::string_view name) const;
  const std::vector<const TensorInfo*>& tensors() const { return tensors_; }  // shard order, then header order
  uint64_t total_bytes() const { return total_bytes_; }  // sum of shard file sizes
  const std::string& dir() const { return dir_; }
  const std::vector<std::unique_ptr<SafetensorsFile>>& shards() const { return shards_; }

  // Reads a small text file of the folder (config.json, tokenizer.json ...) under the same confinement
  // rules as shards. ModelLoad if absent/unreadable, ModelFormat if the name escapes or it exceeds max_bytes.
  Status read_text_file(std::string_view name, uint64_t max_bytes, std::string* out) const;

 private:
  Checkpoint() = default;
  std::string dir_;
  std::string real_dir_;  // realpath of dir_, the confinement root
  uint64_t total_bytes_ = 0;
  std::vector<std::unique_ptr<SafetensorsFile>> shards_;
  std::vector<const TensorInfo*> tensors_;
  std::unordered_map<std::string_view, const TensorInfo*> by_name_;  // views names owned by shards_
};

}  // namespace glm
