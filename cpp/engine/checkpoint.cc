#include "engine/checkpoint.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <dirent.h>
#include <map>
#include <sys/stat.h>
#include <system_error>

#include "engine/json.h"
#include "engine/mapped_file.h"

namespace glm {

namespace {

constexpr const char* kIndexName = "model.safetensors.index.json";
constexpr const char* kSingleName = "model.safetensors";

std::string os_reason(int err) { return std::error_code(err, std::generic_category()).message(); }

std::string join(const std::string& dir, std::string_view name) {
  std::string p = dir;
  if (p.empty() || p.back() != '/') p += '/';
  p += name;
  return p;
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// lstat, so a dangling symlink still counts as present and gets a precise error later.
bool entry_exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

// A file name taken from the folder's own metadata must be a plain relative path: no absolute path,
// no ".." component, no NUL (which would silently cut the path at the C boundary).
Status check_relative_name(const std::string& dir, std::string_view name, const std::string& what) {
  const std::string q = quote_for_message(name);
  if (name.empty()) return format_error(dir + ": " + what + " has an empty file name");
  if (name.find('\0') != std::string_view::npos) return format_error(dir + ": " + what + " " + q + " contains a NUL byte");
  if (name.front() == '/') return format_error(dir + ": " + what + " " + q + " is an absolute path; it must be inside the folder");
  size_t start = 0;
  while (start <= name.size()) {
    size_t slash = name.find('/', start);
    if (slash == std::string_view::npos) slash = name.size();
    if (name.substr(start, slash - start) == "..") {
      return format_error(dir + ": " + what + " " + q + " contains a '..' component; it must be inside the folder");
    }
    start = slash + 1;
  }
  return Status::ok();
}

// For a hub cache snapshot folder ".../models--<org>--<name>/snapshots/<rev>", the repository's
// blob folder ".../models--<org>--<name>/blobs"; empty for any other folder.
std::string hub_blobs_dir(const std::string& real_dir) {
  const size_t rev_slash = real_dir.rfind('/');
  if (rev_slash == std::string::npos || rev_slash == 0) return {};
  const size_t snap_slash = real_dir.rfind('/', rev_slash - 1);
  if (snap_slash == std::string::npos || real_dir.compare(snap_slash, rev_slash - snap_slash, "/snapshots") != 0) return {};
  const std::string repo = real_dir.substr(0, snap_slash);
  const size_t repo_slash = repo.rfind('/');
  if (repo_slash == std::string::npos || repo.compare(repo_slash + 1, 8, "models--") != 0) return {};
  return repo + "/blobs";
}

// Resolves dir/name through symlinks and checks the result stays under real_dir. The resolved path is
// what gets opened, so the confinement check and the open see the same file. A missing file yields
// `missing_code` (ModelFormat for a shard the index promises, ModelLoad for an optional side file).
Status resolve_in_folder(const std::string& dir, const std::string& real_dir, std::string_view name,
                         const std::string& what, ErrorCode missing_code, std::string* resolved) {
  GLM_TRY(check_relative_name(dir, name, what));
  const std::string path = join(dir, name);
  char* rp = ::realpath(path.c_str(), nullptr);
  if (!rp) {
    const int err = errno;
    if (err == ENOENT || err == ENOTDIR) {
      return Status::error(missing_code, path + ": " + what + " " + quote_for_message(name) +
                                             " does not exist (missing file or dangling symlink)");
    }
    return Status::error(ErrorCode::ModelLoad, path + ": cannot resolve " + what + ": " + os_reason(err));
  }
  std::string r(rp);
  std::free(rp);
  auto under = [&r](const std::string& dir_path) {
    const std::string root = dir_path == "/" ? dir_path : dir_path + "/";
    return r.compare(0, root.size(), root) == 0;
  };
  // A Hugging Face hub cache snapshot (<cache>/models--org--name/snapshots/<rev>) holds symlinks to
  // ../../blobs/<hash>; those blobs belong to the same repository, so they are inside the model too.
  const std::string blobs = hub_blobs_dir(real_dir);
  if (!under(real_dir) && (blobs.empty() || !under(blobs))) {
    return format_error(path + ": " + what + " " + quote_for_message(name) + " resolves to " + quote_for_message(r) +
                        ", outside the model folder " + quote_for_message(real_dir));
  }
  *resolved = std::move(r);
  return Status::ok();
}

struct ShardPlan {
  std::string name;      // as written in the index (or "model.safetensors")
  std::string resolved;  // realpath, the file actually opened
  uint64_t size = 0;
};

// Describes why the folder has no safetensors weights: pickle files are a distinct, typed refusal.
Status no_weights_error(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return Status::error(ErrorCode::ModelLoad, dir + ": cannot list model folder: " + os_reason(errno));
  std::string pickle;
  while (struct dirent* e = ::readdir(d)) {
    const std::string_view n(e->d_name);
    const bool is_pickle = (n.substr(0, 13) == "pytorch_model" && ends_with(n, ".bin")) || ends_with(n, ".pt") ||
                           ends_with(n, ".pth");
    if (is_pickle && (pickle.empty() || n < pickle)) pickle = std::string(n);
  }
  ::closedir(d);
  if (!pickle.empty()) {
    return Status::error(ErrorCode::UnsupportedFormat,
                         dir + ": only pickle weights found (" + quote_for_message(pickle) +
                             "); pickle checkpoints are not loaded; convert to safetensors");
  }
  return format_error("no safetensors weights in " + dir + " (expected " + kSingleName + " or " + kIndexName + ")");
}

}  // namespace

const TensorInfo* Checkpoint::find(std::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : it->second;
}

Status Checkpoint::read_text_file(std::string_view name, uint64_t max_bytes, std::string* out) const {
  std::string resolved;
  GLM_TRY(resolve_in_folder(dir_, real_dir_, name, "file", ErrorCode::ModelLoad, &resolved));
  std::unique_ptr<MappedFile> f;
  GLM_TRY(MappedFile::open(resolved, &f));
  if (f->size() > max_bytes) {
    return format_error(join(dir_, name) + ": " + std::to_string(f->size()) + " bytes exceeds the cap of " +
                        std::to_string(max_bytes));
  }
  out->assign(reinterpret_cast<const char*>(f->data()), size_t(f->size()));
  return Status::ok();
}

Status Checkpoint::open(const std::string& dir, const Progress& progress, std::unique_ptr<Checkpoint>* out) {
  out->reset();
  if (dir.empty()) return Status::error(ErrorCode::ModelLoad, "model folder path is empty");
  if (dir.find('\0') != std::string::npos) return Status::error(ErrorCode::ModelLoad, dir + ": path contains NUL");
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) {
    return Status::error(ErrorCode::ModelLoad, dir + ": cannot open model folder: " + os_reason(errno));
  }
  if (!S_ISDIR(st.st_mode)) return Status::error(ErrorCode::ModelLoad, dir + ": not a directory");

  std::unique_ptr<Checkpoint> ck(new Checkpoint());
  ck->dir_ = dir;
  {
    char* rp = ::realpath(dir.c_str(), nullptr);
    if (!rp) return Status::error(ErrorCode::ModelLoad, dir + ": cannot resolve model folder: " + os_reason(errno));
    ck->real_dir_ = rp;
    std::free(rp);
  }

  // 1. Which files hold the weights, and (with an index) which tensor each must hold.
  const bool have_index = entry_exists(join(dir, kIndexName));
  std::vector<ShardPlan> plan;
  std::string index_path;
  JsonValue index;
  // tensor name -> shard position in `plan`; views keys of `index`, which outlives it.
  std::unordered_map<std::string_view, size_t> listed;
  if (have_index) {
    index_path = join(dir, kIndexName);
    std::string text;
    GLM_TRY(ck->read_text_file(kIndexName, kMaxIndexBytes, &text));
    GLM_TRY(parse_json(text, &index, index_path));
    if (!index.is_object()) {
      return format_error(index_path + ": expected a JSON object, found " + JsonValue::kind_name(index.kind()));
    }
    const JsonValue* wm = index.find("weight_map");
    if (!wm || !wm->is_object()) {
      return format_error(index_path + ": \"weight_map\" must be an object of tensor name -> shard file, found " +
                          (wm ? JsonValue::kind_name(wm->kind()) : "nothing"));
    }
    if (wm->size() == 0) return format_error(index_path + ": \"weight_map\" is empty");
    // Distinct shard names in sorted order (model-00001-of-N first), then dedupe by real file so two
    // spellings of one file ("a", "./a") are one shard rather than a false "in two shards".
    std::map<std::string, size_t> by_shard_name;
    for (const auto& m : wm->as_object()) {
      if (!m.second.is_string()) {
        return format_error(index_path + ": weight_map entry for tensor " + quote_for_message(m.first) + " is a " +
                            JsonValue::kind_name(m.second.kind()) + ", expected a shard file name");
      }
      by_shard_name.emplace(m.second.as_string(), 0);
    }
    std::map<std::string, size_t> by_resolved;
    for (auto& [name, idx] : by_shard_name) {
      std::string resolved;
      GLM_TRY(resolve_in_folder(dir, ck->real_dir_, name, std::string("shard listed in ") + kIndexName,
                                ErrorCode::ModelFormat, &resolved));
      auto it = by_resolved.find(resolved);
      if (it == by_resolved.end()) {
        it = by_resolved.emplace(resolved, plan.size()).first;
        plan.push_back({name, resolved, 0});
      }
      idx = it->second;
    }
    listed.reserve(wm->size());
    for (const auto& m : wm->as_object()) listed.emplace(std::string_view(m.first), by_shard_name[m.second.as_string()]);
  } else if (entry_exists(join(dir, kSingleName))) {
    std::string resolved;
    GLM_TRY(resolve_in_folder(dir, ck->real_dir_, kSingleName, "weights file", ErrorCode::ModelFormat, &resolved));
    plan.push_back({kSingleName, resolved, 0});
  } else {
    return no_weights_error(dir);
  }

  // 2. Sizes for progress, in checked arithmetic.
  uint64_t total = 0;
  for (auto& s : plan) {
    struct stat fs;
    if (::stat(s.resolved.c_str(), &fs) != 0) {
      return Status::error(ErrorCode::ModelLoad, s.resolved + ": cannot stat shard: " + os_reason(errno));
    }
    s.size = fs.st_size > 0 ? uint64_t(fs.st_size) : 0;
    if (__builtin_add_overflow(total, s.size, &total)) return format_error(dir + ": shard sizes overflow 64 bits");
  }
  ck->total_bytes_ = total;
  const auto cancelled = [&]() { return Status::error(ErrorCode::Aborted, "loading " + dir + " was cancelled"); };
  if (progress && !progress(0, total)) return cancelled();

  // 3. Open (validate + map) one shard at a time; each tensor must appear once, in a listed shard.
  std::vector<size_t> shard_of;  // parallel to ck->tensors_
  uint64_t done = 0;
  for (size_t si = 0; si < plan.size(); ++si) {
    std::unique_ptr<SafetensorsFile> sf;
    GLM_TRY(SafetensorsFile::open(plan[si].resolved, &sf));
    for (const TensorInfo& t : sf->tensors()) {
      auto prev = ck->by_name_.find(t.name);
      if (prev != ck->by_name_.end()) {
        return format_error(dir + ": tensor " + quote_for_message(t.name) + " is present in two shards: " +
                            prev->second->file + " and " + t.file);
      }
      if (have_index && listed.find(t.name) == listed.end()) {
        return format_error(t.file + ": tensor " + quote_for_message(t.name) + " is not listed in " + index_path);
      }
      ck->by_name_.emplace(std::string_view(t.name), &t);
      ck->tensors_.push_back(&t);
      shard_of.push_back(si);
    }
    ck->shards_.push_back(std::move(sf));
    done += plan[si].size;  // cannot overflow: bounded by total
    if (progress && !progress(done, total)) return cancelled();
  }

  // 4. Every tensor the index lists is in the shard it names.
  if (have_index) {
    std::unordered_map<const TensorInfo*, size_t> shard_index;
    shard_index.reserve(ck->tensors_.size());
    for (size_t i = 0; i < ck->tensors_.size(); ++i) shard_index.emplace(ck->tensors_[i], shard_of[i]);
    for (const auto& m : index.find("weight_map")->as_object()) {
      const size_t want = listed[m.first];
      const TensorInfo* t = ck->find(m.first);
      if (!t) {
        return format_error(index_path + ": tensor " + quote_for_message(m.first) + " is listed in shard " +
                            quote_for_message(m.second.as_string()) + " but is absent from it");
      }
      if (shard_index[t] != want) {
        return format_error(t->file + ": tensor " + quote_for_message(m.first) + " is listed in " + kIndexName +
                            " under shard " + quote_for_message(m.second.as_string()) + " but found in this file");
      }
    }
  }
  *out = std::move(ck);
  return Status::ok();
}

}  // namespace glm
