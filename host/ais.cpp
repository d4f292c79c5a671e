// Annealed importance sampling for log Z (SPEC.md section 6).
//
// The intermediate model at inverse temperature beta has the unnormalised
// visible marginal
//     f_beta(v) = exp((1 - beta) a_A.v + beta a.v) prod_j (1 + exp(beta x_j)),   x = b + W^T v,
// so f_0 is the base-rate model (Z_A = 2^m prod_i (1 + exp(a_A,i))) and f_1
// the RBM. A run visits gamma_0, ..., gamma_K (the schedule, reversed for
// reverse AIS), adds log f_{gamma_t}(v) - log f_{gamma_{t-1}}(v) to its log
// weight and, before the last step, makes one block-Gibbs transition at
// gamma_t (h ~ sigmoid(gamma x), v ~ sigmoid((1 - gamma) a_A + gamma (a + W h))).
//
// Runs go through the schedule in fixed blocks of min(64, ceil(M / 2)) rows
// (M = 100: two blocks of 50, for 2 cores; larger M gives more blocks for
// more cores); each block makes one single-threaded sgemm per half-step on
// one OpenMP thread. Blocks
// never share work, so there is no barrier per beta (on shared cores a
// barrier can wait a whole time slice), and since a block's arithmetic does
// not depend on which thread runs it, the result does not depend on the
// thread count.
//
// Random numbers: run r of the forward direction reads the Philox stream
// (seed, random_stream(ais_forward, r)), reverse runs (seed,
// random_stream(ais_reverse, r)). Step s of a run uses the words
//     s * (round4(m) + round4(n)) + [0, m)             hidden draws
//     s * (round4(m) + round4(n)) + round4(m) + [0, n)  visible draws
// Forward: step 0 is the base-rate sample, step t the transition at gamma_t.
// Reverse: step 0 is the base-rate sample (without data), steps 1 .. B the
// burn-in sweeps, step B + t the transition at gamma_t.
#include "marbm/ais.hpp"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <exception>
#include <limits>
#include <numbers>
#include <string>
#include <vector>

#include "detail/cuda_entry.hpp"
#include "detail/fast_math.hpp"
#include "marbm/error.hpp"
#include "marbm/random.hpp"

namespace marbm {
namespace {

using detail::fast_sigmoid;
using detail::fast_softplus;

constexpr int max_block_rows = 64;

std::string str(long long x) { return std::to_string(x); }

std::uint64_t round_up4(int x) { return static_cast<std::uint64_t>((x + 3) & ~3); }

// out[j] = softplus(beta x_j) - softplus(beta_prev x_j) and
// probability[j] = sigmoid(beta x_j) for x = field + bias.
MARBM_VECTOR_CLONES
void hidden_step(const float* __restrict field, const float* __restrict bias, double beta_prev, double beta,
                 double* __restrict out, double* __restrict probability, int m) {
  for (int j = 0; j < m; ++j) {
    const double x = static_cast<double>(field[j]) + static_cast<double>(bias[j]);
    out[j] = fast_softplus(beta * x) - fast_softplus(beta_prev * x);
    probability[j] = fast_sigmoid(beta * x);
  }
}

// probability[i] = sigmoid((1 - beta) base_i + beta (a_i + field_i)).
MARBM_VECTOR_CLONES
void visible_step(const float* __restrict field, const double* __restrict base, const float* __restrict bias,
                  double beta, double* __restrict probability, int n) {
  for (int i = 0; i < n; ++i) {
    const double x = (1.0 - beta) * base[i] + beta * (static_cast<double>(bias[i]) + static_cast<double>(field[i]));
    probability[i] = fast_sigmoid(x);
  }
}

// words[4 b + q] = word q of Philox block first_block + b, for b < blocks:
// PhiloxStream::block() as a plain loop over blocks, which the compiler
// vectorises (32 x 32 -> 64-bit products in 64-bit lanes).
MARBM_VECTOR_CLONES
void philox_blocks(std::uint64_t seed, std::uint64_t stream, std::uint64_t first_block, int blocks,
                   std::uint32_t* __restrict words) {
  constexpr std::uint64_t m0 = 0xD2511F53u, m1 = 0xCD9E8D57u;
  constexpr std::uint32_t w0 = 0x9E3779B9u, w1 = 0xBB67AE85u;
  const auto stream_low = static_cast<std::uint32_t>(stream), stream_high = static_cast<std::uint32_t>(stream >> 32);
  const auto seed_low = static_cast<std::uint32_t>(seed), seed_high = static_cast<std::uint32_t>(seed >> 32);
  for (int b = 0; b < blocks; ++b) {
    const std::uint64_t block = first_block + static_cast<std::uint64_t>(b);
    std::uint32_t c0 = static_cast<std::uint32_t>(block), c1 = static_cast<std::uint32_t>(block >> 32);
    std::uint32_t c2 = stream_low, c3 = stream_high, k0 = seed_low, k1 = seed_high;
    for (int round = 0; round < 10; ++round) {
      const std::uint64_t p0 = m0 * c0;
      const std::uint64_t p1 = m1 * c2;
      c0 = static_cast<std::uint32_t>(p1 >> 32) ^ c1 ^ k0;
      c1 = static_cast<std::uint32_t>(p1);
      c2 = static_cast<std::uint32_t>(p0 >> 32) ^ c3 ^ k1;
      c3 = static_cast<std::uint32_t>(p0);
      k0 += w0;
      k1 += w1;
    }
    words[4 * b] = c0;
    words[4 * b + 1] = c1;
    words[4 * b + 2] = c2;
    words[4 * b + 3] = c3;
  }
}

// state[k] = [u_k < probability[k]], u_k the Philox uniform at word
// first_word + k (first_word a multiple of 4); `words` is scratch.
void bernoulli(const PhiloxStream& random, std::uint64_t first_word, const double* probability, float* state,
               int count, std::vector<std::uint32_t>& words) {
  const int blocks = (count + 3) / 4;
  words.resize(4 * static_cast<std::size_t>(blocks));
  philox_blocks(random.seed(), random.stream(), first_word >> 2, blocks, words.data());
  for (int k = 0; k < count; ++k) {
    state[k] = static_cast<double>(PhiloxStream::to_uniform(words[k])) < probability[k] ? 1.0f : 0.0f;
  }
}

// What every block of runs shares.
struct Problem {
  const Rbm* rbm = nullptr;
  int n = 0;
  int m = 0;
  std::vector<double> base_bias;        // a_A
  std::vector<double> bias_difference;  // a - a_A
  std::uint64_t words_per_step = 0;
  std::uint64_t seed = 0;
};

// Workspace and state of one block of `rows` runs.
class Block {
 public:
  Block(const Problem& problem, int first_run, int rows, RandomPurpose purpose)
      : p_(problem), first_run_(first_run), rows_(rows), purpose_(purpose),
        visible_(static_cast<std::size_t>(rows) * problem.n), hidden_(static_cast<std::size_t>(rows) * problem.m),
        hidden_field_(hidden_.size()), visible_field_(visible_.size()),
        probability_(static_cast<std::size_t>(std::max(problem.n, problem.m))),
        softplus_difference_(problem.m), log_weight_(rows, 0.0) {}

  PhiloxStream random(int row) const {
    return PhiloxStream(p_.seed, random_stream(purpose_, static_cast<std::uint64_t>(first_run_ + row)));
  }

  // Visible states drawn from the base-rate model (the exact beta = 0 sample).
  void sample_base(std::uint64_t step) {
    const int n = p_.n;
    for (int i = 0; i < n; ++i) probability_[i] = fast_sigmoid(p_.base_bias[i]);
    for (int r = 0; r < rows_; ++r) bernoulli(random(r), visible_word(step), probability_.data(), row_v(r), n, words_);
  }

  // Visible states copied from data rows first_run + r (cycling).
  void copy_rows(const Dataset& data) {
    for (int r = 0; r < rows_; ++r) {
      const auto row = data.row((first_run_ + r) % data.n_rows);
      for (int i = 0; i < p_.n; ++i) row_v(r)[i] = row[i];
    }
  }

  // Hidden fields W^T v (without b) of every row.
  void compute_hidden_field() {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows_, p_.m, p_.n, 1.0f, visible_.data(), p_.n,
                p_.rbm->weights().data(), p_.m, 0.0f, hidden_field_.data(), p_.m);
  }

  // Adds log f_beta(v) - log f_beta_prev(v) to each row's log weight; with
  // `transition`, then makes one Gibbs transition at beta (random step `step`).
  void anneal(double beta_prev, double beta, bool weigh, bool transition, std::uint64_t step) {
    const int n = p_.n, m = p_.m;
    const float* hidden_bias = p_.rbm->hidden_bias().data();
    compute_hidden_field();
    for (int r = 0; r < rows_; ++r) {
      hidden_step(hidden_field_.data() + static_cast<std::size_t>(r) * m, hidden_bias, beta_prev, beta,
                  softplus_difference_.data(), probability_.data(), m);
      if (weigh) {
        double change = 0.0;
        for (int j = 0; j < m; ++j) change += softplus_difference_[j];
        double visible_term = 0.0;
        const float* v = row_v(r);
        for (int i = 0; i < n; ++i) visible_term += v[i] * p_.bias_difference[i];
        log_weight_[r] += change + (beta - beta_prev) * visible_term;
      }
      if (transition) bernoulli(random(r), hidden_word(step), probability_.data(), row_h(r), m, words_);
    }
    if (!transition) return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows_, n, m, 1.0f, hidden_.data(), m,
                p_.rbm->weights().data(), m, 0.0f, visible_field_.data(), n);
    const float* visible_bias = p_.rbm->visible_bias().data();
    for (int r = 0; r < rows_; ++r) {
      visible_step(visible_field_.data() + static_cast<std::size_t>(r) * n, p_.base_bias.data(), visible_bias, beta,
                   probability_.data(), n);
      bernoulli(random(r), visible_word(step), probability_.data(), row_v(r), n, words_);
    }
  }

  double log_weight(int r) const { return log_weight_[r]; }
  int first_run() const { return first_run_; }

 private:
  float* row_v(int r) { return visible_.data() + static_cast<std::size_t>(r) * p_.n; }
  float* row_h(int r) { return hidden_.data() + static_cast<std::size_t>(r) * p_.m; }
  std::uint64_t hidden_word(std::uint64_t step) const { return step * p_.words_per_step; }
  std::uint64_t visible_word(std::uint64_t step) const { return step * p_.words_per_step + round_up4(p_.m); }

  const Problem& p_;
  int first_run_;
  int rows_;
  RandomPurpose purpose_;
  std::vector<float> visible_, hidden_, hidden_field_, visible_field_;
  std::vector<double> probability_, softplus_difference_;
  std::vector<double> log_weight_;
  std::vector<std::uint32_t> words_;
};

// log of the mean of exp(log_weights) and the +-3 standard error ends,
// computed on weights scaled by their largest so that nothing overflows.
struct WeightSummary {
  double log_mean = 0.0;
  double relative_error = 0.0;  // sd(mean) / mean
  double log_mean_minus = 0.0;  // log(mean - 3 sd(mean)), -inf when that is <= 0
  double log_mean_plus = 0.0;   // log(mean + 3 sd(mean))
};

WeightSummary summarise(const std::vector<double>& log_weights) {
  const double top = *std::max_element(log_weights.begin(), log_weights.end());
  const double count = static_cast<double>(log_weights.size());
  double sum = 0.0;
  for (const double w : log_weights) sum += std::exp(w - top);
  const double mean = sum / count;
  double squares = 0.0;
  for (const double w : log_weights) squares += (std::exp(w - top) - mean) * (std::exp(w - top) - mean);
  const double error = std::sqrt(squares / (count - 1.0)) / std::sqrt(count);
  WeightSummary s;
  s.log_mean = top + std::log(mean);
  s.relative_error = error / mean;
  s.log_mean_minus = mean > 3.0 * error ? top + std::log(mean - 3.0 * error) : -std::numeric_limits<double>::infinity();
  s.log_mean_plus = top + std::log(mean + 3.0 * error);
  return s;
}

void check_options(const Rbm& rbm, const AisOptions& options, const Dataset* data) {
  MARBM_EXPECTS(rbm.n_visible() >= 1 && rbm.n_hidden() >= 1, UsageError, "AIS: the model has no units");
  rbm.check_finite("AIS model");
  MARBM_EXPECTS(options.runs >= 2, UsageError, "AIS: runs must be >= 2, got " + str(options.runs));
  MARBM_EXPECTS(options.reverse_burn_in >= 0, UsageError,
                "AIS: reverse burn-in must be >= 0, got " + str(options.reverse_burn_in));
  MARBM_EXPECTS(options.threads >= 0, UsageError, "AIS: threads must be >= 0, got " + str(options.threads));
  if (!options.base_visible_probabilities.empty()) {
    MARBM_EXPECTS(options.base_visible_probabilities.size() == static_cast<std::size_t>(rbm.n_visible()), UsageError,
                  "AIS: " + str(static_cast<long long>(options.base_visible_probabilities.size())) +
                      " base-rate probabilities given for " + str(rbm.n_visible()) + " visible units");
    for (const double p : options.base_visible_probabilities) {
      MARBM_EXPECTS(p > 0.0 && p < 1.0, UsageError,
                    "AIS: base-rate probability " + std::to_string(p) + " is not inside (0, 1)");
    }
  }
  if (data != nullptr) {
    MARBM_EXPECTS(data->n_cols == rbm.n_visible(), UsageError,
                  "AIS: the data set has " + str(data->n_cols) + " columns, the model has " + str(rbm.n_visible()) +
                      " visible units");
    MARBM_EXPECTS(data->n_rows >= 1, UsageError, "AIS: the data set has no rows");
  }
}

std::vector<double> checked_schedule(const AisOptions& options) {
  if (options.betas.empty()) return ais_schedule(options.intervals);
  const auto& betas = options.betas;
  MARBM_EXPECTS(betas.size() >= 2, UsageError, "AIS: a schedule needs at least two betas (0 and 1)");
  MARBM_EXPECTS(betas.front() == 0.0 && betas.back() == 1.0, UsageError,
                "AIS: the schedule must start at beta 0 and end at beta 1");
  for (std::size_t k = 1; k < betas.size(); ++k) {
    MARBM_EXPECTS(std::isfinite(betas[k]) && betas[k] >= betas[k - 1], UsageError,
                  "AIS: the schedule must not decrease (beta " + str(static_cast<long long>(k)) + ")");
  }
  return betas;
}

// Sets OpenBLAS to one thread for the calling scope (each block's products
// run on its own OpenMP thread) and restores the previous count.
class SingleThreadedBlas {
 public:
  SingleThreadedBlas() : saved_(openblas_get_num_threads()) {
    if (saved_ != 1) openblas_set_num_threads(1);
  }
  ~SingleThreadedBlas() {
    if (saved_ != 1) openblas_set_num_threads(saved_);
  }
  SingleThreadedBlas(const SingleThreadedBlas&) = delete;
  SingleThreadedBlas& operator=(const SingleThreadedBlas&) = delete;

 private:
  int saved_;
};

// Runs `runs` annealing runs in blocks; body(block) takes a block from its
// start to its log weights. Returns the M log weights in run order.
template <typename Body>
std::vector<double> run_blocks(const Problem& problem, int runs, RandomPurpose purpose, int threads,
                               const Body& body) {
  const int block_rows = std::min(max_block_rows, (runs + 1) / 2);
  const int blocks = (runs + block_rows - 1) / block_rows;
  std::vector<double> log_weights(runs);
  const int team = std::min(blocks, threads > 0 ? threads : omp_get_max_threads());
  std::exception_ptr failure;
#pragma omp parallel for schedule(dynamic, 1) num_threads(team)
  for (int k = 0; k < blocks; ++k) {
    try {
      const int first = k * block_rows;
      const int rows = std::min(block_rows, runs - first);
      Block block(problem, first, rows, purpose);
      body(block);
      for (int r = 0; r < rows; ++r) log_weights[first + r] = block.log_weight(r);
    } catch (...) {
#pragma omp critical(marbm_ais_failure)
      failure = std::current_exception();
    }
  }
  if (failure) std::rethrow_exception(failure);
  return log_weights;
}

// The M forward (and reverse) log weights on the CPU, into `result`.
void run_cpu(const Problem& problem, const std::vector<double>& betas, const AisOptions& options,
             const Dataset* data, AisResult& result) {
  const int intervals = static_cast<int>(betas.size()) - 1;
  const SingleThreadedBlas single_threaded_blas;
  // The block of run 0 reports for all (blocks advance at about the same
  // pace); one thread runs it, so reports never overlap.
  const int phases = options.reverse ? 2 : 1;
  const int report_every = std::max(1, intervals / 200);
  auto report = [&](const Block& block, int t, int phase) {
    if (options.progress && block.first_run() == 0 && (t % report_every == 0 || t == intervals)) {
      options.progress((phase + static_cast<double>(t) / intervals) / phases);
    }
  };
  result.forward.log_weights = run_blocks(problem, options.runs, RandomPurpose::ais_forward, options.threads,
                                          [&](Block& block) {
                                            block.sample_base(0);
                                            for (int t = 1; t <= intervals; ++t) {
                                              block.anneal(betas[t - 1], betas[t], true, t < intervals,
                                                           static_cast<std::uint64_t>(t));
                                              report(block, t, 0);
                                            }
                                          });
  if (!options.reverse) return;
  const auto burn_in = static_cast<std::uint64_t>(options.reverse_burn_in);
  result.reverse.log_weights =
      run_blocks(problem, options.runs, RandomPurpose::ais_reverse, options.threads, [&](Block& block) {
        if (data != nullptr) {
          block.copy_rows(*data);
        } else {
          block.sample_base(0);
        }
        for (std::uint64_t s = 1; s <= burn_in; ++s) block.anneal(1.0, 1.0, false, true, s);
        for (int t = 1; t <= intervals; ++t) {
          block.anneal(betas[intervals - t + 1], betas[intervals - t], true, t < intervals,
                       burn_in + static_cast<std::uint64_t>(t));
          report(block, t, 1);
        }
      });
}

}  // namespace

// The published schedule (Salakhutdinov & Murray 2008 and their code): steps
// of 1e-3 up to 0.5, 1e-4 up to 0.9 and 1e-5 up to 1, 14,500 intervals. (SPEC.md
// section 6 says 1,000 betas in [0, 0.5), which would make 15,000; the paper's
// count is the one used here.)
std::vector<double> ais_schedule(int intervals) {
  MARBM_EXPECTS(intervals >= 3, UsageError, "AIS: the schedule needs at least 3 intervals, got " + str(intervals));
  const double total = ais_published_intervals;
  const int first = std::max(1, static_cast<int>(std::lround(intervals * 500.0 / total)));
  const int second = std::max(1, static_cast<int>(std::lround(intervals * 4000.0 / total)));
  const int third = std::max(1, intervals - first - second);
  std::vector<double> betas;
  betas.reserve(static_cast<std::size_t>(first + second + third) + 1);
  auto segment = [&](double from, double to, int steps) {
    for (int k = 0; k < steps; ++k) betas.push_back(from + (to - from) * k / steps);
  };
  segment(0.0, 0.5, first);
  segment(0.5, 0.9, second);
  segment(0.9, 1.0, third);
  betas.push_back(1.0);
  return betas;
}

std::vector<double> base_rate_probabilities(const Dataset& data) {
  MARBM_EXPECTS(data.n_rows >= 1 && data.n_cols >= 1, UsageError, "base rate: the data set is empty");
  std::vector<double> counts(data.n_cols, 0.0);
  for (int r = 0; r < data.n_rows; ++r) {
    const auto row = data.row(r);
    for (int i = 0; i < data.n_cols; ++i) counts[i] += row[i];
  }
  for (double& c : counts) c = (c + 1.0) / (data.n_rows + 2.0);
  return counts;
}

AisResult log_partition_ais(const Rbm& rbm, const AisOptions& options, const Dataset* data) {
  const auto start = std::chrono::steady_clock::now();
  check_options(rbm, options, data);
  const std::vector<double> betas = checked_schedule(options);
  const int intervals = static_cast<int>(betas.size()) - 1;

  Problem problem;
  problem.rbm = &rbm;
  problem.n = rbm.n_visible();
  problem.m = rbm.n_hidden();
  problem.seed = options.seed;
  problem.words_per_step = round_up4(problem.m) + round_up4(problem.n);
  const std::vector<double> base = !options.base_visible_probabilities.empty() ? options.base_visible_probabilities
                                   : data != nullptr ? base_rate_probabilities(*data)
                                                     : std::vector<double>(problem.n, 0.5);
  problem.base_bias.resize(problem.n);
  problem.bias_difference.resize(problem.n);
  AisResult result;
  result.log_z_base = problem.m * std::numbers::ln2;
  for (int i = 0; i < problem.n; ++i) {
    problem.base_bias[i] = std::log(base[i] / (1.0 - base[i]));
    problem.bias_difference[i] = rbm.visible_bias()[i] - problem.base_bias[i];
    result.log_z_base += softplus(problem.base_bias[i]);
  }
  result.runs = options.runs;
  result.intervals = intervals;

  Backend backend = options.backend;
  if (backend == Backend::automatic) backend = cuda_devices().empty() ? Backend::cpu : Backend::cuda;
  if (backend == Backend::cuda) {
    detail::AisDeviceRequest request;
    request.rbm = &rbm;
    request.betas = betas;
    request.base_bias = problem.base_bias;
    request.bias_difference = problem.bias_difference;
    request.runs = options.runs;
    request.seed = options.seed;
    request.reverse = options.reverse;
    request.reverse_burn_in = options.reverse_burn_in;
    request.data = data;
    request.device = options.device;
    request.progress = options.progress;
    detail::AisDeviceWeights weights = detail::ais_log_weights_cuda(request);
    result.forward.log_weights = std::move(weights.forward);
    result.reverse.log_weights = std::move(weights.reverse);
  } else {
    run_cpu(problem, betas, options, data, result);
  }
  const WeightSummary forward = summarise(result.forward.log_weights);
  result.forward.log_z = result.log_z_base + forward.log_mean;
  result.forward.standard_error = forward.relative_error;
  result.forward.low = result.log_z_base + forward.log_mean_minus;
  result.forward.high = result.log_z_base + forward.log_mean_plus;

  if (options.reverse) {
    // The reverse weights estimate Z_A / Z: log Z = log Z_A - log mean(w),
    // so the +-3 sd ends of the mean swap sides.
    const WeightSummary reverse = summarise(result.reverse.log_weights);
    result.has_reverse = true;
    result.reverse.log_z = result.log_z_base - reverse.log_mean;
    result.reverse.standard_error = reverse.relative_error;
    result.reverse.low = result.log_z_base - reverse.log_mean_plus;
    result.reverse.high = result.log_z_base - reverse.log_mean_minus;
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace marbm
