#include "marbm/rbm.hpp"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <string>

#include "marbm/error.hpp"
#include "marbm/random.hpp"

namespace marbm {

double softplus(double x) { return x > 0 ? x + std::log1p(std::exp(-x)) : std::log1p(std::exp(x)); }

double sigmoid(double x) {
  if (x >= 0) return 1.0 / (1.0 + std::exp(-x));
  const double e = std::exp(x);
  return e / (1.0 + e);
}

namespace {

// Physical memory in bytes, or 0 when unknown.
double physical_memory_bytes() {
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page_size = sysconf(_SC_PAGESIZE);
  return pages > 0 && page_size > 0 ? static_cast<double>(pages) * static_cast<double>(page_size) : 0.0;
}

std::string gibibytes(double bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f GiB", bytes / (1024.0 * 1024.0 * 1024.0));
  return text;
}

}  // namespace

Rbm::Rbm(int n_visible, int n_hidden) : n_visible_(n_visible), n_hidden_(n_hidden) {
  MARBM_EXPECTS(n_visible >= 1 && n_hidden >= 1, UsageError,
                "an RBM needs at least one visible and one hidden unit (got " + std::to_string(n_visible) + " x " +
                    std::to_string(n_hidden) + ")");
  // A size that cannot fit gets a line naming it, not a bare bad_alloc (or,
  // with overcommit, a process killed later).
  const double weight_bytes = static_cast<double>(n_visible) * n_hidden * sizeof(float);
  const double memory_bytes = physical_memory_bytes();
  MARBM_EXPECTS(memory_bytes <= 0 || weight_bytes <= memory_bytes, RuntimeFailure,
                "an RBM of " + std::to_string(n_visible) + " x " + std::to_string(n_hidden) + " units needs " +
                    gibibytes(weight_bytes) + " for its weights alone; this machine has " +
                    gibibytes(memory_bytes) + " of memory");
  weights_.assign(static_cast<std::size_t>(n_visible) * n_hidden, 0.0f);
  visible_bias_.assign(n_visible, 0.0f);
  hidden_bias_.assign(n_hidden, 0.0f);
}

Rbm Rbm::random(int n_visible, int n_hidden, double sigma, std::uint64_t seed) {
  MARBM_EXPECTS(std::isfinite(sigma) && sigma >= 0, UsageError, "initial weight scale must be finite and >= 0");
  Rbm rbm(n_visible, n_hidden);
  const PhiloxStream stream(seed, random_stream(RandomPurpose::initialisation, 0));
  std::uint64_t index = 0;
  for (float& w : rbm.weights_) w = static_cast<float>(sigma * standard_normal(stream, index++));
  for (float& a : rbm.visible_bias_) a = static_cast<float>(sigma * standard_normal(stream, index++));
  for (float& b : rbm.hidden_bias_) b = static_cast<float>(sigma * standard_normal(stream, index++));
  return rbm;
}

namespace {
void check_state(std::span<const std::uint8_t> state, int expected, const char* layer) {
  MARBM_EXPECTS(static_cast<int>(state.size()) == expected, UsageError,
                std::string(layer) + " state has " + std::to_string(state.size()) + " units, the model has " +
                    std::to_string(expected));
}
}  // namespace

double Rbm::energy(std::span<const std::uint8_t> visible, std::span<const std::uint8_t> hidden) const {
  check_state(visible, n_visible_, "visible");
  check_state(hidden, n_hidden_, "hidden");
  double e = 0.0;
  for (int j = 0; j < n_hidden_; ++j) e -= hidden[j] ? hidden_bias_[j] : 0.0;
  for (int i = 0; i < n_visible_; ++i) {
    if (!visible[i]) continue;
    double field = visible_bias_[i];
    const float* row = weights_.data() + static_cast<std::size_t>(i) * n_hidden_;
    for (int j = 0; j < n_hidden_; ++j) field += hidden[j] ? row[j] : 0.0;
    e -= field;
  }
  return e;
}

double Rbm::free_energy(std::span<const std::uint8_t> visible) const {
  check_state(visible, n_visible_, "visible");
  std::vector<double> field(hidden_bias_.begin(), hidden_bias_.end());
  double f = 0.0;
  for (int i = 0; i < n_visible_; ++i) {
    if (!visible[i]) continue;
    f -= visible_bias_[i];
    const float* row = weights_.data() + static_cast<std::size_t>(i) * n_hidden_;
    for (int j = 0; j < n_hidden_; ++j) field[j] += row[j];
  }
  for (double x : field) f -= softplus(x);
  return f;
}

std::vector<double> Rbm::hidden_probabilities(std::span<const std::uint8_t> visible) const {
  check_state(visible, n_visible_, "visible");
  std::vector<double> field(hidden_bias_.begin(), hidden_bias_.end());
  for (int i = 0; i < n_visible_; ++i) {
    if (!visible[i]) continue;
    const float* row = weights_.data() + static_cast<std::size_t>(i) * n_hidden_;
    for (int j = 0; j < n_hidden_; ++j) field[j] += row[j];
  }
  for (double& x : field) x = sigmoid(x);
  return field;
}

std::vector<double> Rbm::visible_probabilities(std::span<const std::uint8_t> hidden) const {
  check_state(hidden, n_hidden_, "hidden");
  std::vector<double> p(n_visible_);
  for (int i = 0; i < n_visible_; ++i) {
    double field = visible_bias_[i];
    const float* row = weights_.data() + static_cast<std::size_t>(i) * n_hidden_;
    for (int j = 0; j < n_hidden_; ++j) field += hidden[j] ? row[j] : 0.0;
    p[i] = sigmoid(field);
  }
  return p;
}

double Rbm::uniform_mean_energy() const {
  double sum_a = 0.0, sum_b = 0.0, sum_w = 0.0;
  for (float a : visible_bias_) sum_a += a;
  for (float b : hidden_bias_) sum_b += b;
  for (float w : weights_) sum_w += w;
  return -sum_a / 2.0 - sum_b / 2.0 - sum_w / 4.0;
}

void Rbm::check_finite(const char* what) const {
  auto check = [&](std::span<const float> values, const char* tensor) {
    for (std::size_t k = 0; k < values.size(); ++k) {
      MARBM_EXPECTS(std::isfinite(values[k]), DataError,
                    std::string(what) + ": " + tensor + "[" + std::to_string(k) + "] is not finite");
    }
  };
  check(weights_, "weights");
  check(visible_bias_, "visible_bias");
  check(hidden_bias_, "hidden_bias");
}

}  // namespace marbm
