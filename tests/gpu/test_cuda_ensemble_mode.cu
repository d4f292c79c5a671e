// The batched ensemble's mode steps: the exhaustive searches of several
// members in one launch per stage (find_modes_exhaustive_batched) against
// each member's own search (find_mode_device), bit for bit, and whole
// ensemble runs with mode steps against the per-member searches
// (MARBM_ENSEMBLE_MODE_SEARCH=per-member), bit for bit. Skipped without a
// usable device.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "device_buffer.cuh"
#include "device_test.hpp"
#include "marbm/data.hpp"
#include "marbm/ensemble.hpp"
#include "marbm/error.hpp"
#include "marbm/mode.hpp"
#include "marbm/random.hpp"
#include "marbm/train.hpp"
#include "mode_search.cuh"
#include "resources.cuh"

namespace marbm::detail {
namespace {

std::uint64_t bits(double x) { return std::bit_cast<std::uint64_t>(x); }

// E members of shape n x m in the batched ensemble's layout
// [W (E n m) | a (E n) | b (E m)] on the device. Member 1 (when there is one)
// is all zeros: every state has energy 0, so the tie rule picks the state.
struct Members {
  int count, n, m;
  std::vector<Rbm> models;
  DeviceBuffer<float> parameters;

  Members(int members, int n_visible, int n_hidden, double scale, std::uint64_t seed, cudaStream_t stream)
      : count(members), n(n_visible), m(n_hidden) {
    std::vector<float> host;
    for (int e = 0; e < count; ++e) {
      models.push_back(e == 1 ? Rbm(n, m) : Rbm::random(n, m, scale, seed + e));
    }
    for (const Rbm& rbm : models) host.insert(host.end(), rbm.weights().begin(), rbm.weights().end());
    for (const Rbm& rbm : models) host.insert(host.end(), rbm.visible_bias().begin(), rbm.visible_bias().end());
    for (const Rbm& rbm : models) host.insert(host.end(), rbm.hidden_bias().begin(), rbm.hidden_bias().end());
    parameters = DeviceBuffer<float>(host.size(), stream);
    parameters.copy_from_host(host);
  }
  const float* weights(int e) const { return parameters.data() + static_cast<std::size_t>(e) * n * m; }
  const float* visible(int e) const {
    return parameters.data() + static_cast<std::size_t>(count) * n * m + static_cast<std::size_t>(e) * n;
  }
  const float* hidden(int e) const {
    return parameters.data() + static_cast<std::size_t>(count) * (n * m + n) + static_cast<std::size_t>(e) * m;
  }
  MemberParameters layout() const {
    return {weights(0), static_cast<std::size_t>(n) * m, visible(0), static_cast<std::size_t>(n), hidden(0),
            static_cast<std::size_t>(m)};
  }
};

ModeSearchConfig exhaustive_config() {
  ModeSearchConfig config;
  config.solver = ModeSolver::exhaustive;
  config.backend = Backend::cuda;
  return config;
}

class CudaBatchedModeSearch : public ::testing::Test {
 protected:
  void SetUp() override {
    MARBM_SKIP_WITHOUT_DEVICE();
    resources_ = std::make_unique<Resources>(0);
  }
  std::unique_ptr<Resources> resources_;
};

// Sets an environment variable for the lifetime of the guard, then restores
// what was there.
class EnvGuard {
 public:
  EnvGuard(const char* name, const char* value) : name_(name) {
    const char* before = std::getenv(name);
    had_ = before != nullptr;
    if (had_) before_ = before;
    setenv(name, value, 1);
  }
  EnvGuard(const EnvGuard&) = delete;
  EnvGuard& operator=(const EnvGuard&) = delete;
  ~EnvGuard() {
    if (had_) {
      setenv(name_.c_str(), before_.c_str(), 1);
    } else {
      unsetenv(name_.c_str());
    }
  }

 private:
  std::string name_;
  bool had_ = false;
  std::string before_;
};

// The batched search runs the per-warp enumeration kernel; a model's own
// search takes the per-thread kernel by default (another float64 summation
// order, so a near-tie could resolve to another state): bit-for-bit
// comparisons force the per-warp kernel on both sides. The per-thread kernel
// is compared with the per-warp one in test_cuda_mode_exhaustive.cu.
constexpr const char* kExhaustiveKernel = "MARBM_EXHAUSTIVE_KERNEL";

TEST_F(CudaBatchedModeSearch, EachModelEqualsItsOwnSearchBitForBit) {
  const EnvGuard kernel(kExhaustiveKernel, "warp");
  struct Case {
    int members, n, m;
    double scale;
  };
  // Hidden enumerated (m <= n), visible enumerated (n < m), square, a 2^20
  // enumeration spread over many warps and blocks, and a single unit.
  for (const Case c : {Case{7, 6, 6, 1.0}, Case{5, 37, 10, 0.8}, Case{4, 9, 40, 0.8}, Case{3, 20, 24, 0.5},
                       Case{3, 1, 1, 2.0}}) {
    SCOPED_TRACE(std::to_string(c.n) + "x" + std::to_string(c.m));
    const Members members(c.members, c.n, c.m, c.scale, 300 + c.n, resources_->stream());
    // Not every member, not in order, one twice: each model of the batch is
    // whichever member it names.
    std::vector<int> chosen = {c.members - 1, 0, 1, c.members - 1};
    if (c.members > 3) chosen.push_back(2);
    const ModeSearchConfig config = exhaustive_config();
    const std::vector<ModeResult> batched =
        find_modes_exhaustive_batched(*resources_, members.layout(), c.n, c.m, chosen, config);
    ASSERT_EQ(batched.size(), chosen.size());
    for (std::size_t q = 0; q < chosen.size(); ++q) {
      const int e = chosen[q];
      SCOPED_TRACE("model " + std::to_string(q) + " = member " + std::to_string(e));
      const ModeResult alone = find_mode_device(*resources_, members.weights(e), members.visible(e),
                                                members.hidden(e), c.n, c.m, config);
      EXPECT_EQ(batched[q].visible, alone.visible);
      EXPECT_EQ(batched[q].hidden, alone.hidden);
      EXPECT_EQ(bits(batched[q].energy), bits(alone.energy));
      EXPECT_EQ(batched[q].replicas, alone.replicas);
      EXPECT_EQ(batched[q].steps, alone.steps);
      EXPECT_EQ(batched[q].replicas_at_best, alone.replicas_at_best);
      // And both are the exact mode: the CPU enumeration's energy, to the
      // rounding of float64 sums of at most n + m + n m float32 terms.
      const ModeResult exact = mode_exhaustive(members.models[e]);
      EXPECT_NEAR(batched[q].energy, exact.energy, 1e-9 * (1.0 + std::abs(exact.energy)));
      EXPECT_NEAR(members.models[e].energy(batched[q].visible, batched[q].hidden), exact.energy,
                  1e-9 * (1.0 + std::abs(exact.energy)));
    }
  }
}

TEST_F(CudaBatchedModeSearch, RefusesWhatItDoesNotCover) {
  const Members members(3, 6, 5, 1.0, 7, resources_->stream());
  const std::vector<int> chosen = {0, 2};
  EXPECT_TRUE(find_modes_exhaustive_batched(*resources_, members.layout(), 6, 5, {}, exhaustive_config()).empty());
  ModeSearchConfig sb = exhaustive_config();
  sb.solver = ModeSolver::sb;
  EXPECT_THROW(find_modes_exhaustive_batched(*resources_, members.layout(), 6, 5, chosen, sb), UsageError);
  ModeSearchConfig limited = exhaustive_config();
  limited.max_enumerated_units = 4;
  EXPECT_THROW(find_modes_exhaustive_batched(*resources_, members.layout(), 6, 5, chosen, limited), RuntimeFailure);
  const std::vector<int> negative = {0, -1};
  EXPECT_THROW(find_modes_exhaustive_batched(*resources_, members.layout(), 6, 5, negative, exhaustive_config()),
               UsageError);
}

std::vector<TrainResult> train_members(const Dataset& data, int members, int n, int m, const TrainConfig& config,
                                       const char* search) {
  const EnvGuard env("MARBM_ENSEMBLE_MODE_SEARCH", search);
  const EnvGuard kernel(kExhaustiveKernel, "warp");
  std::vector<Rbm> initial;
  std::vector<std::uint64_t> seeds;
  for (int e = 0; e < members; ++e) {
    initial.push_back(Rbm::random(n, m, 0.1, 900 + e));
    seeds.push_back(2000 + 41 * e);
  }
  return train_ensemble(Backend::cuda, data, initial, seeds, config);
}

void expect_equal_bits(std::span<const float> x, std::span<const float> y) {
  ASSERT_EQ(x.size(), y.size());
  for (std::size_t k = 0; k < x.size(); ++k) {
    ASSERT_EQ(std::bit_cast<std::uint32_t>(x[k]), std::bit_cast<std::uint32_t>(y[k])) << "entry " << k;
  }
}

TEST(CudaEnsembleModeSearch, BatchedRunsEqualPerMemberRunsBitForBit) {
  MARBM_SKIP_WITHOUT_DEVICE();
  struct Case {
    int n, m;
    NegativePhase base;
    ModeTarget target;
    int marginal_units;
    const char* name;
  };
  // min(n, m) <= 20: choose_mode_solver picks the exhaustive solver; a
  // layer beyond 32 units keeps the shapes off the fused kernel. The
  // marginal target beyond its enumeration limit searches, then descends on F.
  for (const Case c : {Case{37, 10, NegativePhase::cd, ModeTarget::joint, 20, "37x10 cd base, joint"},
                       Case{37, 10, NegativePhase::pcd, ModeTarget::joint, 20, "37x10 pcd base, joint"},
                       Case{12, 40, NegativePhase::cd, ModeTarget::joint, 20, "12x40 cd base, joint (visible enumerated)"},
                       Case{37, 10, NegativePhase::cd, ModeTarget::marginal, 8, "37x10 marginal with a search"}}) {
    SCOPED_TRACE(c.name);
    const Dataset data = random_binary_dataset(48, c.n, 0.3, 17);
    TrainConfig config;
    config.method = TrainMethod::mode;
    config.mode.base = c.base;
    config.mode.target = c.target;
    config.mode.marginal_exhaustive_units = c.marginal_units;
    config.mode.p_max = 0.6;
    config.mode.beta = 0.0;
    config.batch_size = 16;
    config.iterations = 30;
    config.learning_rate = 0.1;
    config.eval_every = 5;
    config.exact_metrics = false;
    const int members = 6;
    ASSERT_TRUE(ensemble_batched_supported(c.n, c.m, data.n_rows, config));
    ASSERT_FALSE(ensemble_fused_supported(c.n, c.m, data.n_rows, config));
    ASSERT_EQ(choose_mode_solver(config.mode, c.n, c.m, config.batch_size), ModeSolver::exhaustive);
    const std::vector<TrainResult> batched = train_members(data, members, c.n, c.m, config, "batched");
    const std::vector<TrainResult> per_member = train_members(data, members, c.n, c.m, config, "per-member");
    ASSERT_EQ(batched.size(), per_member.size());
    long steps = 0;
    for (int e = 0; e < members; ++e) {
      SCOPED_TRACE("member " + std::to_string(e));
      expect_equal_bits(batched[e].model.weights(), per_member[e].model.weights());
      expect_equal_bits(batched[e].model.visible_bias(), per_member[e].model.visible_bias());
      expect_equal_bits(batched[e].model.hidden_bias(), per_member[e].model.hidden_bias());
      EXPECT_EQ(batched[e].mode_steps, per_member[e].mode_steps);
      steps += batched[e].mode_steps;
      ASSERT_EQ(batched[e].history.size(), per_member[e].history.size());
      for (std::size_t k = 0; k < batched[e].history.size(); ++k) {
        const TrainMetrics& x = batched[e].history[k];
        const TrainMetrics& y = per_member[e].history[k];
        EXPECT_EQ(x.mode_steps, y.mode_steps);
        // NaN (no mode step yet) on both sides compares equal as bits.
        EXPECT_EQ(bits(x.mode_push), bits(y.mode_push));
        EXPECT_EQ(bits(x.mode_energy), bits(y.mode_energy));
      }
    }
    // Mode steps happened: P_mode = 0.6 sigmoid(20 t / 30) >= 0.3 at every
    // update, so each member expects at least 9 of its 30 updates to be mode
    // steps; 6 steps or fewer over all 6 members would be a setup error, not
    // chance (P(Binomial(180, 0.3) <= 6) < 1e-19).
    EXPECT_GT(steps, members);
  }
}

TEST(CudaEnsembleModeSearch, ABadSwitchValueIsRefused) {
  MARBM_SKIP_WITHOUT_DEVICE();
  const Dataset data = random_binary_dataset(48, 37, 0.3, 3);
  TrainConfig config;
  config.method = TrainMethod::mode;
  config.iterations = 2;
  config.batch_size = 16;
  ASSERT_FALSE(ensemble_fused_supported(37, 10, data.n_rows, config)) << "the batched path reads the switch";
  EXPECT_THROW(train_members(data, 2, 37, 10, config, "sideways"), UsageError);
}

}  // namespace
}  // namespace marbm::detail
