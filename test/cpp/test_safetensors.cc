// Safetensors files and checkpoint folders as hostile input (RELIABILITY.md 1.6, table B1-B5, B9, E3).
// Every malformed input is written by the test itself into a fresh mkdtemp folder.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ftw.h>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

#include "check.h"
#include "engine/checkpoint.h"
#include "engine/mapped_file.h"
#include "engine/safetensors.h"

using glm::Checkpoint;
using glm::DType;
using glm::ErrorCode;
using glm::SafetensorsFile;
using glm::Status;

namespace {

// A fresh temp folder, removed with everything in it (links not followed) at scope exit.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/glm_loader_test_XXXXXX";
    const char* p = ::mkdtemp(tmpl);
    path_ = p ? p : "";
  }
  ~TempDir() {
    if (!path_.empty()) {
      ::nftw(path_.c_str(), [](const char* f, const struct stat*, int, struct FTW*) { return ::remove(f); }, 16,
             FTW_DEPTH | FTW_PHYS);
    }
  }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

void write_file(const std::string& path, const std::string& bytes) {
  FILE* f = std::fopen(path.c_str(), "wb");
  CHECK(f != nullptr) << "cannot write " << path;
  if (!f) return;
  CHECK(std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size());
  std::fclose(f);
}

std::string le64(uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = char((n >> (8 * i)) & 0xff);
  return s;
}

// A safetensors file: length prefix, header, then `data_bytes` bytes of pattern data (byte i = i % 251).
std::string st_file(const std::string& header, size_t data_bytes) {
  std::string s = le64(header.size()) + header;
  for (size_t i = 0; i < data_bytes; ++i) s.push_back(char(i % 251));
  return s;
}

std::string entry(const std::string& name, const std::string& dtype, const std::string& shape, uint64_t b, uint64_t e) {
  return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":[" +
         std::to_string(b) + "," + std::to_string(e) + "]}";
}

void expect_error(const Status& st, ErrorCode code, const std::vector<std::string>& needles, int line) {
  CHECK(!st.is_ok()) << "line " << line << ": unexpectedly succeeded";
  if (st.is_ok()) return;
  CHECK(st.code() == code) << "line " << line << ": got " << glm::error_code_name(st.code()) << ", want "
                           << glm::error_code_name(code) << ": " << st.message();
  for (const auto& n : needles) {
    CHECK(st.message().find(n) != std::string::npos) << "line " << line << ": want '" << n << "' in: " << st.message();
  }
}
#define EXPECT_ERROR(st, code, ...) expect_error(st, code, {__VA_ARGS__}, __LINE__)

// Writes `bytes` as <dir>/<name> and opens it as a safetensors file.
Status open_bytes(const TempDir& dir, const std::string& name, const std::string& bytes,
                  std::unique_ptr<SafetensorsFile>* out = nullptr) {
  write_file(dir / name, bytes);
  std::unique_ptr<SafetensorsFile> f;
  Status st = SafetensorsFile::open(dir / name, &f);
  if (out) *out = std::move(f);
  return st;
}

Status open_header(const TempDir& dir, const std::string& name, const std::string& header, size_t data_bytes) {
  return open_bytes(dir, name, st_file(header, data_bytes));
}

}  // namespace

// ---------------------------------------------------------------------------------------------------
// MappedFile

TEST(mapped_file_maps_and_reports_io_errors) {
  TempDir d;
  write_file(d / "f.bin", "hello");
  std::unique_ptr<glm::MappedFile> f;
  Status st = glm::MappedFile::open(d / "f.bin", &f);
  CHECK(st.is_ok()) << st.message();
  if (f) {
    CHECK(f->size() == 5 && std::memcmp(f->data(), "hello", 5) == 0);
    f->advise_willneed(0, 5);
    f->advise_willneed(3, UINT64_MAX);  // ignored, not a crash
  }
  write_file(d / "empty", "");
  st = glm::MappedFile::open(d / "empty", &f);
  CHECK(st.is_ok() && f && f->size() == 0 && f->data() != nullptr) << st.message();
  EXPECT_ERROR(glm::MappedFile::open(d / "nope", &f), ErrorCode::ModelLoad, d / "nope", "No such file");
  CHECK(!f) << "out must be reset on failure";
  EXPECT_ERROR(glm::MappedFile::open(d.path(), &f), ErrorCode::ModelLoad, d.path(), "is a directory");
  CHECK(::mkfifo((d / "fifo").c_str(), 0600) == 0);
  EXPECT_ERROR(glm::MappedFile::open(d / "fifo", &f), ErrorCode::ModelLoad, "fifo", "not a regular file");
  if (::geteuid() != 0) {  // root ignores permissions
    write_file(d / "secret", "x");
    ::chmod((d / "secret").c_str(), 0);
    EXPECT_ERROR(glm::MappedFile::open(d / "secret", &f), ErrorCode::ModelLoad, "secret", "Permission denied");
  }
}

// ---------------------------------------------------------------------------------------------------
// SafetensorsFile: valid files

TEST(safetensors_valid_file_opens_with_shapes_and_pointers) {
  TempDir d;
  const std::string header = "{\"__metadata__\":{\"format\":\"pt\",\"note\":\"x\"}," +
                             entry("b.bias", "BF16", "[4]", 24, 32) + "," + entry("a.weight", "F32", "[2,3]", 0, 24) +
                             "," + entry("empty", "F16", "[0,5]", 32, 32) + "," + entry("scalar", "I32", "[]", 32, 36) +
                             "}";
  std::unique_ptr<SafetensorsFile> f;
  Status st = open_bytes(d, "model.safetensors", st_file(header, 36), &f);
  CHECK(st.is_ok()) << st.message();
  if (!f) return;
  CHECK(f->tensors().size() == 4);
  CHECK(f->file_size() == 8 + header.size() + 36);
  CHECK(f->data_offset() == 8 + header.size());
  CHECK(f->metadata().size() == 2 && f->metadata()[0].first == "format" && f->metadata()[0].second == "pt");
  const uint8_t* data0 = f->mapping().data() + f->data_offset();
  const glm::TensorInfo* a = f->find("a.weight");
  CHECK(a && a->dtype == DType::F32 && a->shape == std::vector<int64_t>({2, 3}) && a->numel == 6 && a->nbytes == 24);
  CHECK(a && a->data == data0 && a->data[5] == 5 && a->file == d / "model.safetensors");
  const glm::TensorInfo* b = f->find("b.bias");
  CHECK(b && b->dtype == DType::BF16 && b->numel == 4 && b->nbytes == 8 && b->data == data0 + 24 && b->data[0] == 24);
  const glm::TensorInfo* e = f->find("empty");
  CHECK(e && e->numel == 0 && e->nbytes == 0 && e->shape.size() == 2);
  const glm::TensorInfo* s = f->find("scalar");
  CHECK(s && s->shape.empty() && s->numel == 1 && s->nbytes == 4 && s->data == data0 + 32);
  CHECK(f->find("missing") == nullptr);
  CHECK(f->tensors()[0].name == "b.bias") << "header order kept";
}

TEST(safetensors_whitespace_padded_header_is_accepted) {
  TempDir d;
  // The reference writer pads the header with spaces to an 8-byte boundary; leading space is also legal.
  const std::string header = "  \n{" + entry("x", "U8", "[3]", 0, 3) + "}       ";
  std::unique_ptr<SafetensorsFile> f;
  Status st = open_bytes(d, "pad.safetensors", st_file(header, 3), &f);
  CHECK(st.is_ok()) << st.message();
  CHECK(f && f->find("x") && f->find("x")->numel == 3);
  // An empty header object with no data is a valid (empty) file.
  CHECK(open_header(d, "e.safetensors", "{}", 0).is_ok());
}

// ---------------------------------------------------------------------------------------------------
// SafetensorsFile: header length and header text (B1)

TEST(safetensors_rejects_short_files_and_bad_header_lengths) {
  TempDir d;
  EXPECT_ERROR(open_bytes(d, "empty.safetensors", ""), ErrorCode::ModelFormat, "empty.safetensors", "0 bytes, too small");
  EXPECT_ERROR(open_bytes(d, "five.safetensors", "12345"), ErrorCode::ModelFormat, "five.safetensors", "5 bytes");
  EXPECT_ERROR(open_bytes(d, "max.safetensors", le64(UINT64_MAX) + "{}"), ErrorCode::ModelFormat, "max.safetensors",
               "header length 18446744073709551615 exceeds the cap");
  EXPECT_ERROR(open_bytes(d, "cap.safetensors", le64(100000001) + "{}"), ErrorCode::ModelFormat, "cap.safetensors",
               "exceeds the cap of 100000000");
  EXPECT_ERROR(open_bytes(d, "long.safetensors", le64(1000) + "{}"), ErrorCode::ModelFormat, "long.safetensors",
               "header length 1000 exceeds the 2 bytes after the length field");
  // N + 8 would wrap: 2^64 - 8 (also over the cap, rejected without computing N + 8).
  EXPECT_ERROR(open_bytes(d, "wrap.safetensors", le64(UINT64_MAX - 7) + "{}"), ErrorCode::ModelFormat, "wrap.safetensors");
  std::unique_ptr<SafetensorsFile> f;
  EXPECT_ERROR(SafetensorsFile::open(d / "absent.safetensors", &f), ErrorCode::ModelLoad, "absent.safetensors");
}

TEST(safetensors_rejects_header_that_is_not_json_or_not_utf8) {
  TempDir d;
  EXPECT_ERROR(open_header(d, "nj.safetensors", "not json", 0), ErrorCode::ModelFormat, "nj.safetensors: header: invalid JSON");
  EXPECT_ERROR(open_header(d, "arr.safetensors", "[]", 0), ErrorCode::ModelFormat, "arr.safetensors",
               "must be a JSON object, found array");
  EXPECT_ERROR(open_header(d, "utf.safetensors", "{\"a\xff\":{}}", 0), ErrorCode::ModelFormat, "utf.safetensors",
               "invalid UTF-8");
  EXPECT_ERROR(open_header(d, "trail.safetensors", "{} x", 0), ErrorCode::ModelFormat, "trail.safetensors",
               "trailing characters");
  // A NUL-padded header is not whitespace-padded.
  EXPECT_ERROR(open_header(d, "nul.safetensors", std::string("{}\0\0", 4), 0), ErrorCode::ModelFormat, "nul.safetensors");
}

// ---------------------------------------------------------------------------------------------------
// Offsets (B2)

TEST(safetensors_rejects_reversed_overlapping_gapped_offsets) {
  TempDir d;
  EXPECT_ERROR(open_header(d, "rev.safetensors", "{" + entry("t", "U8", "[0]", 24, 0) + "}", 24), ErrorCode::ModelFormat,
               "rev.safetensors", "tensor \"t\"", "data_offsets [24, 0) end before they begin");
  // The "json_attack": two tensors aliasing the same bytes.
  EXPECT_ERROR(open_header(d, "ovl.safetensors",
                           "{" + entry("a", "F32", "[2,3]", 0, 24) + "," + entry("b", "U8", "[8]", 16, 24) + "}", 24),
               ErrorCode::ModelFormat, "ovl.safetensors", "tensor \"b\"", "overlap tensor \"a\", which ends at 24");
  EXPECT_ERROR(open_header(d, "same.safetensors",
                           "{" + entry("a", "U8", "[4]", 0, 4) + "," + entry("b", "U8", "[4]", 0, 4) + "}", 4),
               ErrorCode::ModelFormat, "same.safetensors", "overlap");
  EXPECT_ERROR(open_header(d, "gap.safetensors",
                           "{" + entry("a", "F32", "[2,3]", 0, 24) + "," + entry("b", "U8", "[8]", 28, 36) + "}", 36),
               ErrorCode::ModelFormat, "gap.safetensors", "tensor \"b\"", "gap of 4 bytes after tensor \"a\"");
  EXPECT_ERROR(open_header(d, "start.safetensors", "{" + entry("a", "F32", "[2,3]", 4, 28) + "}", 28),
               ErrorCode::ModelFormat, "start.safetensors", "tensor \"a\"", "must start at offset 0");
  // Offsets in a different order than the header is fine: they are sorted first.
  CHECK(open_header(d, "order.safetensors",
                    "{" + entry("z", "U8", "[4]", 4, 8) + "," + entry("y", "U8", "[4]", 0, 4) + "}", 8).is_ok());
}

TEST(safetensors_rejects_trailing_bytes_and_short_buffer) {
  TempDir d;
  const std::string h = "{" + entry("a", "F32", "[2,3]", 0, 24) + "}";
  EXPECT_ERROR(open_header(d, "trail.safetensors", h, 30), ErrorCode::ModelFormat, "trail.safetensors",
               "the tensors cover 24 bytes but the data section holds 30 (6 trailing bytes)");
  EXPECT_ERROR(open_header(d, "short.safetensors", h, 20), ErrorCode::ModelFormat, "short.safetensors", "tensor \"a\"",
               "run past the end of the data section, which holds 20 bytes");
  EXPECT_ERROR(open_header(d, "nodata.safetensors", "{}", 5), ErrorCode::ModelFormat, "nodata.safetensors", "5 trailing bytes");
  // A data_offsets end near 2^64 cannot wrap any sum.
  EXPECT_ERROR(open_header(d, "huge.safetensors",
                           "{" + entry("a", "U8", "[4]", 0, 4) + "," + entry("b", "U8", "[4]", 18446744073709551610ull,
                                                                              18446744073709551614ull) + "}", 4),
               ErrorCode::ModelFormat, "huge.safetensors", "tensor \"b\"", "gap of");
}

// ---------------------------------------------------------------------------------------------------
// Shapes, byte counts, dtypes (B3, B4)

TEST(safetensors_rejects_byte_count_mismatch_with_exact_message) {
  TempDir d;
  EXPECT_ERROR(open_header(d, "model.safetensors", "{" + entry("x.weight", "F32", "[2,3]", 0, 10) + "}", 10),
               ErrorCode::ModelFormat,
               d / "model.safetensors" + ": tensor \"x.weight\": data_offsets [0, 10) hold 10 bytes but shape [2, 3] of F32 needs 24");
}

TEST(safetensors_rejects_bad_shapes) {
  TempDir d;
  EXPECT_ERROR(open_header(d, "big.safetensors", "{" + entry("t", "U8", "[2,9223372036854775808]", 0, 0) + "}", 0),
               ErrorCode::ModelFormat, "big.safetensors", "tensor \"t\"", "shape[1] = 9223372036854775808 exceeds the maximum dimension 2^48");
  EXPECT_ERROR(open_header(d, "big2.safetensors", "{" + entry("t", "U8", "[2,18446744073709551614]", 0, 0) + "}", 0),
               ErrorCode::ModelFormat, "big2.safetensors", "tensor \"t\"", "maximum dimension");
  EXPECT_ERROR(open_header(d, "dim.safetensors", "{" + entry("t", "U8", "[281474976710657]", 0, 0) + "}", 0),
               ErrorCode::ModelFormat, "dim.safetensors", "shape[0] = 281474976710657 exceeds the maximum dimension 2^48");
  // Each dim within the cap, but the product overflows 64 bits.
  EXPECT_ERROR(open_header(d, "prod.safetensors", "{" + entry("t", "U8", "[281474976710656,281474976710656]", 0, 0) + "}", 0),
               ErrorCode::ModelFormat, "prod.safetensors", "tensor \"t\"", "overflows 64-bit");
  // Element count fits, byte count does not: 2^62 elements of F64.
  EXPECT_ERROR(open_header(d, "bytes.safetensors", "{" + entry("t", "F64", "[4194304,1099511627776]", 0, 0) + "}", 0),
               ErrorCode::ModelFormat, "bytes.safetensors", "overflows 64-bit");
  EXPECT_ERROR(open_header(d, "neg.safetensors", "{" + entry("t", "U8", "[2,-1]", 0, 0) + "}", 0),
               ErrorCode::ModelFormat, "neg.safetensors", "tensor \"t\"", "shape[1] = -1 is negative");
  EXPECT_ERROR(open_header(d, "frac.safetensors", "{" + entry("t", "U8", "[1.5]", 0, 0) + "}", 0),
               ErrorCode::ModelFormat, "frac.safetensors", "shape[0] = 1.5 is not an integer");
  EXPECT_ERROR(open_header(d, "str.safetensors", "{" + entry("t", "U8", "[\"2\"]", 0, 0) + "}", 0),
               ErrorCode::ModelFormat, "str.safetensors", "shape[0] is a string");
  EXPECT_ERROR(open_header(d, "rank.safetensors", "{" + entry("t", "U8", "[1,1,1,1,1,1,1,1,1]", 0, 1) + "}", 1),
               ErrorCode::ModelFormat, "rank.safetensors", "rank 9 exceeds the maximum of 8");
  EXPECT_ERROR(open_header(d, "sh.safetensors", "{" + entry("t", "U8", "{}", 0, 0) + "}", 0),
               ErrorCode::ModelFormat, "sh.safetensors", "\"shape\" must be an array");
}

TEST(safetensors_rejects_malformed_entries) {
  TempDir d;
  EXPECT_ERROR(open_header(d, "dt.safetensors", "{" + entry("w.q", "F4", "[2]", 0, 1) + "}", 1),
               ErrorCode::UnsupportedFormat, "dt.safetensors", "tensor \"w.q\"", "unknown dtype \"F4\"");
  EXPECT_ERROR(open_header(d, "dt2.safetensors", "{\"t\":{\"dtype\":7,\"shape\":[],\"data_offsets\":[0,1]}}", 1),
               ErrorCode::ModelFormat, "dt2.safetensors", "\"dtype\" must be a string");
  EXPECT_ERROR(open_header(d, "extra.safetensors",
                           "{\"t\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"x\":1}}", 1),
               ErrorCode::ModelFormat, "extra.safetensors", "tensor \"t\"", "unexpected key \"x\"");
  EXPECT_ERROR(open_header(d, "miss.safetensors", "{\"t\":{\"dtype\":\"U8\",\"shape\":[1]}}", 1),
               ErrorCode::ModelFormat, "miss.safetensors", "tensor \"t\"", "missing \"data_offsets\"");
  EXPECT_ERROR(open_header(d, "notobj.safetensors", "{\"t\":[1,2]}", 0), ErrorCode::ModelFormat, "notobj.safetensors",
               "tensor \"t\"", "expected an object, found array");
  EXPECT_ERROR(open_header(d, "offneg.safetensors", "{\"t\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[-1,0]}}", 1),
               ErrorCode::ModelFormat, "offneg.safetensors", "tensor \"t\"", "data_offsets [-1, 0] must be non-negative");
  EXPECT_ERROR(open_header(d, "off3.safetensors", "{\"t\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1,2]}}", 1),
               ErrorCode::ModelFormat, "off3.safetensors", "array of two integers");
  EXPECT_ERROR(open_header(d, "off64.safetensors",
                           "{\"t\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,18446744073709551616]}}", 1),
               ErrorCode::ModelFormat, "off64.safetensors", "must be non-negative integers below 2^64");
  EXPECT_ERROR(open_header(d, "name.safetensors", "{" + entry(std::string(1025, 'n'), "U8", "[1]", 0, 1) + "}", 1),
               ErrorCode::ModelFormat, "name.safetensors", "name of 1025 bytes exceeds the cap of 1024");
  CHECK(open_header(d, "name_ok.safetensors", "{" + entry(std::string(1024, 'n'), "U8", "[1]", 0, 1) + "}", 1).is_ok());
  // Hostile names are escaped in messages.
  EXPECT_ERROR(open_header(d, "esc.safetensors", "{" + entry("a\\nFAKE LOG LINE", "Q9", "[1]", 0, 1) + "}", 1),
               ErrorCode::UnsupportedFormat, "tensor \"a\\x0aFAKE LOG LINE\"");
}

TEST(safetensors_rejects_metadata_misuse_and_duplicate_names) {
  TempDir d;
  EXPECT_ERROR(open_header(d, "meta.safetensors", "{\"__metadata__\":{\"format\":\"pt\",\"n\":3}}", 0),
               ErrorCode::ModelFormat, "meta.safetensors", "__metadata__ value \"n\" is a number, expected a string");
  // A tensor named __metadata__ is metadata with non-string values, so it is rejected.
  EXPECT_ERROR(open_header(d, "metat.safetensors", "{" + entry("__metadata__", "U8", "[1]", 0, 1) + "}", 1),
               ErrorCode::ModelFormat, "metat.safetensors", "__metadata__ value \"shape\" is a array");
  EXPECT_ERROR(open_header(d, "metaa.safetensors", "{\"__metadata__\":[\"x\"]}", 0), ErrorCode::ModelFormat,
               "metaa.safetensors", "__metadata__ must be an object of strings");
  EXPECT_ERROR(open_header(d, "metad.safetensors", "{\"__metadata__\":{},\"__metadata__\":{}}", 0),
               ErrorCode::ModelFormat, "metad.safetensors", "duplicate key \"__metadata__\"");
  // Duplicate tensor names: the JSON layer refuses last-wins.
  EXPECT_ERROR(open_header(d, "dup.safetensors", "{" + entry("w", "U8", "[1]", 0, 1) + "," + entry("w", "U8", "[1]", 1, 2) + "}", 2),
               ErrorCode::ModelFormat, "dup.safetensors", "duplicate key \"w\"");
}

// ---------------------------------------------------------------------------------------------------
// Checkpoint folders (B5, B9, E3, E4)

namespace {

// Two shards: a.safetensors holds "x" (F32 [2,3]) and "y" (U8 [4]); b.safetensors holds "z" (BF16 [3]).
void write_two_shards(const TempDir& d, const std::string& dir) {
  write_file(dir + "/a.safetensors", st_file("{" + entry("x", "F32", "[2,3]", 0, 24) + "," + entry("y", "U8", "[4]", 24, 28) + "}", 28));
  write_file(dir + "/b.safetensors", st_file("{" + entry("z", "BF16", "[3]", 0, 6) + "}", 6));
  (void)d;
}

std::string index_json(const std::string& weight_map_body) {
  return "{\"metadata\":{\"total_size\":34},\"weight_map\":{" + weight_map_body + "}}";
}

Status open_ck(const std::string& dir, std::unique_ptr<Checkpoint>* out = nullptr) {
  std::unique_ptr<Checkpoint> ck;
  Status st = Checkpoint::open(dir, nullptr, &ck);
  if (out) *out = std::move(ck);
  return st;
}

}  // namespace

TEST(checkpoint_single_file_folder_opens) {
  TempDir d;
  write_file(d / "model.safetensors", st_file("{" + entry("w", "F16", "[2,2]", 0, 8) + "}", 8));
  write_file(d / "config.json", "{\"hidden_size\": 8}");
  std::unique_ptr<Checkpoint> ck;
  Status st = open_ck(d.path(), &ck);
  CHECK(st.is_ok()) << st.message();
  if (!ck) return;
  CHECK(ck->tensors().size() == 1 && ck->dir() == d.path());
  const glm::TensorInfo* w = ck->find("w");
  CHECK(w && w->shape == std::vector<int64_t>({2, 2}) && w->nbytes == 8 && w->data && w->data[7] == 7);
  CHECK(ck->total_bytes() == ck->shards()[0]->file_size());
  std::string text;
  CHECK(ck->read_text_file("config.json", 1 << 20, &text).is_ok() && text == "{\"hidden_size\": 8}");
  EXPECT_ERROR(ck->read_text_file("../config.json", 1 << 20, &text), ErrorCode::ModelFormat, "'..' component");
  EXPECT_ERROR(ck->read_text_file("config.json", 4, &text), ErrorCode::ModelFormat, "config.json", "exceeds the cap of 4");
  EXPECT_ERROR(ck->read_text_file("absent.json", 100, &text), ErrorCode::ModelLoad, "absent.json", "does not exist");
}

TEST(checkpoint_two_shard_folder_opens_with_progress) {
  TempDir d;
  write_two_shards(d, d.path());
  write_file(d / "model.safetensors.index.json",
             index_json("\"x\":\"a.safetensors\",\"z\":\"b.safetensors\",\"y\":\"a.safetensors\""));
  std::vector<std::pair<uint64_t, uint64_t>> calls;
  std::unique_ptr<Checkpoint> ck;
  Status st = Checkpoint::open(d.path(), [&](uint64_t done, uint64_t total) { calls.emplace_back(done, total); return true; }, &ck);
  CHECK(st.is_ok()) << st.message();
  if (!ck) return;
  CHECK(ck->tensors().size() == 3 && ck->shards().size() == 2);
  const glm::TensorInfo* x = ck->find("x");
  const glm::TensorInfo* y = ck->find("y");
  const glm::TensorInfo* z = ck->find("z");
  CHECK(x && y && z);
  if (!x || !y || !z) return;
  const auto& sa = *ck->shards()[0];
  const auto& sb = *ck->shards()[1];
  CHECK(x->shape == std::vector<int64_t>({2, 3}) && x->dtype == DType::F32 && x->data == sa.mapping().data() + sa.data_offset());
  CHECK(y->shape == std::vector<int64_t>({4}) && y->data == x->data + 24 && y->data[0] == 24);
  CHECK(z->shape == std::vector<int64_t>({3}) && z->dtype == DType::BF16 && z->data == sb.mapping().data() + sb.data_offset());
  CHECK(x->file.find("a.safetensors") != std::string::npos && z->file.find("b.safetensors") != std::string::npos);
  const uint64_t total = sa.file_size() + sb.file_size();
  CHECK(ck->total_bytes() == total);
  CHECK(calls.size() == 3) << calls.size();
  if (calls.size() == 3) {
    CHECK(calls[0] == std::make_pair(uint64_t(0), total));
    CHECK(calls[1] == std::make_pair(sa.file_size(), total));
    CHECK(calls[2] == std::make_pair(total, total));
  }
}

TEST(checkpoint_progress_can_cancel) {
  TempDir d;
  write_two_shards(d, d.path());
  write_file(d / "model.safetensors.index.json", index_json("\"x\":\"a.safetensors\",\"y\":\"a.safetensors\",\"z\":\"b.safetensors\""));
  for (int stop_at : {0, 1, 2}) {
    int n = 0;
    std::unique_ptr<Checkpoint> ck;
    Status st = Checkpoint::open(d.path(), [&](uint64_t, uint64_t) { return n++ < stop_at; }, &ck);
    EXPECT_ERROR(st, ErrorCode::Aborted, d.path(), "cancelled");
    CHECK(!ck);
  }
}

TEST(checkpoint_confines_shards_to_the_folder) {
  TempDir outer;
  const std::string dir = outer / "model";
  CHECK(::mkdir(dir.c_str(), 0700) == 0);
  write_two_shards(outer, dir);
  write_file(outer / "x.safetensors", st_file("{" + entry("z", "BF16", "[3]", 0, 6) + "}", 6));
  const std::string idx = dir + "/model.safetensors.index.json";

  write_file(idx, index_json("\"x\":\"a.safetensors\",\"y\":\"a.safetensors\",\"z\":\"../x.safetensors\""));
  EXPECT_ERROR(open_ck(dir), ErrorCode::ModelFormat, "\"../x.safetensors\"", "'..' component");
  write_file(idx, index_json("\"x\":\"a.safetensors\",\"y\":\"a.safetensors\",\"z\":\"sub/../../x.safetensors\""));
  EXPECT_ERROR(open_ck(dir), ErrorCode::ModelFormat, "sub/../../x.safetensors", "'..' component");
  write_file(idx, index_json("\"x\":\"a.safetensors\",\"y\":\"a.safetensors\",\"z\":\"" + outer / "x.safetensors" + "\""));
  EXPECT_ERROR(open_ck(dir), ErrorCode::ModelFormat, outer / "x.safetensors", "absolute path");
  write_file(idx, index_json("\"x\":\"a.safetensors\",\"y\":\"a.safetensors\",\"z\":\"\""));
  EXPECT_ERROR(open_ck(dir), ErrorCode::ModelFormat, "empty file name");
  write_file(idx, index_json("\"x\":\"a.safetensors\",\"y\":\"a.safetensors\",\"z\":\"b.safetensors\\u0000.txt\""));
  EXPECT_ERROR(open_ck(dir), ErrorCode::ModelFormat, "NUL");
  // A symlink inside the folder pointing outside it.
  CHECK(::symlink((outer / "x.safetensors").c_str(), (dir + "/link.safetensors").c_str()) == 0);
  write_file(idx, index_json("\"x\":\"a.safetensors\",\"y\":\"a.safetensors\",\"z\":\"link.safetensors\""));
  EXPECT_ERROR(open_ck(dir), ErrorCode::ModelFormat, "link.safetensors", "outside the model folder");
  // A symlinked subfolder pointing outside is caught the same way.
  CHECK(::symlink(outer.path().c_str(), (dir + "/up").c_str()) == 0);
  write_file(idx, index_json("\"x\":\"a.safetensors\",\"y\":\"a.safetensors\",\"z\":\"up/x.safetensors\""));
  EXPECT_ERROR(open_ck(dir), ErrorCode::ModelFormat, "up/x.safetensors", "outside the model folder");
  // A symlink that stays inside the folder, and a subfolder shard, are fine.
  CHECK(::mkdir((dir + "/sub").c_str(), 0700) == 0);
  CHECK(::rename((dir + "/b.safetensors").c_str(), (dir + "/sub/b.safetensors").c_str()) == 0);
  CHECK(::symlink("sub/b.safetensors", (dir + "/inlink.safetensors").c_str()) == 0);
  write_file(idx, index_json("\"x\":\"a.safetensors\",\"y\":\"a.safetensors\",\"z\":\"inlink.safetensors\""));
  Status st = open_ck(dir);
  CHECK(st.is_ok()) << st.message();
  write_file(idx, index_json("\"x\":\"a.safetensors\",\"y\":\"./a.safetensors\",\"z\":\"sub/b.safetensors\""));
  st = open_ck(dir);
  CHECK(st.is_ok()) << "two spellings of one shard: " << st.message();
  // model.safetensors itself as a symlink out of the folder.
  TempDir single;
  CHECK(::symlink((outer / "x.safetensors").c_str(), (single / "model.safetensors").c_str()) == 0);
  EXPECT_ERROR(open_ck(single.path()), ErrorCode::ModelFormat, "model.safetensors", "outside the model folder");
}

TEST(checkpoint_accepts_hub_cache_snapshot_blobs_only) {
  // huggingface_hub layout: snapshots/<rev>/model.safetensors -> ../../blobs/<hash>. The blob belongs to
  // the same repository, so it is allowed; a link to anywhere else in the cache is still refused.
  TempDir cache;
  const std::string repo = cache / "models--org--tiny";
  CHECK(::mkdir(repo.c_str(), 0700) == 0);
  CHECK(::mkdir((repo + "/blobs").c_str(), 0700) == 0);
  CHECK(::mkdir((repo + "/snapshots").c_str(), 0700) == 0);
  const std::string snap = repo + "/snapshots/abc123";
  CHECK(::mkdir(snap.c_str(), 0700) == 0);
  write_file(repo + "/blobs/f00d", st_file("{" + entry("z", "BF16", "[3]", 0, 6) + "}", 6));
  CHECK(::symlink("../../blobs/f00d", (snap + "/model.safetensors").c_str()) == 0);
  Status st = open_ck(snap);
  CHECK(st.is_ok()) << st.message();

  write_file(repo + "/outside.safetensors", st_file("{" + entry("z", "BF16", "[3]", 0, 6) + "}", 6));
  CHECK(::unlink((snap + "/model.safetensors").c_str()) == 0);
  CHECK(::symlink("../../outside.safetensors", (snap + "/model.safetensors").c_str()) == 0);
  EXPECT_ERROR(open_ck(snap), ErrorCode::ModelFormat, "model.safetensors", "outside the model folder");
}

TEST(checkpoint_rejects_index_and_shard_mismatches) {
  TempDir d;
  write_two_shards(d, d.path());
  const std::string idx = d / "model.safetensors.index.json";

  write_file(idx, index_json("\"x\":\"a.safetensors\",\"y\":\"a.safetensors\",\"z\":\"c.safetensors\""));
  EXPECT_ERROR(open_ck(d.path()), ErrorCode::ModelFormat, "\"c.safetensors\"", "does not exist");
  write_file(idx, index_json("\"x\":\"a.safetensors\",\"y\":\"a.safetensors\",\"z\":\"b.safetensors\",\"w\":\"b.safetensors\""));
  EXPECT_ERROR(open_ck(d.path()), ErrorCode::ModelFormat, "tensor \"w\"", "listed in shard \"b.safetensors\" but is absent from it");
  write_file(idx, index_json("\"x\":\"a.safetensors\",\"z\":\"b.safetensors\""));
  EXPECT_ERROR(open_ck(d.path()), ErrorCode::ModelFormat, "a.safetensors", "tensor \"y\"", "is not listed in");
  write_file(idx, index_json("\"x\":\"a.safetensors\",\"y\":\"b.safetensors\",\"z\":\"b.safetensors\""));
  EXPECT_ERROR(open_ck(d.path()), ErrorCode::ModelFormat, "a.safetensors", "tensor \"y\"",
               "listed in model.safetensors.index.json under shard \"b.safetensors\" but found in this file");
  write_file(idx, index_json("\"x\":\"a.safetensors\",\"y\":\"a.safetensors\",\"z\":\"b.safetensors\",\"x\":\"b.safetensors\""));
  EXPECT_ERROR(open_ck(d.path()), ErrorCode::ModelFormat, "model.safetensors.index.json", "duplicate key \"x\"");
  write_file(idx, index_json("\"x\":\"a.safetensors\",\"y\":1,\"z\":\"b.safetensors\""));
  EXPECT_ERROR(open_ck(d.path()), ErrorCode::ModelFormat, "model.safetensors.index.json", "tensor \"y\" is a number");
  write_file(idx, "{\"weight_map\":[]}");
  EXPECT_ERROR(open_ck(d.path()), ErrorCode::ModelFormat, "model.safetensors.index.json", "\"weight_map\" must be an object");
  write_file(idx, "{\"metadata\":{}}");
  EXPECT_ERROR(open_ck(d.path()), ErrorCode::ModelFormat, "\"weight_map\" must be an object", "found nothing");
  write_file(idx, index_json(""));
  EXPECT_ERROR(open_ck(d.path()), ErrorCode::ModelFormat, "\"weight_map\" is empty");
  write_file(idx, "{\"weight_map\":{} ]");
  EXPECT_ERROR(open_ck(d.path()), ErrorCode::ModelFormat, "model.safetensors.index.json: invalid JSON");

  // The same tensor in two shards.
  write_file(d / "b.safetensors", st_file("{" + entry("z", "BF16", "[3]", 0, 6) + "," + entry("y", "U8", "[4]", 6, 10) + "}", 10));
  write_file(idx, index_json("\"x\":\"a.safetensors\",\"y\":\"a.safetensors\",\"z\":\"b.safetensors\""));
  EXPECT_ERROR(open_ck(d.path()), ErrorCode::ModelFormat, "tensor \"y\" is present in two shards", "a.safetensors", "b.safetensors");

  // A malformed shard is reported with its own file name.
  write_file(d / "b.safetensors", st_file("{" + entry("z", "BF16", "[3]", 0, 6) + "}", 7));
  EXPECT_ERROR(open_ck(d.path()), ErrorCode::ModelFormat, "b.safetensors", "1 trailing bytes");
}

TEST(checkpoint_rejects_pickle_missing_and_non_folders) {
  TempDir d;
  const std::string pk = d / "pickle";
  CHECK(::mkdir(pk.c_str(), 0700) == 0);
  write_file(pk + "/pytorch_model-00001-of-00002.bin", "PK\x03\x04 not really");
  write_file(pk + "/config.json", "{}");
  EXPECT_ERROR(open_ck(pk), ErrorCode::UnsupportedFormat, pk, "pytorch_model-00001-of-00002.bin",
               "pickle checkpoints are not loaded; convert to safetensors");
  const std::string pt = d / "pt";
  CHECK(::mkdir(pt.c_str(), 0700) == 0);
  write_file(pt + "/consolidated.pth", "x");
  EXPECT_ERROR(open_ck(pt), ErrorCode::UnsupportedFormat, "consolidated.pth", "convert to safetensors");

  const std::string empty = d / "empty";
  CHECK(::mkdir(empty.c_str(), 0700) == 0);
  write_file(empty + "/config.json", "{}");
  EXPECT_ERROR(open_ck(empty), ErrorCode::ModelFormat, "no safetensors weights in " + empty);

  write_file(d / "file.safetensors", st_file("{}", 0));
  EXPECT_ERROR(open_ck(d / "file.safetensors"), ErrorCode::ModelLoad, d / "file.safetensors", "not a directory");
  EXPECT_ERROR(open_ck(d / "missing"), ErrorCode::ModelLoad, d / "missing", "No such file or directory");
  EXPECT_ERROR(open_ck(""), ErrorCode::ModelLoad, "empty");

  // A dangling model.safetensors link is a missing weights file, not "no weights".
  const std::string dangling = d / "dangling";
  CHECK(::mkdir(dangling.c_str(), 0700) == 0);
  CHECK(::symlink("nowhere.safetensors", (dangling + "/model.safetensors").c_str()) == 0);
  EXPECT_ERROR(open_ck(dangling), ErrorCode::ModelFormat, "model.safetensors", "does not exist");
  // model.safetensors that is a folder.
  const std::string isdir = d / "isdir";
  CHECK(::mkdir(isdir.c_str(), 0700) == 0);
  CHECK(::mkdir((isdir + "/model.safetensors").c_str(), 0700) == 0);
  EXPECT_ERROR(open_ck(isdir), ErrorCode::ModelLoad, "model.safetensors", "is a directory");
}
