// The seeded local search for the mode (ModeSolver::local).
//
// Trained models have structured landscapes: simulated bifurcation and
// annealing tuned on random couplings miss their ground states, while the
// exhaustive search costs 2^k passes over the other layer. This solver works
// in the collapsed problem over the smaller layer s (k units), with the other
// layer (f units) always set optimally:
//
//   E(s) = -c.s - sum_i max(0, u_i(s)),   u = d + C^T s,
//
// where C holds the couplings (k rows of f), c the smaller layer's biases and
// d the other layer's. A single flip of s re-optimises the whole other layer,
// so its local minima are also fixed points of the block descent polish, and
// far fewer of them exist. Starts: the warm start, the given visible rows
// (in training: the minibatch, the persistent chains and the minima the last
// search kept) and random states; then perturbation rounds kick the best
// state and descend again.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <vector>

#include "marbm/error.hpp"
#include "marbm/random.hpp"
#include "mode_solvers.hpp"

namespace marbm::detail {

// Measured on trained models (bench/results/mode-trained.md): 64 random
// starts and 8 k perturbation rounds (at most 128) reach the exhaustive
// ground state of every enumerable benchmark model. Beyond 2^16 couplings a
// descent costs enough that 16 starts and 32 rounds are the default.
namespace {
bool large_model(int n_visible, int n_hidden) {
  return static_cast<double>(n_visible) * static_cast<double>(n_hidden) > 65536.0;
}
}  // namespace

int default_local_replicas(int n_visible, int n_hidden) { return large_model(n_visible, n_hidden) ? 16 : 64; }

int default_local_rounds(int n_visible, int n_hidden) {
  if (large_model(n_visible, n_hidden)) return 32;
  return std::clamp(8 * std::min(n_visible, n_hidden), 32, 128);
}

namespace {

struct CollapsedForm {
  int k = 0;  // smaller ("enumerated") layer
  int f = 0;  // other layer, set optimally
  bool hidden_smaller = true;
  std::vector<double> coupling;  // k x f: row j = couplings of smaller-layer unit j
  std::vector<double> own_bias;    // c, k
  std::vector<double> other_bias;  // d, f

  explicit CollapsedForm(const Rbm& rbm) : hidden_smaller(rbm.n_hidden() <= rbm.n_visible()) {
    const int n = rbm.n_visible(), m = rbm.n_hidden();
    k = hidden_smaller ? m : n;
    f = hidden_smaller ? n : m;
    const auto w = rbm.weights();
    coupling.resize(static_cast<std::size_t>(k) * f);
    for (int i = 0; i < n; ++i) {
      for (int j = 0; j < m; ++j) {
        const double x = w[static_cast<std::size_t>(i) * m + j];
        if (hidden_smaller) {
          coupling[static_cast<std::size_t>(j) * f + i] = x;
        } else {
          coupling[static_cast<std::size_t>(i) * f + j] = x;
        }
      }
    }
    const auto smaller_bias = hidden_smaller ? rbm.hidden_bias() : rbm.visible_bias();
    const auto larger_bias = hidden_smaller ? rbm.visible_bias() : rbm.hidden_bias();
    own_bias.assign(smaller_bias.begin(), smaller_bias.end());
    other_bias.assign(larger_bias.begin(), larger_bias.end());
  }

  const double* row(int j) const { return coupling.data() + static_cast<std::size_t>(j) * f; }
};

// sum_i max(0, u_i + sign c_i) - max(0, u_i): the change of the other
// layer's gain when one smaller-layer unit flips.
MARBM_VECTOR_CLONES double gain_change(const double* field, const double* positive, const double* row, double sign,
                                       int f) {
  double change = 0.0;
#pragma omp simd reduction(+ : change)
  for (int i = 0; i < f; ++i) change += std::max(0.0, field[i] + sign * row[i]) - positive[i];
  return change;
}

MARBM_VECTOR_CLONES void add_row(double* field, const double* row, double sign, int f) {
#pragma omp simd
  for (int i = 0; i < f; ++i) field[i] += sign * row[i];
}

struct Scratch {
  std::vector<double> field;
  std::vector<double> positive;
};

// Steepest single-flip descent of E(s) from s (in place); returns E(s).
// A flip is taken only when it lowers E by more than rounding, so it ends.
double descend(const CollapsedForm& form, std::uint8_t* s, Scratch& scratch) {
  auto& u = scratch.field;
  auto& positive = scratch.positive;
  u.assign(form.other_bias.begin(), form.other_bias.end());
  positive.resize(static_cast<std::size_t>(form.f));
  double linear = 0.0;
  for (int j = 0; j < form.k; ++j) {
    if (!s[j]) continue;
    linear += form.own_bias[j];
    add_row(u.data(), form.row(j), 1.0, form.f);
  }
  for (int move = 0; move < 100000; ++move) {
    double gain = 0.0;
    for (int i = 0; i < form.f; ++i) {
      positive[i] = std::max(0.0, u[i]);
      gain += positive[i];
    }
    const double tolerance = 1e-12 * (1.0 + std::abs(linear) + gain);
    int best = -1;
    double best_change = -tolerance;
    for (int j = 0; j < form.k; ++j) {
      const double sign = s[j] ? -1.0 : 1.0;
      const double change = -sign * form.own_bias[j] - gain_change(u.data(), positive.data(), form.row(j), sign, form.f);
      if (change < best_change) {
        best_change = change;
        best = j;
      }
    }
    if (best < 0) return -linear - gain;
    const double sign = s[best] ? -1.0 : 1.0;
    s[best] ^= 1u;
    linear += sign * form.own_bias[best];
    add_row(u.data(), form.row(best), sign, form.f);
  }
  double gain = 0.0;
  for (int i = 0; i < form.f; ++i) gain += std::max(0.0, u[i]);
  return -linear - gain;
}

// The smaller layer's optimal state given a visible row (or the row itself
// when the visible layer is the smaller one).
void smaller_from_visible(const Rbm& rbm, const CollapsedForm& form, const std::uint8_t* visible, std::uint8_t* s) {
  if (!form.hidden_smaller) {
    std::copy(visible, visible + form.k, s);
    return;
  }
  const auto b = rbm.hidden_bias();
  std::vector<double> field(b.begin(), b.end());
  const int m = rbm.n_hidden();
  const auto w = rbm.weights();
  for (int i = 0; i < rbm.n_visible(); ++i) {
    if (!visible[i]) continue;
    const float* row = w.data() + static_cast<std::size_t>(i) * m;
    for (int j = 0; j < m; ++j) field[j] += row[j];
  }
  for (int j = 0; j < m; ++j) s[j] = field[j] > 0.0 ? 1 : 0;
}

// The full state (v, h) of a smaller-layer state, the other layer optimal.
void full_state(const CollapsedForm& form, const std::uint8_t* s, std::vector<std::uint8_t>& smaller,
                std::vector<std::uint8_t>& other) {
  smaller.assign(s, s + form.k);
  std::vector<double> u(form.other_bias);
  for (int j = 0; j < form.k; ++j) {
    if (s[j]) add_row(u.data(), form.row(j), 1.0, form.f);
  }
  other.resize(static_cast<std::size_t>(form.f));
  for (int i = 0; i < form.f; ++i) other[i] = u[i] > 0.0 ? 1 : 0;
}

}  // namespace

struct CollapsedPolish::Form : CollapsedForm {
  using CollapsedForm::CollapsedForm;
};

CollapsedPolish::CollapsedPolish(const Rbm& rbm) : form_(std::make_unique<Form>(rbm)) {}
CollapsedPolish::~CollapsedPolish() = default;

double CollapsedPolish::run(std::uint8_t* visible, std::uint8_t* hidden, Scratch& scratch) const {
  const CollapsedForm& form = *form_;
  std::uint8_t* smaller = form.hidden_smaller ? hidden : visible;
  std::uint8_t* other = form.hidden_smaller ? visible : hidden;
  Scratch& s = scratch;
  ::marbm::detail::Scratch descent{std::move(s.field), std::move(s.positive)};
  const double energy = descend(form, smaller, descent);
  // descend keeps u = d + C^T s in step with s: the other layer's optimum.
  for (int i = 0; i < form.f; ++i) other[i] = descent.field[i] > 0.0 ? 1 : 0;
  s.field = std::move(descent.field);
  s.positive = std::move(descent.positive);
  return energy;
}

ModeResult mode_local_cpu(const Rbm& rbm, const ModeSearchConfig& config) {
  const auto start_time = std::chrono::steady_clock::now();
  const int n = rbm.n_visible();
  const CollapsedForm form(rbm);
  const int k = form.k;
  const int random_starts = config.replicas > 0 ? config.replicas : default_local_replicas(n, rbm.n_hidden());
  const int rounds = config.steps > 0 ? config.steps : default_local_rounds(n, rbm.n_hidden());
  const int warm = config.warm_visible.empty() ? 0 : 1;
  const int given = static_cast<int>(config.start_visible.size() / static_cast<std::size_t>(n));
  const int starts = warm + given + random_starts;

  // Start states of the smaller layer, one row of k each: warm, given rows,
  // then random states from Philox (seed, mode_search stream 2).
  std::vector<std::uint8_t> states(static_cast<std::size_t>(starts) * k);
  auto state = [&](int r) { return states.data() + static_cast<std::size_t>(r) * k; };
  if (warm) {
    const auto& smaller = form.hidden_smaller ? config.warm_hidden : config.warm_visible;
    std::copy(smaller.begin(), smaller.end(), state(0));
  }
  for (int r = 0; r < given; ++r) {
    smaller_from_visible(rbm, form, config.start_visible.data() + static_cast<std::size_t>(r) * n, state(warm + r));
  }
  const PhiloxStream stream(config.seed, random_stream(RandomPurpose::mode_search, 2));
  for (int r = warm + given; r < starts; ++r) {
    for (int j = 0; j < k; ++j) {
      const std::uint64_t counter = static_cast<std::uint64_t>(r) * static_cast<std::uint64_t>(k) + j;
      state(r)[j] = stream.uniform(counter) < 0.5f ? 1 : 0;
    }
  }

  std::vector<double> energy(static_cast<std::size_t>(starts));
  // A team costs more than a tiny model's whole search.
  const bool parallel = static_cast<double>(starts) * k * form.f > 2e5;
  const DescentPolish polish(rbm);
#pragma omp parallel if (parallel)
  {
    Scratch scratch;
    DescentPolish::Scratch polish_scratch;
    std::vector<std::uint8_t> smaller, other;
#pragma omp for schedule(dynamic, 1)
    for (int r = 0; r < starts; ++r) {
      // The block descent moves many units per pass and is cheap far from a
      // minimum; the collapsed descent then needs only a few flips.
      full_state(form, state(r), smaller, other);
      std::uint8_t* visible = form.hidden_smaller ? other.data() : smaller.data();
      std::uint8_t* hidden = form.hidden_smaller ? smaller.data() : other.data();
      polish.run(visible, hidden, polish_scratch);
      std::copy(smaller.begin(), smaller.end(), state(r));
      energy[r] = descend(form, state(r), scratch);
    }
  }
  // Lowest energy, first start on ties: independent of the thread count.
  int best = 0;
  for (int r = 1; r < starts; ++r) {
    if (energy[r] < energy[best]) best = r;
  }
  std::vector<std::uint8_t> best_state(state(best), state(best) + k);
  double best_energy = energy[best];

  // Perturbation rounds: flip a few random units of the best state and
  // descend again (Philox stream 3, one block of words per round).
  const int kicks = std::clamp(k / 8, 2, 8);
  const PhiloxStream kick_stream(config.seed, random_stream(RandomPurpose::mode_search, 3));
  std::vector<std::uint8_t> trial(static_cast<std::size_t>(k));
  std::vector<std::uint8_t> round_states;
  std::vector<double> round_energy;
  Scratch scratch;
  for (int round = 0; round < rounds && k > 1; ++round) {
    trial = best_state;
    for (int q = 0; q < kicks; ++q) {
      const std::uint64_t counter = static_cast<std::uint64_t>(round) * 8 + q;
      trial[kick_stream.bits(counter) % static_cast<std::uint32_t>(k)] ^= 1u;
    }
    const double e = descend(form, trial.data(), scratch);
    if (config.keep_minima > 0) {
      round_states.insert(round_states.end(), trial.begin(), trial.end());
      round_energy.push_back(e);
    }
    if (e < best_energy - 1e-12 * (1.0 + std::abs(best_energy))) {
      best_energy = e;
      best_state = trial;
    }
  }

  ModeResult result;
  std::vector<std::uint8_t> smaller, other;
  full_state(form, best_state.data(), smaller, other);
  result.visible = form.hidden_smaller ? other : smaller;
  result.hidden = form.hidden_smaller ? smaller : other;
  result.energy = rbm.energy(result.visible, result.hidden);
  const double tolerance = 1e-9 * std::max(1.0, std::abs(best_energy));
  result.replicas = starts;
  result.replicas_at_best = static_cast<int>(
      std::count_if(energy.begin(), energy.end(), [&](double e) { return e <= best_energy + tolerance; }));
  result.steps = rounds;

  if (config.keep_minima > 0) {
    // Distinct minima, lowest first (first found on ties).
    states.insert(states.end(), round_states.begin(), round_states.end());
    energy.insert(energy.end(), round_energy.begin(), round_energy.end());
    std::vector<int> order(energy.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int x, int y) { return energy[x] < energy[y]; });
    std::vector<int> kept;
    for (int r : order) {
      if (static_cast<int>(kept.size()) == config.keep_minima) break;
      const bool seen = std::any_of(kept.begin(), kept.end(), [&](int q) {
        return std::equal(state(r), state(r) + k, state(q));
      });
      if (seen) continue;
      kept.push_back(r);
      full_state(form, state(r), smaller, other);
      const auto& visible = form.hidden_smaller ? other : smaller;
      result.minima_visible.insert(result.minima_visible.end(), visible.begin(), visible.end());
      result.minima_energy.push_back(rbm.energy(visible, form.hidden_smaller ? smaller : other));
    }
  }
  result.seconds = seconds_since(start_time);
  return result;
}

}  // namespace marbm::detail
