// Mode-assisted training: the P_mode schedule, the push factor, the choice of
// mode steps and a mode step applied through the CPU engine.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <memory>
#include <numeric>
#include <optional>
#include <vector>

#include "detail/mode_assist.hpp"
#include "test_support.hpp"
#include "marbm/data.hpp"
#include "marbm/engine.hpp"
#include "marbm/ensemble.hpp"
#include "marbm/error.hpp"
#include "marbm/mode.hpp"
#include "marbm/train.hpp"

namespace marbm {
namespace {

using test_support::bits_of;

TEST(ModeProbability, MatchesHandComputedSchedule) {
  const ModeAssistConfig config;  // p_max 0.1, alpha 20, beta -6
  const long total = 20000;
  // t = 0: 0.1 / (1 + e^6); e^6 = 403.428793...
  EXPECT_NEAR(mode_probability(config, 0, total), 0.1 / 404.4287934927351, 1e-15);
  // alpha t/T + beta = 0 at t = 0.3 T: exactly p_max / 2.
  EXPECT_NEAR(mode_probability(config, 6000, total), 0.05, 1e-15);
  // t = T/2: 0.1 * sigmoid(4) = 0.1 / (1 + e^-4), e^-4 = 0.0183156388887...
  EXPECT_NEAR(mode_probability(config, 10000, total), 0.1 / 1.0183156388887342, 1e-15);
  // t = T: 0.1 * sigmoid(14).
  EXPECT_NEAR(mode_probability(config, total, total), 0.1 / (1.0 + std::exp(-14.0)), 1e-15);

  ModeAssistConfig custom;
  custom.p_max = 0.5;
  custom.alpha = 2.0;
  custom.beta = 0.0;
  // 0.5 * sigmoid(1) at t = T/2.
  EXPECT_NEAR(mode_probability(custom, 50, 100), 0.5 / (1.0 + std::exp(-1.0)), 1e-15);
  EXPECT_THROW(mode_probability(custom, 0, 0), UsageError);
}

TEST(ModePush, MatchesHandComputedOneByOneModel) {
  // E(v,h) = -0.5 v + 0.25 h - 2 v h. States (v,h): (0,0) 0, (1,0) -0.5,
  // (0,1) 0.25, (1,1) -2.25. Mean over the four -0.625; mode -2.25.
  Rbm rbm(1, 1);
  rbm.visible_bias()[0] = 0.5f;
  rbm.hidden_bias()[0] = -0.25f;
  rbm.weight(0, 0) = 2.0f;
  EXPECT_DOUBLE_EQ(rbm.uniform_mean_energy(), -0.625);
  const ModeResult mode = mode_exhaustive(rbm);
  EXPECT_DOUBLE_EQ(mode.energy, -2.25);
  // (E_bar - E*) / (4 (n+1)(m+1)) = 1.625 / 16.
  EXPECT_DOUBLE_EQ(mode_push(rbm.uniform_mean_energy(), mode.energy, 1, 1), 0.1015625);
  // 3 x 5: 4 * 4 * 6 = 96.
  EXPECT_DOUBLE_EQ(mode_push(1.0, -8.6, 3, 5), 9.6 / 96.0);
}

TEST(ModePush, UniformMeanEnergyIsTheMeanOverAllStates) {
  const Rbm rbm = Rbm::random(3, 4, 0.8, 7);
  double sum = 0.0;
  for (unsigned v = 0; v < 8; ++v) {
    for (unsigned h = 0; h < 16; ++h) sum += rbm.energy(bits_of(v, 3), bits_of(h, 4));
  }
  // Float32 parameters summed in float64: agreement to rounding.
  EXPECT_NEAR(rbm.uniform_mean_energy(), sum / 128.0, 1e-12);
  // The mean is never below the minimum, so the push is never negative.
  EXPECT_GE(mode_push(rbm.uniform_mean_energy(), mode_exhaustive(rbm).energy, 3, 4), 0.0);
}

TEST(ModeAssist, ModeStepFrequencyMatchesTheSchedule) {
  TrainConfig config;
  config.method = TrainMethod::mode;
  config.seed = 12345;
  config.mode.p_max = 0.3;
  const long total = 100000;
  const detail::ModeAssist assist(config, 6, 6, total);
  double expected = 0.0, variance = 0.0;
  long taken = 0, taken_first_half = 0;
  double expected_first_half = 0.0;
  for (long t = 0; t < total; ++t) {
    const double p = assist.probability(t);
    EXPECT_DOUBLE_EQ(p, mode_probability(config.mode, t, total));
    expected += p;
    variance += p * (1.0 - p);
    const bool mode = assist.is_mode_step(t);
    taken += mode;
    if (t < total / 2) {
      taken_first_half += mode;
      expected_first_half += p;
    }
  }
  // The count is a sum of independent Bernoulli(P(t)): mean sum P, variance
  // sum P(1-P) (~5,000 here, sd ~70). Five standard deviations: a correct
  // implementation fails with probability < 1e-6.
  EXPECT_NEAR(static_cast<double>(taken), expected, 5.0 * std::sqrt(variance));
  // The schedule rises: the first half holds far fewer mode steps.
  EXPECT_LT(taken_first_half, taken - taken_first_half);
  EXPECT_NEAR(static_cast<double>(taken_first_half), expected_first_half, 5.0 * std::sqrt(expected_first_half) + 1);
}

TEST(ModeAssist, ModeChoiceIsAFunctionOfTheSeed) {
  TrainConfig config;
  config.method = TrainMethod::mode;
  config.mode.p_max = 0.5;
  config.mode.beta = 0.0;
  config.mode.alpha = 0.0;  // P = 0.25 throughout
  config.seed = 3;
  const detail::ModeAssist first(config, 4, 4, 1000), again(config, 4, 4, 1000);
  config.seed = 4;
  const detail::ModeAssist other(config, 4, 4, 1000);
  int differences = 0;
  for (long t = 0; t < 1000; ++t) {
    EXPECT_EQ(first.is_mode_step(t), again.is_mode_step(t));
    differences += first.is_mode_step(t) != other.is_mode_step(t);
  }
  // Two independent streams disagree with probability 2 * 0.25 * 0.75 per
  // update: ~375 of 1000; fewer than 250 would mean shared numbers.
  EXPECT_GT(differences, 250);
}

TEST(ModeAssist, RefusesBadSettings) {
  TrainConfig config;
  config.method = TrainMethod::mode;
  EXPECT_THROW(detail::ModeAssist(config, 4, 4, 0), UsageError);
  config.mode.p_max = 1.5;
  EXPECT_THROW(detail::ModeAssist(config, 4, 4, 100), UsageError);
  config.mode.p_max = std::nan("");
  EXPECT_THROW(detail::ModeAssist(config, 4, 4, 100), UsageError);
  config.mode.p_max = 0.1;
  config.mode.alpha = INFINITY;
  EXPECT_THROW(detail::ModeAssist(config, 4, 4, 100), UsageError);
  // Solver options are checked before training starts, not at the first mode step.
  config.mode.alpha = 20.0;
  EXPECT_NO_THROW(detail::ModeAssist(config, 4, 4, 100));
  config.mode.search.replicas = -1;
  EXPECT_THROW(detail::ModeAssist(config, 4, 4, 100), UsageError);
  config.mode.search.replicas = 0;
  config.mode.search.warm_visible = {1, 0};
  EXPECT_THROW(detail::ModeAssist(config, 4, 4, 100), UsageError);
}

// An engine that records the searches it is asked for and answers with the
// exhaustive mode of a fixed model: checks what ModeAssist asks of engines
// without depending on any solver.
class RecordingEngine : public Engine {
 public:
  explicit RecordingEngine(Rbm rbm) : rbm_(std::move(rbm)) {}
  Backend backend() const override { return Backend::cpu; }
  std::string description() const override { return "recording"; }
  void set_model(const Rbm& rbm) override { rbm_ = rbm; }
  Rbm model() const override {
    ++model_copies;
    return rbm_;
  }
  double uniform_mean_energy() const override {
    ++mean_energies;
    return rbm_.uniform_mean_energy();
  }
  void set_data(const Dataset&) override {}
  void reset_persistent_chains(int, std::uint64_t) override {}
  Gradient gradient(const UpdateStep&) override { throw RuntimeFailure("not used"); }
  void update(const UpdateStep&) override { throw RuntimeFailure("not used"); }
  std::vector<float> hidden_probabilities(std::span<const std::uint8_t>, int) override {
    throw RuntimeFailure("not used");
  }
  std::vector<std::uint8_t> gibbs_chain(std::span<const std::uint8_t>, int, int, std::uint64_t,
                                        std::uint64_t) override {
    throw RuntimeFailure("not used");
  }
  double log_partition_exact(const ExactOptions&) override { throw RuntimeFailure("not used"); }
  ModeResult find_mode(const ModeSearchConfig& config) override {
    searches.push_back(config);
    return mode_exhaustive(rbm_);
  }
  std::vector<ModeSearchConfig> searches;
  mutable int model_copies = 0;   // model() calls: copies of the whole model to the host
  mutable int mean_energies = 0;  // uniform_mean_energy() calls

 private:
  Rbm rbm_;
};

TEST(ModeAssist, JointModeStepCopiesNoModel) {
  // E_bar comes from the engine (on the device for the CUDA engine) and the
  // joint mode's energy from the search: no host copy of the model. Several
  // mode states and the marginal target work on the model on the host.
  const Rbm rbm = Rbm::random(5, 3, 1.0, 12);
  TrainConfig config;
  config.method = TrainMethod::mode;
  {
    RecordingEngine engine(rbm);
    detail::ModeAssist assist(config, 5, 3, 100);
    UpdateStep step;
    const double push = assist.prepare_mode_step(engine, step, 3);
    EXPECT_EQ(engine.model_copies, 0);
    EXPECT_EQ(engine.mean_energies, 1);
    EXPECT_EQ(push, std::max(0.0, mode_push(rbm.uniform_mean_energy(), mode_exhaustive(rbm).energy, 5, 3)));
  }
  {
    TrainConfig states = config;
    states.mode.mode_states = 3;
    RecordingEngine engine(rbm);
    detail::ModeAssist assist(states, 5, 3, 100);
    UpdateStep step;
    assist.prepare_mode_step(engine, step, 3);
    EXPECT_EQ(engine.model_copies, 1);
  }
  {
    TrainConfig marginal = config;
    marginal.mode.target = ModeTarget::marginal;
    RecordingEngine engine(rbm);
    detail::ModeAssist assist(marginal, 5, 3, 100);
    UpdateStep step;
    assist.prepare_mode_step(engine, step, 3);
    EXPECT_EQ(engine.model_copies, 1);
    EXPECT_EQ(engine.mean_energies, 1);
  }
}

TEST(ModeAssist, ChoosesSolverWarmStartsAndScalesTheStep) {
  const Rbm rbm = Rbm::random(5, 3, 1.0, 11);
  const ModeResult exact = mode_exhaustive(rbm);
  const double push = mode_push(rbm.uniform_mean_energy(), exact.energy, 5, 3);
  ASSERT_GT(push, 0.0);

  TrainConfig config;
  config.method = TrainMethod::mode;
  config.seed = 9;
  {
    // auto: min(n, m) = 3 <= 20, exhaustive.
    RecordingEngine engine(rbm);
    detail::ModeAssist assist(config, 5, 3, 100);
    UpdateStep step;
    step.learning_rate = 0.2;
    EXPECT_DOUBLE_EQ(assist.prepare_mode_step(engine, step, 40), push);
    ASSERT_EQ(engine.searches.size(), 1u);
    EXPECT_EQ(engine.searches[0].solver, ModeSolver::exhaustive);
    EXPECT_TRUE(engine.searches[0].warm_visible.empty());
    EXPECT_EQ(step.negative, NegativePhase::mode);
    EXPECT_DOUBLE_EQ(step.learning_rate, 0.2 * push);
    EXPECT_EQ(std::vector<std::uint8_t>(step.mode_visible.begin(), step.mode_visible.end()), exact.visible);
    EXPECT_EQ(std::vector<std::uint8_t>(step.mode_hidden.begin(), step.mode_hidden.end()), exact.hidden);
    EXPECT_EQ(assist.steps_taken(), 1);
    EXPECT_DOUBLE_EQ(assist.last_energy(), exact.energy);
    EXPECT_DOUBLE_EQ(assist.last_push(), push);

    // The next search starts one replica from the last mode, with a new seed.
    UpdateStep next;
    assist.prepare_mode_step(engine, next, 41);
    ASSERT_EQ(engine.searches.size(), 2u);
    EXPECT_EQ(engine.searches[1].warm_visible, exact.visible);
    EXPECT_EQ(engine.searches[1].warm_hidden, exact.hidden);
    EXPECT_NE(engine.searches[1].seed, engine.searches[0].seed);
    EXPECT_EQ(assist.steps_taken(), 2);
  }
  {
    // auto beyond the enumeration threshold: the seeded local search, which
    // also starts from the kept minima. Constant scale keeps the rate.
    config.mode.auto_exhaustive_units = 2;
    config.mode.push_scaled = false;
    RecordingEngine engine(rbm);
    detail::ModeAssist assist(config, 5, 3, 100);
    UpdateStep step;
    step.learning_rate = 0.2;
    assist.prepare_mode_step(engine, step, 0);
    EXPECT_EQ(engine.searches[0].solver, ModeSolver::local);
    EXPECT_GT(engine.searches[0].keep_minima, 0);
    EXPECT_DOUBLE_EQ(step.learning_rate, 0.2);
  }
  {
    // An explicit solver wins over auto; the same (seed, t) gives the same search seed.
    config.mode.solver = ModeSolver::sa;
    RecordingEngine engine(rbm), again(rbm);
    detail::ModeAssist assist(config, 5, 3, 100), assist_again(config, 5, 3, 100);
    UpdateStep step;
    assist.prepare_mode_step(engine, step, 7);
    assist_again.prepare_mode_step(again, step, 7);
    EXPECT_EQ(engine.searches[0].solver, ModeSolver::sa);
    EXPECT_EQ(engine.searches[0].seed, again.searches[0].seed);
  }
}

double brute_force_min_free_energy(const Rbm& rbm) {
  double best = INFINITY;
  for (unsigned v = 0; v < (1u << rbm.n_visible()); ++v) best = std::min(best, rbm.free_energy(bits_of(v, rbm.n_visible())));
  return best;
}

TEST(MarginalMode, ExhaustiveIsTheFreeEnergyMinimum) {
  for (std::uint64_t seed = 1; seed <= 5; ++seed) {
    const Rbm rbm = Rbm::random(6, 4, 1.5, seed);
    const auto visible = detail::marginal_mode_visible(rbm, 20, {});
    // Gray-code fields are float64 sums of float32 parameters: rounding only.
    EXPECT_NEAR(rbm.free_energy(visible), brute_force_min_free_energy(rbm), 1e-9) << "seed " << seed;
  }
}

TEST(MarginalMode, DescentEndsInALocalMinimumNoHigherThanItsStart) {
  for (std::uint64_t seed = 1; seed <= 5; ++seed) {
    const Rbm rbm = Rbm::random(7, 5, 1.5, seed);
    const auto start = bits_of(static_cast<unsigned>(seed * 37u) & 127u, 7);
    auto visible = detail::marginal_mode_visible(rbm, 0, start);
    const double f = rbm.free_energy(visible);
    EXPECT_LE(f, rbm.free_energy(start) + 1e-12);
    for (int i = 0; i < 7; ++i) {
      visible[i] ^= 1u;
      EXPECT_GE(rbm.free_energy(visible), f - 1e-9) << "seed " << seed << ": flipping unit " << i << " lowers F";
      visible[i] ^= 1u;
    }
  }
}

TEST(ModeAssist, MarginalTargetStepsToTheFreeEnergyMinimum) {
  const Rbm rbm = Rbm::random(5, 3, 1.5, 4);
  TrainConfig config;
  config.method = TrainMethod::mode;
  config.mode.target = ModeTarget::marginal;
  RecordingEngine engine(rbm);
  detail::ModeAssist assist(config, 5, 3, 100);
  UpdateStep step;
  step.learning_rate = 0.5;
  const double push = assist.prepare_mode_step(engine, step, 10);
  // n = 5 <= 20: enumerated directly, no search.
  EXPECT_TRUE(engine.searches.empty());
  const std::vector<std::uint8_t> visible(step.mode_visible.begin(), step.mode_visible.end());
  const std::vector<std::uint8_t> hidden(step.mode_hidden.begin(), step.mode_hidden.end());
  EXPECT_NEAR(rbm.free_energy(visible), brute_force_min_free_energy(rbm), 1e-9);
  // h* = argmin_h E(v*, h): no other hidden state has lower energy.
  for (unsigned h = 0; h < 8; ++h) EXPECT_GE(rbm.energy(visible, bits_of(h, 3)), rbm.energy(visible, hidden) - 1e-12);
  EXPECT_NEAR(push, mode_push(rbm.uniform_mean_energy(), rbm.energy(visible, hidden), 5, 3), 1e-12);
  EXPECT_NEAR(step.learning_rate, 0.5 * push, 1e-15);
  EXPECT_NEAR(assist.last_energy(), rbm.energy(visible, hidden), 1e-12);

  // Beyond the enumeration limit: one joint search, then descent on F from it.
  config.mode.marginal_exhaustive_units = 0;
  RecordingEngine searched(rbm);
  detail::ModeAssist descent(config, 5, 3, 100);
  UpdateStep other;
  descent.prepare_mode_step(searched, other, 10);
  ASSERT_EQ(searched.searches.size(), 1u);
  const std::vector<std::uint8_t> local(other.mode_visible.begin(), other.mode_visible.end());
  EXPECT_LE(rbm.free_energy(local), rbm.free_energy(mode_exhaustive(rbm).visible) + 1e-12);

  config.mode.marginal_exhaustive_units = 31;
  EXPECT_THROW(detail::ModeAssist(config, 5, 3, 100), UsageError);
}

TEST(ModeAssist, ModeStepThroughTheCpuEngineEqualsTheFormula) {
  // Every build has the cpu engine: failing to make one is a failure, not a skip.
  const std::unique_ptr<Engine> engine = make_engine(Backend::cpu, EngineOptions{.threads = 1});
  const int n = 4, m = 3;
  const Rbm initial = Rbm::random(n, m, 1.0, 21);
  Dataset data;
  data.n_rows = 3;
  data.n_cols = n;
  data.values = {1, 0, 1, 1, 0, 1, 1, 0, 1, 1, 0, 0};
  engine->set_model(initial);
  engine->set_data(data);

  TrainConfig config;
  config.method = TrainMethod::mode;
  config.seed = 5;
  config.mode.solver = ModeSolver::exhaustive;
  detail::ModeAssist assist(config, n, m, 1000);
  const std::vector<int> rows = {0, 1, 2};
  UpdateStep step;
  step.batch_rows = rows;
  step.learning_rate = 0.3;
  const double push = assist.prepare_mode_step(*engine, step, 500);

  const ModeResult exact = mode_exhaustive(initial);
  EXPECT_EQ(std::vector<std::uint8_t>(step.mode_visible.begin(), step.mode_visible.end()), exact.visible);
  EXPECT_EQ(std::vector<std::uint8_t>(step.mode_hidden.begin(), step.mode_hidden.end()), exact.hidden);
  const double expected_push = mode_push(initial.uniform_mean_energy(), exact.energy, n, m);
  EXPECT_NEAR(push, expected_push, 1e-12);

  engine->update(step);
  const Rbm updated = engine->model();

  // theta += lr * push * (<.>_data - <.>_mode), positive phase p(h|v).
  const double rate = 0.3 * expected_push;
  std::vector<double> data_vh(n * m, 0.0), data_v(n, 0.0), data_h(m, 0.0);
  for (int r = 0; r < data.n_rows; ++r) {
    const auto v = data.row(r);
    const auto ph = initial.hidden_probabilities(v);
    for (int i = 0; i < n; ++i) {
      data_v[i] += v[i] / 3.0;
      for (int j = 0; j < m; ++j) data_vh[i * m + j] += v[i] * ph[j] / 3.0;
    }
    for (int j = 0; j < m; ++j) data_h[j] += ph[j] / 3.0;
  }
  // Parameters are float32 of magnitude ~1: a few ulps.
  const double tolerance = 1e-5;
  for (int i = 0; i < n; ++i) {
    EXPECT_NEAR(updated.visible_bias()[i], initial.visible_bias()[i] + rate * (data_v[i] - exact.visible[i]),
                tolerance);
    for (int j = 0; j < m; ++j) {
      EXPECT_NEAR(updated.weight(i, j),
                  initial.weight(i, j) + rate * (data_vh[i * m + j] - exact.visible[i] * exact.hidden[j]),
                  tolerance)
          << "W[" << i << "][" << j << "]";
    }
  }
  for (int j = 0; j < m; ++j) {
    EXPECT_NEAR(updated.hidden_bias()[j], initial.hidden_bias()[j] + rate * (data_h[j] - exact.hidden[j]), tolerance);
  }
}

}  // namespace
}  // namespace marbm

namespace marbm {
namespace {

TEST(ModeSolverChoice, EnumeratesWhereCheapAndSearchesLocallyElsewhere) {
  ModeAssistConfig config;
  EXPECT_EQ(choose_mode_solver(config, 6, 6, 6), ModeSolver::exhaustive);      // the reference experiment
  EXPECT_EQ(choose_mode_solver(config, 16, 16, 30), ModeSolver::exhaustive);   // bars and stripes 4x4
  EXPECT_EQ(choose_mode_solver(config, 64, 16, 100), ModeSolver::exhaustive);  // 2^16 x 64 = 2^22
  EXPECT_EQ(choose_mode_solver(config, 64, 17, 100), ModeSolver::local);
  EXPECT_EQ(choose_mode_solver(config, 784, 20, 100), ModeSolver::local);      // 2^20 x 784 per step
  EXPECT_EQ(choose_mode_solver(config, 784, 500, 100), ModeSolver::local);
  EXPECT_EQ(choose_mode_solver(config, 20, 784, 100), ModeSolver::local);      // either layer may be the smaller
  config.auto_exhaustive_units = 4;
  EXPECT_EQ(choose_mode_solver(config, 6, 6, 6), ModeSolver::local);
  config.solver = ModeSolver::sb;
  EXPECT_EQ(choose_mode_solver(config, 784, 20, 100), ModeSolver::sb);
}

// Records the searches and runs them for real.
class SearchingEngine : public RecordingEngine {
 public:
  using RecordingEngine::RecordingEngine;
  ModeResult find_mode(const ModeSearchConfig& config) override {
    searches.push_back(config);
    return marbm::find_mode(model(), config);
  }
};

// The local search of a mode step starts from the step's minibatch rows and,
// from the second step on, from the minima the previous search kept.
TEST(ModeAssist, LocalSearchStartsFromTheMinibatchAndTheKeptMinima) {
  const Rbm rbm = Rbm::random(30, 25, 1.0, 4);
  const Dataset data = random_binary_dataset(10, 30, 0.3, 8);
  TrainConfig config;
  config.method = TrainMethod::mode;
  config.mode.solver = ModeSolver::local;
  SearchingEngine engine(rbm);
  detail::ModeAssist assist(config, 30, 25, 100);
  assist.set_start_data(&data);
  const std::vector<int> rows = {3, 7};
  UpdateStep step;
  step.batch_rows = rows;
  assist.prepare_mode_step(engine, step, 5);
  ASSERT_EQ(engine.searches.size(), 1u);
  std::vector<std::uint8_t> expected;
  for (int r : rows) expected.insert(expected.end(), data.row(r).begin(), data.row(r).end());
  EXPECT_EQ(engine.searches[0].start_visible, expected);
  UpdateStep next;
  next.batch_rows = rows;
  assist.prepare_mode_step(engine, next, 6);
  ASSERT_EQ(engine.searches.size(), 2u);
  const ModeResult first = find_mode(rbm, engine.searches[0]);
  ASSERT_FALSE(first.minima_visible.empty());
  std::vector<std::uint8_t> with_minima = first.minima_visible;
  with_minima.insert(with_minima.end(), expected.begin(), expected.end());
  EXPECT_EQ(engine.searches[1].start_visible, with_minima);
}

// lr_factor scales the mode step's rate; an additive mode step is the base
// CD step followed by the mode step, bit for bit.
TEST(ModeAssist, AdditiveModeStepIsTheCdStepThenTheModeStep) {
  const Dataset data = shifting_bars(6, 3);
  const Rbm initial = Rbm::random(6, 5, 0.5, 3);
  TrainConfig config;
  config.method = TrainMethod::mode;
  config.learning_rate = 0.3;
  config.batch_size = 6;
  config.iterations = 1;
  config.seed = 4;
  config.mode.p_max = 1.0;
  config.mode.alpha = 0.0;
  config.mode.beta = 50.0;  // P_mode = 1 at every update
  config.mode.push_scaled = false;
  config.mode.lr_factor = 0.25;
  config.mode.additive = true;
  auto engine = make_engine(Backend::cpu);
  const TrainResult trained = train(*engine, data, initial, config);
  EXPECT_EQ(trained.mode_steps, 1);

  auto manual = make_engine(Backend::cpu);
  manual->set_model(initial);
  manual->set_data(data);
  const std::vector<int> rows = {0, 1, 2, 3, 4, 5};
  UpdateStep step;
  step.batch_rows = rows;
  step.learning_rate = 0.3;
  step.seed = 4;
  step.step = 0;
  manual->update(step);
  const ModeResult mode = mode_exhaustive(manual->model());
  step.negative = NegativePhase::mode;
  step.mode_visible = mode.visible;
  step.mode_hidden = mode.hidden;
  step.learning_rate = 0.3 * 0.25;
  manual->update(step);
  const Rbm expected = manual->model();
  EXPECT_TRUE(std::equal(expected.weights().begin(), expected.weights().end(), trained.model.weights().begin()));
  EXPECT_TRUE(std::equal(expected.visible_bias().begin(), expected.visible_bias().end(),
                         trained.model.visible_bias().begin()));
  EXPECT_TRUE(std::equal(expected.hidden_bias().begin(), expected.hidden_bias().end(),
                         trained.model.hidden_bias().begin()));
  config.mode.lr_factor = 0.0;
  EXPECT_THROW(train(*engine, data, initial, config), UsageError);
}

}  // namespace
}  // namespace marbm

namespace marbm {
namespace {

// mode_states > 1: the step carries the mode first, then other kept minima,
// weighted by exp(-(E_k - E_mode)) and summing to 1.
TEST(ModeAssist, SeveralStatesAreWeightedByTheirBoltzmannFactors) {
  const Rbm rbm = Rbm::random(30, 20, 1.0, 6);
  const Dataset data = random_binary_dataset(12, 30, 0.3, 9);
  TrainConfig config;
  config.method = TrainMethod::mode;
  config.mode.mode_states = 4;
  SearchingEngine engine(rbm);
  detail::ModeAssist assist(config, 30, 20, 100);
  assist.set_start_data(&data);
  const std::vector<int> rows = {0, 1, 2, 3, 4, 5};
  UpdateStep step;
  step.batch_rows = rows;
  assist.prepare_mode_step(engine, step, 3);
  ASSERT_EQ(engine.searches.size(), 1u);
  EXPECT_EQ(engine.searches[0].solver, ModeSolver::local);  // auto would enumerate 2^20 states here
  const std::size_t states = step.mode_weights.size();
  ASSERT_GE(states, 2u);
  ASSERT_LE(states, 4u);
  ASSERT_EQ(step.mode_visible.size(), states * 30);
  ASSERT_EQ(step.mode_hidden.size(), states * 20);
  const ModeResult best = find_mode(rbm, engine.searches[0]);
  EXPECT_TRUE(std::equal(best.visible.begin(), best.visible.end(), step.mode_visible.begin()));
  double sum = 0.0;
  std::vector<double> energy;
  for (std::size_t k = 0; k < states; ++k) {
    const std::vector<std::uint8_t> v(step.mode_visible.begin() + k * 30, step.mode_visible.begin() + (k + 1) * 30);
    const std::vector<std::uint8_t> h(step.mode_hidden.begin() + k * 20, step.mode_hidden.begin() + (k + 1) * 20);
    energy.push_back(rbm.energy(v, h));
    sum += step.mode_weights[k];
  }
  EXPECT_NEAR(sum, 1.0, 1e-12);
  for (std::size_t k = 1; k < states; ++k) {
    EXPECT_GE(energy[k], energy[0] - 1e-9);
    EXPECT_NEAR(step.mode_weights[k] / step.mode_weights[0], std::exp(energy[0] - energy[k]), 1e-9);
  }
  EXPECT_DOUBLE_EQ(assist.last_energy(), energy[0]);
}

// With a pcd base, the local search also starts from the persistent chains.
TEST(ModeAssist, LocalSearchOnPcdStartsFromThePersistentChains) {
  class ChainEngine final : public SearchingEngine {
   public:
    using SearchingEngine::SearchingEngine;
    std::vector<std::uint8_t> persistent_chain_states() const override { return chains; }
    std::vector<std::uint8_t> chains;
  };
  const Rbm rbm = Rbm::random(30, 25, 1.0, 4);
  TrainConfig config;
  config.method = TrainMethod::mode;
  config.mode.base = NegativePhase::pcd;
  ChainEngine engine(rbm);
  engine.chains = random_binary_dataset(3, 30, 0.5, 5).values;
  detail::ModeAssist assist(config, 30, 25, 100);
  UpdateStep step;
  assist.prepare_mode_step(engine, step, 1);
  ASSERT_EQ(engine.searches.size(), 1u);
  EXPECT_EQ(engine.searches[0].solver, ModeSolver::local);
  EXPECT_EQ(engine.searches[0].start_visible, engine.chains);
  config.mode.base = NegativePhase::cd;  // a cd base has no chains to ask for
  detail::ModeAssist cd_assist(config, 30, 25, 100);
  cd_assist.prepare_mode_step(engine, step, 1);
  EXPECT_TRUE(engine.searches[1].start_visible.empty());
}

TEST(ModeAssist, SeveralStatesNeedTheJointLocalSearch) {
  TrainConfig config;
  config.method = TrainMethod::mode;
  config.mode.mode_states = 0;
  EXPECT_THROW(detail::ModeAssist(config, 8, 8, 100), UsageError);
  config.mode.mode_states = 65;
  EXPECT_THROW(detail::ModeAssist(config, 8, 8, 100), UsageError);
  config.mode.mode_states = 2;
  config.mode.target = ModeTarget::marginal;
  EXPECT_THROW(detail::ModeAssist(config, 8, 8, 100), UsageError);
  config.mode.target = ModeTarget::joint;
  config.mode.solver = ModeSolver::sb;
  EXPECT_THROW(detail::ModeAssist(config, 8, 8, 100), UsageError);
  config.mode.solver = ModeSolver::local;
  EXPECT_NO_THROW(detail::ModeAssist(config, 8, 8, 100));
  // The ensemble kernels handle one state only; such runs go member by member.
  config.batch_size = 6;
  EXPECT_FALSE(ensemble_fused_supported(8, 8, 6, config));
  EXPECT_FALSE(ensemble_batched_supported(8, 8, 6, config));
}

std::uint64_t bits(double x) { return std::bit_cast<std::uint64_t>(x); }

// The two halves of a mode step, with the search run by the caller between
// them, give what prepare_mode_step gives: the same search configurations,
// step, push and carried state, step after step (warm starts, populations).
void expect_split_equals_whole(TrainConfig config, int n, int m, const std::vector<Rbm>& models, bool through_cpu) {
  Dataset data;
  data.n_rows = 4;
  data.n_cols = n;
  for (int k = 0; k < data.n_rows * n; ++k) data.values.push_back(static_cast<std::uint8_t>((k * 7 + k / 3) % 2));
  const std::vector<int> rows = {3, 1};
  detail::ModeAssist whole(config, n, m, 1000), split(config, n, m, 1000);
  whole.set_start_data(&data);
  split.set_start_data(&data);
  for (std::size_t s = 0; s < models.size(); ++s) {
    const long t = 100 + 17 * static_cast<long>(s);
    std::unique_ptr<Engine> engine_whole, engine_split;
    if (through_cpu) {
      engine_whole = make_engine(Backend::cpu, EngineOptions{.threads = 1});
      engine_split = make_engine(Backend::cpu, EngineOptions{.threads = 1});
      engine_whole->set_model(models[s]);
      engine_split->set_model(models[s]);
    } else {
      engine_whole = std::make_unique<RecordingEngine>(models[s]);
      engine_split = std::make_unique<RecordingEngine>(models[s]);
    }
    UpdateStep a, b;
    a.batch_rows = rows;
    b.batch_rows = rows;
    a.learning_rate = b.learning_rate = 0.25;
    const double push_whole = whole.prepare_mode_step(*engine_whole, a, t);

    const ModeSearchConfig search = split.begin_mode_step(*engine_split, b, t);
    std::optional<ModeResult> found;
    if (split.needs_search()) found = engine_split->find_mode(search);
    const Rbm model = engine_split->model();
    const double push_split = split.finish_mode_step(split.needs_model() ? &model : nullptr,
                                                     engine_split->uniform_mean_energy(), found ? &*found : nullptr, b);

    EXPECT_EQ(bits(push_split), bits(push_whole)) << "step " << s;
    EXPECT_EQ(bits(b.learning_rate), bits(a.learning_rate)) << "step " << s;
    EXPECT_EQ(b.negative, NegativePhase::mode);
    EXPECT_EQ(std::vector<std::uint8_t>(b.mode_visible.begin(), b.mode_visible.end()),
              std::vector<std::uint8_t>(a.mode_visible.begin(), a.mode_visible.end()));
    EXPECT_EQ(std::vector<std::uint8_t>(b.mode_hidden.begin(), b.mode_hidden.end()),
              std::vector<std::uint8_t>(a.mode_hidden.begin(), a.mode_hidden.end()));
    EXPECT_EQ(std::vector<double>(b.mode_weights.begin(), b.mode_weights.end()),
              std::vector<double>(a.mode_weights.begin(), a.mode_weights.end()));
    const ModeAssistState x = whole.state(), y = split.state();
    EXPECT_EQ(y.mode_visible, x.mode_visible);
    EXPECT_EQ(y.mode_hidden, x.mode_hidden);
    EXPECT_EQ(y.population, x.population);
    EXPECT_EQ(y.steps_taken, x.steps_taken);
    EXPECT_EQ(bits(y.last_energy), bits(x.last_energy));
    if (!through_cpu) {
      const auto& recorded_whole = static_cast<RecordingEngine&>(*engine_whole).searches;
      const auto& recorded_split = static_cast<RecordingEngine&>(*engine_split).searches;
      ASSERT_EQ(recorded_split.size(), recorded_whole.size());
      for (std::size_t q = 0; q < recorded_whole.size(); ++q) {
        EXPECT_EQ(recorded_split[q].seed, recorded_whole[q].seed);
        EXPECT_EQ(recorded_split[q].solver, recorded_whole[q].solver);
        EXPECT_EQ(recorded_split[q].warm_visible, recorded_whole[q].warm_visible);
        EXPECT_EQ(recorded_split[q].warm_hidden, recorded_whole[q].warm_hidden);
        EXPECT_EQ(recorded_split[q].start_visible, recorded_whole[q].start_visible);
      }
    }
  }
}


TEST(ModeAssist, SplitModeStepEqualsTheWholeOne) {
  std::vector<Rbm> models;
  for (std::uint64_t seed = 1; seed <= 4; ++seed) models.push_back(Rbm::random(6, 4, 1.5, 40 + seed));
  TrainConfig config;
  config.method = TrainMethod::mode;
  config.seed = 13;
  {
    SCOPED_TRACE("auto solver: exhaustive, joint");
    expect_split_equals_whole(config, 6, 4, models, false);
  }
  {
    SCOPED_TRACE("local search with starts from the data and the population, three mode states");
    TrainConfig local = config;
    local.mode.solver = ModeSolver::local;
    local.mode.mode_states = 3;
    local.mode.push_scaled = false;
    expect_split_equals_whole(local, 6, 4, models, true);
  }
  {
    SCOPED_TRACE("marginal target, enumerable: no search");
    TrainConfig marginal = config;
    marginal.mode.target = ModeTarget::marginal;
    expect_split_equals_whole(marginal, 6, 4, models, false);
  }
  {
    SCOPED_TRACE("marginal target beyond the enumeration limit: search, then descent on F");
    TrainConfig marginal = config;
    marginal.mode.target = ModeTarget::marginal;
    marginal.mode.marginal_exhaustive_units = 2;
    expect_split_equals_whole(marginal, 6, 4, models, false);
  }
}

TEST(ModeAssist, FinishingAModeStepRefusesAMissingSearchOrModelOrAModelOfTheWrongSize) {
  const Rbm rbm = Rbm::random(5, 3, 1.0, 2);
  TrainConfig config;
  config.method = TrainMethod::mode;
  detail::ModeAssist assist(config, 5, 3, 100);
  RecordingEngine engine(rbm);
  UpdateStep step;
  const ModeSearchConfig search = assist.begin_mode_step(engine, step, 3);
  ASSERT_TRUE(assist.needs_search());
  EXPECT_EQ(search.solver, ModeSolver::exhaustive);
  const double mean = rbm.uniform_mean_energy();
  EXPECT_THROW(assist.finish_mode_step(&rbm, mean, nullptr, step), UsageError);
  const ModeResult found = engine.find_mode(search);
  const Rbm other = Rbm::random(4, 3, 1.0, 2);
  EXPECT_THROW(assist.finish_mode_step(&other, mean, &found, step), UsageError);
  EXPECT_EQ(assist.steps_taken(), 0);
  // The joint mode with one state needs no host model.
  ASSERT_FALSE(assist.needs_model());
  EXPECT_GT(assist.finish_mode_step(nullptr, mean, &found, step), 0.0);
  EXPECT_EQ(assist.steps_taken(), 1);

  // The marginal target works on the host model: none is refused.
  TrainConfig marginal = config;
  marginal.mode.target = ModeTarget::marginal;
  detail::ModeAssist needs_model(marginal, 5, 3, 100);
  UpdateStep marginal_step;
  needs_model.begin_mode_step(engine, marginal_step, 3);
  ASSERT_TRUE(needs_model.needs_model());
  EXPECT_THROW(needs_model.finish_mode_step(nullptr, mean, &found, marginal_step), UsageError);
  EXPECT_EQ(needs_model.steps_taken(), 0);
}

}  // namespace
}  // namespace marbm
