// The batched cuda ensemble path (strided-batched GEMMs over the members):
// member e must follow the trajectory of a single cuda engine trained by
// marbm::train with seed seeds[e], since both draw the same Philox numbers.
// Everything that needs a device skips without one.
#include <gtest/gtest.h>

#include "device_test.hpp"
#include "test_support.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "marbm/ensemble.hpp"
#include "marbm/error.hpp"
#include "marbm/exact.hpp"
#include "marbm/random.hpp"
#include "marbm/train.hpp"

namespace marbm {
namespace {

Dataset random_dataset(int rows, int cols, std::uint64_t seed, double p_one) {
  return random_binary_dataset(rows, cols, p_one, seed);
}

// Tolerance on parameters. Member and engine draw the same random numbers,
// but cuBLAS may sum the fields and gradients in another order: float32
// rounding of ~1e-6 relative per step, over tens of steps with learning rates
// <= 0.1, moves a parameter by well under 1e-4. A rounding difference flips a
// Bernoulli draw only when a uniform falls within ~1e-6 of p, about 1e-6 per
// draw, so over the ~1e5 draws of these runs a flip is rare; 1e-3 stays below
// the lr / B ~ 5e-3 change one flipped draw makes.
constexpr double kParameterTolerance = 1e-3;

using test_support::max_parameter_difference;

std::vector<Rbm> initial_models(int members, int n, int m) {
  std::vector<Rbm> models;
  for (int e = 0; e < members; ++e) models.push_back(Rbm::random(n, m, 0.1, 500 + e));
  return models;
}

std::vector<std::uint64_t> member_seeds(int members) {
  std::vector<std::uint64_t> seeds;
  for (int e = 0; e < members; ++e) seeds.push_back(1000 + 37 * e);
  return seeds;
}

// Trains the ensemble and each member alone on a cuda engine; checks the
// final parameters, mode step counts and exact metric curves agree.
void expect_members_match(const Dataset& data, int members, int n, int m, const TrainConfig& config) {
  ASSERT_TRUE(ensemble_batched_supported(n, m, data.n_rows, config));
  ASSERT_FALSE(ensemble_fused_supported(n, m, data.n_rows, config)) << "the case should not take the fused kernel";
  const std::vector<Rbm> initial = initial_models(members, n, m);
  const std::vector<std::uint64_t> seeds = member_seeds(members);
  std::vector<int> reported(members, 0);
  const std::vector<TrainResult> batched =
      train_ensemble(Backend::cuda, data, initial, seeds, config,
                     [&](int member, const TrainMetrics&) { ++reported.at(member); });
  ASSERT_EQ(batched.size(), static_cast<std::size_t>(members));
  for (int e = 0; e < members; ++e) {
    SCOPED_TRACE("member " + std::to_string(e));
    auto engine = make_engine(Backend::cuda);
    TrainConfig member_config = config;
    member_config.seed = seeds[e];
    const TrainResult single = train(*engine, data, initial[e], member_config);
    EXPECT_LT(max_parameter_difference(batched[e].model, single.model), kParameterTolerance);
    // Training moved the member (the comparison is not of two untouched models).
    EXPECT_GT(max_parameter_difference(batched[e].model, initial[e]), 10 * kParameterTolerance);
    EXPECT_EQ(batched[e].mode_steps, single.mode_steps);
    ASSERT_EQ(batched[e].history.size(), single.history.size());
    EXPECT_EQ(reported[e], static_cast<int>(single.history.size()));
    for (std::size_t k = 0; k < single.history.size(); ++k) {
      const TrainMetrics& x = batched[e].history[k];
      const TrainMetrics& y = single.history[k];
      EXPECT_EQ(x.iteration, y.iteration);
      EXPECT_EQ(x.mode_steps, y.mode_steps);
      EXPECT_EQ(std::isnan(x.kl), std::isnan(y.kl));
      // KL and log Z are smooth in the parameters: a parameter difference
      // below 1e-3 moves them by at most ~1e-3 times the number of units
      // touching a weight; 1e-3 relative plus 1e-4 covers it.
      if (!std::isnan(y.kl)) {
        EXPECT_NEAR(x.kl, y.kl, 1e-4 + 1e-3 * std::abs(y.kl)) << "at iteration " << y.iteration;
        EXPECT_NEAR(x.log_z, y.log_z, 1e-4 + 1e-3 * std::abs(y.log_z)) << "at iteration " << y.iteration;
      }
      if (!std::isnan(y.mode_energy)) EXPECT_NEAR(x.mode_energy, y.mode_energy, 1e-3 + 1e-4 * std::abs(y.mode_energy));
    }
  }
}

TEST(CudaEnsembleBatched, PredicateCoversSampledMethodsOnly) {
  TrainConfig config;
  config.method = TrainMethod::cd;
  EXPECT_TRUE(ensemble_batched_supported(100, 64, 500, config));
  config.method = TrainMethod::pcd;
  EXPECT_TRUE(ensemble_batched_supported(784, 500, 1000, config));
  config.method = TrainMethod::mode;
  config.mode.base = NegativePhase::pcd;
  EXPECT_TRUE(ensemble_batched_supported(37, 23, 50, config));
  config.mode.base = NegativePhase::exact;
  EXPECT_FALSE(ensemble_batched_supported(37, 23, 50, config));
  config.method = TrainMethod::exact;
  EXPECT_FALSE(ensemble_batched_supported(37, 12, 50, config));
  config.method = TrainMethod::cd;
  EXPECT_FALSE(ensemble_batched_supported(0, 12, 50, config));
  EXPECT_FALSE(ensemble_batched_supported(37, 12, 0, config));
}

TEST(CudaEnsembleBatched, CdMembersMatchSingleEnginesWithExactKl) {
  MARBM_SKIP_WITHOUT_DEVICE();
  // 50 rows at batch 16: three full batches and a short one per epoch.
  const Dataset data = random_dataset(50, 37, 11, 0.3);
  TrainConfig config;
  config.method = TrainMethod::cd;
  config.batch_size = 16;
  config.iterations = 24;
  config.learning_rate = 0.1;
  config.eval_every = 6;
  expect_members_match(data, 7, 37, 12, config);
}

TEST(CudaEnsembleBatched, OddShapeCdKWithMomentumAndDecay) {
  MARBM_SKIP_WITHOUT_DEVICE();
  const Dataset data = random_dataset(40, 37, 12, 0.4);
  TrainConfig config;
  config.method = TrainMethod::cd;
  config.gibbs_steps = 3;
  config.batch_size = 20;
  config.iterations = 20;
  config.learning_rate = 0.05;
  config.momentum = 0.5;
  config.weight_decay = 1e-3;
  config.exact_metrics = false;
  config.sample_positive_hidden = true;
  expect_members_match(data, 3, 37, 23, config);
}

TEST(CudaEnsembleBatched, SingleMember100x64) {
  MARBM_SKIP_WITHOUT_DEVICE();
  // batch >= rows: every member uses all rows in order.
  const Dataset data = random_dataset(30, 100, 13, 0.5);
  TrainConfig config;
  config.method = TrainMethod::cd;
  config.batch_size = 100;
  config.iterations = 15;
  config.learning_rate = 0.05;
  config.exact_metrics = false;
  expect_members_match(data, 1, 100, 64, config);
}

TEST(CudaEnsembleBatched, PcdChainsPersistAcrossUpdates) {
  MARBM_SKIP_WITHOUT_DEVICE();
  // The single engine keeps its chains between updates; a batched path that
  // restarted them (or let members share them) would leave this trajectory.
  const Dataset data = random_dataset(60, 100, 14, 0.3);
  TrainConfig config;
  config.method = TrainMethod::pcd;
  config.batch_size = 20;
  config.persistent_chains = 10;
  config.iterations = 20;
  config.learning_rate = 0.05;
  config.exact_metrics = false;
  expect_members_match(data, 4, 100, 64, config);
}

TEST(CudaEnsembleBatched, ModeMembersMatchSingleEngines) {
  MARBM_SKIP_WITHOUT_DEVICE();
  // A high p_max makes mode steps frequent, at different updates per member
  // (each member's mode_choice stream is its own seed's).
  const Dataset data = random_dataset(48, 37, 15, 0.3);
  struct Case {
    NegativePhase base;
    ModeTarget target;
    const char* name;
  };
  for (const Case c : {Case{NegativePhase::cd, ModeTarget::joint, "cd base, joint mode"},
                       Case{NegativePhase::pcd, ModeTarget::joint, "pcd base, joint mode"},
                       Case{NegativePhase::cd, ModeTarget::marginal, "cd base, marginal mode"}}) {
    SCOPED_TRACE(c.name);
    TrainConfig config;
    config.method = TrainMethod::mode;
    config.mode.base = c.base;
    config.mode.target = c.target;
    config.mode.p_max = 0.5;
    config.mode.beta = 0.0;
    config.batch_size = 16;
    config.iterations = 24;
    config.learning_rate = 0.1;
    config.eval_every = 8;
    expect_members_match(data, 5, 37, 10, config);
  }
}

TEST(CudaEnsembleBatched, RefusesBadSettings) {
  MARBM_SKIP_WITHOUT_DEVICE();
  const Dataset data = random_dataset(20, 37, 16, 0.3);
  const std::vector<Rbm> initial = initial_models(2, 37, 12);
  TrainConfig config;
  config.method = TrainMethod::cd;
  config.iterations = 2;
  ASSERT_TRUE(ensemble_batched_supported(37, 12, data.n_rows, config));
  TrainConfig bad = config;
  bad.learning_rate = -1.0;
  EXPECT_THROW(train_ensemble(Backend::cuda, data, initial, {1, 2}, bad), UsageError);
  bad = config;
  bad.momentum = 1.0;
  EXPECT_THROW(train_ensemble(Backend::cuda, data, initial, {1, 2}, bad), UsageError);
  bad = config;
  bad.method = TrainMethod::mode;
  bad.mode.p_max = 2.0;
  EXPECT_THROW(train_ensemble(Backend::cuda, data, initial, {1, 2}, bad), UsageError);
  Dataset not_binary = data;
  not_binary.values[5] = 2;
  EXPECT_THROW(train_ensemble(Backend::cuda, not_binary, initial, {1, 2}, config), DataError);
}

}  // namespace
}  // namespace marbm
