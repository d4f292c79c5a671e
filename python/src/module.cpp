// marbm._marbm: the Python module over the C++ library (nanobind). Every
// computation is the library's; this file only converts arguments and
// results and maps the library's exceptions onto Python ones.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/function.h>
#include <nanobind/stl/map.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "marbm/ais.hpp"
#include "marbm/checkpoint.hpp"
#include "marbm/communicator.hpp"
#include "marbm/data.hpp"
#include "marbm/engine.hpp"
#include "marbm/error.hpp"
#include "marbm/exact.hpp"
#include "marbm/held_out.hpp"
#include "marbm/image.hpp"
#include "marbm/mode.hpp"
#include "marbm/model_io.hpp"
#include "marbm/random.hpp"
#include "marbm/rbm.hpp"
#include "marbm/study.hpp"
#include "marbm/train.hpp"
#include "marbm/train_record.hpp"

namespace nb = nanobind;
using namespace nb::literals;

namespace marbm::python {
namespace {

// Any array-like that speaks the buffer protocol or DLPack, read-only allowed.
using AnyArray = nb::ndarray<nb::ro>;

template <typename T>
using NumpyArray = nb::ndarray<nb::numpy, T>;

// A numpy array that owns `values` (moved, not copied).
template <typename T>
NumpyArray<T> to_numpy(std::vector<T>&& values, std::initializer_list<std::size_t> shape) {
  auto* owned = new std::vector<T>(std::move(values));
  nb::capsule owner(owned, [](void* p) noexcept { delete static_cast<std::vector<T>*>(p); });
  return NumpyArray<T>(owned->data(), shape, owner);
}

template <typename T>
nb::object to_numpy_object(std::vector<T>&& values, std::initializer_list<std::size_t> shape) {
  return nb::cast(to_numpy(std::move(values), shape));
}

std::string number_text(double value) {
  std::ostringstream out;
  out.precision(6);
  out << value;
  return out.str();
}

// Calls f(element_pointer_as_double) for element (r, c) of a 1- or 2-D array
// of any real or boolean dtype.
class ArrayReader {
 public:
  ArrayReader(const AnyArray& array, const std::string& what) : array_(array) {
    if (array.device_type() != nb::device::cpu::value) {
      throw UsageError(what + ": the array is on a " +
                       std::string(array.device_type() == nb::device::cuda::value ? "CUDA" : "non-CPU") +
                       " device; pass a CPU array (marbm copies data to its engine itself)");
    }
    if (array.ndim() != 1 && array.ndim() != 2) {
      throw UsageError(what + ": expected a 1- or 2-dimensional array, got " + std::to_string(array.ndim()) +
                       " dimensions");
    }
    const auto dtype = array.dtype();
    if (dtype.lanes != 1 || (dtype.code != static_cast<std::uint8_t>(nb::dlpack::dtype_code::Int) &&
                             dtype.code != static_cast<std::uint8_t>(nb::dlpack::dtype_code::UInt) &&
                             dtype.code != static_cast<std::uint8_t>(nb::dlpack::dtype_code::Float) &&
                             dtype.code != static_cast<std::uint8_t>(nb::dlpack::dtype_code::Bool))) {
      throw UsageError(what + ": the array's dtype is not a real number or boolean type");
    }
    rows_ = array.ndim() == 2 ? array.shape(0) : 1;
    cols_ = array.ndim() == 2 ? array.shape(1) : array.shape(0);
    row_stride_ = array.ndim() == 2 ? array.stride(0) : 0;
    col_stride_ = array.ndim() == 2 ? array.stride(1) : array.stride(0);
  }

  std::size_t rows() const { return rows_; }
  std::size_t cols() const { return cols_; }
  bool one_dimensional() const { return array_.ndim() == 1; }

  // Contiguous rows of uint8/bool (the layout the library reads directly).
  const std::uint8_t* contiguous_bytes() const {
    const auto dtype = array_.dtype();
    const bool bytes = dtype.bits == 8 && (dtype.code == static_cast<std::uint8_t>(nb::dlpack::dtype_code::UInt) ||
                                           dtype.code == static_cast<std::uint8_t>(nb::dlpack::dtype_code::Bool));
    const bool contiguous = col_stride_ == 1 && (rows_ <= 1 || row_stride_ == static_cast<std::int64_t>(cols_));
    return bytes && contiguous ? static_cast<const std::uint8_t*>(array_.data()) : nullptr;
  }

  double at(std::size_t r, std::size_t c) const {
    const std::int64_t offset = static_cast<std::int64_t>(r) * row_stride_ + static_cast<std::int64_t>(c) * col_stride_;
    const auto dtype = array_.dtype();
    const void* base = array_.data();
    switch (static_cast<nb::dlpack::dtype_code>(dtype.code)) {
      case nb::dlpack::dtype_code::Bool:
        return static_cast<const bool*>(base)[offset] ? 1.0 : 0.0;
      case nb::dlpack::dtype_code::UInt:
        switch (dtype.bits) {
          case 8: return static_cast<const std::uint8_t*>(base)[offset];
          case 16: return static_cast<const std::uint16_t*>(base)[offset];
          case 32: return static_cast<const std::uint32_t*>(base)[offset];
          case 64: return static_cast<double>(static_cast<const std::uint64_t*>(base)[offset]);
        }
        break;
      case nb::dlpack::dtype_code::Int:
        switch (dtype.bits) {
          case 8: return static_cast<const std::int8_t*>(base)[offset];
          case 16: return static_cast<const std::int16_t*>(base)[offset];
          case 32: return static_cast<const std::int32_t*>(base)[offset];
          case 64: return static_cast<double>(static_cast<const std::int64_t*>(base)[offset]);
        }
        break;
      case nb::dlpack::dtype_code::Float:
        switch (dtype.bits) {
          case 32: return static_cast<const float*>(base)[offset];
          case 64: return static_cast<const double*>(base)[offset];
        }
        break;
      default:
        break;
    }
    throw UsageError("unsupported array dtype (" + std::to_string(dtype.bits) + " bits)");
  }

 private:
  const AnyArray& array_;
  std::size_t rows_ = 0, cols_ = 0;
  std::int64_t row_stride_ = 0, col_stride_ = 0;
};

// Rows of 0/1 states: the array's own memory when it is contiguous uint8 or
// bool, else a checked copy. Every value must be 0 or 1.
struct States {
  std::vector<std::uint8_t> owned;
  const std::uint8_t* data = nullptr;
  std::size_t rows = 0, cols = 0;
  bool one_dimensional = false;

  std::span<const std::uint8_t> row(std::size_t r) const { return {data + r * cols, cols}; }
  std::span<const std::uint8_t> all() const { return {data, rows * cols}; }
};

States read_states(const AnyArray& array, const std::string& what) {
  const ArrayReader reader(array, what);
  States states;
  states.rows = reader.rows();
  states.cols = reader.cols();
  states.one_dimensional = reader.one_dimensional();
  if (const std::uint8_t* bytes = reader.contiguous_bytes()) {
    for (std::size_t k = 0; k < states.rows * states.cols; ++k) {
      if (bytes[k] > 1) {
        throw DataError(what + ": row " + std::to_string(k / states.cols) + ", column " +
                        std::to_string(k % states.cols) + " is " + std::to_string(bytes[k]) +
                        "; the values must be 0 or 1");
      }
    }
    states.data = bytes;
    return states;
  }
  states.owned.resize(states.rows * states.cols);
  for (std::size_t r = 0; r < states.rows; ++r) {
    for (std::size_t c = 0; c < states.cols; ++c) {
      const double value = reader.at(r, c);
      if (value != 0.0 && value != 1.0) {
        throw DataError(what + ": row " + std::to_string(r) + ", column " + std::to_string(c) + " is " +
                        number_text(value) + "; the values must be 0 or 1");
      }
      states.owned[r * states.cols + c] = static_cast<std::uint8_t>(value);
    }
  }
  states.data = states.owned.data();
  return states;
}

// value(r) for each row r: a float for one state (1-D input), a float64
// array of `rows` values otherwise.
template <typename Value>
nb::object float_per_row(std::size_t rows, bool one_dimensional, const Value& value) {
  if (one_dimensional) return nb::float_(value(std::size_t{0}));
  std::vector<double> out(rows);
  for (std::size_t r = 0; r < rows; ++r) out[r] = value(r);
  return to_numpy_object(std::move(out), {rows});
}

// values(row) (`width` numbers) for each row of `states`: a float64 array of
// shape (width,) for 1-D input, else (rows, width).
template <typename Values>
nb::object floats_per_row(const States& states, std::size_t width, const Values& values) {
  std::vector<double> out(states.rows * width);
  for (std::size_t r = 0; r < states.rows; ++r) {
    const auto row = values(states.row(r));
    std::copy(row.begin(), row.end(), out.begin() + static_cast<std::ptrdiff_t>(r * width));
  }
  if (states.one_dimensional) return to_numpy_object(std::move(out), {width});
  return to_numpy_object(std::move(out), {states.rows, width});
}

// A data set from a data spec (str) or an array of rows.
Dataset read_dataset(nb::handle source, const std::string& what) {
  if (nb::isinstance<nb::str>(source)) return load_dataset(nb::cast<std::string>(source));
  AnyArray array;
  if (!nb::try_cast(source, array)) {
    // Lists and other sequences: through numpy, once.
    nb::object numpy = nb::module_::import_("numpy");
    if (!nb::try_cast(numpy.attr("asarray")(source), array)) {
      throw UsageError(what + ": expected a data spec (str) or an array of 0/1 rows");
    }
    if (array.ndim() != 2) {
      throw UsageError(what + ": expected a 2-dimensional array of rows, got " + std::to_string(array.ndim()) +
                       " dimensions");
    }
    States states = read_states(array, what);
    if (states.rows == 0 || states.cols == 0) throw UsageError(what + ": the array has no rows or no columns");
    Dataset data;
    data.n_rows = static_cast<int>(states.rows);
    data.n_cols = static_cast<int>(states.cols);
    data.values.assign(states.data, states.data + states.rows * states.cols);
    data.description = "array";
    return data;
  }
  if (array.ndim() != 2) {
    throw UsageError(what + ": expected a 2-dimensional array of rows, got " + std::to_string(array.ndim()) +
                     " dimensions");
  }
  const States states = read_states(array, what);
  if (states.rows == 0 || states.cols == 0) throw UsageError(what + ": the array has no rows or no columns");
  Dataset data;
  data.n_rows = static_cast<int>(states.rows);
  data.n_cols = static_cast<int>(states.cols);
  data.values.assign(states.data, states.data + states.rows * states.cols);
  data.description = "array " + std::to_string(data.n_rows) + "x" + std::to_string(data.n_cols);
  return data;
}

// A 2-D array in CUDA device memory as rows the CUDA engine reads where they
// are (ResidentRows); nullopt for anything else. `keep` holds the array (and
// with it the producer's memory) for as long as the rows are used.
std::optional<ResidentRows> cuda_rows(nb::handle source, const std::string& what, AnyArray& keep) {
  if (nb::isinstance<nb::str>(source) || !nb::try_cast(source, keep)) return std::nullopt;
  if (keep.device_type() != nb::device::cuda::value) return std::nullopt;
  if (!cuda_compiled()) {
    throw UsageError(what + ": the array is on a CUDA device, but this marbm has no CUDA engine (built without "
                            "nvcc); pass a CPU array");
  }
  if (keep.ndim() != 2) {
    throw UsageError(what + ": expected a 2-dimensional array of rows, got " + std::to_string(keep.ndim()) +
                     " dimensions");
  }
  const auto dtype = keep.dtype();
  const bool bytes = dtype.lanes == 1 && dtype.bits == 8 &&
                     (dtype.code == static_cast<std::uint8_t>(nb::dlpack::dtype_code::UInt) ||
                      dtype.code == static_cast<std::uint8_t>(nb::dlpack::dtype_code::Bool));
  const std::size_t rows = keep.shape(0), cols = keep.shape(1);
  if (!bytes || (cols > 1 && keep.stride(1) != 1) || keep.stride(0) < static_cast<std::int64_t>(cols)) {
    throw UsageError(what + ": rows on a CUDA device must be uint8 or bool with contiguous columns "
                            "(tensor.to(torch.uint8).contiguous())");
  }
  if (rows == 0 || cols == 0) throw UsageError(what + ": the array has no rows or no columns");
  if (rows > static_cast<std::size_t>(std::numeric_limits<int>::max()) ||
      cols > static_cast<std::size_t>(std::numeric_limits<int>::max())) {
    throw UsageError(what + ": too many rows or columns");
  }
  ResidentRows resident;
  resident.data = static_cast<const std::uint8_t*>(keep.data());
  resident.rows = static_cast<int>(rows);
  resident.cols = static_cast<int>(cols);
  resident.row_stride = rows > 1 ? keep.stride(0) : static_cast<std::int64_t>(cols);
  resident.backend = Backend::cuda;
  resident.device = keep.device_id();
  return resident;
}

std::vector<float> read_floats(const AnyArray& array, std::size_t rows, std::size_t cols, bool two_dimensional,
                               const std::string& what) {
  const ArrayReader reader(array, what);
  const bool shape_ok = two_dimensional ? (!reader.one_dimensional() && reader.rows() == rows && reader.cols() == cols)
                                        : (reader.one_dimensional() && reader.cols() == cols);
  if (!shape_ok) {
    throw UsageError(what + ": expected shape (" + (two_dimensional ? std::to_string(rows) + ", " : "") +
                     std::to_string(cols) + (two_dimensional ? ")" : ",)") + ", got " +
                     (reader.one_dimensional() ? "(" + std::to_string(reader.cols()) + ",)"
                                               : "(" + std::to_string(reader.rows()) + ", " +
                                                     std::to_string(reader.cols()) + ")"));
  }
  std::vector<float> values(reader.rows() * reader.cols());
  for (std::size_t r = 0; r < reader.rows(); ++r) {
    for (std::size_t c = 0; c < reader.cols(); ++c) values[r * reader.cols() + c] = static_cast<float>(reader.at(r, c));
  }
  return values;
}

// The model train() starts from (init=): none, a host Rbm, or parameters in
// CUDA device memory that the CUDA engine copies device to device. `keep`
// holds the arrays (and with them the producer's memory) for the run.
struct InitialModel {
  std::optional<Rbm> host;
  std::optional<ResidentParameters> device;
  std::vector<AnyArray> keep;
  bool given() const { return host || device; }
  int n_visible() const { return host ? host->n_visible() : device->n_visible; }
  int n_hidden() const { return host ? host->n_hidden() : device->n_hidden; }
};

std::string where(const AnyArray& array) {
  if (array.device_type() == nb::device::cpu::value) return "the CPU";
  if (array.device_type() == nb::device::cuda::value) return "CUDA device " + std::to_string(array.device_id());
  return "a non-CPU device";
}

// init=: an Rbm, or a dict of the arrays weights (n, m), visible_bias (n,) and
// hidden_bias (m,): on the CPU any real dtype (copied to float32, as
// Rbm.from_arrays), on a CUDA device float32 with the columns of W contiguous.
InitialModel read_initial(nb::handle source) {
  InitialModel initial;
  if (source.is_none()) return initial;
  if (nb::isinstance<Rbm>(source)) {
    initial.host = nb::cast<Rbm>(source);
    return initial;
  }
  if (!nb::isinstance<nb::dict>(source)) {
    throw UsageError("init: expected an Rbm or a dict of the arrays weights, visible_bias and hidden_bias");
  }
  nb::dict arrays = nb::borrow<nb::dict>(source);
  const char* names[3] = {"weights", "visible_bias", "hidden_bias"};
  for (auto [key, value] : arrays) {
    const std::string name = nb::isinstance<nb::str>(key) ? nb::cast<std::string>(key) : std::string("?");
    if (name != names[0] && name != names[1] && name != names[2]) {
      throw UsageError("init: unknown key '" + name + "' (expected weights, visible_bias and hidden_bias)");
    }
  }
  initial.keep.resize(3);
  for (int k = 0; k < 3; ++k) {
    if (!arrays.contains(names[k])) throw UsageError(std::string("init: the dict has no ") + names[k]);
    if (!nb::try_cast(arrays[names[k]], initial.keep[static_cast<std::size_t>(k)])) {
      throw UsageError(std::string("init: ") + names[k] + " is not an array (numpy, DLPack)");
    }
  }
  const AnyArray& w = initial.keep[0];
  const AnyArray& a = initial.keep[1];
  const AnyArray& b = initial.keep[2];
  if (w.ndim() != 2 || a.ndim() != 1 || b.ndim() != 1) {
    throw UsageError("init: expected weights of 2 dimensions and biases of 1, got " + std::to_string(w.ndim()) + ", " +
                     std::to_string(a.ndim()) + " and " + std::to_string(b.ndim()));
  }
  const std::size_t n = w.shape(0), m = w.shape(1);
  if (n == 0 || m == 0) throw UsageError("init: the model needs n_visible, n_hidden >= 1");
  if (a.shape(0) != n || b.shape(0) != m) {
    throw UsageError("init: weights (" + std::to_string(n) + ", " + std::to_string(m) + ") need visible_bias (" +
                     std::to_string(n) + ",) and hidden_bias (" + std::to_string(m) + ",), got (" +
                     std::to_string(a.shape(0)) + ",) and (" + std::to_string(b.shape(0)) + ",)");
  }
  if (n > static_cast<std::size_t>(std::numeric_limits<int>::max()) ||
      m > static_cast<std::size_t>(std::numeric_limits<int>::max())) {
    throw UsageError("init: too many units");
  }
  const bool on_cuda = w.device_type() == nb::device::cuda::value;
  for (int k = 1; k < 3; ++k) {
    const AnyArray& other = initial.keep[static_cast<std::size_t>(k)];
    if (other.device_type() != w.device_type() || (on_cuda && other.device_id() != w.device_id())) {
      throw UsageError("init: weights are on " + where(w) + " but " + names[k] + " is on " + where(other) +
                       "; give all three on one device");
    }
  }
  if (!on_cuda) {
    // Host arrays (or a non-CPU device, which ArrayReader refuses by name).
    Rbm rbm(static_cast<int>(n), static_cast<int>(m));
    const auto wv = read_floats(w, n, m, true, "init: weights");
    const auto av = read_floats(a, 1, n, false, "init: visible_bias");
    const auto bv = read_floats(b, 1, m, false, "init: hidden_bias");
    std::copy(wv.begin(), wv.end(), rbm.weights().begin());
    std::copy(av.begin(), av.end(), rbm.visible_bias().begin());
    std::copy(bv.begin(), bv.end(), rbm.hidden_bias().begin());
    initial.host = std::move(rbm);
    initial.keep.clear();
    return initial;
  }
  for (int k = 0; k < 3; ++k) {
    const auto dtype = initial.keep[static_cast<std::size_t>(k)].dtype();
    if (dtype.lanes != 1 || dtype.bits != 32 || dtype.code != static_cast<std::uint8_t>(nb::dlpack::dtype_code::Float)) {
      throw UsageError(std::string("init: ") + names[k] + " on a CUDA device must be float32 (tensor.float())");
    }
  }
  if (m > 1 && w.stride(1) != 1) {
    throw UsageError("init: weights on a CUDA device need contiguous columns (row-major; tensor.contiguous())");
  }
  ResidentParameters p;
  p.weights = static_cast<const float*>(w.data());
  p.visible_bias = static_cast<const float*>(a.data());
  p.hidden_bias = static_cast<const float*>(b.data());
  p.n_visible = static_cast<int>(n);
  p.n_hidden = static_cast<int>(m);
  p.weights_row_stride = n > 1 ? w.stride(0) : static_cast<std::int64_t>(m);
  p.visible_bias_stride = n > 1 ? a.stride(0) : 1;
  p.hidden_bias_stride = m > 1 ? b.stride(0) : 1;
  p.backend = Backend::cuda;
  p.device = w.device_id();
  check_resident_parameters(p, "init");
  if (!cuda_compiled()) {
    throw UsageError("init: the arrays are on a CUDA device, but this marbm has no CUDA engine (built without nvcc); "
                     "pass CPU arrays");
  }
  initial.device = p;
  return initial;
}

void check_width(const States& states, int n, const std::string& what, const char* layer) {
  if (states.cols != static_cast<std::size_t>(n)) {
    throw UsageError(what + ": rows have " + std::to_string(states.cols) + " values but the model has " +
                     std::to_string(n) + " " + layer + " units");
  }
}

// ---------------------------------------------------------------- engines

std::unique_ptr<Engine> engine_for(const std::string& backend_text, int threads, int device = 0) {
  const Backend backend = parse_backend(backend_text);
  if (backend == Backend::cuda) {
    if (!cuda_compiled()) {
      throw CudaError("backend='cuda': this build of marbm has no CUDA engine (build with nvcc present)");
    }
    if (cuda_devices().empty()) {
      throw CudaError("backend='cuda': no usable CUDA device (no device, or the driver is missing)");
    }
  }
  MARBM_EXPECTS(threads >= 0 && threads <= 4096, UsageError,
                "threads must be in [0, 4096], got " + std::to_string(threads));
  const int processors = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  EngineOptions options;
  options.threads = std::min(threads, processors);
  options.device = device;
  options.quiet = true;
  return make_engine(backend, options);
}

// ---------------------------------------------------------------- options

// Mode-assisted options, named as `marbm train`'s flags (with _ for -).
struct ModeOptions {
  std::string base = "cd";
  double p_max = 0.1;
  double alpha = 20.0;
  double beta = -6.0;
  std::string mode_solver = "auto";
  std::string mode_lr_scale = "push";
  std::string mode_target = "joint";
  std::string mode_step = "replace";
  double mode_lr_factor = 1.0;
  int mode_states = 1;
  int mode_replicas = 0;
  int mode_steps = 0;

  ModeAssistConfig config() const {
    auto one_of = [](const std::string& name, const std::string& value, std::initializer_list<const char*> words) {
      std::string joined;
      for (const char* word : words) {
        if (value == word) return;
        joined += (joined.empty() ? "" : "|") + std::string(word);
      }
      throw UsageError(name + ": '" + value + "' is not one of " + joined);
    };
    one_of("base", base, {"cd", "pcd"});
    one_of("mode_solver", mode_solver, {"exhaustive", "sb", "sa", "local", "auto"});
    one_of("mode_lr_scale", mode_lr_scale, {"push", "constant"});
    one_of("mode_target", mode_target, {"joint", "marginal"});
    one_of("mode_step", mode_step, {"replace", "add"});
    MARBM_EXPECTS(p_max >= 0.0 && p_max <= 1.0, UsageError, "p_max must be in [0, 1], got " + number_text(p_max));
    MARBM_EXPECTS(std::isfinite(alpha), UsageError, "alpha must be finite");
    MARBM_EXPECTS(std::isfinite(beta), UsageError, "beta must be finite");
    MARBM_EXPECTS(std::isfinite(mode_lr_factor) && mode_lr_factor > 0.0, UsageError,
                  "mode_lr_factor must be > 0, got " + number_text(mode_lr_factor));
    MARBM_EXPECTS(mode_states >= 1 && mode_states <= 64, UsageError,
                  "mode_states must be in [1, 64], got " + std::to_string(mode_states));
    MARBM_EXPECTS(mode_replicas >= 0, UsageError, "mode_replicas must be >= 0, got " + std::to_string(mode_replicas));
    MARBM_EXPECTS(mode_steps >= 0, UsageError, "mode_steps must be >= 0, got " + std::to_string(mode_steps));
    ModeAssistConfig mode;
    mode.p_max = p_max;
    mode.alpha = alpha;
    mode.beta = beta;
    mode.base = base == "pcd" ? NegativePhase::pcd : NegativePhase::cd;
    if (mode_solver != "auto") mode.solver = parse_mode_solver(mode_solver);
    mode.push_scaled = mode_lr_scale == "push";
    mode.target = mode_target == "marginal" ? ModeTarget::marginal : ModeTarget::joint;
    mode.additive = mode_step == "add";
    mode.lr_factor = mode_lr_factor;
    mode.mode_states = mode_states;
    mode.search.replicas = mode_replicas;
    mode.search.steps = mode_steps;
    return mode;
  }

  bool is_default() const {
    const ModeOptions d;
    return base == d.base && p_max == d.p_max && alpha == d.alpha && beta == d.beta && mode_solver == d.mode_solver &&
           mode_lr_scale == d.mode_lr_scale && mode_target == d.mode_target && mode_step == d.mode_step &&
           mode_lr_factor == d.mode_lr_factor && mode_states == d.mode_states && mode_replicas == d.mode_replicas &&
           mode_steps == d.mode_steps;
  }
};

ModeOptions mode_options(const nb::kwargs& kwargs, const char* function) {
  ModeOptions o;
  for (auto [key, value] : kwargs) {
    const std::string name = nb::cast<std::string>(key);
    if (name == "base") o.base = nb::cast<std::string>(value);
    else if (name == "p_max") o.p_max = nb::cast<double>(value);
    else if (name == "alpha") o.alpha = nb::cast<double>(value);
    else if (name == "beta") o.beta = nb::cast<double>(value);
    else if (name == "mode_solver") o.mode_solver = nb::cast<std::string>(value);
    else if (name == "mode_lr_scale") o.mode_lr_scale = nb::cast<std::string>(value);
    else if (name == "mode_target") o.mode_target = nb::cast<std::string>(value);
    else if (name == "mode_step") o.mode_step = nb::cast<std::string>(value);
    else if (name == "mode_lr_factor") o.mode_lr_factor = nb::cast<double>(value);
    else if (name == "mode_states") o.mode_states = nb::cast<int>(value);
    else if (name == "mode_replicas") o.mode_replicas = nb::cast<int>(value);
    else if (name == "mode_steps") o.mode_steps = nb::cast<int>(value);
    else throw UsageError(std::string(function) + ": unknown option '" + name + "'");
  }
  return o;
}

// ---------------------------------------------------------------- results

nb::dict metrics_dict(const TrainMetrics& m) {
  nb::dict d;
  d["iteration"] = m.iteration;
  d["kl"] = m.kl;
  d["mean_log_likelihood"] = m.mean_log_likelihood;
  d["log_z"] = m.log_z;
  d["p_mode"] = m.p_mode;
  d["mode_push"] = m.mode_push;
  d["mode_energy"] = m.mode_energy;
  d["mode_steps"] = m.mode_steps;
  d["seconds"] = m.seconds;
  d["hidden_similarity"] = m.hidden_similarity;
  d["saturated_hidden"] = m.saturated_hidden;
  return d;
}

void add_held_out(nb::dict& d, const HeldOutMetrics& h) {
  d["test_mean_log_likelihood"] = h.mean_log_likelihood;
  d["test_mean_log_likelihood_low"] = h.mean_log_likelihood_low;
  d["test_mean_log_likelihood_high"] = h.mean_log_likelihood_high;
  d["test_log_z_exact"] = h.exact;
  d["test_reconstruction_error"] = h.reconstruction_error;
  d["free_energy_gap"] = h.free_energy_gap;
}

// Columns of a list of evaluation dicts: one numpy array per key.
nb::dict columns(const std::vector<nb::dict>& points) {
  nb::dict out;
  if (points.empty()) return out;
  nb::object numpy = nb::module_::import_("numpy");
  for (auto [key, first] : points.front()) {
    nb::list values;
    for (const nb::dict& point : points) values.append(point[key]);
    const bool integer = nb::isinstance<nb::int_>(first) && !nb::isinstance<nb::bool_>(first);
    const bool boolean = nb::isinstance<nb::bool_>(first);
    out[key] = numpy.attr("asarray")(values, "dtype"_a = boolean ? "bool" : integer ? "int64" : "float64");
  }
  return out;
}

struct PyTrainResult {
  Rbm model;
  std::shared_ptr<Engine> engine;  // the CUDA engine that trained (null on the cpu backend)
  nb::dict history;
  long iterations = 0;
  long mode_steps = 0;
  double seconds = 0.0;
  std::string backend;
  nb::dict summary;
};

// Python exception types, made at import.
PyObject* error_type = nullptr;
PyObject* usage_error_type = nullptr;
PyObject* data_error_type = nullptr;
PyObject* cuda_error_type = nullptr;
PyObject* runtime_failure_type = nullptr;
PyObject* training_diverged_type = nullptr;

// ---------------------------------------------------------------- train

PyTrainResult train_py(nb::handle data_source, std::optional<int> hidden, nb::handle init_source,
                       const std::string& method, int k, double lr, int batch, std::optional<long> iters,
                       std::optional<int> epochs, std::uint64_t seed, const std::string& backend, long eval_every,
                       double momentum, double weight_decay, double init_sigma, const std::string& init_visible_bias,
                       int chains, int threads, int exact_max_units, nb::handle test_data_source,
                       std::optional<std::function<void(nb::dict)>> callback, bool sample_positive_hidden, bool exact_metrics,
                       const std::string& lr_schedule, double lr_final, long checkpoint_every,
                       std::optional<std::string> checkpoint, std::optional<std::string> resume,
                       std::optional<std::string> out_path, const nb::kwargs& kwargs) {
  const ModeOptions mode_words = mode_options(kwargs, "train");
  TrainConfig config;
  config.method = parse_train_method(method);
  const bool mode = config.method == TrainMethod::mode;
  if (!mode && !mode_words.is_default()) {
    throw UsageError("mode options (base, p_max, alpha, ...) apply only to method='mode' (got method='" + method + "')");
  }
  MARBM_EXPECTS(k >= 1, UsageError, "k must be >= 1, got " + std::to_string(k));
  MARBM_EXPECTS(batch >= 1, UsageError, "batch must be >= 1, got " + std::to_string(batch));
  MARBM_EXPECTS(init_visible_bias == "data" || init_visible_bias == "random", UsageError,
                "init_visible_bias: '" + init_visible_bias + "' is not one of data|random");
  MARBM_EXPECTS(exact_max_units >= 0 && exact_max_units <= 62, UsageError,
                "exact_max_units must be in [0, 62], got " + std::to_string(exact_max_units));
  config.mode = mode_words.config();
  config.gibbs_steps = k;
  config.learning_rate = lr;
  config.momentum = momentum;
  config.weight_decay = weight_decay;
  config.batch_size = batch;
  if (!iters && !epochs) throw UsageError("give the training length with iters=N or epochs=E");
  MARBM_EXPECTS(!iters || *iters >= 1, UsageError, "iters must be >= 1, got " + std::to_string(iters.value_or(0)));
  MARBM_EXPECTS(!epochs || *epochs >= 1, UsageError, "epochs must be >= 1, got " + std::to_string(epochs.value_or(0)));
  config.iterations = iters.value_or(0);
  config.epochs = epochs.value_or(0);
  const bool uses_chains = config.method == TrainMethod::pcd || (mode && config.mode.base == NegativePhase::pcd);
  if (chains != 0 && !uses_chains) throw UsageError("chains applies only to method='pcd' or method='mode' with base='pcd'");
  MARBM_EXPECTS(chains >= 0, UsageError, "chains must be >= 0, got " + std::to_string(chains));
  config.persistent_chains = chains;
  config.seed = seed;
  config.eval_every = eval_every;
  config.exact.max_enumerated_units = exact_max_units;
  config.sample_positive_hidden = sample_positive_hidden;
  config.exact_metrics = exact_metrics;
  config.learning_rate_schedule = parse_learning_rate_schedule(lr_schedule);
  config.final_learning_rate = lr_final;
  MARBM_EXPECTS(checkpoint_every >= 0, UsageError, "checkpoint_every must be >= 0, got " + std::to_string(checkpoint_every));
  // As `marbm train --checkpoint-every`: without a file of their own the checkpoints replace `out`.
  if (checkpoint_every > 0 && !checkpoint) checkpoint = out_path;
  MARBM_EXPECTS(checkpoint_every == 0 || checkpoint, UsageError,
                "checkpoint_every needs checkpoint=PATH (or out=PATH) to write to");
  // Refused before training, so that a run's result is not lost at the end.
  for (const auto& [name, path] : {std::pair<const char*, const std::optional<std::string>&>{"out", out_path},
                                   std::pair<const char*, const std::optional<std::string>&>{"checkpoint", checkpoint}}) {
    if (!path) continue;
    const std::string problem = output_file_problem(*path);
    if (!problem.empty()) throw UsageError(std::string(name) + ": " + problem);
  }
  std::optional<TrainCheckpoint> resumed;
  if (resume) resumed = load_checkpoint(*resume);
  // The initial model: a host Rbm, or parameters on a CUDA device that go to
  // the CUDA engine where they are.
  const InitialModel init = read_initial(init_source);

  // Rows on a CUDA device go to the CUDA engine where they are (no host
  // copy); `data` then has their shape only.
  AnyArray device_array;
  const std::optional<ResidentRows> resident = cuda_rows(data_source, "data", device_array);
  Dataset data;
  if (resident) {
    const Backend wanted = parse_backend(backend);
    if (wanted == Backend::cpu || (wanted == Backend::automatic && cuda_devices().empty())) {
      throw UsageError("data: the array is on CUDA device " + std::to_string(resident->device) +
                       "; train with backend='cuda', which takes it without a host copy, or pass a CPU array");
    }
    if (!init.given() && init_visible_bias == "data") {
      throw UsageError("data: init_visible_bias='data' reads the rows on the host, and these are on a CUDA device; "
                       "give init_visible_bias='random' or init=RBM");
    }
    if (!test_data_source.is_none()) {
      throw UsageError("test_data: the held-out metrics compare with the training rows on the host, and these are on "
                       "a CUDA device");
    }
    data.n_rows = resident->rows;
    data.n_cols = resident->cols;
    data.description = "cuda array " + std::to_string(resident->rows) + "x" + std::to_string(resident->cols);
  } else {
    data = read_dataset(data_source, "data");
  }
  if (init.device) {
    const Backend wanted = parse_backend(backend);
    if (wanted == Backend::cpu || (wanted == Backend::automatic && cuda_devices().empty())) {
      throw UsageError("init: the arrays are on CUDA device " + std::to_string(init.device->device) +
                       "; train with backend='cuda', which takes them without a host copy, or pass CPU arrays");
    }
    if (resident && resident->device != init.device->device) {
      throw UsageError("init: the arrays are on CUDA device " + std::to_string(init.device->device) +
                       " but the data on CUDA device " + std::to_string(resident->device) +
                       "; give both on the device to train on");
    }
  }
  const int n = data.n_cols;
  if (init.given()) {
    if (init.n_visible() != n) {
      throw DataError("init: the model has " + std::to_string(init.n_visible()) + " visible units but the data has " +
                      std::to_string(n) + " columns");
    }
    if (hidden && *hidden != init.n_hidden()) {
      throw UsageError("hidden=" + std::to_string(*hidden) + " differs from the " + std::to_string(init.n_hidden()) +
                       " hidden units of init");
    }
  } else if (!hidden) {
    throw UsageError("give the number of hidden units with hidden=M (or continue a model with init=RBM)");
  }
  const int m = init.given() ? init.n_hidden() : *hidden;
  MARBM_EXPECTS(m >= 1, UsageError, "hidden must be >= 1, got " + std::to_string(m));
  const long total = total_iterations(config, data.n_rows);
  if (config.method == TrainMethod::exact && std::min(n, m) > config.exact.max_enumerated_units) {
    throw UsageError("method='exact': a " + std::to_string(n) + " x " + std::to_string(m) + " model needs 2^" +
                     std::to_string(std::min(n, m)) + " states enumerated per update, beyond exact_max_units " +
                     std::to_string(config.exact.max_enumerated_units));
  }
  check_training_memory(config, n, m, data.n_rows);

  std::optional<Dataset> test;
  HeldOutOptions held_out_options;
  held_out_options.exact = config.exact;
  held_out_options.ais.seed = config.seed;
  held_out_options.ais.threads = threads;
  if (!test_data_source.is_none()) {
    test = read_dataset(test_data_source, "test_data");
    if (test->n_cols != n) {
      throw DataError("test_data: rows have " + std::to_string(test->n_cols) + " values but the data has " +
                      std::to_string(n));
    }
  }

  // Rows or parameters on a CUDA device: the CUDA engine on that device.
  std::shared_ptr<Engine> engine =
      engine_for(backend, threads, resident ? resident->device : init.device ? init.device->device : 0);
  // What the model file and the summary record, as `marbm train` writes them.
  TrainRecord record;
  record.program = "marbm.train";
  record.data = nb::isinstance<nb::str>(data_source) ? nb::cast<std::string>(data_source) : data.description;
  record.data_description = data.description;
  record.data_rows = data.n_rows;
  record.rows_distinct = !resident && static_cast<int>(distinct_rows(data).rows.size()) == data.n_rows;
  record.n_visible = n;
  record.n_hidden = m;
  record.init = init.device ? "cuda arrays given as init" : init.given() ? "model given as init" : "";
  record.init_sigma = init_sigma;
  record.init_visible_bias = init_visible_bias;
  if (test) record.test_data = nb::isinstance<nb::str>(test_data_source) ? nb::cast<std::string>(test_data_source)
                                                                         : test->description;
  record.out = out_path.value_or("");
  record.backend = engine->description();
  // Device parameters: `initial` is unused (the engine reads them where they are).
  Rbm initial = init.host ? *init.host : init.device ? Rbm() : Rbm::random(n, m, init_sigma, seed);
  if (!init.given() && init_visible_bias == "data") set_base_rate_visible_bias(initial, data);

  std::vector<nb::dict> points;  // touched only with the GIL held
  std::vector<std::string> json_points;  // the evaluations as `marbm train --json` prints them
  std::optional<HeldOutMetrics> last_held_out;
  auto on_metrics = [&](const TrainMetrics& metrics) {
    const bool requested = metrics.iteration == total || metrics.iteration == 0 ||
                           (eval_every > 0 && metrics.iteration % eval_every == 0);
    if (!requested) return;
    std::optional<HeldOutMetrics> held_out;
    if (test) held_out = last_held_out = evaluate_held_out(engine->model(), data, *test, held_out_options);
    if (eval_every > 0) json_points.push_back(train_evaluation_json(metrics, held_out ? &*held_out : nullptr));
    nb::gil_scoped_acquire gil;
    nb::dict point = metrics_dict(metrics);
    if (held_out) add_held_out(point, *held_out);
    points.push_back(point);
    if (callback && *callback) (*callback)(point);
    if (PyErr_CheckSignals() != 0) throw nb::python_error();
  };

  PyTrainResult out;
  TrainResult result;
  {
    nb::gil_scoped_release release;
    try {
      CheckpointOptions checkpoints;
      checkpoints.every = checkpoint_every;
      if (checkpoint_every > 0) {
        checkpoints.write = [&](const TrainCheckpoint& state) {
          TrainResult partial;
          partial.history = state.history;
          partial.mode_steps = state.mode.steps_taken;
          partial.seconds = state.seconds;
          Metadata metadata = train_metadata(record, config, partial, state.iteration);
          metadata["iterations_planned"] = std::to_string(total);
          save_checkpoint(*checkpoint, state, metadata);
        };
      }
      if (resumed) checkpoints.resume = &*resumed;
      if (init.device) {
        result = resident ? train(*engine, *resident, *init.device, config, on_metrics, checkpoints)
                          : train(*engine, data, *init.device, config, on_metrics, checkpoints);
      } else {
        result = resident ? train(*engine, *resident, initial, config, on_metrics, checkpoints)
                          : train(*engine, data, initial, config, on_metrics, checkpoints);
      }
    } catch (const TrainingDiverged& diverged) {
      // As `marbm train`: the last finite parameters are kept as the output,
      // marked in the metadata as a diverged run's.
      std::string message = diverged.what();
      if (out_path) {
        TrainResult partial;
        partial.history = diverged.history;
        Metadata metadata = train_metadata(record, config, partial, diverged.last_finite_iteration);
        metadata["diverged_at"] = std::to_string(diverged.noticed_at);
        save_rbm(*out_path, diverged.last_finite_model, metadata);
        message += "; wrote the last finite model (after " + std::to_string(diverged.last_finite_iteration) +
                   " updates) to " + *out_path;
      }
      nb::gil_scoped_acquire gil;
      nb::object error = nb::borrow<nb::object>(training_diverged_type)(message);
      error.attr("noticed_at") = diverged.noticed_at;
      error.attr("last_finite_iteration") = diverged.last_finite_iteration;
      error.attr("last_finite_model") = nb::cast(diverged.last_finite_model);
      error.attr("history") = columns(points);
      PyErr_SetObject(training_diverged_type, error.ptr());
      throw nb::python_error();
    }
  }
  result.model.check_finite("trained model (lower lr?)");
  if (out_path) {
    Metadata metadata = train_metadata(record, config, result, total);
    if (resumed) metadata["resumed_from"] = std::to_string(resumed->iteration);
    save_rbm(*out_path, result.model, metadata);
  }
  const std::string summary = train_summary_json(record, config, result, total,
                                                 last_held_out ? &*last_held_out : nullptr,
                                                 eval_every > 0 ? &json_points : nullptr);
  out.summary = nb::cast<nb::dict>(nb::module_::import_("json").attr("loads")(summary));
  out.model = std::move(result.model);
  out.history = columns(points);
  out.iterations = total;
  out.mode_steps = result.mode_steps;
  out.seconds = result.seconds;
  out.backend = engine->description();
  // The CUDA engine stays with the result: parameters() hands out its own
  // device memory. (The CPU engine's memory, a float32 copy of the data
  // among it, is let go; parameters() shows the host model.)
  if (engine->backend() == Backend::cuda) out.engine = engine;
  return out;
}

// ---------------------------------------------------------------- study

nb::dict study_py(nb::handle data_source, int hidden, const std::vector<std::string>& methods, int runs, long iters,
                  int batch, double lr, int k, long eval_every, std::uint64_t seed, double init_sigma,
                  const std::string& backend, int threads, double momentum, double weight_decay, int chains,
                  std::optional<std::string> test_data, const std::string& lr_schedule, double lr_final,
                  bool sample_positive_hidden, std::optional<std::string> out_folder, bool plot, bool keep_models,
                  const nb::kwargs& kwargs) {
  const ModeOptions mode_words = mode_options(kwargs, "study");
  StudyConfig config;
  if (nb::isinstance<nb::str>(data_source)) {
    config.data = nb::cast<std::string>(data_source);
  } else {
    throw UsageError("study: data must be a data spec (str), for example 'shifting-bars:6:3'");
  }
  config.hidden = hidden;
  config.methods.clear();
  for (const std::string& method : methods) config.methods.push_back(parse_train_method(method));
  config.runs = runs;
  config.iterations = iters;
  config.batch_size = batch;
  config.learning_rate = lr;
  config.gibbs_steps = k;
  config.eval_every = eval_every;
  config.seed = seed;
  config.init_sigma = init_sigma;
  config.backend = parse_backend(backend);
  MARBM_EXPECTS(threads >= 0, UsageError, "threads must be >= 0, got " + std::to_string(threads));
  config.threads = threads;
  config.mode = mode_words.config();
  config.momentum = momentum;
  config.weight_decay = weight_decay;
  const bool uses_chains =
      std::find(config.methods.begin(), config.methods.end(), TrainMethod::pcd) != config.methods.end() ||
      (std::find(config.methods.begin(), config.methods.end(), TrainMethod::mode) != config.methods.end() &&
       config.mode.base == NegativePhase::pcd);
  MARBM_EXPECTS(chains >= 0, UsageError, "chains must be >= 0, got " + std::to_string(chains));
  if (chains != 0 && !uses_chains) throw UsageError("chains applies only to the pcd method or mode with base='pcd'");
  config.persistent_chains = chains;
  config.test_data = test_data.value_or("");
  config.learning_rate_schedule = parse_learning_rate_schedule(lr_schedule);
  config.final_learning_rate = lr_final;
  config.sample_positive_hidden = sample_positive_hidden;
  if (keep_models && !out_folder) throw UsageError("keep_models needs out=DIR to save the models into");

  StudyResult result;
  StudyOutputFiles files;
  {
    nb::gil_scoped_release release;
    if (out_folder) {
      // The files of `marbm study --out DIR`, written by the same library code.
      StudyOutputOptions output;
      output.folder = *out_folder;
      output.folder_option = "out";
      output.plot = plot;
      output.keep_models = keep_models;
      output.program = "marbm.study";
      result = run_study_in_folder(config, *single_process_communicator(), output, &files);
    } else {
      result = run_study(config);
    }
  }
  nb::object numpy = nb::module_::import_("numpy");
  nb::dict out;
  nb::dict per_method;
  for (TrainMethod method : config.methods) {
    std::vector<const StudyRun*> method_runs;
    for (const StudyRun& run : result.runs) {
      if (run.method == method) method_runs.push_back(&run);
    }
    std::size_t points = 0;
    const StudyRun* longest = nullptr;
    for (const StudyRun* run : method_runs) {
      if (run->history.size() >= points) {
        points = run->history.size();
        longest = run;
      }
    }
    const std::size_t rows = method_runs.size();
    std::vector<long> iteration(points, 0);
    for (std::size_t e = 0; e < points && longest; ++e) iteration[e] = longest->history[e].iteration;
    const double nan = std::numeric_limits<double>::quiet_NaN();
    std::vector<double> kl(rows * points, nan), p_mode(rows * points, nan), seconds(rows, 0.0);
    std::vector<long> diverged_at(rows, -1);
    for (std::size_t r = 0; r < rows; ++r) {
      const StudyRun& run = *method_runs[r];
      for (std::size_t e = 0; e < run.history.size(); ++e) {
        kl[r * points + e] = run.history[e].kl;
        p_mode[r * points + e] = run.history[e].p_mode;
      }
      seconds[r] = run.seconds;
      diverged_at[r] = run.diverged_at;
    }
    nb::dict d;
    d["iteration"] = to_numpy_object(std::move(iteration), {points});
    d["kl"] = to_numpy_object(std::move(kl), {rows, points});
    d["p_mode"] = to_numpy_object(std::move(p_mode), {rows, points});
    d["seconds"] = to_numpy_object(std::move(seconds), {rows});
    d["diverged_at"] = to_numpy_object(std::move(diverged_at), {rows});
    const MethodSummary& summary = result.summary.at(method);
    d["median_final_kl"] = summary.median_final_kl;
    d["min_final_kl"] = summary.min_final_kl;
    d["max_final_kl"] = summary.max_final_kl;
    if (!config.test_data.empty()) {
      std::vector<double> test_ll(rows * points, nan);
      for (std::size_t r = 0; r < rows; ++r) {
        const std::vector<double>& values = method_runs[r]->test_mean_log_likelihood;
        std::copy(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(std::min(values.size(), points)),
                  test_ll.begin() + static_cast<std::ptrdiff_t>(r * points));
      }
      d["test_mean_log_likelihood"] = to_numpy_object(std::move(test_ll), {rows, points});
      d["median_final_test_mean_log_likelihood"] = summary.median_final_test_mean_log_likelihood;
    }
    per_method[nb::str(std::string(to_string(method)).c_str())] = d;
  }
  out["methods"] = per_method;
  out["seconds"] = result.seconds;
  out["threads_used"] = result.threads;
  if (files.written) {
    nb::dict written;
    written["csv"] = files.csv;
    written["summary"] = files.summary;
    written["png"] = files.png.empty() ? nb::none() : nb::cast(files.png);
    if (!files.png.empty() || !plot) {
      written["plot_message"] = nb::none();
    } else {
      written["plot_message"] = files.plot_message;
    }
    written["models"] = files.models.empty() ? nb::none() : nb::cast(files.models);
    out["files"] = written;
  }
  return out;
}

// ---------------------------------------------------------------- module

void raise_as(PyObject* type, const char* message) { PyErr_SetString(type, message); }

}  // namespace
}  // namespace marbm::python

NB_MODULE(_marbm, m) {
  using namespace marbm;
  using namespace marbm::python;
  m.doc() = "marbm: restricted Boltzmann machines with mode-assisted training (the C++ library's bindings)";

  // Exception types: marbm.Error and its kinds. UsageError and DataError are
  // also ValueErrors, the others RuntimeErrors, so generic handlers work.
  error_type = PyErr_NewExceptionWithDoc("marbm.Error", "Base of every error marbm raises; str() is one line.",
                                         PyExc_Exception, nullptr);
  auto make = [&](const char* name, const char* doc, PyObject* base, PyObject* builtin) {
    PyObject* bases = PyTuple_Pack(2, base, builtin);
    PyObject* type = PyErr_NewExceptionWithDoc(name, doc, bases, nullptr);
    Py_DECREF(bases);
    return type;
  };
  usage_error_type = make("marbm.UsageError", "A bad argument or setting (the CLI's exit status 2).", error_type,
                          PyExc_ValueError);
  data_error_type = make("marbm.DataError", "Bad input data or model file (the CLI's exit status 1).", error_type,
                         PyExc_ValueError);
  cuda_error_type = make("marbm.CudaError", "A CUDA failure, or no usable device when one was asked for.", error_type,
                         PyExc_RuntimeError);
  runtime_failure_type = make("marbm.RuntimeFailure", "A run that cannot go on (limits, memory).", error_type,
                              PyExc_RuntimeError);
  {
    PyObject* bases = PyTuple_Pack(1, runtime_failure_type);
    training_diverged_type = PyErr_NewExceptionWithDoc(
        "marbm.TrainingDiverged",
        "Training stopped because the parameters became NaN or infinite. Attributes: noticed_at, "
        "last_finite_iteration, last_finite_model, history.",
        bases, nullptr);
    Py_DECREF(bases);
  }
  m.attr("Error") = nb::handle(error_type);
  m.attr("UsageError") = nb::handle(usage_error_type);
  m.attr("DataError") = nb::handle(data_error_type);
  m.attr("CudaError") = nb::handle(cuda_error_type);
  m.attr("RuntimeFailure") = nb::handle(runtime_failure_type);
  m.attr("TrainingDiverged") = nb::handle(training_diverged_type);
  nb::register_exception_translator([](const std::exception_ptr& p, void*) {
    try {
      std::rethrow_exception(p);
    } catch (const UsageError& e) {
      raise_as(usage_error_type, e.what());
    } catch (const DataError& e) {
      raise_as(data_error_type, e.what());
    } catch (const CudaError& e) {
      raise_as(cuda_error_type, e.what());
    } catch (const RuntimeFailure& e) {
      raise_as(runtime_failure_type, e.what());
    } catch (const Error& e) {
      raise_as(error_type, e.what());
    }
  });

  // ------------------------------------------------------------ Rbm
  nb::class_<Rbm>(m, "Rbm",
                  "A binary RBM: E(v,h) = -a.v - b.h - v^T W h with float32 W (n x m), a (n), b (m).\n"
                  "weights, visible_bias and hidden_bias are numpy views of the model's own memory.")
      .def(nb::init<int, int>(), "n_visible"_a, "n_hidden"_a, "All parameters zero.")
      .def_static("random", &Rbm::random, "n_visible"_a, "n_hidden"_a, "sigma"_a = 0.01, "seed"_a = 0,
                  "W, a and b drawn from N(0, sigma^2); the same seed and shape give the same parameters.")
      .def_static(
          "from_arrays",
          [](const AnyArray& weights, const AnyArray& visible_bias, const AnyArray& hidden_bias) {
            if (weights.ndim() != 2) throw UsageError("weights: expected a 2-dimensional array (n_visible, n_hidden)");
            const std::size_t n = weights.shape(0), mh = weights.shape(1);
            if (n == 0 || mh == 0) throw UsageError("weights: the model needs n_visible, n_hidden >= 1");
            Rbm rbm(static_cast<int>(n), static_cast<int>(mh));
            const auto w = read_floats(weights, n, mh, true, "weights");
            const auto a = read_floats(visible_bias, 1, n, false, "visible_bias");
            const auto b = read_floats(hidden_bias, 1, mh, false, "hidden_bias");
            std::copy(w.begin(), w.end(), rbm.weights().begin());
            std::copy(a.begin(), a.end(), rbm.visible_bias().begin());
            std::copy(b.begin(), b.end(), rbm.hidden_bias().begin());
            return rbm;
          },
          "weights"_a, "visible_bias"_a, "hidden_bias"_a,
          "A model with copies of these parameters (converted to float32).")
      .def_prop_ro("n_visible", &Rbm::n_visible)
      .def_prop_ro("n_hidden", &Rbm::n_hidden)
      .def_prop_ro(
          "weights",
          [](Rbm& rbm) {
            return nb::ndarray<nb::numpy, float, nb::ndim<2>>(
                rbm.weights().data(),
                {static_cast<std::size_t>(rbm.n_visible()), static_cast<std::size_t>(rbm.n_hidden())}, nb::handle());
          },
          nb::rv_policy::reference_internal, "W, (n_visible, n_hidden) float32, a writable view of the model.")
      .def_prop_ro(
          "visible_bias",
          [](Rbm& rbm) {
            return nb::ndarray<nb::numpy, float, nb::ndim<1>>(rbm.visible_bias().data(),
                                                                {static_cast<std::size_t>(rbm.n_visible())}, nb::handle());
          },
          nb::rv_policy::reference_internal, "a, (n_visible,) float32, a writable view of the model.")
      .def_prop_ro(
          "hidden_bias",
          [](Rbm& rbm) {
            return nb::ndarray<nb::numpy, float, nb::ndim<1>>(rbm.hidden_bias().data(),
                                                                {static_cast<std::size_t>(rbm.n_hidden())}, nb::handle());
          },
          nb::rv_policy::reference_internal, "b, (n_hidden,) float32, a writable view of the model.")
      .def(
          "_address",
          [](Rbm& rbm, const std::string& which) -> std::uintptr_t {
            if (which == "weights") return reinterpret_cast<std::uintptr_t>(rbm.weights().data());
            if (which == "visible_bias") return reinterpret_cast<std::uintptr_t>(rbm.visible_bias().data());
            if (which == "hidden_bias") return reinterpret_cast<std::uintptr_t>(rbm.hidden_bias().data());
            throw UsageError("_address: unknown parameter '" + which + "'");
          },
          "which"_a, "Address of a parameter's memory in the library (for tests of zero-copy views).")
      .def(
          "energy",
          [](const Rbm& rbm, const AnyArray& visible, const AnyArray& hidden) -> nb::object {
            const States v = read_states(visible, "visible");
            const States h = read_states(hidden, "hidden");
            check_width(v, rbm.n_visible(), "visible", "visible");
            check_width(h, rbm.n_hidden(), "hidden", "hidden");
            if (v.rows != h.rows) throw UsageError("energy: visible and hidden have different numbers of rows");
            return float_per_row(v.rows, v.one_dimensional && h.one_dimensional,
                                 [&](std::size_t r) { return rbm.energy(v.row(r), h.row(r)); });
          },
          "visible"_a, "hidden"_a, "E(v, h) in float64: a float for one state, an array for rows of states.")
      .def(
          "free_energy",
          [](const Rbm& rbm, const AnyArray& visible) -> nb::object {
            const States v = read_states(visible, "visible");
            check_width(v, rbm.n_visible(), "visible", "visible");
            return float_per_row(v.rows, v.one_dimensional, [&](std::size_t r) { return rbm.free_energy(v.row(r)); });
          },
          "visible"_a, "F(v) = -a.v - sum_j softplus(b_j + (W^T v)_j), float64; per row for 2-D input.")
      .def(
          "hidden_probabilities",
          [](const Rbm& rbm, const AnyArray& visible) -> nb::object {
            const States v = read_states(visible, "visible");
            check_width(v, rbm.n_visible(), "visible", "visible");
            return floats_per_row(v, static_cast<std::size_t>(rbm.n_hidden()),
                                  [&](auto row) { return rbm.hidden_probabilities(row); });
          },
          "visible"_a, "p(h_j = 1 | v), float64, (n_hidden,) or (rows, n_hidden).")
      .def(
          "visible_probabilities",
          [](const Rbm& rbm, const AnyArray& hidden) -> nb::object {
            const States h = read_states(hidden, "hidden");
            check_width(h, rbm.n_hidden(), "hidden", "hidden");
            return floats_per_row(h, static_cast<std::size_t>(rbm.n_visible()),
                                  [&](auto row) { return rbm.visible_probabilities(row); });
          },
          "hidden"_a, "p(v_i = 1 | h), float64, (n_visible,) or (rows, n_visible).")
      .def("uniform_mean_energy", &Rbm::uniform_mean_energy, "Mean energy over all states (SPEC.md section 3).")
      .def(
          "check_finite", [](const Rbm& rbm) { rbm.check_finite(); },
          "Raises DataError when a parameter is NaN or infinite.")
      .def("copy", [](const Rbm& rbm) { return Rbm(rbm); }, "An independent copy.")
      .def("__copy__", [](const Rbm& rbm) { return Rbm(rbm); })
      .def("__deepcopy__", [](const Rbm& rbm, nb::handle) { return Rbm(rbm); }, "memo"_a)
      .def("__eq__", [](const Rbm& a, const Rbm& b) { return a == b; }, nb::is_operator())
      .def("__getstate__",
           [](const Rbm& rbm) {
             return nb::make_tuple(
                 rbm.n_visible(), rbm.n_hidden(),
                 nb::bytes(reinterpret_cast<const char*>(rbm.weights().data()), rbm.weights().size_bytes()),
                 nb::bytes(reinterpret_cast<const char*>(rbm.visible_bias().data()), rbm.visible_bias().size_bytes()),
                 nb::bytes(reinterpret_cast<const char*>(rbm.hidden_bias().data()), rbm.hidden_bias().size_bytes()));
           })
      .def("__setstate__",
           [](Rbm& rbm, const nb::tuple& state) {
             if (state.size() != 5) throw UsageError("Rbm state: expected 5 items");
             new (&rbm) Rbm(nb::cast<int>(state[0]), nb::cast<int>(state[1]));
             auto fill = [](std::span<float> out, nb::handle item, const char* what) {
               const auto bytes = nb::cast<nb::bytes>(item);
               if (bytes.size() != out.size_bytes()) throw DataError(std::string("Rbm state: wrong size of ") + what);
               std::memcpy(out.data(), bytes.c_str(), out.size_bytes());
             };
             fill(rbm.weights(), state[2], "weights");
             fill(rbm.visible_bias(), state[3], "visible_bias");
             fill(rbm.hidden_bias(), state[4], "hidden_bias");
           })
      .def("__repr__", [](const Rbm& rbm) {
        return "marbm.Rbm(n_visible=" + std::to_string(rbm.n_visible()) +
               ", n_hidden=" + std::to_string(rbm.n_hidden()) + ")";
      });

  // ------------------------------------------------------------ files
  m.def(
      "load",
      [](const std::string& path, bool with_metadata) -> nb::object {
        Metadata metadata;
        Rbm rbm = load_rbm(path, &metadata);
        if (!with_metadata) return nb::cast(std::move(rbm));
        return nb::make_tuple(nb::cast(std::move(rbm)), nb::cast(metadata));
      },
      "path"_a, "with_metadata"_a = false,
      "Reads a safetensors model (float32 or float64 tensors); with with_metadata=True, (Rbm, dict).");
  m.def(
      "save",
      [](const std::string& path, const Rbm& rbm, const std::optional<Metadata>& metadata) {
        save_rbm(path, rbm, metadata.value_or(Metadata{}));
      },
      "path"_a, "rbm"_a, "metadata"_a = nb::none(), "Writes the model as safetensors, atomically.");

  // ------------------------------------------------------------ exact quantities
  m.def(
      "log_partition_exact",
      [](const Rbm& rbm, int max_units) {
        ExactOptions options;
        options.max_enumerated_units = max_units;
        nb::gil_scoped_release release;
        return log_partition_exact(rbm, options);
      },
      "rbm"_a, "max_units"_a = 32, "log Z by Gray-code enumeration of the smaller layer (2^min(n, m) <= 2^max_units).");
  m.def(
      "log_probability",
      [](const Rbm& rbm, const AnyArray& visible, std::optional<double> log_z, int max_units) -> nb::object {
        const States v = read_states(visible, "visible");
        check_width(v, rbm.n_visible(), "visible", "visible");
        ExactOptions options;
        options.max_enumerated_units = max_units;
        const double z = log_z ? *log_z : log_partition_exact(rbm, options);
        return float_per_row(v.rows, v.one_dimensional,
                             [&](std::size_t r) { return log_probability(rbm, v.row(r), z); });
      },
      "rbm"_a, "visible"_a, "log_z"_a = nb::none(), "max_units"_a = 32,
      "log p(v) = -F(v) - log Z per row; log Z exact unless given.");
  m.def(
      "mean_log_likelihood",
      [](const Rbm& rbm, nb::handle data, std::optional<double> log_z, int max_units) {
        const Dataset d = read_dataset(data, "data");
        ExactOptions options;
        options.max_enumerated_units = max_units;
        if (log_z) return mean_log_likelihood(rbm, d, *log_z);
        return mean_log_likelihood_exact(rbm, d, options);
      },
      "rbm"_a, "data"_a, "log_z"_a = nb::none(), "max_units"_a = 32,
      "Mean log p(v) over the rows (exact log Z unless given).");
  m.def(
      "kl_divergence",
      [](const Rbm& rbm, nb::handle data, int max_units) {
        const Dataset d = read_dataset(data, "data");
        ExactOptions options;
        options.max_enumerated_units = max_units;
        return kl_divergence_exact(rbm, d, options);
      },
      "rbm"_a, "data"_a, "max_units"_a = 32, "KL(p_data || p_model), exact, with p_data uniform over the rows.");

  // ------------------------------------------------------------ AIS
  m.def(
      "ais",
      [](const Rbm& rbm, nb::handle data, int runs, int intervals, bool reverse, int burn_in, std::uint64_t seed,
         int threads, std::optional<std::vector<double>> betas,
         std::optional<std::vector<double>> base_visible_probabilities) {
        AisOptions options;
        options.runs = runs;
        options.intervals = intervals;
        options.reverse = reverse;
        options.reverse_burn_in = burn_in;
        options.seed = seed;
        options.threads = threads;
        if (betas) options.betas = *betas;
        if (base_visible_probabilities) options.base_visible_probabilities = *base_visible_probabilities;
        std::optional<Dataset> d;
        if (!data.is_none()) d = read_dataset(data, "data");
        AisResult result;
        {
          nb::gil_scoped_release release;
          result = log_partition_ais(rbm, options, d ? &*d : nullptr);
        }
        nb::dict out;
        out["log_z"] = result.log_z();
        out["log_z_stderr"] = result.forward.standard_error;
        out["log_z_low"] = result.low();
        out["log_z_high"] = result.high();
        out["log_z_forward_low"] = result.forward.low;
        out["log_z_forward_high"] = result.forward.high;
        out["log_weights"] = to_numpy_object(std::vector<double>(result.forward.log_weights),
                                             {result.forward.log_weights.size()});
        if (result.has_reverse) {
          out["log_z_reverse"] = result.reverse.log_z;
          out["log_z_reverse_stderr"] = result.reverse.standard_error;
          out["log_z_reverse_low"] = result.reverse.low;
          out["log_z_reverse_high"] = result.reverse.high;
          out["reverse_log_weights"] = to_numpy_object(std::vector<double>(result.reverse.log_weights),
                                                       {result.reverse.log_weights.size()});
        }
        out["log_z_base"] = result.log_z_base;
        out["runs"] = result.runs;
        out["intervals"] = result.intervals;
        out["seconds"] = result.seconds;
        return out;
      },
      "rbm"_a, "data"_a = nb::none(), "runs"_a = 100, "intervals"_a = ais_published_intervals, "reverse"_a = true,
      "burn_in"_a = 1000, "seed"_a = 0, "threads"_a = 0, "betas"_a = nb::none(),
      "base_visible_probabilities"_a = nb::none(),
      "log Z by annealed importance sampling, forward and (unless reverse=False) in reverse, as a dict with the "
      "estimate and its bracket [log_z_low, log_z_high].");

  // ------------------------------------------------------------ mode search
  m.def(
      "find_mode",
      [](const Rbm& rbm, const std::string& solver, const std::string& variant, const std::string& backend,
         int replicas, int steps, double time_step, double beta_hot, double beta_cold, std::uint64_t seed,
         int max_enumerated_units, std::optional<AnyArray> warm_visible, std::optional<AnyArray> warm_hidden,
         std::optional<AnyArray> start_visible, int keep_minima) {
        ModeSearchConfig config;
        config.solver = parse_mode_solver(solver);
        if (variant == "discrete") {
          config.sb_variant = SbVariant::discrete;
        } else if (variant == "ballistic") {
          config.sb_variant = SbVariant::ballistic;
        } else {
          throw UsageError("variant: '" + variant + "' is not one of discrete|ballistic");
        }
        config.backend = parse_backend(backend);
        config.replicas = replicas;
        config.steps = steps;
        config.time_step = time_step;
        config.beta_hot = beta_hot;
        config.beta_cold = beta_cold;
        config.seed = seed;
        config.max_enumerated_units = max_enumerated_units;
        config.keep_minima = keep_minima;
        if (warm_visible.has_value() != warm_hidden.has_value()) {
          throw UsageError("find_mode: give both warm_visible and warm_hidden, or neither");
        }
        if (warm_visible) {
          const States v = read_states(*warm_visible, "warm_visible");
          const States h = read_states(*warm_hidden, "warm_hidden");
          check_width(v, rbm.n_visible(), "warm_visible", "visible");
          check_width(h, rbm.n_hidden(), "warm_hidden", "hidden");
          config.warm_visible.assign(v.row(0).begin(), v.row(0).end());
          config.warm_hidden.assign(h.row(0).begin(), h.row(0).end());
        }
        if (start_visible) {
          const States s = read_states(*start_visible, "start_visible");
          check_width(s, rbm.n_visible(), "start_visible", "visible");
          config.start_visible.assign(s.all().begin(), s.all().end());
        }
        ModeResult result;
        {
          nb::gil_scoped_release release;
          result = find_mode(rbm, config);
        }
        nb::dict out;
        const std::size_t n = result.visible.size(), mh = result.hidden.size();
        out["visible"] = to_numpy_object(std::move(result.visible), {n});
        out["hidden"] = to_numpy_object(std::move(result.hidden), {mh});
        out["energy"] = result.energy;
        out["replicas"] = result.replicas;
        out["steps"] = result.steps;
        out["replicas_at_best"] = result.replicas_at_best;
        out["seconds"] = result.seconds;
        out["solver"] = solver;
        const std::size_t minima = result.minima_energy.size();
        out["minima_visible"] = to_numpy_object(std::move(result.minima_visible), {minima, n});
        out["minima_energy"] = to_numpy_object(std::move(result.minima_energy), {minima});
        return out;
      },
      "rbm"_a, "solver"_a = "sb", "variant"_a = "discrete", "backend"_a = "cpu", "replicas"_a = 0, "steps"_a = 0,
      "time_step"_a = 0.0, "beta_hot"_a = 0.0, "beta_cold"_a = 0.0, "seed"_a = 0, "max_enumerated_units"_a = 32,
      "warm_visible"_a = nb::none(), "warm_hidden"_a = nb::none(), "start_visible"_a = nb::none(),
      "keep_minima"_a = 0,
      "The ground state argmin E(v, h) with solver exhaustive|sb|sa|local on backend cpu|cuda|auto, as a dict.");

  // ------------------------------------------------------------ sampling
  m.def(
      "sample",
      [](const Rbm& rbm, int chains, int steps, int snapshots, nb::handle from_data, std::uint64_t seed,
         const std::string& backend, int threads) -> nb::object {
        MARBM_EXPECTS(chains >= 1, UsageError, "chains must be >= 1, got " + std::to_string(chains));
        MARBM_EXPECTS(steps >= 1, UsageError, "steps must be >= 1, got " + std::to_string(steps));
        MARBM_EXPECTS(snapshots >= 0, UsageError, "snapshots must be >= 0, got " + std::to_string(snapshots));
        MARBM_EXPECTS(snapshots <= steps, UsageError,
                      "snapshots " + std::to_string(snapshots) + " is more than steps " + std::to_string(steps));
        const int n = rbm.n_visible();
        std::vector<std::uint8_t> visible(static_cast<std::size_t>(chains) * n);
        if (!from_data.is_none()) {
          const Dataset data = read_dataset(from_data, "from_data");
          if (data.n_cols != n) {
            throw DataError("from_data: rows have " + std::to_string(data.n_cols) + " values but the model has " +
                            std::to_string(n) + " visible units");
          }
          for (int c = 0; c < chains; ++c) {
            const auto row = data.row(c % data.n_rows);
            std::copy(row.begin(), row.end(), visible.begin() + static_cast<std::ptrdiff_t>(c) * n);
          }
        } else {
          // As `marbm sample`: bit 31 of the persistent_chains stream's words.
          const PhiloxStream random(seed, random_stream(RandomPurpose::persistent_chains, 1));
          for (std::size_t k = 0; k < visible.size(); ++k) {
            visible[k] = static_cast<std::uint8_t>(random.bits(k) >> 31);
          }
        }
        auto engine = engine_for(backend, threads);
        engine->set_model(rbm);
        const int segments = snapshots == 0 ? 1 : snapshots;
        std::vector<std::uint8_t> pictures;
        if (snapshots > 0) pictures.resize(static_cast<std::size_t>(chains) * snapshots * n);
        {
          nb::gil_scoped_release release;
          int done = 0;
          for (int s = 0; s < segments; ++s) {
            const int until = static_cast<int>(static_cast<long long>(steps) * (s + 1) / segments);
            visible = engine->gibbs_chain(visible, chains, until - done, seed, static_cast<std::uint64_t>(s));
            done = until;
            if (snapshots > 0) {
              for (int c = 0; c < chains; ++c) {
                std::copy_n(visible.begin() + static_cast<std::ptrdiff_t>(c) * n, n,
                            pictures.begin() + (static_cast<std::ptrdiff_t>(c) * snapshots + s) * n);
              }
            }
          }
        }
        if (snapshots > 0) {
          return to_numpy_object(std::move(pictures), {static_cast<std::size_t>(chains),
                                                       static_cast<std::size_t>(snapshots), static_cast<std::size_t>(n)});
        }
        return to_numpy_object(std::move(visible), {static_cast<std::size_t>(chains), static_cast<std::size_t>(n)});
      },
      "rbm"_a, "chains"_a = 10, "steps"_a = 1000, "snapshots"_a = 0, "from_data"_a = nb::none(), "seed"_a = 0,
      "backend"_a = "cpu", "threads"_a = 0,
      "Block-Gibbs chains on the engine, as `marbm sample`: the final states (chains, n) uint8, or with "
      "snapshots=S the states along each chain (chains, S, n).");

  // ------------------------------------------------------------ training
  nb::class_<PyTrainResult>(m, "TrainResult", "What train() returns.")
      .def_ro("model", &PyTrainResult::model, "The trained Rbm.")
      .def_ro("history", &PyTrainResult::history, "Evaluations as a dict of numpy arrays, one entry per point.")
      .def_ro("iterations", &PyTrainResult::iterations, "Updates made.")
      .def_ro("mode_steps", &PyTrainResult::mode_steps, "Mode steps taken (method 'mode').")
      .def_ro("seconds", &PyTrainResult::seconds, "Training wall time.")
      .def_ro("backend", &PyTrainResult::backend, "The engine that trained, in words.")
      .def_ro("summary", &PyTrainResult::summary,
              "What `marbm train --json` prints at the end, as a dict (non-finite numbers as None; with "
              "eval_every > 0 also event 'summary' and the history of evaluation objects).")
      .def(
          "parameters",
          [](nb::handle self) {
            PyTrainResult& result = nb::cast<PyTrainResult&>(self);
            nb::dict out;
            if (!result.engine) {
              // cpu backend: views of `model` (the host copy this result holds).
              Rbm& rbm = result.model;
              const std::size_t n = static_cast<std::size_t>(rbm.n_visible()), m = static_cast<std::size_t>(rbm.n_hidden());
              out["weights"] = NumpyArray<float>(rbm.weights().data(), {n, m}, self);
              out["visible_bias"] = NumpyArray<float>(rbm.visible_bias().data(), {n}, self);
              out["hidden_bias"] = NumpyArray<float>(rbm.hidden_bias().data(), {m}, self);
              return out;
            }
            // cuda backend: the engine's own device memory, kept alive (the
            // whole engine) by every array handed out.
            const ResidentParameters p = result.engine->resident_parameters();
            nb::capsule owner(new std::shared_ptr<Engine>(result.engine),
                              [](void* engine) noexcept { delete static_cast<std::shared_ptr<Engine>*>(engine); });
            const std::size_t n = static_cast<std::size_t>(p.n_visible), m = static_cast<std::size_t>(p.n_hidden);
            const int cuda = nb::device::cuda::value;
            // The engine's memory is writable; DLPack has no const view here.
            auto* w = const_cast<float*>(p.weights);
            auto* a = const_cast<float*>(p.visible_bias);
            auto* b = const_cast<float*>(p.hidden_bias);
            out["weights"] = nb::ndarray<float>(w, {n, m}, owner, {}, nb::dtype<float>(), cuda, p.device);
            out["visible_bias"] = nb::ndarray<float>(a, {n}, owner, {}, nb::dtype<float>(), cuda, p.device);
            out["hidden_bias"] = nb::ndarray<float>(b, {m}, owner, {}, nb::dtype<float>(), cuda, p.device);
            return out;
          },
          "The trained parameters where the engine computed, without a copy: on the cuda backend DLPack arrays "
          "(torch.from_dlpack) of the CUDA engine's own device memory, on the cpu backend numpy views of model.")
      .def(
          "_engine_address",
          [](const PyTrainResult& result, const std::string& which) -> std::uintptr_t {
            if (!result.engine) throw UsageError("_engine_address: this result holds no engine (cpu backend)");
            const ResidentParameters p = result.engine->resident_parameters();
            if (which == "weights") return reinterpret_cast<std::uintptr_t>(p.weights);
            if (which == "visible_bias") return reinterpret_cast<std::uintptr_t>(p.visible_bias);
            if (which == "hidden_bias") return reinterpret_cast<std::uintptr_t>(p.hidden_bias);
            throw UsageError("_engine_address: unknown parameter '" + which + "'");
          },
          "which"_a, "Address of a parameter in the CUDA engine's memory (for tests of zero-copy views).");

  m.def("train", &train_py, "data"_a, nb::kw_only(), "hidden"_a = nb::none(), "init"_a = nb::none(),
        "method"_a = "cd", "k"_a = 1, "lr"_a = 0.1, "batch"_a = 100, "iters"_a = nb::none(), "epochs"_a = nb::none(),
        "seed"_a = 0, "backend"_a = "cpu", "eval_every"_a = 0, "momentum"_a = 0.0, "weight_decay"_a = 0.0,
        "init_sigma"_a = 0.01, "init_visible_bias"_a = "data", "chains"_a = 0, "threads"_a = 0,
        "exact_max_units"_a = 24, "test_data"_a = nb::none(), "callback"_a = nb::none(),
        "sample_positive_hidden"_a = false, "exact_metrics"_a = true, "lr_schedule"_a = "constant",
        "lr_final"_a = 0.0, "checkpoint_every"_a = 0, "checkpoint"_a = nb::none(), "resume"_a = nb::none(),
        "out"_a = nb::none(), "kwargs"_a,
        "Trains an RBM as `marbm train` does (out=PATH writes the model with the same metadata as --out, "
        "atomically; the result's summary is what --json prints; lr_schedule constant|linear|exponential ending "
        "at lr_final; checkpoint_every=N writes a checkpoint to the file `checkpoint` (else `out`) every N "
        "updates; resume=PATH continues "
        "such a checkpoint's run, given the same settings, bit for bit); mode options (base, p_max, alpha, beta, mode_solver, mode_lr_scale, "
        "mode_target, mode_step, mode_lr_factor, mode_states, mode_replicas, mode_steps) as keywords.");

  m.def("study", &study_py, "data"_a = "shifting-bars:6:3", nb::kw_only(), "hidden"_a = 6,
        "methods"_a = std::vector<std::string>{"cd", "mode"}, "runs"_a = 10, "iters"_a = 20000, "batch"_a = 6,
        "lr"_a = 0.2, "k"_a = 1, "eval_every"_a = 200, "seed"_a = 1, "init_sigma"_a = 0.01, "backend"_a = "cpu",
        "threads"_a = 0, "momentum"_a = 0.0, "weight_decay"_a = 0.0, "chains"_a = 0, "test_data"_a = nb::none(),
        "lr_schedule"_a = "constant", "lr_final"_a = 0.0, "sample_positive_hidden"_a = false, "out"_a = nb::none(),
        "plot"_a = true, "keep_models"_a = false, "kwargs"_a,
        "Exact-KL study as `marbm study`: per method the KL curves of every run as numpy arrays. With out=DIR it "
        "also writes DIR/kl.csv, DIR/summary.json and DIR/kl.png (plot=False: no plot; keep_models=True: "
        "DIR/models/METHOD-RUN.safetensors) exactly as `marbm study --out DIR` does.");

  // ------------------------------------------------------------ pictures
  m.def(
      "write_tiles_png",
      [](const std::string& path, const AnyArray& tiles, int columns, int border) {
        if (tiles.ndim() != 3) throw UsageError("tiles: expected a 3-dimensional array (count, height, width)");
        const std::size_t count = tiles.shape(0), height = tiles.shape(1), width = tiles.shape(2);
        MARBM_EXPECTS(columns >= 0, UsageError, "columns must be >= 0, got " + std::to_string(columns));
        MARBM_EXPECTS(border >= 0 && border <= 64, UsageError, "border must be in [0, 64], got " + std::to_string(border));
        if (tiles.device_type() != nb::device::cpu::value) throw UsageError("tiles: pass a CPU array");
        // Read through a 2-D view of the same memory: count rows of height * width values.
        const std::int64_t strides[2] = {tiles.stride(0), tiles.stride(2)};
        if (tiles.stride(1) != tiles.stride(2) * static_cast<std::int64_t>(width)) {
          throw UsageError("tiles: each tile must be contiguous (use numpy.ascontiguousarray)");
        }
        const std::size_t shape[2] = {count, height * width};
        AnyArray flat(tiles.data(), 2, shape, nb::handle(), strides, tiles.dtype());
        const auto values = read_floats(flat, count, height * width, true, "tiles");
        const GrayImage image = tile_grid(values, static_cast<int>(count),
                                          TileShape{static_cast<int>(width), static_cast<int>(height)}, columns, border);
        write_png(path, image);
      },
      "path"_a, "tiles"_a, "columns"_a = 0, "border"_a = 1,
      "Writes tiles (count, height, width) with values in [0, 1] (0 black, 1 white) as one 8-bit grayscale PNG grid "
      "with `columns` tiles per row (0: about square), as `marbm show` and `marbm sample` draw them.");

  m.def(
      "_read_address",
      [](const AnyArray& array) -> std::uintptr_t {
        return reinterpret_cast<std::uintptr_t>(read_states(array, "array").data);
      },
      "array"_a,
      "Address of the memory marbm reads 0/1 states from: the array's own when its layout allows, else a "
      "checked copy's (for tests of zero-copy input).");

  // ------------------------------------------------------------ about the build
  m.def("version", &version, "marbm's version string.");
  m.def("cuda_compiled", &cuda_compiled, "Whether this build has the CUDA engine.");
  m.def(
      "cuda_devices",
      [] {
        nb::list out;
        for (const DeviceInfo& d : cuda_devices()) {
          nb::dict item;
          item["ordinal"] = d.ordinal;
          item["name"] = d.name;
          item["compute_capability"] = nb::make_tuple(d.compute_capability_major, d.compute_capability_minor);
          item["memory_bytes"] = d.memory_bytes;
          out.append(item);
        }
        return out;
      },
      "Usable CUDA devices (empty without the CUDA engine or a device).");
}
