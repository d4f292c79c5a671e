// The fused ensemble's launch decision (detail/ensemble_launch.hpp), checked
// without a device: which kernel, members per block, threads, blocks and
// shared memory, against the figures worked out by hand below.
#include <gtest/gtest.h>

#include <string>

#include "detail/ensemble_launch.hpp"
#include "marbm/error.hpp"

namespace marbm::detail {
namespace {

// sm_90 (H100/H200): 48 KiB per block without opting in, 227 KiB with.
constexpr SharedMemoryLimits kSm90{48 * 1024, 227 * 1024};
// Static shared memory as ptxas reports it for sm_90: ensemble_kernel's
// reduction arrays and block_sum's partials; ensemble_warp_kernel has none.
constexpr std::size_t kBlockStatic = 6432;
constexpr std::size_t kWarpStatic = 0;

FusedEnsembleLaunch plan(const FusedEnsembleShape& s, int members,
                         FusedKernelChoice choice = FusedKernelChoice::automatic,
                         const SharedMemoryLimits& limits = kSm90) {
  return plan_fused_ensemble(s, members, choice, kBlockStatic, kWarpStatic, limits);
}

TEST(FusedEnsembleLaunch, BlockKernelThreadsAreTheBlockKernelsRule) {
  // max(n m, rows * ceil(max(n, m) / 4)) rounded up to a power of two in [32, 256].
  EXPECT_EQ(block_kernel_threads({6, 6, 6, 6, true}), 64);        // 36 parameters
  EXPECT_EQ(block_kernel_threads({4, 3, 2, 5, false}), 32);       // 12 parameters
  EXPECT_EQ(block_kernel_threads({9, 7, 8, 8, false}), 64);       // 63 parameters, 24 groups
  EXPECT_EQ(block_kernel_threads({6, 10, 4, 12, false}), 64);     // 60 parameters, 36 groups
  EXPECT_EQ(block_kernel_threads({16, 16, 128, 128, false}), 256);  // 512 groups, capped
  EXPECT_EQ(block_kernel_threads({8, 8, 40, 40, false}), 128);    // 80 groups
}

TEST(FusedEnsembleLaunch, WarpMemberSliceIsScratchThenFloatsAligned) {
  // 6x6, batch 6, exact metrics: 32 lanes x 6 float64 fields, then the 288
  // floats of the block kernel's layout.
  const FusedEnsembleShape tiny{6, 6, 6, 6, true};
  EXPECT_EQ(warp_scratch_bytes(tiny), 32u * 6 * 8);
  EXPECT_EQ(fused_ensemble_shared_bytes(6, 6, 6, 6), 288u * 4);
  EXPECT_EQ(warp_member_bytes(tiny), 1536u + 1152u);
  // Nothing enumerates: no scratch. 4x3, batch 2, 5 chains: 109 floats = 436
  // bytes, rounded up to 448 so that the next member starts 16-byte aligned.
  const FusedEnsembleShape odd{4, 3, 2, 5, false};
  EXPECT_EQ(warp_scratch_bytes(odd), 0u);
  EXPECT_EQ(fused_ensemble_shared_bytes(4, 3, 2, 5), 436u);
  EXPECT_EQ(warp_member_bytes(odd), 448u);
  // The scratch is sized by the larger layer (the one the enumeration sums over).
  EXPECT_EQ(warp_scratch_bytes({3, 17, 4, 4, true}), 32u * 17 * 8);
  for (const FusedEnsembleShape s :
       {tiny, odd, FusedEnsembleShape{7, 5, 6, 3, true}, FusedEnsembleShape{9, 7, 8, 8, false}}) {
    EXPECT_EQ(warp_member_bytes(s) % 16, 0u);
    EXPECT_EQ(warp_scratch_bytes(s) % 8, 0u) << "the floats after the float64 scratch stay aligned";
  }
}

TEST(FusedEnsembleLaunch, TheReferenceEnsembleTakesTheWarpKernel) {
  // bench: 1,000 members of 6x6 on shifting bars, batch 6, CD-1, exact KL.
  const FusedEnsembleLaunch launch = plan({6, 6, 6, 6, true}, 1000);
  EXPECT_EQ(launch.kernel, FusedEnsembleKernel::warp);
  EXPECT_EQ(launch.members_per_block, 4);
  EXPECT_EQ(launch.threads, 128);
  EXPECT_EQ(launch.blocks, 250);
  EXPECT_EQ(launch.dynamic_bytes, 4u * 2688);
  EXPECT_FALSE(launch.opt_in);
}

TEST(FusedEnsembleLaunch, SmallEnsemblesFillTheirOneBlock) {
  const FusedEnsembleShape tiny{6, 6, 6, 6, false};
  for (int members = 1; members <= 9; ++members) {
    SCOPED_TRACE(std::to_string(members) + " members");
    const FusedEnsembleLaunch launch = plan(tiny, members);
    ASSERT_EQ(launch.kernel, FusedEnsembleKernel::warp);
    EXPECT_EQ(launch.members_per_block, members < 4 ? members : 4);
    EXPECT_EQ(launch.threads, 32 * launch.members_per_block);
    EXPECT_EQ(launch.blocks, (members + launch.members_per_block - 1) / launch.members_per_block);
    EXPECT_GE(launch.blocks * launch.members_per_block, members);
    EXPECT_LT((launch.blocks - 1) * launch.members_per_block, members) << "no block without a member";
  }
  EXPECT_EQ(plan(tiny, 0).kernel, FusedEnsembleKernel::none);
}

TEST(FusedEnsembleLaunch, LargerMembersTakeTheBlockKernelHoweverMany) {
  // 16x16 batch 128: the block kernel runs 256 threads per member. Its
  // 43,392 bytes of shared memory cap the members resident per SM alike for
  // both kernels, so the warp kernel's only effect would be fewer threads
  // per member: the block kernel at any member count.
  const FusedEnsembleShape mid{16, 16, 128, 128, false};
  for (const int members : {1, 4, 1000, 100000}) {
    SCOPED_TRACE(std::to_string(members) + " members");
    const FusedEnsembleLaunch launch = plan(mid, members);
    EXPECT_EQ(launch.kernel, FusedEnsembleKernel::block);
    EXPECT_EQ(launch.threads, 256);
    EXPECT_EQ(launch.blocks, members);
    EXPECT_EQ(launch.members_per_block, 1);
    EXPECT_EQ(launch.dynamic_bytes, fused_ensemble_shared_bytes(16, 16, 128, 128));
    EXPECT_TRUE(launch.opt_in) << "6432 static + 43,392 dynamic bytes exceed 48 KiB";
  }
  // The edge of "small": 64 block threads take the warp kernel, 128 do not.
  EXPECT_EQ(block_kernel_threads({8, 8, 16, 16, false}), 64);
  EXPECT_EQ(plan({8, 8, 16, 16, false}, 10).kernel, FusedEnsembleKernel::warp);
  EXPECT_EQ(block_kernel_threads({8, 8, 40, 40, false}), 128);
  EXPECT_EQ(plan({8, 8, 40, 40, false}, 10).kernel, FusedEnsembleKernel::block);
  // Forced, the warp kernel takes the larger member too: one per block
  // within the default 48 KiB (it has no static shared memory).
  const FusedEnsembleLaunch warp = plan(mid, 4, FusedKernelChoice::warp);
  EXPECT_EQ(warp.kernel, FusedEnsembleKernel::warp);
  EXPECT_EQ(warp.members_per_block, 1);
  EXPECT_EQ(warp.threads, 32);
  EXPECT_EQ(warp.blocks, 4);
  EXPECT_FALSE(warp.opt_in);
}

TEST(FusedEnsembleLaunch, MembersPerBlockStayUnderTheDefaultLimitThenOptIn) {
  // 9x7, batch 40: 2 x 79 + 40 x 16 + 40 x 7 + 40 x 16 + 16 = 1734 floats,
  // 6936 bytes, 6944 with the alignment (no scratch): 4 per block = 27,776 bytes.
  const FusedEnsembleShape s{9, 7, 40, 40, false};
  ASSERT_EQ(warp_member_bytes(s), 6944u);
  EXPECT_EQ(plan(s, 100, FusedKernelChoice::warp).members_per_block, 4);
  // A device (or a kernel with static memory) leaving room for 2 only.
  const FusedEnsembleLaunch two =
      plan_fused_ensemble(s, 100, FusedKernelChoice::warp, kBlockStatic, 48 * 1024 - 2 * 6944, kSm90);
  EXPECT_EQ(two.members_per_block, 2);
  EXPECT_EQ(two.dynamic_bytes, 2u * 6944);
  EXPECT_FALSE(two.opt_in);
  // 20x20, batch 110, 90 chains, exact metrics: 44,480 bytes of floats and
  // 5,120 of scratch, above 48 KiB alone: one member, opting in.
  const FusedEnsembleShape big{20, 20, 110, 90, true};
  ASSERT_EQ(warp_member_bytes(big), 49600u);
  const FusedEnsembleLaunch one = plan(big, 100, FusedKernelChoice::warp);
  EXPECT_EQ(one.kernel, FusedEnsembleKernel::warp);
  EXPECT_EQ(one.members_per_block, 1);
  EXPECT_EQ(one.dynamic_bytes, 49600u);
  EXPECT_TRUE(one.opt_in);
}

TEST(FusedEnsembleLaunch, ForcedChoicesAndSettingsBeyondTheDevice) {
  const FusedEnsembleShape tiny{6, 6, 6, 6, true};
  const FusedEnsembleLaunch block = plan(tiny, 1000, FusedKernelChoice::block);
  EXPECT_EQ(block.kernel, FusedEnsembleKernel::block);
  EXPECT_EQ(block.threads, 64);
  EXPECT_EQ(block.blocks, 1000);
  EXPECT_EQ(block.dynamic_bytes, 1152u);
  // 32x32, batch 128: 90,880 bytes per member. Fits sm_90 with an opt-in,
  // not a device allowing 64 KiB: neither kernel, the caller trains the
  // members on engines.
  const FusedEnsembleShape widest{32, 32, 128, 128, false};
  EXPECT_NE(plan(widest, 10).kernel, FusedEnsembleKernel::none);
  const SharedMemoryLimits small{48 * 1024, 64 * 1024};
  for (const FusedKernelChoice choice :
       {FusedKernelChoice::automatic, FusedKernelChoice::block, FusedKernelChoice::warp})
    EXPECT_EQ(plan(widest, 10, choice, small).kernel, FusedEnsembleKernel::none);
  // Only the warp kernel fits (no 6432 static bytes): automatic takes it.
  const SharedMemoryLimits tight{48 * 1024, 48 * 1024};
  const FusedEnsembleShape s{16, 16, 128, 128, false};  // 43,392 bytes: block needs 49,824
  EXPECT_EQ(plan(s, 4, FusedKernelChoice::block, tight).kernel, FusedEnsembleKernel::none);
  EXPECT_EQ(plan(s, 4, FusedKernelChoice::automatic, tight).kernel, FusedEnsembleKernel::warp);
}

TEST(FusedEnsembleLaunch, KernelChoiceFromTheEnvironmentValue) {
  EXPECT_EQ(parse_fused_kernel_choice(nullptr), FusedKernelChoice::automatic);
  EXPECT_EQ(parse_fused_kernel_choice(""), FusedKernelChoice::automatic);
  EXPECT_EQ(parse_fused_kernel_choice("auto"), FusedKernelChoice::automatic);
  EXPECT_EQ(parse_fused_kernel_choice("block"), FusedKernelChoice::block);
  EXPECT_EQ(parse_fused_kernel_choice("warp"), FusedKernelChoice::warp);
  try {
    (void)parse_fused_kernel_choice("Warp");
    FAIL() << "'Warp' must be refused";
  } catch (const UsageError& error) {
    EXPECT_EQ(std::string(error.what()), "MARBM_ENSEMBLE_KERNEL must be auto, block or warp, got 'Warp'");
  }
}

}  // namespace
}  // namespace marbm::detail
