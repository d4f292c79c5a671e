#include "marbm/model_io.hpp"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <new>
#include <bit>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <system_error>
#include <vector>

#include "detail/files.hpp"
#include "detail/little_endian.hpp"
#include "marbm/error.hpp"

namespace marbm {

namespace {

using nlohmann::json;

// Safetensors refuses headers above 100 MB; a larger length field means a
// corrupt or foreign file, and checking first avoids a huge allocation.
constexpr std::uint64_t max_header_bytes = 100'000'000;
// Model files are capped like data files: tensors of more than 32 GiB are
// refused before any allocation (a corrupt size field, /dev/zero...).
constexpr std::uint64_t max_tensor_bytes = std::uint64_t{1} << 35;

using detail::append_little_endian;
using detail::read_little_endian;

struct TensorEntry {
  std::string name;
  std::string dtype;
  std::vector<std::uint64_t> shape;
  std::uint64_t begin = 0;
  std::uint64_t end = 0;
};

// Reads one header entry; every problem names the file and the tensor.
TensorEntry parse_entry(const std::string& path, const std::string& name, const json& value) {
  const std::string where = path + ": tensor '" + detail::printable(name) + "'";
  MARBM_EXPECTS(value.is_object(), DataError, where + " is not a JSON object in the header");
  TensorEntry entry;
  entry.name = detail::printable(name);
  const auto dtype = value.find("dtype");
  MARBM_EXPECTS(dtype != value.end() && dtype->is_string(), DataError, where + " has no dtype");
  entry.dtype = detail::printable(dtype->get<std::string>());
  const auto shape = value.find("shape");
  MARBM_EXPECTS(shape != value.end() && shape->is_array(), DataError, where + " has no shape");
  for (const json& dim : *shape) {
    MARBM_EXPECTS(dim.is_number_unsigned() || (dim.is_number_integer() && dim.get<std::int64_t>() >= 0), DataError,
                  where + " has a shape entry that is not a non-negative integer");
    entry.shape.push_back(dim.get<std::uint64_t>());
  }
  const auto offsets = value.find("data_offsets");
  MARBM_EXPECTS(offsets != value.end() && offsets->is_array() && offsets->size() == 2, DataError,
                where + " has no data_offsets pair");
  for (const json& offset : *offsets)
    MARBM_EXPECTS(offset.is_number_unsigned() || (offset.is_number_integer() && offset.get<std::int64_t>() >= 0),
                  DataError, where + " has a data offset that is not a non-negative integer");
  entry.begin = (*offsets)[0].get<std::uint64_t>();
  entry.end = (*offsets)[1].get<std::uint64_t>();
  MARBM_EXPECTS(entry.begin <= entry.end, DataError,
                where + " has data_offsets [" + std::to_string(entry.begin) + ", " + std::to_string(entry.end) +
                    "] in the wrong order");
  return entry;
}

std::string shape_string(const std::vector<std::uint64_t>& shape) {
  std::string s = "[";
  for (std::size_t k = 0; k < shape.size(); ++k) s += (k ? ", " : "") + std::to_string(shape[k]);
  return s + "]";
}

// Copies a tensor's values into `out` as float32, from F32 or F64 data. An
// F64 value beyond float32's range is refused as such (it would become inf).
void read_tensor(const std::string& path, const TensorEntry& entry, const unsigned char* buffer,
                 std::span<float> out) {
  const std::size_t element = entry.dtype == "F32" ? 4 : 8;
  MARBM_EXPECTS(entry.end - entry.begin == out.size() * element, DataError,
                path + ": tensor '" + entry.name + "' spans " + std::to_string(entry.end - entry.begin) +
                    " bytes, its shape and dtype need " + std::to_string(out.size() * element));
  const unsigned char* data = buffer + entry.begin;
  for (std::size_t k = 0; k < out.size(); ++k) {
    if (element == 4) {
      out[k] = read_little_endian<float>(data + 4 * k);
      continue;
    }
    const double value = read_little_endian<double>(data + 8 * k);
    if (std::isfinite(value) && std::fabs(value) > static_cast<double>(std::numeric_limits<float>::max())) {
      char text[32];
      std::snprintf(text, sizeof text, "%.6g", value);
      throw DataError(path + ": " + entry.name + "[" + std::to_string(k) + "] = " + text +
                      " does not fit in float32");
    }
    out[k] = static_cast<float>(value);
  }
}

// The same tensor's values in float64, without rounding.
void read_tensor_wide(const TensorEntry& entry, const unsigned char* buffer, std::vector<double>& out) {
  const unsigned char* data = buffer + entry.begin;
  for (std::size_t k = 0; k < out.size(); ++k)
    out[k] = entry.dtype == "F32" ? static_cast<double>(read_little_endian<float>(data + 4 * k))
                                  : read_little_endian<double>(data + 8 * k);
}

// Reads exactly `count` bytes, or fewer at the end of the file.
std::string read_bytes(std::ifstream& in, std::uint64_t count) {
  std::string bytes(static_cast<std::size_t>(count), '\0');
  in.read(bytes.data(), static_cast<std::streamsize>(count));
  bytes.resize(static_cast<std::size_t>(in.gcount()));
  return bytes;
}

}  // namespace

namespace {

std::uint64_t dtype_bytes(const std::string& dtype) {
  if (dtype == "F32") return 4;
  if (dtype == "F64" || dtype == "I64") return 8;
  if (dtype == "U8") return 1;
  return 0;
}

std::uint64_t element_count(const std::vector<std::uint64_t>& shape) {
  std::uint64_t count = 1;
  for (const std::uint64_t dim : shape) {
    if (dim != 0 && count > max_tensor_bytes / dim) return max_tensor_bytes + 1;
    count *= dim;
  }
  return count;
}

bool is_model_tensor(const std::string& name) {
  return name == "weights" || name == "visible_bias" || name == "hidden_bias";
}

}  // namespace

void save_rbm(const std::string& path, const Rbm& rbm, const Metadata& metadata) {
  save_rbm(path, rbm, metadata, ExtraTensors{});
}

void save_rbm(const std::string& path, const Rbm& rbm, const Metadata& metadata, const ExtraTensors& extra) {
  const int n = rbm.n_visible(), m = rbm.n_hidden();
  MARBM_EXPECTS(n >= 1 && m >= 1, UsageError, "cannot save an empty model to " + path);
  rbm.check_finite(("refusing to save " + path).c_str());
  for (const auto& [name, tensor] : extra) {
    MARBM_EXPECTS(!is_model_tensor(name) && name != "__metadata__" && !name.empty(), UsageError,
                  "save " + path + ": the extra tensor name '" + detail::printable(name) + "' is taken");
    const std::uint64_t size = dtype_bytes(tensor.dtype);
    MARBM_EXPECTS(size > 0, UsageError,
                  "save " + path + ": extra tensor '" + name + "' has dtype '" + detail::printable(tensor.dtype) +
                      "' (expected F32, F64, U8 or I64)");
    MARBM_EXPECTS(element_count(tensor.shape) * size == tensor.bytes.size(), UsageError,
                  "save " + path + ": extra tensor '" + name + "' holds " + std::to_string(tensor.bytes.size()) +
                      " bytes, its shape " + shape_string(tensor.shape) + " needs " +
                      std::to_string(element_count(tensor.shape) * size));
  }

  json meta = json::object();
  for (const auto& [key, value] : metadata) meta[key] = value;
  // The sizes and format always describe the tensors, whatever the caller passed.
  meta["n_visible"] = std::to_string(n);
  meta["n_hidden"] = std::to_string(m);
  meta["format"] = "marbm-rbm";

  const std::uint64_t weight_bytes = 4ull * n * m;
  const std::uint64_t visible_bytes = 4ull * n;
  const std::uint64_t hidden_bytes = 4ull * m;
  json header = json::object();
  header["__metadata__"] = meta;
  header["weights"] = {{"dtype", "F32"}, {"shape", {n, m}}, {"data_offsets", {0, weight_bytes}}};
  header["visible_bias"] = {
      {"dtype", "F32"}, {"shape", {n}}, {"data_offsets", {weight_bytes, weight_bytes + visible_bytes}}};
  header["hidden_bias"] = {{"dtype", "F32"},
                           {"shape", {m}},
                           {"data_offsets", {weight_bytes + visible_bytes, weight_bytes + visible_bytes + hidden_bytes}}};
  // Extra tensors follow the model's, in name order.
  std::uint64_t offset = weight_bytes + visible_bytes + hidden_bytes;
  for (const auto& [name, tensor] : extra) {
    header[name] = {{"dtype", tensor.dtype}, {"shape", tensor.shape}, {"data_offsets", {offset, offset + tensor.bytes.size()}}};
    offset += tensor.bytes.size();
  }
  // JSON must be UTF-8; metadata can quote file names that are not (a
  // Latin-1 name, say). Such bytes become U+FFFD rather than failing the save
  // of a model that has just been trained.
  std::string header_text = header.dump(-1, ' ', false, json::error_handler_t::replace);
  // Pad with spaces so the data starts 8-byte aligned, as other writers do.
  header_text.append((8 - header_text.size() % 8) % 8, ' ');

  std::string bytes;
  bytes.reserve(8 + header_text.size() + offset);
  append_little_endian<std::uint64_t>(bytes, header_text.size());
  bytes += header_text;
  for (float w : rbm.weights()) append_little_endian(bytes, w);
  for (float a : rbm.visible_bias()) append_little_endian(bytes, a);
  for (float b : rbm.hidden_bias()) append_little_endian(bytes, b);
  for (const auto& entry : extra) bytes += entry.second.bytes;

  // Beside the target under a temporary name, then renamed: an interrupted
  // run never leaves a half-written model under the final name.
  detail::write_file_atomically(path, bytes, "model");
}

namespace {

// `wide`, when given, also receives the parameters in float64 and whether
// any of the three tensors is F64.
Rbm load_rbm_unchecked(const std::string& path, Metadata* metadata, ExtraTensors* extra, RbmFloat64* wide = nullptr,
                       bool* any_float64 = nullptr) {
  std::error_code ec;
  MARBM_EXPECTS(std::filesystem::exists(path, ec), DataError, path + ": no such file");
  MARBM_EXPECTS(!std::filesystem::is_directory(path, ec), DataError, path + ": is a directory, not a model file");
  std::ifstream in(path, std::ios::binary);
  MARBM_EXPECTS(in.good(), DataError, path + ": cannot open for reading");
  // The size of a regular file is known up front; a device or pipe is read
  // only as far as its header says.
  const bool regular = std::filesystem::is_regular_file(path, ec);
  const std::uint64_t file_size = regular ? std::filesystem::file_size(path, ec) : 0;

  const std::string length_bytes = read_bytes(in, 8);
  MARBM_EXPECTS(!in.bad(), DataError, path + ": read failed");
  MARBM_EXPECTS(length_bytes.size() == 8, DataError,
                path + ": too short for a safetensors file (" + std::to_string(length_bytes.size()) + " bytes)");
  const std::uint64_t header_size = read_little_endian<std::uint64_t>(
      reinterpret_cast<const unsigned char*>(length_bytes.data()));
  MARBM_EXPECTS(header_size >= 2 && header_size <= max_header_bytes, DataError,
                path + ": implausible safetensors header length " + std::to_string(header_size) +
                    " (not a safetensors file?)");
  MARBM_EXPECTS(!regular || 8 + header_size <= file_size, DataError,
                path + ": truncated: the header length is " + std::to_string(header_size) + " bytes but the file has " +
                    std::to_string(file_size) + " bytes");
  const std::string header_text = read_bytes(in, header_size);
  MARBM_EXPECTS(!in.bad(), DataError, path + ": read failed");
  MARBM_EXPECTS(header_text.size() == header_size, DataError,
                path + ": truncated: the header length is " + std::to_string(header_size) + " bytes but the file has " +
                    std::to_string(8 + header_text.size()) + " bytes");

  json header;
  try {
    header = json::parse(header_text);
  } catch (const json::parse_error& e) {
    throw DataError(path + ": the safetensors header is not valid JSON (at byte " + std::to_string(e.byte) + ")");
  } catch (const json::exception&) {
    // A number beyond double's range (1e999), say.
    throw DataError(path + ": the safetensors header holds a value out of range");
  }
  MARBM_EXPECTS(header.is_object(), DataError, path + ": the safetensors header is not a JSON object");

  if (metadata) metadata->clear();
  std::vector<TensorEntry> entries;
  for (const auto& [key, value] : header.items()) {
    if (key == "__metadata__") {
      MARBM_EXPECTS(value.is_object(), DataError, path + ": __metadata__ is not a JSON object");
      for (const auto& [meta_key, meta_value] : value.items()) {
        MARBM_EXPECTS(meta_value.is_string(), DataError,
                      path + ": metadata entry '" + detail::printable(meta_key) + "' is not a string");
        if (metadata) (*metadata)[meta_key] = meta_value.get<std::string>();
      }
      continue;
    }
    entries.push_back(parse_entry(path, key, value));
  }

  // The tensors must tile the data buffer exactly: no gaps, no overlaps, no
  // bytes beyond the last tensor and none missing (a truncated file).
  std::vector<const TensorEntry*> by_offset;
  for (const TensorEntry& e : entries) by_offset.push_back(&e);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const TensorEntry* x, const TensorEntry* y) { return x->begin < y->begin; });
  std::uint64_t expected_begin = 0;
  for (const TensorEntry* e : by_offset) {
    MARBM_EXPECTS(e->begin == expected_begin, DataError,
                  path + ": tensor '" + e->name + "' starts at byte " + std::to_string(e->begin) + ", expected " +
                      std::to_string(expected_begin) + " (tensors must be contiguous)");
    expected_begin = e->end;
  }
  MARBM_EXPECTS(expected_begin <= max_tensor_bytes, DataError,
                path + ": the tensors need " + std::to_string(expected_begin) + " bytes, more than the " +
                    std::to_string(max_tensor_bytes) + " a model file may hold");
  // Read only what the header promises, then look for one byte more.
  std::uint64_t buffer_size = 0;
  std::string data;
  if (regular) {
    buffer_size = file_size - 8 - header_size;
  } else {
    data = read_bytes(in, expected_begin);
    buffer_size = data.size();
    if (buffer_size == expected_begin && in.peek() != std::char_traits<char>::eof()) ++buffer_size;
  }
  MARBM_EXPECTS(expected_begin <= buffer_size, DataError,
                path + ": truncated: the tensors need " + std::to_string(expected_begin) +
                    " data bytes, the file has " + std::to_string(buffer_size));
  MARBM_EXPECTS(expected_begin == buffer_size, DataError,
                path + ": " + std::to_string(buffer_size - expected_begin) + " unexpected bytes after the tensors");

  auto find = [&](const char* name) -> const TensorEntry& {
    for (const TensorEntry& e : entries)
      if (e.name == name) return e;
    throw DataError(path + ": missing tensor '" + std::string(name) + "'");
  };
  const TensorEntry& weights = find("weights");
  const TensorEntry& visible_bias = find("visible_bias");
  const TensorEntry& hidden_bias = find("hidden_bias");
  for (const TensorEntry* e : {&weights, &visible_bias, &hidden_bias}) {
    MARBM_EXPECTS(e->dtype == "F32" || e->dtype == "F64", DataError,
                  path + ": tensor '" + e->name + "' has dtype " + e->dtype + " (expected F32 or F64)");
  }
  MARBM_EXPECTS(weights.shape.size() == 2 && weights.shape[0] >= 1 && weights.shape[1] >= 1 &&
                    weights.shape[0] <= (1u << 30) && weights.shape[1] <= (1u << 30),
                DataError,
                path + ": tensor 'weights' has shape " + shape_string(weights.shape) + " (expected [n_visible, n_hidden])");
  const std::uint64_t n = weights.shape[0], m = weights.shape[1];
  MARBM_EXPECTS(visible_bias.shape == std::vector<std::uint64_t>{n}, DataError,
                path + ": tensor 'visible_bias' has shape " + shape_string(visible_bias.shape) + ", weights need [" +
                    std::to_string(n) + "]");
  MARBM_EXPECTS(hidden_bias.shape == std::vector<std::uint64_t>{m}, DataError,
                path + ": tensor 'hidden_bias' has shape " + shape_string(hidden_bias.shape) + ", weights need [" +
                    std::to_string(m) + "]");
  MARBM_EXPECTS(n * m <= buffer_size, DataError,
                path + ": tensor 'weights' of shape " + shape_string(weights.shape) + " does not fit the file");

  if (regular) {
    data = read_bytes(in, expected_begin);
    MARBM_EXPECTS(!in.bad() && data.size() == expected_begin, DataError, path + ": read failed (file changed?)");
  }
  Rbm rbm(static_cast<int>(n), static_cast<int>(m));
  const auto* buffer = reinterpret_cast<const unsigned char*>(data.data());
  read_tensor(path, weights, buffer, rbm.weights());
  read_tensor(path, visible_bias, buffer, rbm.visible_bias());
  read_tensor(path, hidden_bias, buffer, rbm.hidden_bias());
  rbm.check_finite(path.c_str());
  if (wide) {
    wide->n_visible = static_cast<int>(n);
    wide->n_hidden = static_cast<int>(m);
    wide->weights.resize(n * m);
    wide->visible_bias.resize(n);
    wide->hidden_bias.resize(m);
    read_tensor_wide(weights, buffer, wide->weights);
    read_tensor_wide(visible_bias, buffer, wide->visible_bias);
    read_tensor_wide(hidden_bias, buffer, wide->hidden_bias);
  }
  if (any_float64)
    *any_float64 = weights.dtype == "F64" || visible_bias.dtype == "F64" || hidden_bias.dtype == "F64";
  if (extra) {
    extra->clear();
    for (const TensorEntry& e : entries) {
      if (is_model_tensor(e.name)) continue;
      const std::uint64_t size = dtype_bytes(e.dtype);
      MARBM_EXPECTS(size > 0, DataError,
                    path + ": tensor '" + e.name + "' has dtype " + e.dtype + " (expected F32, F64, U8 or I64)");
      MARBM_EXPECTS(element_count(e.shape) * size == e.end - e.begin, DataError,
                    path + ": tensor '" + e.name + "' spans " + std::to_string(e.end - e.begin) +
                        " bytes, its shape " + shape_string(e.shape) + " and dtype need " +
                        std::to_string(element_count(e.shape) * size));
      ExtraTensor tensor;
      tensor.dtype = e.dtype;
      tensor.shape = e.shape;
      tensor.bytes = data.substr(static_cast<std::size_t>(e.begin), static_cast<std::size_t>(e.end - e.begin));
      (*extra)[e.name] = std::move(tensor);
    }
  }
  return rbm;
}

}  // namespace

Rbm load_rbm(const std::string& path, Metadata* metadata) { return load_rbm(path, metadata, nullptr); }

namespace {

// Runs `load` so that every failure leaves as a marbm::Error, whatever the
// library below threw.
template <typename Load>
auto load_as_model(const std::string& path, const Load& load) {
  try {
    return load();
  } catch (const Error&) {
    throw;
  } catch (const std::bad_alloc&) {
    throw DataError(path + ": not enough memory to load the model");
  } catch (const std::exception& e) {
    throw DataError(path + ": cannot be read as a model (" + detail::printable(e.what()) + ")");
  }
}

}  // namespace

RbmFloat64 load_rbm_float64(const std::string& path, bool* any_float64) {
  return load_as_model(path, [&] {
    RbmFloat64 wide;
    load_rbm_unchecked(path, nullptr, nullptr, &wide, any_float64);
    return wide;
  });
}

Rbm load_rbm(const std::string& path, Metadata* metadata, ExtraTensors* extra) {
  return load_as_model(path, [&] { return load_rbm_unchecked(path, metadata, extra); });
}

}  // namespace marbm
