// Training checkpoints in model files: the model's tensors as in any model
// file, plus the state a run needs to continue (train.hpp, TrainCheckpoint)
// in extra tensors named `checkpoint.*` and metadata `checkpoint`. Readers
// that look only for the model (load_rbm, Python's safetensors) see an
// ordinary model with some more tensors.
#pragma once

#include <string>

#include "marbm/model_io.hpp"
#include "marbm/train.hpp"

namespace marbm {

/// The metadata value `checkpoint` holds in a checkpoint file.
inline constexpr const char* checkpoint_format = "marbm-train-checkpoint-1";

/// Writes `checkpoint` and `metadata` to `path` atomically (save_rbm).
void save_checkpoint(const std::string& path, const TrainCheckpoint& checkpoint, const Metadata& metadata = {});

/// Reads a checkpoint. Throws DataError naming the file when it is not a
/// checkpoint (a finished model, another program's file) or its state is
/// damaged or inconsistent. Fills `metadata` when given.
TrainCheckpoint load_checkpoint(const std::string& path, Metadata* metadata = nullptr);

/// Whether `metadata` (as load_rbm fills it) is a checkpoint's.
bool is_checkpoint(const Metadata& metadata);

}  // namespace marbm
