// The mode search across ranks returns the single-process search's state and
// energy (same total replicas and seed), for SB (both variants, the loop and
// the matrix-product paths) and SA, with and without a warm start.
#include <gtest/gtest.h>

#include <string>

#include "marbm/communicator.hpp"
#include "marbm/distributed.hpp"
#include "marbm/mode.hpp"
#include "marbm/rbm.hpp"

namespace marbm {
namespace {

struct Case {
  const char* name;
  int n, m;
  ModeSolver solver;
  SbVariant variant;
  int replicas, steps;
  bool warm;
};

class DistributedMode : public ::testing::TestWithParam<Case> {};

TEST_P(DistributedMode, EqualsTheSingleProcessSearch) {
  const Case c = GetParam();
  Communicator& comm = *world_communicator();
  const Rbm rbm = Rbm::random(c.n, c.m, 0.8, 31 + static_cast<std::uint64_t>(c.n));
  ModeSearchConfig config;
  config.solver = c.solver;
  config.sb_variant = c.variant;
  config.backend = Backend::cpu;
  config.replicas = c.replicas;
  config.steps = c.steps;
  config.seed = 77;
  if (c.warm) {
    config.warm_visible.assign(static_cast<std::size_t>(c.n), 1);
    config.warm_hidden.assign(static_cast<std::size_t>(c.m), 0);
  }
  const ModeResult distributed = find_mode(rbm, config, comm);
  const ModeResult single = find_mode(rbm, config);
  EXPECT_EQ(distributed.visible, single.visible) << c.name;
  EXPECT_EQ(distributed.hidden, single.hidden) << c.name;
  EXPECT_EQ(distributed.energy, single.energy) << c.name;
  EXPECT_EQ(distributed.replicas_at_best, single.replicas_at_best) << c.name;
  EXPECT_EQ(distributed.replicas, single.replicas);
  EXPECT_EQ(distributed.steps, single.steps);
  // Every rank has the winner: the same bytes everywhere.
  std::vector<std::byte> mine(distributed.visible.size());
  for (std::size_t k = 0; k < mine.size(); ++k) mine[k] = std::byte(distributed.visible[k]);
  for (const auto& part : comm.all_gather(mine)) EXPECT_EQ(part, mine);
}

// 150 and 130 replicas are 3 blocks of 64 (the last partial); 40 replicas
// one block (only rank 0 searches). 140 x 130 takes SB's matrix-product path.
INSTANTIATE_TEST_SUITE_P(
    Solvers, DistributedMode,
    ::testing::Values(Case{"dsb_loop", 30, 20, ModeSolver::sb, SbVariant::discrete, 150, 200, false},
                      Case{"bsb_loop_warm", 30, 20, ModeSolver::sb, SbVariant::ballistic, 130, 200, true},
                      Case{"dsb_gemm", 140, 130, ModeSolver::sb, SbVariant::discrete, 150, 60, false},
                      Case{"sa", 30, 20, ModeSolver::sa, SbVariant::discrete, 150, 100, false},
                      Case{"sa_warm_one_block", 30, 20, ModeSolver::sa, SbVariant::discrete, 40, 100, true},
                      Case{"exhaustive", 12, 9, ModeSolver::exhaustive, SbVariant::discrete, 0, 0, false}),
    [](const ::testing::TestParamInfo<Case>& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace marbm
