// Model files: safetensors with tensors `weights` [n, m], `visible_bias` [n],
// `hidden_bias` [m] and string metadata.
#pragma once

#include <map>
#include <string>

#include "marbm/rbm.hpp"

namespace marbm {

using Metadata = std::map<std::string, std::string>;

/// Writes float32 tensors and `metadata` (plus n_visible, n_hidden, format)
/// to `path` atomically: a temporary file in the same folder, then rename.
/// Throws DataError when the file cannot be written.
void save_rbm(const std::string& path, const Rbm& rbm, const Metadata& metadata = {});

/// Reads a model (float32 or float64 tensors). Throws DataError naming the
/// file on a missing file, bad header, wrong shapes or dtypes, truncated data
/// or non-finite parameters. Fills `metadata` when given.
Rbm load_rbm(const std::string& path, Metadata* metadata = nullptr);

}  // namespace marbm
