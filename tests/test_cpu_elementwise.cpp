// The CPU engine's elementwise kernels (host/detail/cpu_elementwise.hpp):
// the AVX2 Philox generator bit for bit against the scalar one, the draws
// against PhiloxStream's word -> uniform map, and the vector logistic against
// the scalar one (the same operations: bit for bit) and the exact sigmoid.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#include "cli_runner.hpp"
#include "detail/cpu_elementwise.hpp"
#include "marbm/model_io.hpp"
#include "marbm/random.hpp"

namespace marbm {
namespace {

using detail::ElementwiseKernels;

const ElementwiseKernels* avx2_or_skip() { return detail::avx2_elementwise_kernels(); }

// Distance in representable floats between two finite floats of the same sign.
std::int64_t ulp_distance(float a, float b) {
  const auto key = [](float x) {
    const std::int32_t bits = std::bit_cast<std::int32_t>(x);
    return bits < 0 ? -static_cast<std::int64_t>(bits & 0x7FFFFFFF) : static_cast<std::int64_t>(bits);
  };
  return std::llabs(key(a) - key(b));
}

TEST(CpuElementwise, BaselinePhiloxWordsAreThePhiloxStreamBlocks) {
  const auto& kernels = detail::baseline_elementwise_kernels();
  const PhiloxStream stream(0x0123456789ABCDEFull, 0xFEDCBA9876543210ull);
  std::vector<std::uint32_t> words(4 * 19);
  kernels.philox_words(stream.seed(), stream.stream(), 1000, 19, words.data());
  for (std::uint64_t b = 0; b < 19; ++b) {
    const auto block = stream.block(1000 + b);
    for (int q = 0; q < 4; ++q) ASSERT_EQ(words[4 * b + q], block[q]) << "block " << b << " word " << q;
  }
}

TEST(CpuElementwise, Avx2PhiloxIsBitIdenticalToTheScalarGenerator) {
  const ElementwiseKernels* avx2 = avx2_or_skip();
  if (avx2 == nullptr) GTEST_SKIP() << "this CPU has no AVX2 + FMA";
  // Many keys and streams (all bits exercised), counters at both ends of the
  // 64-bit range and straddling every carry from the low into the high word,
  // and run lengths that are not multiples of the eight-block vector.
  std::vector<std::uint64_t> keys = {0, 1, 0xFFFFFFFFull, 0x100000000ull, ~0ull, 0x9E3779B97F4A7C15ull};
  std::vector<std::uint64_t> starts = {0, 1, 7, 0xFFFFFFF9ull, 0xFFFFFFFFull, 0x1FFFFFFFCull, ~0ull - 5,
                                       (std::uint64_t{1} << 38) - 3, 0x123456789ull};
  const PhiloxStream mixer(77, random_stream(RandomPurpose::test, 13));
  for (int k = 0; k < 40; ++k) keys.push_back(mixer.block(k)[0] | static_cast<std::uint64_t>(mixer.block(k)[1]) << 32);
  for (int k = 0; k < 40; ++k) starts.push_back(mixer.block(100 + k)[2] | static_cast<std::uint64_t>(mixer.block(100 + k)[3]) << 32);
  long compared = 0;
  for (const std::uint64_t seed : keys) {
    for (std::size_t s = 0; s < keys.size(); s += 5) {
      const std::uint64_t stream = keys[(s + seed) % keys.size()] ^ (seed << 7);
      for (const std::uint64_t first : starts) {
        for (const std::size_t blocks : {std::size_t{1}, std::size_t{7}, std::size_t{8}, std::size_t{21}}) {
          std::vector<std::uint32_t> got(4 * blocks), want(4 * blocks);
          avx2->philox_words(seed, stream, first, blocks, got.data());
          detail::baseline_elementwise_kernels().philox_words(seed, stream, first, blocks, want.data());
          ASSERT_EQ(got, want) << "seed " << seed << " stream " << stream << " first block " << first;
          compared += static_cast<long>(got.size());
        }
      }
    }
  }
  EXPECT_GT(compared, 100000);
}

TEST(CpuElementwise, Avx2LogisticIsBitIdenticalToTheScalarOne) {
  const ElementwiseKernels* avx2 = avx2_or_skip();
  if (avx2 == nullptr) GTEST_SKIP() << "this CPU has no AVX2 + FMA";
  // Every 127th float from -110 to 110 (about 17 million values, by chunks),
  // plus the edges where expf over- and underflows.
  std::vector<float> x, got, want;
  std::int64_t worst = 0;
  long differing = 0, total = 0;
  auto compare = [&] {
    got.resize(x.size());
    want.resize(x.size());
    avx2->logistic(x.data(), nullptr, got.data(), x.size());
    detail::baseline_elementwise_kernels().logistic(x.data(), nullptr, want.data(), x.size());
    for (std::size_t k = 0; k < x.size(); ++k) {
      ASSERT_EQ(std::isnan(got[k]), std::isnan(want[k])) << "x = " << x[k];
      const std::int64_t d = ulp_distance(got[k], want[k]);
      if (d > 0 && worst == 0) ADD_FAILURE() << "x = " << x[k] << ": " << got[k] << " against " << want[k];
      worst = std::max(worst, d);
      differing += d != 0;
    }
    total += static_cast<long>(x.size());
    x.clear();
  };
  for (std::uint32_t bits = 0; bits < 0x7F800000u; bits += 127) {
    const float v = std::bit_cast<float>(bits);
    if (v > 110.0f) break;
    x.push_back(v);
    x.push_back(-v);
    if (x.size() >= 1 << 16) compare();
  }
  for (const float v : {88.72f, 88.73f, 89.0f, 103.9f, 103.97f, 103.98f, 104.0f, 1e30f,
                        std::numeric_limits<float>::max(), std::numeric_limits<float>::infinity()}) {
    x.push_back(v);
    x.push_back(-v);
  }
  compare();
  EXPECT_EQ(worst, 0);
  EXPECT_EQ(differing, 0);
  EXPECT_GT(total, 10000000);
  std::printf("vector logistic: max %lld ulp from the scalar one, %ld of %ld values differ\n",
              static_cast<long long>(worst), differing, total);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  float nan_out = 0.0f;
  avx2->logistic(&nan, nullptr, &nan_out, 1);
  EXPECT_TRUE(std::isnan(nan_out));
}

TEST(CpuElementwise, LogisticIsWithinTwoUlpOfTheExactSigmoid) {
  // Against the float nearest the float64 sigmoid, where that is a normal
  // float (below 2^-126 both round to subnormals of the same size), every
  // 331st float in [-110, 110]; as accurate as 1 / (1 + expf(-x)) in float.
  const auto& kernels = detail::baseline_elementwise_kernels();
  std::vector<float> x, got;
  for (std::uint32_t bits = 0; bits < 0x7F800000u; bits += 331) {
    const float v = std::bit_cast<float>(bits);
    if (v > 110.0f) break;
    x.push_back(v);
    x.push_back(-v);
  }
  got.resize(x.size());
  kernels.logistic(x.data(), nullptr, got.data(), x.size());
  std::int64_t worst = 0;
  for (std::size_t k = 0; k < x.size(); ++k) {
    const float exact = static_cast<float>(1.0 / (1.0 + std::exp(-static_cast<double>(x[k]))));
    if (exact < std::numeric_limits<float>::min()) {
      EXPECT_LE(std::fabs(got[k] - exact), std::numeric_limits<float>::min()) << "x = " << x[k];
      continue;
    }
    worst = std::max(worst, ulp_distance(got[k], exact));
  }
  EXPECT_LE(worst, 2);
  float edge[6] = {0.0f, -0.0f, std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(), 200.0f,
                   -200.0f};
  float out[6];
  kernels.logistic(edge, nullptr, out, 6);
  EXPECT_EQ(out[0], 0.5f);
  EXPECT_EQ(out[1], 0.5f);
  EXPECT_EQ(out[2], 1.0f);
  EXPECT_EQ(out[3], 0.0f);
  EXPECT_EQ(out[4], 1.0f);
  EXPECT_EQ(out[5], 0.0f);
}

// The draws of both kernels follow PhiloxStream: state = [uniform(base + k) < p].
void check_draws(const ElementwiseKernels& kernels) {
  const std::uint64_t seed = 5, stream = random_stream(RandomPurpose::gibbs, 9);
  const PhiloxStream random(seed, stream);
  for (const std::size_t width : {std::size_t{1}, std::size_t{5}, std::size_t{31}, std::size_t{32}, std::size_t{500},
                                  std::size_t{784}}) {
    // Row starts at 0, a few blocks before the low counter word wraps, and in half-sweep 3.
    const std::uint64_t bases[] = {0, std::uint64_t{4} * 0xFFFFFFFDu, (std::uint64_t{3} << 40) + 1000};
    for (const std::uint64_t base : bases) {
      std::vector<float> x(width), bias(width), p(width), state(width, -1.0f), state_only(width, -1.0f);
      for (std::size_t k = 0; k < width; ++k) {
        x[k] = 4.0f * random.uniform(7 * k + 1) - 2.0f;
        bias[k] = random.uniform(7 * k + 2) - 0.5f;
      }
      kernels.logistic_sample(x.data(), bias.data(), p.data(), state.data(), width, seed, stream, base);
      std::vector<float> q(width);
      kernels.logistic(x.data(), bias.data(), q.data(), width);
      EXPECT_EQ(p, q) << kernels.name << ": the fused pass stores the logistic";
      kernels.sample(p.data(), state_only.data(), width, seed, stream, base);
      long ones = 0;
      for (std::size_t k = 0; k < width; ++k) {
        const float want = random.uniform(base + k) < p[k] ? 1.0f : 0.0f;
        ASSERT_EQ(state[k], want) << kernels.name << " width " << width << " unit " << k;
        ASSERT_EQ(state_only[k], want) << kernels.name << " width " << width << " unit " << k;
        ones += state[k] == 1.0f;
      }
      if (width >= 500) EXPECT_GT(ones, 0);
      // p_out = null draws the same states; in place (p_out = x) too.
      std::vector<float> again(width), in_place = x;
      kernels.logistic_sample(x.data(), bias.data(), nullptr, again.data(), width, seed, stream, base);
      EXPECT_EQ(again, state);
      kernels.logistic_sample(in_place.data(), bias.data(), in_place.data(), again.data(), width, seed, stream, base);
      EXPECT_EQ(in_place, p);
      EXPECT_EQ(again, state);
    }
  }
}

TEST(CpuElementwise, BaselineDrawsFollowThePhiloxStream) { check_draws(detail::baseline_elementwise_kernels()); }

TEST(CpuElementwise, Avx2DrawsFollowThePhiloxStream) {
  const ElementwiseKernels* avx2 = avx2_or_skip();
  if (avx2 == nullptr) GTEST_SKIP() << "this CPU has no AVX2 + FMA";
  check_draws(*avx2);
}

TEST(CpuElementwise, TheEngineRunsTheBestKernelsThisCpuHas) {
  const ElementwiseKernels* avx2 = avx2_or_skip();
  const char* disabled = std::getenv("MARBM_NO_AVX2");
  const bool off = disabled != nullptr && disabled[0] != '\0' && std::string(disabled) != "0";
  EXPECT_STREQ(detail::elementwise_kernels().name, avx2 != nullptr && !off ? "avx2" : "baseline");
}

TEST(CpuElementwise, PlainAndVectorKernelsTrainTheSameBits) {
  // The same training run with the kernels this CPU picks and, in a second
  // process, with MARBM_NO_AVX2=1: the models agree bit for bit, on a model
  // large enough for the tiled BLAS path (64 x 300, batch 64, 2 threads) and
  // on the 6 x 6 loop path.
  if (avx2_or_skip() == nullptr) GTEST_SKIP() << "this CPU has no AVX2 + FMA: one set of kernels only";
  if (std::getenv("MARBM_NO_AVX2") != nullptr) GTEST_SKIP() << "MARBM_NO_AVX2 is set for the whole run";
  const test::ScratchFolder scratch;
  const std::vector<std::vector<std::string>> runs = {
      {"train", "--data", "shifting-bars:64:8", "--hidden", "300", "--method", "cd", "--batch", "64", "--lr", "0.1",
       "--iters", "40", "--seed", "5", "--threads", "2"},
      {"train", "--data", "shifting-bars:6:3", "--hidden", "6", "--method", "pcd", "--chains", "6", "--batch", "6",
       "--iters", "300", "--seed", "7", "--threads", "1"}};
  for (std::size_t k = 0; k < runs.size(); ++k) {
    std::vector<Rbm> models;
    for (const bool plain : {false, true}) {
      std::vector<std::string> arguments = runs[k];
      const std::string out = scratch.file("model-" + std::to_string(k) + (plain ? "-plain" : "-vector") + ".safetensors");
      arguments.insert(arguments.end(), {"--out", out});
      if (plain) ::setenv("MARBM_NO_AVX2", "1", 1);
      const test::CliResult result = test::run_program(MARBM_CLI_PATH, arguments, scratch);
      if (plain) ::unsetenv("MARBM_NO_AVX2");
      ASSERT_EQ(result.exit_code, 0) << test::describe(result);
      models.push_back(load_rbm(out));
    }
    EXPECT_EQ(models[0], models[1]) << "run " << k;
  }
}

}  // namespace
}  // namespace marbm
