// Engine selection, build facts and the small parsers shared by every front end.
#include "marbm/engine.hpp"

#include <algorithm>
#include <iostream>
#include <string>

#include "detail/cpu_engine.hpp"
#include "detail/cuda_entry.hpp"
#include "marbm/error.hpp"

namespace marbm {

Backend parse_backend(std::string_view text) {
  if (text == "cpu") return Backend::cpu;
  if (text == "cuda") return Backend::cuda;
  if (text == "auto") return Backend::automatic;
  throw UsageError("unknown backend '" + std::string(text) + "' (expected cpu, cuda or auto)");
}

std::string_view to_string(Backend backend) {
  switch (backend) {
    case Backend::cpu: return "cpu";
    case Backend::cuda: return "cuda";
    case Backend::automatic: return "auto";
  }
  return "?";
}

double Engine::uniform_mean_energy() const { return model().uniform_mean_energy(); }

OptimizerState Engine::optimizer_state() const {
  throw UsageError("this engine (" + description() + ") cannot save its optimiser state for a checkpoint");
}

void Engine::set_optimizer_state(const OptimizerState&) {
  throw UsageError("this engine (" + description() + ") cannot restore an optimiser state from a checkpoint");
}

void Engine::set_persistent_chain_states(std::span<const std::uint8_t>, int) {
  throw UsageError("this engine (" + description() + ") cannot restore persistent chains from a checkpoint");
}

void Engine::set_resident_data(const ResidentRows& rows) {
  MARBM_EXPECTS(rows.backend == Backend::cpu, UsageError,
                "the training rows are in the memory of CUDA device " + std::to_string(rows.device) +
                    ", which this engine (" + description() + ") cannot read; use the cuda backend on that device");
  MARBM_EXPECTS(rows.rows >= 1 && rows.cols >= 1, UsageError, "resident data: no rows or no columns");
  MARBM_EXPECTS(rows.data != nullptr && rows.row_stride >= rows.cols, UsageError,
                "resident data: rows of " + std::to_string(rows.cols) + " bytes need a row stride of at least that, got " +
                    std::to_string(rows.row_stride));
  Dataset data;
  data.n_rows = rows.rows;
  data.n_cols = rows.cols;
  data.description = "resident rows " + std::to_string(rows.rows) + "x" + std::to_string(rows.cols);
  data.values.resize(static_cast<std::size_t>(rows.rows) * rows.cols);
  for (int r = 0; r < rows.rows; ++r) {
    const std::uint8_t* row = rows.data + static_cast<std::ptrdiff_t>(r) * rows.row_stride;
    for (int c = 0; c < rows.cols; ++c) {
      MARBM_EXPECTS(row[c] <= 1, DataError,
                    "resident data: row " + std::to_string(r) + ", column " + std::to_string(c) + " is " +
                        std::to_string(row[c]) + "; the values must be 0 or 1");
    }
    std::copy(row, row + rows.cols, data.values.begin() + static_cast<std::ptrdiff_t>(r) * rows.cols);
  }
  set_data(data);
}

void check_resident_parameters(const ResidentParameters& p, const std::string& what) {
  MARBM_EXPECTS(p.n_visible >= 1 && p.n_hidden >= 1, UsageError,
                what + ": the model has an empty layer (" + std::to_string(p.n_visible) + " x " +
                    std::to_string(p.n_hidden) + ")");
  MARBM_EXPECTS(p.weights != nullptr && p.visible_bias != nullptr && p.hidden_bias != nullptr, UsageError,
                what + ": a parameter has no memory (null pointer)");
  MARBM_EXPECTS(p.weights_row_stride >= p.n_hidden || (p.n_visible == 1 && p.weights_row_stride >= 0), UsageError,
                what + ": weights rows of " + std::to_string(p.n_hidden) + " floats need a row stride of at least that, got " +
                    std::to_string(p.weights_row_stride));
  MARBM_EXPECTS(p.visible_bias_stride >= 1 || (p.n_visible == 1 && p.visible_bias_stride >= 0), UsageError,
                what + ": visible_bias needs a stride of at least 1, got " + std::to_string(p.visible_bias_stride));
  MARBM_EXPECTS(p.hidden_bias_stride >= 1 || (p.n_hidden == 1 && p.hidden_bias_stride >= 0), UsageError,
                what + ": hidden_bias needs a stride of at least 1, got " + std::to_string(p.hidden_bias_stride));
}

void Engine::set_resident_model(const ResidentParameters& p) {
  MARBM_EXPECTS(p.backend == Backend::cpu, UsageError,
                "the initial parameters are in the memory of CUDA device " + std::to_string(p.device) +
                    ", which this engine (" + description() + ") cannot read; use the cuda backend on that device");
  check_resident_parameters(p, "resident parameters");
  Rbm rbm(p.n_visible, p.n_hidden);
  const std::size_t m = static_cast<std::size_t>(p.n_hidden);
  for (int i = 0; i < p.n_visible; ++i) {
    const float* row = p.weights + static_cast<std::ptrdiff_t>(i) * p.weights_row_stride;
    std::copy(row, row + m, rbm.weights().begin() + static_cast<std::ptrdiff_t>(i * m));
    rbm.visible_bias()[static_cast<std::size_t>(i)] = p.visible_bias[static_cast<std::ptrdiff_t>(i) * p.visible_bias_stride];
  }
  for (int j = 0; j < p.n_hidden; ++j) {
    rbm.hidden_bias()[static_cast<std::size_t>(j)] = p.hidden_bias[static_cast<std::ptrdiff_t>(j) * p.hidden_bias_stride];
  }
  set_model(rbm);
}

ResidentParameters Engine::resident_parameters() const {
  throw UsageError("this engine (" + description() + ") has no parameter memory of its own to show; read model()");
}

bool cuda_compiled() {
#ifdef MARBM_HAVE_CUDA
  return true;
#else
  return false;
#endif
}

std::vector<DeviceInfo> cuda_devices() { return detail::list_cuda_devices(); }

CudaVersions cuda_versions() { return detail::query_cuda_versions(); }

std::string version() { return MARBM_VERSION; }

std::unique_ptr<Engine> make_engine(Backend backend, const EngineOptions& options) {
  switch (backend) {
    case Backend::cpu:
      return detail::make_cpu_engine(options);
    case Backend::cuda:
      return detail::make_cuda_engine(options);
    case Backend::automatic:
      if (!cuda_devices().empty()) return detail::make_cuda_engine(options);
      if (!options.quiet) {
        std::cerr << "marbm: note: no usable CUDA device" << (cuda_compiled() ? "" : " (built without CUDA)")
                  << "; using the cpu engine\n";
      }
      return detail::make_cpu_engine(options);
  }
  throw UsageError("unknown backend");
}

}  // namespace marbm
