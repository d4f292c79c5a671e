// The training driver: convergence on shifting bars, the reference CD-1 run,
// determinism, the metrics schedule, minibatch epochs, mode steps and refusals.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>
#include <vector>

#include "marbm/data.hpp"
#include "marbm/engine.hpp"
#include "marbm/ensemble.hpp"
#include "marbm/error.hpp"
#include "marbm/exact.hpp"
#include "marbm/train.hpp"

namespace marbm {
namespace {

// Forwards to a CPU engine and records what the driver asked for.
class RecordingEngine final : public Engine {
 public:
  struct Step {
    std::vector<int> rows;
    NegativePhase negative;
    double learning_rate;
    std::uint64_t seed;
    std::uint64_t step;
    int gibbs_steps;
  };

  RecordingEngine() : inner_(make_engine(Backend::cpu)) {}

  Backend backend() const override { return inner_->backend(); }
  std::string description() const override { return inner_->description(); }
  void set_model(const Rbm& rbm) override { inner_->set_model(rbm); }
  Rbm model() const override { return inner_->model(); }
  void set_data(const Dataset& data) override { inner_->set_data(data); }
  void reset_persistent_chains(int count, std::uint64_t seed) override {
    chain_resets.emplace_back(count, seed);
    inner_->reset_persistent_chains(count, seed);
  }
  Gradient gradient(const UpdateStep& step) override { return inner_->gradient(step); }
  void update(const UpdateStep& step) override {
    steps.push_back({std::vector<int>(step.batch_rows.begin(), step.batch_rows.end()), step.negative,
                     step.learning_rate, step.seed, step.step, step.gibbs_steps});
    inner_->update(step);
  }
  std::vector<float> hidden_probabilities(std::span<const std::uint8_t> visible, int batch) override {
    return inner_->hidden_probabilities(visible, batch);
  }
  std::vector<std::uint8_t> gibbs_chain(std::span<const std::uint8_t> visible, int batch, int n_steps,
                                        std::uint64_t seed, std::uint64_t stream) override {
    return inner_->gibbs_chain(visible, batch, n_steps, seed, stream);
  }
  double log_partition_exact(const ExactOptions& options) override { return inner_->log_partition_exact(options); }
  ModeResult find_mode(const ModeSearchConfig& config) override {
    ++mode_searches;
    return inner_->find_mode(config);
  }

  std::vector<Step> steps;
  std::vector<std::pair<int, std::uint64_t>> chain_resets;
  int mode_searches = 0;

 private:
  std::unique_ptr<Engine> inner_;
};

// The reference experiment's settings (SPEC.md section 8) with a given method.
TrainConfig reference_config(TrainMethod method, long iterations) {
  TrainConfig config;
  config.method = method;
  config.gibbs_steps = 1;
  config.learning_rate = 0.2;
  config.batch_size = 6;
  config.iterations = iterations;
  config.seed = 1;
  config.eval_every = 200;
  return config;
}

TEST(Train, ExactGradientDrivesShiftingBarsKlBelowOnePercent) {
  const Dataset data = shifting_bars(6, 3);
  const Rbm initial = Rbm::random(6, 6, 0.01, 3);
  TrainConfig config = reference_config(TrainMethod::exact, 2000);
  config.learning_rate = 0.5;
  config.momentum = 0.9;
  config.eval_every = 0;
  auto engine = make_engine(Backend::cpu);
  const TrainResult result = train(*engine, data, initial, config);
  ASSERT_EQ(result.history.size(), 2u);
  const double initial_kl = result.history.front().kl, final_kl = result.history.back().kl;
  // At the start the model is nearly uniform over 64 states: KL ~ log(64 / 6).
  EXPECT_NEAR(initial_kl, std::log(64.0 / 6.0), 0.01);
  EXPECT_LT(final_kl, 0.01);
  EXPECT_GE(final_kl, 0.0);
  // The driver's KL is the exact KL of the returned model.
  EXPECT_NEAR(final_kl, kl_divergence_exact(result.model, data), 1e-9);
}

TEST(Train, ReferenceCd1RunIsFastAndLowersKl) {
  const Dataset data = shifting_bars(6, 3);
  const Rbm initial = Rbm::random(6, 6, 0.01, 7);
  const TrainConfig config = reference_config(TrainMethod::cd, 20000);
  auto engine = make_engine(Backend::cpu);
  const TrainResult result = train(*engine, data, initial, config);
  ASSERT_EQ(result.history.size(), 101u);  // 0, 200, ..., 20000
  EXPECT_EQ(result.history.back().iteration, 20000);
  EXPECT_LT(result.history.back().kl, result.history.front().kl - 0.5);
  for (const TrainMetrics& m : result.history) {
    EXPECT_TRUE(std::isfinite(m.kl) && m.kl >= 0.0);
    EXPECT_TRUE(std::isfinite(m.log_z));
    EXPECT_NEAR(m.mean_log_likelihood, -std::log(6.0) - m.kl, 1e-9) << "uniform data: LL = -log 6 - KL";
  }
  // Issue 2: "well under 2 s" on the CPU engine (exact KL every 200 updates included).
  EXPECT_LT(result.seconds, 2.0);
}

TEST(Train, SameSeedSameRun) {
  const Dataset data = bars_and_stripes(3);
  const Rbm initial = Rbm::random(9, 5, 0.1, 11);
  auto run = [&](TrainMethod method, std::uint64_t seed) {
    TrainConfig config;
    config.method = method;
    config.batch_size = 4;
    config.iterations = 300;
    config.learning_rate = 0.1;
    config.momentum = 0.5;
    config.seed = seed;
    config.eval_every = 100;
    auto engine = make_engine(Backend::cpu);
    return train(*engine, data, initial, config);
  };
  for (const TrainMethod method : {TrainMethod::cd, TrainMethod::pcd}) {
    const TrainResult a = run(method, 5), b = run(method, 5), c = run(method, 6);
    EXPECT_EQ(a.model, b.model);
    ASSERT_EQ(a.history.size(), b.history.size());
    for (std::size_t k = 0; k < a.history.size(); ++k) EXPECT_EQ(a.history[k].kl, b.history[k].kl);
    EXPECT_NE(a.model, c.model);
  }
}

TEST(Train, MetricsAtZeroEveryNAndAtTheEnd) {
  const Dataset data = shifting_bars(5, 2);
  const Rbm initial = Rbm::random(5, 3, 0.1, 1);
  auto iterations_reported = [&](long total, long every) {
    TrainConfig config;
    config.iterations = total;
    config.eval_every = every;
    config.batch_size = 5;
    std::vector<long> seen;
    auto engine = make_engine(Backend::cpu);
    const TrainResult result =
        train(*engine, data, initial, config, [&](const TrainMetrics& m) { seen.push_back(m.iteration); });
    std::vector<long> history;
    for (const auto& m : result.history) history.push_back(m.iteration);
    EXPECT_EQ(seen, history) << "the callback sees every reported metric";
    double last_seconds = 0.0;
    for (const auto& m : result.history) {
      EXPECT_GE(m.seconds, last_seconds);
      last_seconds = m.seconds;
    }
    return history;
  };
  EXPECT_EQ(iterations_reported(30, 7), (std::vector<long>{0, 7, 14, 21, 28, 30}));
  EXPECT_EQ(iterations_reported(30, 10), (std::vector<long>{0, 10, 20, 30}));
  EXPECT_EQ(iterations_reported(30, 0), (std::vector<long>{0, 30}));
  EXPECT_EQ(iterations_reported(1, 5), (std::vector<long>{0, 1}));
}

TEST(Train, NoExactMetricsWhenTurnedOffOrBeyondTheLimit) {
  const Dataset data = shifting_bars(5, 2);
  const Rbm initial = Rbm::random(5, 4, 0.1, 1);
  TrainConfig config;
  config.iterations = 3;
  config.exact_metrics = false;
  auto engine = make_engine(Backend::cpu);
  TrainResult result = train(*engine, data, initial, config);
  EXPECT_TRUE(std::isnan(result.history.back().kl));
  config.exact_metrics = true;
  config.exact.max_enumerated_units = 3;  // min(5, 4) = 4 units: beyond the limit
  result = train(*engine, data, initial, config);
  EXPECT_TRUE(std::isnan(result.history.back().kl));
  EXPECT_TRUE(std::isnan(result.history.back().log_z));
}

TEST(Train, EpochsShuffleMinibatchesThatCoverEveryRowOnce) {
  const Dataset data = bars_and_stripes(3);  // 14 rows
  const Rbm initial = Rbm::random(9, 4, 0.1, 2);
  TrainConfig config;
  config.batch_size = 4;
  config.epochs = 3;
  config.seed = 21;
  config.exact_metrics = false;
  EXPECT_EQ(total_iterations(config, data.n_rows), 12);  // ceil(14 / 4) = 4 batches per epoch
  RecordingEngine engine;
  const TrainResult result = train(engine, data, initial, config);
  ASSERT_EQ(engine.steps.size(), 12u);
  std::vector<std::vector<int>> epochs(3);
  for (std::size_t t = 0; t < engine.steps.size(); ++t) {
    const auto& step = engine.steps[t];
    EXPECT_EQ(step.rows.size(), t % 4 == 3 ? 2u : 4u) << "update " << t;
    EXPECT_EQ(step.step, t);
    EXPECT_EQ(step.seed, 21u);
    EXPECT_EQ(step.negative, NegativePhase::cd);
    epochs[t / 4].insert(epochs[t / 4].end(), step.rows.begin(), step.rows.end());
  }
  std::vector<int> all(14);
  for (int r = 0; r < 14; ++r) all[r] = r;
  for (const auto& epoch : epochs) {
    std::vector<int> sorted = epoch;
    std::sort(sorted.begin(), sorted.end());
    EXPECT_EQ(sorted, all) << "every row exactly once per epoch";
  }
  EXPECT_NE(epochs[0], epochs[1]) << "each epoch has its own order";
  EXPECT_NE(epochs[0], all) << "the order is shuffled";

  // Same seed, same order.
  RecordingEngine again;
  train(again, data, initial, config);
  for (std::size_t t = 0; t < 12; ++t) EXPECT_EQ(again.steps[t].rows, engine.steps[t].rows);
}

TEST(Train, OneBatchCoveringTheDataUsesEveryRowInOrder) {
  const Dataset data = shifting_bars(6, 3);
  const Rbm initial = Rbm::random(6, 6, 0.01, 2);
  TrainConfig config;
  config.batch_size = 100;  // clipped to the 6 rows
  config.iterations = 5;
  config.exact_metrics = false;
  RecordingEngine engine;
  train(engine, data, initial, config);
  ASSERT_EQ(engine.steps.size(), 5u);
  for (const auto& step : engine.steps) EXPECT_EQ(step.rows, (std::vector<int>{0, 1, 2, 3, 4, 5}));
  config.iterations = 0;
  config.epochs = 4;
  EXPECT_EQ(total_iterations(config, 6), 4);
}

TEST(Train, PcdStartsTheConfiguredChains) {
  const Dataset data = shifting_bars(6, 3);
  const Rbm initial = Rbm::random(6, 4, 0.01, 2);
  TrainConfig config;
  config.method = TrainMethod::pcd;
  config.batch_size = 3;
  config.iterations = 4;
  config.seed = 9;
  config.gibbs_steps = 2;
  config.exact_metrics = false;
  RecordingEngine engine;
  train(engine, data, initial, config);
  ASSERT_EQ(engine.chain_resets.size(), 1u);
  EXPECT_EQ(engine.chain_resets[0], (std::pair<int, std::uint64_t>{3, 9}));  // 0 chains: batch size
  for (const auto& step : engine.steps) {
    EXPECT_EQ(step.negative, NegativePhase::pcd);
    EXPECT_EQ(step.gibbs_steps, 2);
  }
  config.persistent_chains = 50;
  RecordingEngine more;
  train(more, data, initial, config);
  ASSERT_EQ(more.chain_resets.size(), 1u);
  EXPECT_EQ(more.chain_resets[0].first, 50);
}

TEST(Train, ModeAssistedRunTakesScaledModeSteps) {
  const Dataset data = shifting_bars(6, 3);
  const Rbm initial = Rbm::random(6, 6, 0.01, 4);
  TrainConfig config = reference_config(TrainMethod::mode, 1000);
  config.mode.p_max = 0.5;  // enough mode steps to see in a short run
  RecordingEngine engine;
  const TrainResult result = train(engine, data, initial, config);
  long mode_steps = 0;
  for (const auto& step : engine.steps) {
    if (step.negative == NegativePhase::mode) {
      ++mode_steps;
      // push >= 0 (SPEC.md section 3) and far below 1 for a 6 x 6 model.
      EXPECT_GE(step.learning_rate, 0.0);
      EXPECT_LT(step.learning_rate, config.learning_rate);
    } else {
      EXPECT_EQ(step.negative, NegativePhase::cd);
      EXPECT_EQ(step.learning_rate, config.learning_rate);
    }
  }
  EXPECT_GT(mode_steps, 0);
  EXPECT_EQ(mode_steps, result.mode_steps);
  EXPECT_EQ(engine.mode_searches, mode_steps);
  EXPECT_EQ(result.history.back().mode_steps, mode_steps);
  EXPECT_TRUE(std::isfinite(result.history.back().mode_push));
  EXPECT_TRUE(std::isfinite(result.history.back().mode_energy));
  // P_mode rises along the run (alpha > 0).
  EXPECT_LT(result.history.front().p_mode, result.history.back().p_mode);
  EXPECT_NEAR(result.history.back().p_mode, mode_probability(config.mode, 1000, 1000), 1e-12);
}

TEST(LearningRateSchedule, RatesAtTheFirstMiddleAndLastUpdates) {
  TrainConfig config;
  config.learning_rate = 0.2;
  config.final_learning_rate = 0.02;
  const long total = 101;  // t = 50 is exactly half way through t = 0 .. 100
  config.learning_rate_schedule = LearningRateSchedule::constant;
  for (long t : {0L, 50L, 100L}) EXPECT_EQ(learning_rate_at(config, t, total), 0.2);
  config.learning_rate_schedule = LearningRateSchedule::linear;
  EXPECT_EQ(learning_rate_at(config, 0, total), 0.2);
  EXPECT_NEAR(learning_rate_at(config, 50, total), 0.11, 1e-15);
  EXPECT_NEAR(learning_rate_at(config, 25, total), 0.2 - 0.25 * 0.18, 1e-15);
  EXPECT_EQ(learning_rate_at(config, 100, total), 0.02);
  config.learning_rate_schedule = LearningRateSchedule::exponential;
  EXPECT_EQ(learning_rate_at(config, 0, total), 0.2);
  // Geometric: half way is the geometric mean, each update the same factor.
  EXPECT_NEAR(learning_rate_at(config, 50, total), std::sqrt(0.2 * 0.02), 1e-15);
  EXPECT_NEAR(learning_rate_at(config, 11, total) / learning_rate_at(config, 10, total),
              std::pow(0.1, 1.0 / 100.0), 1e-14);
  EXPECT_EQ(learning_rate_at(config, 100, total), 0.02);
  // A one-update run uses the first rate; a linear schedule may end at 0.
  EXPECT_EQ(learning_rate_at(config, 0, 1), 0.2);
  config.learning_rate_schedule = LearningRateSchedule::linear;
  config.final_learning_rate = 0.0;
  EXPECT_EQ(learning_rate_at(config, 100, total), 0.0);
  EXPECT_NEAR(learning_rate_at(config, 50, total), 0.1, 1e-15);

  for (const LearningRateSchedule schedule :
       {LearningRateSchedule::constant, LearningRateSchedule::linear, LearningRateSchedule::exponential}) {
    EXPECT_EQ(parse_learning_rate_schedule(to_string(schedule)), schedule);
  }
  EXPECT_THROW(parse_learning_rate_schedule("cosine"), UsageError);
  EXPECT_THROW(learning_rate_at(config, 101, total), UsageError);
  EXPECT_THROW(learning_rate_at(config, -1, total), UsageError);
  config.learning_rate_schedule = LearningRateSchedule::exponential;  // final rate 0: no geometric path
  EXPECT_THROW(learning_rate_at(config, 0, total), UsageError);
  config.learning_rate_schedule = LearningRateSchedule::linear;
  config.final_learning_rate = -0.1;
  EXPECT_THROW(learning_rate_at(config, 0, total), UsageError);
  config.final_learning_rate = std::numeric_limits<double>::quiet_NaN();
  EXPECT_THROW(learning_rate_at(config, 0, total), UsageError);
}

TEST(LearningRateSchedule, TheDriverUsesTheScheduledRateAtEveryUpdate) {
  const Dataset data = shifting_bars(6, 3);
  const Rbm initial = Rbm::random(6, 6, 0.01, 4);
  for (const LearningRateSchedule schedule : {LearningRateSchedule::linear, LearningRateSchedule::exponential}) {
    TrainConfig config = reference_config(TrainMethod::cd, 201);
    config.learning_rate_schedule = schedule;
    config.final_learning_rate = 0.01;
    RecordingEngine engine;
    train(engine, data, initial, config);
    ASSERT_EQ(engine.steps.size(), 201u);
    EXPECT_EQ(engine.steps[0].learning_rate, 0.2);
    EXPECT_EQ(engine.steps[200].learning_rate, 0.01);
    const double middle = schedule == LearningRateSchedule::linear ? 0.105 : std::sqrt(0.2 * 0.01);
    EXPECT_NEAR(engine.steps[100].learning_rate, middle, 1e-12);
    for (std::size_t t = 0; t < engine.steps.size(); ++t) {
      EXPECT_EQ(engine.steps[t].step, t);
      EXPECT_EQ(engine.steps[t].learning_rate, learning_rate_at(config, static_cast<long>(t), 201));
      if (t > 0) EXPECT_LT(engine.steps[t].learning_rate, engine.steps[t - 1].learning_rate);
    }
  }
  // The schedule changes the trained parameters (a decayed run moves less).
  TrainConfig constant = reference_config(TrainMethod::cd, 201);
  TrainConfig decayed = constant;
  decayed.learning_rate_schedule = LearningRateSchedule::linear;
  decayed.final_learning_rate = 0.0;
  auto a = make_engine(Backend::cpu), b = make_engine(Backend::cpu);
  const Rbm fixed_rate = train(*a, data, initial, constant).model;
  const Rbm decaying = train(*b, data, initial, decayed).model;
  double moved_fixed = 0.0, moved_decaying = 0.0;
  for (std::size_t i = 0; i < initial.weights().size(); ++i) {
    moved_fixed += std::abs(fixed_rate.weights()[i] - initial.weights()[i]);
    moved_decaying += std::abs(decaying.weights()[i] - initial.weights()[i]);
  }
  EXPECT_LT(moved_decaying, moved_fixed);
}

TEST(LearningRateSchedule, ModeStepsScaleTheScheduledRate) {
  const Dataset data = shifting_bars(6, 3);
  const Rbm initial = Rbm::random(6, 6, 0.01, 4);
  TrainConfig config = reference_config(TrainMethod::mode, 1000);
  config.mode.p_max = 0.5;
  config.mode.push_scaled = false;  // lr_mode = lr * lr_factor: the scheduled rate shows through
  config.mode.lr_factor = 0.5;
  config.learning_rate_schedule = LearningRateSchedule::exponential;
  config.final_learning_rate = 0.002;
  RecordingEngine engine;
  train(engine, data, initial, config);
  long mode_steps = 0;
  for (const auto& step : engine.steps) {
    const double scheduled = learning_rate_at(config, static_cast<long>(step.step), 1000);
    if (step.negative == NegativePhase::mode) {
      ++mode_steps;
      EXPECT_NEAR(step.learning_rate, 0.5 * scheduled, 1e-15 * scheduled);
    } else {
      EXPECT_EQ(step.learning_rate, scheduled);
    }
  }
  EXPECT_GT(mode_steps, 10);
}

TEST(LearningRateSchedule, EnsemblesWithAScheduleGoThroughTheDriver) {
  // The device ensemble kernels take one constant rate: with a schedule both
  // report unsupported, so train_ensemble on cuda trains member by member
  // with marbm::train. On the cpu an ensemble member is marbm::train itself.
  TrainConfig config = reference_config(TrainMethod::cd, 200);
  ASSERT_TRUE(ensemble_fused_supported(6, 6, 6, config));
  ASSERT_TRUE(ensemble_batched_supported(6, 6, 6, config));
  config.learning_rate_schedule = LearningRateSchedule::linear;
  config.final_learning_rate = 0.02;
  EXPECT_FALSE(ensemble_fused_supported(6, 6, 6, config));
  EXPECT_FALSE(ensemble_batched_supported(6, 6, 6, config));
  const Dataset data = shifting_bars(6, 3);
  const std::vector<Rbm> initial = {Rbm::random(6, 6, 0.01, 1), Rbm::random(6, 6, 0.01, 2)};
  const std::vector<TrainResult> members = train_ensemble(Backend::cpu, data, initial, {1, 2}, config);
  for (int e = 0; e < 2; ++e) {
    TrainConfig alone = config;
    alone.seed = static_cast<std::uint64_t>(e + 1);
    EngineOptions options;
    options.threads = 1;
    options.quiet = true;
    auto engine = make_engine(Backend::cpu, options);
    const Rbm expected = train(*engine, data, initial[e], alone).model;
    for (std::size_t k = 0; k < expected.weights().size(); ++k) {
      EXPECT_EQ(members[e].model.weights()[k], expected.weights()[k]) << "member " << e << " weight " << k;
    }
  }
}

TEST(Train, ParsesMethods) {
  for (const TrainMethod method : {TrainMethod::cd, TrainMethod::pcd, TrainMethod::exact, TrainMethod::mode}) {
    EXPECT_EQ(parse_train_method(to_string(method)), method);
  }
  EXPECT_THROW(parse_train_method("CD"), UsageError);
  EXPECT_THROW(parse_train_method(""), UsageError);
}

TEST(Train, RefusesInconsistentSettings) {
  const Dataset data = shifting_bars(6, 3);
  const Rbm initial = Rbm::random(6, 4, 0.01, 2);
  TrainConfig good;
  good.iterations = 2;
  good.exact_metrics = false;
  auto engine = make_engine(Backend::cpu);
  train(*engine, data, initial, good);  // goes through

  auto refused = [&](auto change, const Dataset& d, const Rbm& r) {
    TrainConfig config = good;
    change(config);
    EXPECT_THROW(train(*engine, d, r, config), UsageError);
  };
  auto refuses = [&](auto change) { refused(change, data, initial); };
  const double nan = std::numeric_limits<double>::quiet_NaN();
  refuses([](TrainConfig& c) { c.batch_size = 0; });
  refuses([](TrainConfig& c) { c.iterations = -1; });
  refuses([](TrainConfig& c) { c.iterations = 0, c.epochs = 0; });
  refuses([](TrainConfig& c) { c.iterations = 0, c.epochs = -2; });
  refuses([](TrainConfig& c) { c.learning_rate = 0.0; });
  refuses([&](TrainConfig& c) { c.learning_rate = nan; });
  refuses([](TrainConfig& c) { c.learning_rate = std::numeric_limits<double>::infinity(); });
  refuses([](TrainConfig& c) { c.gibbs_steps = 0; });
  refuses([](TrainConfig& c) { c.momentum = 1.0; });
  refuses([](TrainConfig& c) { c.learning_rate_schedule = LearningRateSchedule::linear, c.final_learning_rate = -1; });
  refuses([](TrainConfig& c) { c.learning_rate_schedule = LearningRateSchedule::exponential, c.final_learning_rate = 0; });
  refuses([](TrainConfig& c) { c.weight_decay = -0.1; });
  refuses([](TrainConfig& c) { c.persistent_chains = -1; });
  refuses([](TrainConfig& c) { c.eval_every = -5; });
  refuses([](TrainConfig& c) { c.method = TrainMethod::exact, c.exact.max_enumerated_units = 3; });
  refuses([](TrainConfig& c) { c.method = TrainMethod::mode, c.mode.base = NegativePhase::exact; });
  refuses([](TrainConfig& c) { c.method = TrainMethod::mode, c.mode.p_max = 2.0; });
  refused([](TrainConfig&) {}, shifting_bars(7, 3), initial);  // 7 columns, 6 visible units
  Dataset empty;
  empty.n_cols = 6;
  refused([](TrainConfig&) {}, empty, initial);
  Rbm broken = initial;
  broken.weight(0, 0) = std::numeric_limits<float>::infinity();
  TrainConfig config = good;
  EXPECT_THROW(train(*engine, data, broken, config), DataError);
  EXPECT_THROW(total_iterations(good, 0), UsageError);
}

}  // namespace
}  // namespace marbm

namespace marbm {
namespace {

TEST(BaseRateBias, VisibleBiasesAreTheSmoothedLogOddsOfTheColumns) {
  Dataset data;
  data.n_rows = 4;
  data.n_cols = 3;
  data.values = {1, 0, 0,  //
                 1, 1, 0,  //
                 1, 0, 0,  //
                 1, 1, 0};
  Rbm rbm = Rbm::random(3, 2, 0.01, 1);
  const std::vector<float> weights(rbm.weights().begin(), rbm.weights().end());
  set_base_rate_visible_bias(rbm, data);
  // p = (ones + 1) / (rows + 2): 5/6, 3/6, 1/6.
  EXPECT_FLOAT_EQ(rbm.visible_bias()[0], static_cast<float>(std::log(5.0)));
  EXPECT_FLOAT_EQ(rbm.visible_bias()[1], 0.0f);
  EXPECT_FLOAT_EQ(rbm.visible_bias()[2], static_cast<float>(-std::log(5.0)));
  EXPECT_TRUE(std::equal(weights.begin(), weights.end(), rbm.weights().begin()));  // only a changes
  Rbm wrong = Rbm::random(4, 2, 0.01, 1);
  EXPECT_THROW(set_base_rate_visible_bias(wrong, data), UsageError);
}

// The collapse diagnostics: identical hidden weight vectors give cosine 1 and
// a warning naming the update; huge hidden biases saturate every unit;
// a random model raises neither.
TEST(CollapseDiagnostics, SeesOneFeatureAndSaturatedUnits) {
  const Dataset data = random_binary_dataset(40, 10, 0.4, 2);
  TrainConfig config;
  config.learning_rate = 1e-30;  // the parameters stay where they start
  config.batch_size = 10;
  config.iterations = 1;
  config.exact_metrics = false;
  auto engine = make_engine(Backend::cpu);
  auto final_metrics = [&](const Rbm& initial) { return train(*engine, data, initial, config).history.back(); };

  const Rbm random = Rbm::random(10, 6, 1.0, 3);
  const TrainMetrics healthy = final_metrics(random);
  EXPECT_LT(std::abs(healthy.hidden_similarity), 0.5);
  EXPECT_LT(healthy.saturated_hidden, 0.5);
  EXPECT_TRUE(collapse_warning(healthy).empty());

  Rbm collapsed = random;
  for (int i = 0; i < 10; ++i) {
    for (int j = 1; j < 6; ++j) collapsed.weights()[i * 6 + j] = collapsed.weights()[i * 6];
  }
  const TrainMetrics same = final_metrics(collapsed);
  EXPECT_NEAR(same.hidden_similarity, 1.0, 1e-6);
  const std::string warning = collapse_warning(same);
  EXPECT_NE(warning.find("at update 1 "), std::string::npos) << warning;
  EXPECT_NE(warning.find("one feature"), std::string::npos) << warning;

  Rbm saturated = random;
  for (float& b : saturated.hidden_bias()) b = 50.0f;
  const TrainMetrics on = final_metrics(saturated);
  EXPECT_DOUBLE_EQ(on.saturated_hidden, 1.0);
  EXPECT_NE(collapse_warning(on).find("saturated"), std::string::npos);

  const Rbm single = Rbm::random(10, 1, 1.0, 3);
  EXPECT_TRUE(std::isnan(final_metrics(single).hidden_similarity));
}

}  // namespace
}  // namespace marbm
