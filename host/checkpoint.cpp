// Training checkpoints: TrainCheckpoint in extra safetensors tensors.
#include "marbm/checkpoint.hpp"

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "detail/little_endian.hpp"
#include "marbm/error.hpp"

namespace marbm {

namespace {

// The fields of TrainMetrics in the order of the history tensor's columns.
constexpr int kHistoryColumns = 11;

template <typename T>
T element(const std::string& bytes, std::size_t index) {
  return detail::read_little_endian<T>(reinterpret_cast<const unsigned char*>(bytes.data()) + index * sizeof(T));
}

template <typename T>
ExtraTensor tensor(const char* dtype, std::vector<std::uint64_t> shape, const std::vector<T>& values) {
  ExtraTensor t;
  t.dtype = dtype;
  t.shape = std::move(shape);
  t.bytes.reserve(values.size() * sizeof(T));
  for (const T& x : values) detail::append_little_endian(t.bytes, x);
  return t;
}

double history_field(const TrainMetrics& m, int column) {
  switch (column) {
    case 0: return static_cast<double>(m.iteration);
    case 1: return m.kl;
    case 2: return m.mean_log_likelihood;
    case 3: return m.log_z;
    case 4: return m.p_mode;
    case 5: return m.mode_push;
    case 6: return m.mode_energy;
    case 7: return static_cast<double>(m.mode_steps);
    case 8: return m.seconds;
    case 9: return m.hidden_similarity;
    default: return m.saturated_hidden;
  }
}

void set_history_field(TrainMetrics& m, int column, double x) {
  switch (column) {
    case 0: m.iteration = static_cast<long>(x); break;
    case 1: m.kl = x; break;
    case 2: m.mean_log_likelihood = x; break;
    case 3: m.log_z = x; break;
    case 4: m.p_mode = x; break;
    case 5: m.mode_push = x; break;
    case 6: m.mode_energy = x; break;
    case 7: m.mode_steps = static_cast<long>(x); break;
    case 8: m.seconds = x; break;
    case 9: m.hidden_similarity = x; break;
    default: m.saturated_hidden = x; break;
  }
}

}  // namespace

bool is_checkpoint(const Metadata& metadata) {
  const auto it = metadata.find("checkpoint");
  return it != metadata.end() && it->second == checkpoint_format;
}

void save_checkpoint(const std::string& path, const TrainCheckpoint& c, const Metadata& metadata) {
  const auto n = static_cast<std::uint64_t>(c.model.n_visible()), m = static_cast<std::uint64_t>(c.model.n_hidden());
  ExtraTensors extra;
  extra["checkpoint.counters"] =
      tensor<std::int64_t>("I64", {3}, {c.iteration, c.chain_count, c.mode.steps_taken});
  extra["checkpoint.scalars"] = tensor<double>("F64", {3}, {c.seconds, c.mode.last_push, c.mode.last_energy});
  extra["checkpoint.velocity.weights"] = tensor<float>("F32", {n, m}, c.optimizer.weights);
  extra["checkpoint.velocity.visible_bias"] = tensor<float>("F32", {n}, c.optimizer.visible_bias);
  extra["checkpoint.velocity.hidden_bias"] = tensor<float>("F32", {m}, c.optimizer.hidden_bias);
  extra["checkpoint.chains"] = tensor<std::uint8_t>("U8", {static_cast<std::uint64_t>(c.chain_count), n}, c.chains);
  extra["checkpoint.mode.visible"] = tensor<std::uint8_t>("U8", {c.mode.mode_visible.size()}, c.mode.mode_visible);
  extra["checkpoint.mode.hidden"] = tensor<std::uint8_t>("U8", {c.mode.mode_hidden.size()}, c.mode.mode_hidden);
  extra["checkpoint.mode.population"] =
      tensor<std::uint8_t>("U8", {c.mode.population.size() / n, n}, c.mode.population);
  std::vector<double> history;
  for (const TrainMetrics& point : c.history) {
    for (int k = 0; k < kHistoryColumns; ++k) history.push_back(history_field(point, k));
  }
  extra["checkpoint.history"] = tensor<double>("F64", {c.history.size(), kHistoryColumns}, history);

  Metadata meta = metadata;
  meta["checkpoint"] = checkpoint_format;
  meta["checkpoint_iteration"] = std::to_string(c.iteration);
  save_rbm(path, c.model, meta, extra);
}

TrainCheckpoint load_checkpoint(const std::string& path, Metadata* metadata) {
  Metadata meta;
  ExtraTensors extra;
  TrainCheckpoint c;
  c.model = load_rbm(path, &meta, &extra);
  MARBM_EXPECTS(is_checkpoint(meta), DataError,
                path + ": not a training checkpoint (a finished model, or one written without --checkpoint-every)");
  const auto n = static_cast<std::uint64_t>(c.model.n_visible()), m = static_cast<std::uint64_t>(c.model.n_hidden());
  auto get = [&](const char* name, const char* dtype) -> const ExtraTensor& {
    const auto it = extra.find(name);
    MARBM_EXPECTS(it != extra.end(), DataError, path + ": the checkpoint has no tensor '" + std::string(name) + "'");
    MARBM_EXPECTS(it->second.dtype == dtype, DataError,
                  path + ": checkpoint tensor '" + std::string(name) + "' has dtype " + it->second.dtype +
                      ", expected " + dtype);
    return it->second;
  };
  auto expect_shape = [&](const char* name, const ExtraTensor& t, std::vector<std::uint64_t> shape) {
    MARBM_EXPECTS(t.shape == shape, DataError,
                  path + ": checkpoint tensor '" + std::string(name) + "' has the wrong shape for a " +
                      std::to_string(n) + " x " + std::to_string(m) + " model");
  };
  const ExtraTensor& counters = get("checkpoint.counters", "I64");
  expect_shape("checkpoint.counters", counters, {3});
  const ExtraTensor& scalars = get("checkpoint.scalars", "F64");
  expect_shape("checkpoint.scalars", scalars, {3});
  c.iteration = static_cast<long>(element<std::int64_t>(counters.bytes, 0));
  const std::int64_t chain_count = element<std::int64_t>(counters.bytes, 1);
  c.mode.steps_taken = static_cast<long>(element<std::int64_t>(counters.bytes, 2));
  MARBM_EXPECTS(c.iteration >= 1 && chain_count >= 0 && chain_count <= (1 << 30) && c.mode.steps_taken >= 0 &&
                    c.mode.steps_taken <= c.iteration,
                DataError, path + ": the checkpoint's counters are inconsistent");
  c.chain_count = static_cast<int>(chain_count);
  c.seconds = element<double>(scalars.bytes, 0);
  c.mode.last_push = element<double>(scalars.bytes, 1);
  c.mode.last_energy = element<double>(scalars.bytes, 2);

  auto floats = [&](const char* name, std::vector<std::uint64_t> shape) {
    const ExtraTensor& t = get(name, "F32");
    expect_shape(name, t, shape);
    std::vector<float> values(t.bytes.size() / 4);
    for (std::size_t k = 0; k < values.size(); ++k) values[k] = element<float>(t.bytes, k);
    return values;
  };
  auto bits = [&](const char* name, std::vector<std::uint64_t> shape) {
    const ExtraTensor& t = get(name, "U8");
    expect_shape(name, t, shape);
    std::vector<std::uint8_t> values(t.bytes.begin(), t.bytes.end());
    for (const std::uint8_t x : values) {
      MARBM_EXPECTS(x <= 1, DataError, path + ": checkpoint tensor '" + std::string(name) + "' holds a value other than 0 or 1");
    }
    return values;
  };
  c.optimizer.weights = floats("checkpoint.velocity.weights", {n, m});
  c.optimizer.visible_bias = floats("checkpoint.velocity.visible_bias", {n});
  c.optimizer.hidden_bias = floats("checkpoint.velocity.hidden_bias", {m});
  for (const auto* v : {&c.optimizer.weights, &c.optimizer.visible_bias, &c.optimizer.hidden_bias}) {
    for (const float x : *v) {
      MARBM_EXPECTS(std::isfinite(x), DataError, path + ": the checkpoint's optimiser state is not finite");
    }
  }
  c.chains = bits("checkpoint.chains", {static_cast<std::uint64_t>(chain_count), n});
  const bool has_mode = extra.count("checkpoint.mode.visible") && !extra.at("checkpoint.mode.visible").bytes.empty();
  c.mode.mode_visible = bits("checkpoint.mode.visible", {has_mode ? n : 0});
  c.mode.mode_hidden = bits("checkpoint.mode.hidden", {has_mode ? m : 0});
  const ExtraTensor& population = get("checkpoint.mode.population", "U8");
  MARBM_EXPECTS(population.shape.size() == 2 && population.shape[1] == n, DataError,
                path + ": checkpoint tensor 'checkpoint.mode.population' has the wrong shape");
  c.mode.population = bits("checkpoint.mode.population", population.shape);

  const ExtraTensor& history = get("checkpoint.history", "F64");
  MARBM_EXPECTS(history.shape.size() == 2 && history.shape[1] == kHistoryColumns, DataError,
                path + ": checkpoint tensor 'checkpoint.history' has the wrong shape");
  for (std::uint64_t r = 0; r < history.shape[0]; ++r) {
    TrainMetrics point;
    for (int k = 0; k < kHistoryColumns; ++k) {
      set_history_field(point, k, element<double>(history.bytes, r * kHistoryColumns + k));
    }
    c.history.push_back(point);
  }
  if (metadata) *metadata = std::move(meta);
  return c;
}

}  // namespace marbm
