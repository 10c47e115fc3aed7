#include "engine/safetensors.h"

#include <algorithm>

#include "engine/json.h"

namespace glm {

namespace {

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

std::string range_text(uint64_t begin, uint64_t end) {
  return "[" + std::to_string(begin) + ", " + std::to_string(end) + ")";
}

// Builds "<path>: tensor "<name>": <reason>" messages for one file.
struct Reporter {
  const std::string& path;
  Status file(const std::string& reason) const { return format_error(path + ": " + reason); }
  Status tensor(std::string_view name, const std::string& reason, ErrorCode code = ErrorCode::ModelFormat) const {
    return Status::error(code, path + ": tensor " + quote_for_message(name) + ": " + reason);
  }
};

// The number as written, for messages (bounded: it comes from the file).
std::string number_for_message(const JsonValue& v) {
  if (!v.is_number()) return JsonValue::kind_name(v.kind());
  std::string_view t = v.number_text();
  return t.size() > 40 ? std::string(t.substr(0, 40)) + "..." : std::string(t);
}

Status parse_tensor_entry(const Reporter& rep, const std::string& name, const JsonValue& v, TensorInfo* t,
                          uint64_t* begin, uint64_t* end) {
  if (!v.is_object()) return rep.tensor(name, std::string("expected an object, found ") + JsonValue::kind_name(v.kind()));
  for (const auto& m : v.as_object()) {
    if (m.first != "dtype" && m.first != "shape" && m.first != "data_offsets") {
      return rep.tensor(name, "unexpected key " + quote_for_message(m.first) +
                                  " (a tensor entry has exactly dtype, shape and data_offsets)");
    }
  }
  const JsonValue* dtype = v.find("dtype");
  const JsonValue* shape = v.find("shape");
  const JsonValue* offsets = v.find("data_offsets");
  if (!dtype) return rep.tensor(name, "missing \"dtype\"");
  if (!shape) return rep.tensor(name, "missing \"shape\"");
  if (!offsets) return rep.tensor(name, "missing \"data_offsets\"");

  // dtype: range-checked before it selects anything (1.6 item 4).
  if (!dtype->is_string()) return rep.tensor(name, std::string("\"dtype\" must be a string, found ") + JsonValue::kind_name(dtype->kind()));
  if (!parse_dtype(dtype->as_string(), &t->dtype)) {
    return rep.tensor(name, "unknown dtype " + quote_for_message(dtype->as_string(), 32), ErrorCode::UnsupportedFormat);
  }

  // shape: small rank, each dim bounded, product and byte size in checked arithmetic.
  if (!shape->is_array()) return rep.tensor(name, std::string("\"shape\" must be an array, found ") + JsonValue::kind_name(shape->kind()));
  const auto& dims = shape->as_array();
  if (dims.size() > SafetensorsFile::kMaxRank) {
    return rep.tensor(name, "rank " + std::to_string(dims.size()) + " exceeds the maximum of " +
                                std::to_string(SafetensorsFile::kMaxRank));
  }
  t->shape.clear();
  t->shape.reserve(dims.size());
  uint64_t numel = 1;
  bool numel_overflow = false;
  for (size_t i = 0; i < dims.size(); ++i) {
    // Built only on failure: this loop runs for every dim of every tensor.
    const auto where = [&] { return "shape[" + std::to_string(i) + "] = " + number_for_message(dims[i]); };
    if (!dims[i].is_number()) return rep.tensor(name, "shape[" + std::to_string(i) + "] is a " + JsonValue::kind_name(dims[i].kind()) + ", expected an integer");
    if (dims[i].is_negative_number() && dims[i].as_double() != 0.0) return rep.tensor(name, where() + " is negative");
    uint64_t d;
    if (!dims[i].as_u64(&d)) return rep.tensor(name, where() + " is not an integer in range");
    if (d > SafetensorsFile::kMaxDim) return rep.tensor(name, where() + " exceeds the maximum dimension 2^48");
    t->shape.push_back(int64_t(d));
    // Keep scanning after an overflow so a later negative/oversized dim is still reported as such.
    if (__builtin_mul_overflow(numel, d, &numel)) numel_overflow = true;
  }
  const uint64_t bytes_per_elem = uint64_t(dtype_bits(t->dtype)) / 8;
  if (numel_overflow || __builtin_mul_overflow(numel, bytes_per_elem, &t->nbytes)) {
    return rep.tensor(name, "shape " + shape_text(t->shape) + " of " + dtype_name(t->dtype) +
                                " overflows 64-bit element or byte counts");
  }
  t->numel = numel;

  // data_offsets: [begin, end], begin <= end, and exactly the bytes the shape needs.
  if (!offsets->is_array() || offsets->size() != 2) {
    return rep.tensor(name, "\"data_offsets\" must be an array of two integers [begin, end]");
  }
  const auto& be = offsets->as_array();
  if (!be[0].as_u64(begin) || !be[1].as_u64(end)) {
    return rep.tensor(name, "data_offsets [" + number_for_message(be[0]) + ", " + number_for_message(be[1]) +
                                "] must be non-negative integers below 2^64");
  }
  if (*begin > *end) return rep.tensor(name, "data_offsets " + range_text(*begin, *end) + " end before they begin");
  if (*end - *begin != t->nbytes) {
    return rep.tensor(name, "data_offsets " + range_text(*begin, *end) + " hold " + std::to_string(*end - *begin) +
                                " bytes but shape " + shape_text(t->shape) + " of " + dtype_name(t->dtype) + " needs " +
                                std::to_string(t->nbytes));
  }
  return Status::ok();
}

}  // namespace

const TensorInfo* SafetensorsFile::find(std::string_view name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

Status SafetensorsFile::open(const std::string& path, std::unique_ptr<SafetensorsFile>* out) {
  out->reset();
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  GLM_TRY(MappedFile::open(path, &f->file_));
  const Reporter rep{path};
  const uint64_t file_size = f->file_->size();
  const uint8_t* base = f->file_->data();

  // 1. Header length against the file size (no overflow: compared against file_size - 8).
  if (file_size < 8) {
    return rep.file("file is " + std::to_string(file_size) + " bytes, too small for the 8-byte header length");
  }
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | base[i];  // little-endian, any host
  if (header_len > kMaxHeaderBytes) {
    return rep.file("header length " + std::to_string(header_len) + " exceeds the cap of " +
                    std::to_string(kMaxHeaderBytes) + " bytes");
  }
  if (header_len > file_size - 8) {
    return rep.file("header length " + std::to_string(header_len) + " exceeds the " + std::to_string(file_size - 8) +
                    " bytes after the length field (truncated or not a safetensors file)");
  }
  f->data_offset_ = 8 + header_len;
  const uint64_t data_size = file_size - f->data_offset_;

  // 2. Header JSON (strict: UTF-8, no duplicate keys, so no duplicate tensor names).
  JsonValue header;
  GLM_TRY(parse_json(std::string_view(reinterpret_cast<const char*>(base + 8), size_t(header_len)), &header,
                     path + ": header"));
  if (!header.is_object()) {
    return rep.file(std::string("header must be a JSON object, found ") + JsonValue::kind_name(header.kind()));
  }
  size_t n_tensors = header.size();
  if (header.find("__metadata__")) --n_tensors;
  if (n_tensors > kMaxTensors) {
    return rep.file("header lists " + std::to_string(n_tensors) + " tensors, more than the cap of " +
                    std::to_string(kMaxTensors));
  }

  // 3. Every entry.
  struct Span { uint64_t begin, end; size_t index; };
  std::vector<Span> spans;
  spans.reserve(n_tensors);
  f->tensors_.reserve(n_tensors);
  for (const auto& m : header.as_object()) {
    const std::string& key = m.first;
    if (key == "__metadata__") {
      if (!m.second.is_object()) {
        return rep.file(std::string("__metadata__ must be an object of strings, found ") + JsonValue::kind_name(m.second.kind()));
      }
      for (const auto& kv : m.second.as_object()) {
        if (!kv.second.is_string()) {
          return rep.file("__metadata__ value " + quote_for_message(kv.first) + " is a " +
                          JsonValue::kind_name(kv.second.kind()) + ", expected a string");
        }
        f->metadata_.emplace_back(kv.first, kv.second.as_string());
      }
      continue;
    }
    if (key.size() > kMaxNameBytes) {
      return rep.tensor(key, "name of " + std::to_string(key.size()) + " bytes exceeds the cap of " +
                                 std::to_string(kMaxNameBytes));
    }
    if (key.empty()) return rep.tensor(key, "empty tensor name");
    TensorInfo t;
    uint64_t begin = 0, end = 0;
    GLM_TRY(parse_tensor_entry(rep, key, m.second, &t, &begin, &end));
    t.name = key;
    t.file = path;
    spans.push_back({begin, end, f->tensors_.size()});
    f->tensors_.push_back(std::move(t));
  }

  // 4. The tensors must tile the data section exactly: sorted by offset, starting at 0, contiguous,
  // ending at its last byte. This rejects overlaps (two tensors aliasing bytes), gaps and trailing
  // bytes (hidden payloads), and short buffers (a truncated download) before any data page is read.
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t expected = 0;
  const TensorInfo* prev = nullptr;
  for (const Span& s : spans) {
    const TensorInfo& t = f->tensors_[s.index];
    const auto r = [&] { return "data_offsets " + range_text(s.begin, s.end); };
    if (s.begin != expected) {
      if (!prev) {
        return rep.tensor(t.name, r() + " start at " + std::to_string(s.begin) +
                                      ", but the first tensor must start at offset 0 of the data section");
      }
      if (s.begin > expected) {
        return rep.tensor(t.name, r() + " leave a gap of " + std::to_string(s.begin - expected) + " bytes after tensor " +
                                      quote_for_message(prev->name) + ", which ends at " + std::to_string(expected));
      }
      return rep.tensor(t.name, r() + " overlap tensor " + quote_for_message(prev->name) + ", which ends at " +
                                    std::to_string(expected));
    }
    if (s.end > data_size) {
      return rep.tensor(t.name, r() + " run past the end of the data section, which holds " + std::to_string(data_size) +
                                    " bytes (file truncated?)");
    }
    expected = s.end;
    prev = &t;
  }
  if (expected != data_size) {
    return rep.file("the tensors cover " + std::to_string(expected) + " bytes but the data section holds " +
                    std::to_string(data_size) + " (" + std::to_string(data_size - expected) + " trailing bytes)");
  }

  // 5. Only now compute pointers into the mapping (all ranges are known to lie inside the file).
  f->by_name_.reserve(f->tensors_.size());
  for (const Span& s : spans) {
    TensorInfo& t = f->tensors_[s.index];
    t.data = base + f->data_offset_ + s.begin;
    f->by_name_.emplace(std::string_view(t.name), s.index);
  }
  *out = std::move(f);
  return Status::ok();
}

}  // namespace glm
