#include "engine/mapped_file.h"

#include <cerrno>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <system_error>
#include <unistd.h>

namespace glm {

namespace {

// std::generic_category().message is thread-safe, unlike strerror.
std::string os_reason(int err) { return std::error_code(err, std::generic_category()).message(); }

Status load_error(const std::string& path, const std::string& what) {
  return Status::error(ErrorCode::ModelLoad, path + ": " + what);
}

// Closes the descriptor on every return path; the mapping outlives it.
struct FdCloser {
  int fd;
  ~FdCloser() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

Status MappedFile::open(const std::string& path, std::unique_ptr<MappedFile>* out) {
  out->reset();
  if (path.empty()) return Status::error(ErrorCode::ModelLoad, "cannot open file: empty path");
  if (path.find('\0') != std::string::npos) return load_error(path, "cannot open file: path contains NUL");
  // O_NONBLOCK: opening a FIFO planted in a model folder must not hang waiting for a writer.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return load_error(path, "cannot open file: " + os_reason(errno));
  FdCloser closer{fd};
  struct stat st;
  if (::fstat(fd, &st) != 0) return load_error(path, "cannot stat file: " + os_reason(errno));
  if (S_ISDIR(st.st_mode)) return load_error(path, "is a directory, expected a file");
  if (!S_ISREG(st.st_mode)) return load_error(path, "not a regular file");
  if (st.st_size < 0 || uint64_t(st.st_size) > uint64_t(SIZE_MAX)) {
    return load_error(path, "file size " + std::to_string(st.st_size) + " cannot be mapped");
  }

  std::unique_ptr<MappedFile> f(new MappedFile());
  f->path_ = path;
  f->size_ = uint64_t(st.st_size);
  if (f->size_ == 0) {
    // mmap of length 0 fails with EINVAL; an empty file is a valid (if useless) input.
    static const uint8_t kEmpty[1] = {0};
    f->data_ = kEmpty;
  } else {
    void* p = ::mmap(nullptr, size_t(f->size_), PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) return load_error(path, "cannot map " + std::to_string(f->size_) + " bytes: " + os_reason(errno));
    f->data_ = static_cast<const uint8_t*>(p);
    f->mapped_ = true;
  }
  *out = std::move(f);
  return Status::ok();
}

MappedFile::~MappedFile() {
  if (mapped_) ::munmap(const_cast<uint8_t*>(data_), size_t(size_));
}

void MappedFile::advise_willneed(uint64_t offset, uint64_t length) const {
  uint64_t end;
  if (!mapped_ || length == 0 || __builtin_add_overflow(offset, length, &end) || end > size_) return;
  // madvise needs a page-aligned start.
  const uint64_t page = uint64_t(::sysconf(_SC_PAGESIZE));
  const uint64_t start = offset - offset % page;
  (void)::madvise(const_cast<uint8_t*>(data_) + start, size_t(end - start), MADV_WILLNEED);
}

}  // namespace glm
