// The CPU engine: the conformance suite plus what only the CPU engine promises.
#include <gtest/gtest.h>
#include <omp.h>

#include "engine_conformance.hpp"
#include "marbm/exact.hpp"

namespace marbm::conformance {

INSTANTIATE_TEST_SUITE_P(Cpu, EngineConformance, ::testing::Values(Backend::cpu));

namespace {

// Restores the OpenMP thread count a test changed.
class ThreadCountGuard {
 public:
  ThreadCountGuard() : saved_(omp_get_max_threads()) {}
  ~ThreadCountGuard() { omp_set_num_threads(saved_); }
  ThreadCountGuard(const ThreadCountGuard&) = delete;
  ThreadCountGuard& operator=(const ThreadCountGuard&) = delete;

 private:
  int saved_;
};

// Sizes large enough that the elementwise loops run as parallel regions and
// the products go through BLAS, so the thread count really changes the work split.
Rbm train_a_little(NegativePhase negative, int threads) {
  omp_set_num_threads(threads);
  auto engine = make_engine(Backend::cpu);
  const Rbm initial = Rbm::random(96, 80, 0.1, 7);
  const Dataset data = random_dataset(2000, 96, 8);
  engine->set_model(initial);
  engine->set_data(data);
  if (negative == NegativePhase::pcd) engine->reset_persistent_chains(1800, 3);
  std::vector<int> rows(1700);  // 1700 x 80 hidden units: above the engine's parallel threshold
  for (std::uint64_t t = 0; t < 2; ++t) {
    for (int r = 0; r < 1700; ++r) rows[r] = static_cast<int>((t * 37 + r) % 2000);
    UpdateStep step;
    step.batch_rows = rows;
    step.negative = negative;
    step.gibbs_steps = 2;
    step.learning_rate = 0.05;
    step.momentum = 0.5;
    step.sample_positive_hidden = (t % 2) == 1;
    step.seed = 99;
    step.step = t;
    engine->update(step);
  }
  return engine->model();
}

}  // namespace

TEST(CpuEngine, SameSeedSameResultAtAnyThreadCount) {
  ThreadCountGuard guard;
  for (const NegativePhase negative : {NegativePhase::cd, NegativePhase::pcd}) {
    const Rbm one = train_a_little(negative, 1);
    const Rbm two = train_a_little(negative, 2);
    EXPECT_EQ(one, two);
    EXPECT_NE(one, Rbm::random(96, 80, 0.1, 7)) << "the updates ran";
  }
}

TEST(CpuEngine, GibbsChainIsThreadCountIndependent) {
  ThreadCountGuard guard;
  const Rbm rbm = Rbm::random(50, 40, 0.5, 17);
  const Dataset start = random_dataset(4000, 50, 18);  // 4000 x 40: parallel regions
  std::vector<std::vector<std::uint8_t>> results;
  for (const int threads : {1, 2, 4}) {
    omp_set_num_threads(threads);
    auto engine = make_engine(Backend::cpu);
    engine->set_model(rbm);
    results.push_back(engine->gibbs_chain(start.values, start.n_rows, 3, 5, 6));
  }
  EXPECT_EQ(results[0], results[1]);
  EXPECT_EQ(results[0], results[2]);
}

TEST(CpuEngine, GibbsChainFollowsTheDocumentedPhiloxLayout) {
  // host/cpu_engine.cpp: the draw for (row r, unit u, half-sweep s) is the
  // uniform at s * 2^40 + r * round_up4(width) + u of (seed, gibbs stream);
  // h_s in half-sweep 2s, v_{s+1} in 2s + 1. Replayed here in float64 (a
  // draw within float32 rounding of its probability, ~1e-7, would differ).
  const int n = 7, m = 5, rows = 3, steps = 3;
  const std::uint64_t seed = 41, stream_id = 8;
  const Rbm rbm = Rbm::random(n, m, 1.0, 43);
  const Dataset start = random_dataset(rows, n, 44);
  auto engine = make_engine(Backend::cpu);
  engine->set_model(rbm);
  const std::vector<std::uint8_t> got = engine->gibbs_chain(start.values, rows, steps, seed, stream_id);
  const PhiloxStream stream(seed, random_stream(RandomPurpose::gibbs, stream_id));
  const std::uint64_t stride_h = 8, stride_v = 8;  // 5 and 7 rounded up to 4
  std::vector<std::uint8_t> expected;
  for (int r = 0; r < rows; ++r) {
    std::vector<std::uint8_t> v(start.row(r).begin(), start.row(r).end()), h(m);
    for (std::uint64_t s = 0; s < steps; ++s) {
      const auto ph = rbm.hidden_probabilities(v);
      for (int j = 0; j < m; ++j) h[j] = stream.uniform(((2 * s) << 40) + r * stride_h + j) < ph[j];
      const auto pv = rbm.visible_probabilities(h);
      for (int i = 0; i < n; ++i) v[i] = stream.uniform(((2 * s + 1) << 40) + r * stride_v + i) < pv[i];
    }
    expected.insert(expected.end(), v.begin(), v.end());
  }
  EXPECT_EQ(got, expected);
}

TEST(CpuEngine, ThreadOptionCoversExactAndModeWorkAndRestoresTheCallerSetting) {
  // An engine with threads = 1 runs log Z, the exact negative phase and the
  // mode search on one OpenMP thread, then gives the caller its own setting
  // back; the results are those of the free functions (bit-identical at any
  // thread count).
  ThreadCountGuard guard;
  omp_set_num_threads(3);
  EngineOptions options;
  options.threads = 1;
  auto engine = make_engine(Backend::cpu, options);
  const Rbm rbm = Rbm::random(14, 13, 0.7, 33);
  engine->set_model(rbm);
  EXPECT_EQ(engine->log_partition_exact({}), log_partition_exact(rbm));
  EXPECT_EQ(omp_get_max_threads(), 3);
  ModeSearchConfig config;
  config.solver = ModeSolver::exhaustive;
  EXPECT_EQ(engine->find_mode(config).energy, mode_exhaustive(rbm).energy);
  EXPECT_EQ(omp_get_max_threads(), 3);
  const Dataset data = random_dataset(6, 14, 34);
  engine->set_data(data);
  UpdateStep step;
  const std::vector<int> rows = all_rows(data.n_rows);
  step.batch_rows = rows;
  step.negative = NegativePhase::exact;
  const Gradient g = engine->gradient(step);
  EXPECT_EQ(omp_get_max_threads(), 3);
  auto default_threads = make_engine(Backend::cpu);
  default_threads->set_model(rbm);
  default_threads->set_data(data);
  const Gradient reference = default_threads->gradient(step);
  EXPECT_EQ(g.weights, reference.weights);
  EXPECT_EQ(g.visible_bias, reference.visible_bias);
  EXPECT_EQ(g.hidden_bias, reference.hidden_bias);
}

TEST(CpuEngine, DescriptionNamesThreadsAndBlas) {
  EngineOptions options;
  options.threads = 1;
  const auto engine = make_engine(Backend::cpu, options);
  EXPECT_EQ(engine->description(), "cpu (1 thread, OpenBLAS)");
  options.threads = -1;
  EXPECT_THROW(make_engine(Backend::cpu, options), UsageError);
}

// The conformance suite's statistical tests use tiny models (plain loops);
// these sizes take the BLAS path (weight matrices >= 512 entries).
TEST(CpuEngine, BlasPathModeGradientMatchesTheFormula) {
  const int n = 40, m = 30;
  const Rbm rbm = Rbm::random(n, m, 0.3, 91);
  const Dataset data = random_dataset(50, n, 92);
  auto engine = make_engine(Backend::cpu);
  engine->set_model(rbm);
  engine->set_data(data);
  std::vector<int> rows(25);
  for (int r = 0; r < 25; ++r) rows[r] = 2 * r;
  const Dataset star = random_dataset(1, n + m, 93);
  const std::vector<std::uint8_t> v_star(star.values.begin(), star.values.begin() + n);
  const std::vector<std::uint8_t> h_star(star.values.begin() + n, star.values.end());
  UpdateStep step;
  step.batch_rows = rows;
  step.negative = NegativePhase::mode;
  step.mode_visible = v_star;
  step.mode_hidden = h_star;
  const JointStatistics pos = data_statistics(rbm, data, rows);
  Gradient expected;
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < m; ++j) expected.weights.push_back(pos.visible_hidden[i * m + j] - v_star[i] * h_star[j]);
  for (int i = 0; i < n; ++i) expected.visible_bias.push_back(pos.visible[i] - v_star[i]);
  for (int j = 0; j < m; ++j) expected.hidden_bias.push_back(pos.hidden[j] - h_star[j]);
  // float32 sgemm over 25 rows of terms <= 1: error ~1e-6.
  EXPECT_LT(max_difference(engine->gradient(step), expected), 1e-5);
}

TEST(CpuEngine, BlasPathCdGradientConvergesToTheExactGradient) {
  const int n = 10, m = 60;  // 600 weights; exact by enumerating the 2^10 visible states
  const Rbm rbm = Rbm::random(n, m, 0.3, 95);
  const Dataset data = replicate(random_dataset(8, n, 96), 500);  // N = 4000 chains
  const std::vector<int> rows = all_rows(data.n_rows);
  auto engine = make_engine(Backend::cpu);
  engine->set_model(rbm);
  engine->set_data(data);
  const JointStatistics pos = data_statistics(rbm, data, rows);
  const ModelExpectations neg = model_expectations_exact(rbm);
  Gradient exact;
  for (std::size_t k = 0; k < pos.visible_hidden.size(); ++k) exact.weights.push_back(pos.visible_hidden[k] - neg.visible_hidden[k]);
  for (int i = 0; i < n; ++i) exact.visible_bias.push_back(pos.visible[i] - neg.visible[i]);
  for (int j = 0; j < m; ++j) exact.hidden_bias.push_back(pos.hidden[j] - neg.hidden[j]);
  UpdateStep step;
  step.batch_rows = rows;
  step.negative = NegativePhase::cd;
  step.gibbs_steps = 10;  // weights ~0.3: the chain mixes in a few sweeps
  step.seed = 97;
  // 5 sd of a mean of 4000 terms in [0, 1] (see engine_conformance.hpp); 670 entries.
  EXPECT_LT(max_difference(engine->gradient(step), exact), 2.5 / std::sqrt(4000.0));
  // The exact negative phase on the same path agrees to float32 rounding.
  step.negative = NegativePhase::exact;
  EXPECT_LT(max_difference(engine->gradient(step), exact), 1e-5);
}

TEST(CpuEngine, PcdStartsBatchSizeChainsWhenNoneWereSet) {
  // Without reset_persistent_chains, pcd starts batch-size chains seeded from
  // step.seed: the same as resetting them explicitly with that seed.
  const Rbm rbm = Rbm::random(6, 4, 0.5, 27);
  const Dataset data = random_dataset(9, 6, 28);
  const std::vector<int> rows = {0, 2, 4, 6, 8};
  UpdateStep step;
  step.batch_rows = rows;
  step.negative = NegativePhase::pcd;
  step.seed = 123;
  step.step = 4;
  auto implicit = make_engine(Backend::cpu);
  implicit->set_model(rbm);
  implicit->set_data(data);
  auto explicit_chains = make_engine(Backend::cpu);
  explicit_chains->set_model(rbm);
  explicit_chains->set_data(data);
  explicit_chains->reset_persistent_chains(static_cast<int>(rows.size()), step.seed);
  const Gradient a = implicit->gradient(step), b = explicit_chains->gradient(step);
  EXPECT_EQ(a.weights, b.weights);
  EXPECT_EQ(a.visible_bias, b.visible_bias);
  EXPECT_EQ(a.hidden_bias, b.hidden_bias);
}

}  // namespace marbm::conformance
