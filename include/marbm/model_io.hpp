// Model files: safetensors with tensors `weights` [n, m], `visible_bias` [n],
// `hidden_bias` [m] and string metadata.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "marbm/exact.hpp"
#include "marbm/rbm.hpp"

namespace marbm {

using Metadata = std::map<std::string, std::string>;

/// Writes float32 tensors and `metadata` (plus n_visible, n_hidden, format)
/// to `path` atomically: a temporary file in the same folder, then rename.
/// Throws DataError when the file cannot be written.
void save_rbm(const std::string& path, const Rbm& rbm, const Metadata& metadata = {});

/// A tensor stored beside the model's three, such as a checkpoint's state
/// (checkpoint.hpp): dtype "F32", "F64", "U8" or "I64", its shape and its
/// values as little-endian bytes. Other safetensors readers see an ordinary
/// tensor; a reader that looks only for the model's tensors ignores it.
struct ExtraTensor {
  std::string dtype;
  std::vector<std::uint64_t> shape;
  std::string bytes;
};
using ExtraTensors = std::map<std::string, ExtraTensor>;

/// save_rbm with extra tensors (names other than the model's three).
/// Throws UsageError when a name is taken or a tensor's bytes do not match
/// its dtype and shape.
void save_rbm(const std::string& path, const Rbm& rbm, const Metadata& metadata, const ExtraTensors& extra);

/// Reads a model (float32 or float64 tensors). Throws DataError naming the
/// file on a missing file, bad header, wrong shapes or dtypes, truncated data
/// or non-finite parameters. Fills `metadata` when given.
Rbm load_rbm(const std::string& path, Metadata* metadata = nullptr);

/// The model's parameters as the file holds them: F64 tensors without
/// rounding (F32 ones widened exactly), for exact evaluation in float64.
/// Checked and throwing as load_rbm. `any_float64`, when given, is set to
/// whether any of the three tensors is F64 (load_rbm rounds those to float32).
RbmFloat64 load_rbm_float64(const std::string& path, bool* any_float64 = nullptr);

/// load_rbm that also returns every other tensor of the file in `extra`
/// (checked like the model's: dtype one of ExtraTensor's, bytes matching the
/// shape).
Rbm load_rbm(const std::string& path, Metadata* metadata, ExtraTensors* extra);

}  // namespace marbm
