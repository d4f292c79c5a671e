// Kernel-level tests of the CUDA engine's device code against plain C++
// references: sampling (exact numbers and statistics), chain start, batch
// gathering and the fused update. Skipped without a usable device.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <array>
#include <cstdint>
#include <thread>
#include <vector>

#include "detail/cuda_update_layout.hpp"
#include "device_buffer.cuh"
#include "device_test.hpp"
#include "gibbs.cuh"
#include "marbm/engine.hpp"
#include "marbm/error.hpp"
#include "marbm/random.hpp"
#include "resources.cuh"

namespace marbm::detail {
namespace {

class CudaKernels : public ::testing::Test {
 protected:
  void SetUp() override {
    MARBM_SKIP_WITHOUT_DEVICE();
    resources_ = std::make_unique<Resources>(0);
  }
  cudaStream_t stream() const { return resources_->stream(); }
  template <typename T>
  DeviceBuffer<T> upload(const std::vector<T>& host) {
    DeviceBuffer<T> buffer(host.size(), stream());
    buffer.copy_from_host(host);
    return buffer;
  }
  std::unique_ptr<Resources> resources_;
};

// Relative + absolute closeness in which NaN never passes.
bool is_close(double got, double expected, double relative, double absolute) {
  if (std::isnan(got) || std::isnan(expected)) return false;
  return std::abs(got - expected) <= absolute + relative * std::abs(expected);
}

std::vector<float> random_floats(std::size_t count, double low, double high, std::uint64_t seed) {
  const PhiloxStream stream(seed, random_stream(RandomPurpose::test, 1));
  std::vector<float> values(count);
  for (std::size_t k = 0; k < count; ++k) values[k] = static_cast<float>(low + (high - low) * stream.uniform_double(k));
  return values;
}

float reference_sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

TEST_F(CudaKernels, SampleLayerDrawsThePhiloxNumbersOfTheReference) {
  // Odd and tail widths (rows not a multiple of 4 units), several seeds and half-sweeps.
  for (const int rows : {1, 7, 129}) {
    for (const int width : {1, 3, 4, 5, 17, 33}) {
      for (const std::uint64_t seed : {1u, 2u, 977u}) {
        const std::uint64_t half_sweep = seed % 3 == 0 ? 5 : seed;
        const std::uint64_t stream_id = random_stream(RandomPurpose::gibbs, seed * 13);
        const auto pre = random_floats(static_cast<std::size_t>(rows) * width, -4.0, 4.0, seed * 100 + width);
        const auto bias = random_floats(width, -1.0, 1.0, seed * 1000 + rows);
        auto pre_device = upload(pre);
        auto bias_device = upload(bias);
        DeviceBuffer<float> samples(pre.size(), stream()), probabilities(pre.size(), stream());
        LayerOutputs outputs;
        outputs.samples = samples.data();
        outputs.probabilities = probabilities.data();
        outputs.scale = 0.25f;
        sample_layer(pre_device.data(), bias_device.data(), rows, width, seed, stream_id, half_sweep, outputs, stream());
        const auto got_samples = samples.to_host();
        const auto got_probabilities = probabilities.to_host();
        const PhiloxStream reference(seed, stream_id);
        int decided = 0;
        for (int r = 0; r < rows; ++r) {
          for (int u = 0; u < width; ++u) {
            const std::size_t k = static_cast<std::size_t>(r) * width + u;
            const float p = reference_sigmoid(pre[k] + bias[u]);
            // expf on the device and std::exp differ by a few ulp: 1e-6 covers them.
            ASSERT_TRUE(is_close(got_probabilities[k], 0.25 * p, 1e-6, 1e-7))
                << "rows " << rows << " width " << width << " seed " << seed << " at " << r << "," << u;
            const float uniform = reference.uniform(gibbs_random_index(half_sweep, r, width, u));
            if (std::abs(uniform - p) < 1e-6f) continue;  // too close to call across ulp differences
            ++decided;
            ASSERT_EQ(got_samples[k], uniform < p ? 1.0f : 0.0f) << "rows " << rows << " width " << width << " at " << r
                                                                 << "," << u;
          }
        }
        EXPECT_GT(decided, 0);
      }
    }
  }
}

TEST_F(CudaKernels, SampleLayerCanStoreScaledSamples) {
  const int rows = 9, width = 6;
  const auto pre = random_floats(rows * width, -2.0, 2.0, 5);
  const std::vector<float> bias(width, 0.0f);
  auto pre_device = upload(pre);
  auto bias_device = upload(bias);
  DeviceBuffer<float> samples(pre.size(), stream()), scaled(pre.size(), stream());
  LayerOutputs outputs;
  outputs.samples = samples.data();
  outputs.probabilities = scaled.data();
  outputs.scale = -0.5f;
  outputs.store_samples_as_probabilities = true;
  sample_layer(pre_device.data(), bias_device.data(), rows, width, 8, 9, 0, outputs, stream());
  const auto s = samples.to_host();
  const auto p = scaled.to_host();
  for (std::size_t k = 0; k < s.size(); ++k) EXPECT_EQ(p[k], -0.5f * s[k]) << k;
}

TEST_F(CudaKernels, SampledFrequenciesMatchTheSigmoid) {
  // rows independent draws per unit: frequency sd = sqrt(p (1 - p) / rows);
  // 5 sd over 8 units fails by chance with probability < 1e-5.
  const int rows = 40000, width = 8;
  const std::vector<float> bias = {-3.0f, -1.5f, -0.5f, 0.0f, 0.3f, 1.0f, 2.0f, 4.0f};
  const std::vector<float> pre(static_cast<std::size_t>(rows) * width, 0.0f);
  auto pre_device = upload(pre);
  auto bias_device = upload(bias);
  for (const std::uint64_t seed : {11u, 12u}) {
    DeviceBuffer<float> samples(pre.size(), stream());
    LayerOutputs outputs;
    outputs.samples = samples.data();
    sample_layer(pre_device.data(), bias_device.data(), rows, width, seed, random_stream(RandomPurpose::gibbs, 0), 1,
                 outputs, stream());
    const auto s = samples.to_host();
    for (int u = 0; u < width; ++u) {
      double ones = 0.0;
      for (int r = 0; r < rows; ++r) ones += s[static_cast<std::size_t>(r) * width + u];
      const double p = 1.0 / (1.0 + std::exp(-static_cast<double>(bias[u])));
      const double sd = std::sqrt(p * (1.0 - p) / rows);
      EXPECT_NEAR(ones / rows, p, 5.0 * sd) << "unit " << u << " seed " << seed;
    }
  }
}

TEST_F(CudaKernels, ChainStartIsBit31OfThePhiloxWord) {
  for (const int width : {1, 5, 12}) {
    const int rows = 11;
    DeviceBuffer<float> values(static_cast<std::size_t>(rows) * width, stream());
    const std::uint64_t stream_id = random_stream(RandomPurpose::persistent_chains, 0);
    uniform_binary(values.data(), rows, width, 42, stream_id, stream());
    const auto got = values.to_host();
    const PhiloxStream reference(42, stream_id);
    for (int r = 0; r < rows; ++r)
      for (int u = 0; u < width; ++u)
        EXPECT_EQ(got[static_cast<std::size_t>(r) * width + u],
                  static_cast<float>(reference.bits(gibbs_random_index(0, r, width, u)) >> 31));
  }
}

TEST_F(CudaKernels, GatherAndConversionsAreExact) {
  const int data_rows = 13, width = 7;
  std::vector<std::uint8_t> data(static_cast<std::size_t>(data_rows) * width);
  for (std::size_t k = 0; k < data.size(); ++k) data[k] = static_cast<std::uint8_t>((k * 7 + k / 3) % 2);
  const std::vector<int> rows = {12, 0, 5, 5, 3};
  auto data_device = upload(data);
  auto rows_device = upload(rows);
  DeviceBuffer<float> gathered(rows.size() * width, stream());
  gather_rows(data_device.data(), rows_device.data(), static_cast<int>(rows.size()), width, gathered.data(), stream());
  const auto got = gathered.to_host();
  for (std::size_t r = 0; r < rows.size(); ++r)
    for (int c = 0; c < width; ++c)
      EXPECT_EQ(got[r * width + c], static_cast<float>(data[static_cast<std::size_t>(rows[r]) * width + c]));
  DeviceBuffer<std::uint8_t> bytes(got.size(), stream());
  floats_to_bytes(gathered.data(), got.size(), bytes.data(), stream());
  const auto back = bytes.to_host();
  for (std::size_t k = 0; k < back.size(); ++k) EXPECT_EQ(back[k], got[k] != 0.0f ? 1 : 0);
}

TEST_F(CudaKernels, FusedUpdateMatchesTheReference) {
  for (const std::size_t count : {std::size_t{1}, std::size_t{37}, std::size_t{100003}}) {
    const std::size_t decayed = count * 2 / 3;
    auto parameters = random_floats(count, -1.0, 1.0, count);
    auto velocity = random_floats(count, -0.1, 0.1, count + 1);
    const auto gradient = random_floats(count, -0.5, 0.5, count + 2);
    auto parameters_device = upload(parameters);
    auto velocity_device = upload(velocity);
    auto gradient_device = upload(gradient);
    const float lr = 0.05f, momentum = 0.9f, decay = 0.01f;
    apply_update(parameters_device.data(), velocity_device.data(), gradient_device.data(), count, decayed, lr, momentum,
                 decay, stream());
    const auto got_parameters = parameters_device.to_host();
    const auto got_velocity = velocity_device.to_host();
    for (std::size_t k = 0; k < count; ++k) {
      const float d = k < decayed ? decay * parameters[k] : 0.0f;
      const float step = momentum * velocity[k] + lr * (gradient[k] - d);
      // float32 with possible fused multiply-adds on the device: a few ulp.
      ASSERT_TRUE(is_close(got_velocity[k], step, 1e-5, 1e-7)) << k;
      ASSERT_TRUE(is_close(got_parameters[k], parameters[k] + step, 1e-5, 1e-7)) << k;
    }
  }
}

// ------------------------------------------------------------ the update's kernels

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// The sampler against the former kernel (sample_layer_reference): same
// Philox block per group, same arithmetic per unit, so the same bits, on the
// float4 path (width a multiple of 4, aligned rows) and the scalar one
// (tails, or inputs moved off 16 bytes), for rows drawn as rows of a larger
// batch and for half-sweeps up to the largest k allows.
TEST_F(CudaKernels, SampleLayerMatchesTheReferenceKernelBitForBit) {
  for (const int rows : {1, 7, 129}) {
    for (const int width : {1, 3, 4, 5, 8, 17, 33, 500}) {
      for (const int shift : {0, 1}) {  // 1: pre-activations and bias one float off 16 bytes
        const std::uint64_t seed = 3 + width + shift;
        const std::uint64_t first_row = rows == 7 ? 1000003 : 0;
        const std::uint64_t half_sweep = rows == 129 ? (std::uint64_t{1} << 21) + 1 : 2;
        const std::uint64_t stream_id = random_stream(RandomPurpose::gibbs, seed);
        const std::size_t count = static_cast<std::size_t>(rows) * width;
        auto pre_device = upload(random_floats(count + shift, -4.0, 4.0, seed));
        auto bias_device = upload(random_floats(width + shift, -1.0, 1.0, seed + 1));
        const float* pre = pre_device.data() + shift;
        const float* bias = bias_device.data() + shift;
        std::vector<float> got[2][2];  // [new, reference][samples, probabilities]
        for (const int reference : {0, 1}) {
          DeviceBuffer<float> samples(count, stream()), probabilities(count, stream());
          LayerOutputs outputs;
          outputs.samples = samples.data();
          outputs.probabilities = probabilities.data();
          outputs.scale = -0.125f;
          if (reference) {
            sample_layer_reference(pre, bias, rows, width, seed, stream_id, half_sweep, outputs, stream(), first_row);
          } else {
            sample_layer(pre, bias, rows, width, seed, stream_id, half_sweep, outputs, stream(), first_row);
          }
          got[reference][0] = samples.to_host();
          got[reference][1] = probabilities.to_host();
        }
        EXPECT_TRUE(same_bits(got[0][0], got[1][0])) << "samples, rows " << rows << " width " << width << " shift " << shift;
        EXPECT_TRUE(same_bits(got[0][1], got[1][1]))
            << "probabilities, rows " << rows << " width " << width << " shift " << shift;
      }
    }
  }
}

// Seed and stream read from a device block give the draws of the same values
// passed by value; strided outputs (the augmented rows) get the contiguous
// outputs' values, and the cells between rows are left alone.
TEST_F(CudaKernels, SampleLayerReadsKeysFromTheDeviceAndWritesStridedRows) {
  for (const int width : {5, 8, 500}) {
    const int rows = 33;
    const std::size_t count = static_cast<std::size_t>(rows) * width;
    const std::size_t stride = augmented_stride(width);
    auto pre_device = upload(random_floats(count, -3.0, 3.0, width));
    auto bias_device = upload(random_floats(width, -1.0, 1.0, width + 1));
    UpdateValues values;
    values.seed = 77;
    values.stream = random_stream(RandomPurpose::gibbs, 12);
    std::vector<int> block(kUpdateBlockInts);
    std::memcpy(block.data(), &values, sizeof values);
    auto block_device = upload(block);
    const auto* keys = reinterpret_cast<const UpdateValues*>(block_device.data());

    DeviceBuffer<float> samples(count, stream()), probabilities(count, stream());
    LayerOutputs plain;
    plain.samples = samples.data();
    plain.probabilities = probabilities.data();
    plain.scale = 0.5f;
    sample_layer(pre_device.data(), bias_device.data(), rows, width, values.seed, values.stream, 3, plain, stream(), 4);
    const auto want_samples = samples.to_host();
    const auto want_probabilities = probabilities.to_host();

    const float sentinel = 7.0f;
    auto strided_samples = upload(std::vector<float>(rows * stride, sentinel));
    auto strided_probabilities = upload(std::vector<float>(rows * stride, sentinel));
    LayerOutputs strided;
    strided.samples = strided_samples.data();
    strided.samples_stride = stride;
    strided.probabilities = strided_probabilities.data();
    strided.probabilities_stride = stride;
    strided.scale = 0.5f;
    sample_layer(pre_device.data(), bias_device.data(), rows, width, keys, 3, strided, stream(), 4);
    const auto got_samples = strided_samples.to_host();
    const auto got_probabilities = strided_probabilities.to_host();
    for (int r = 0; r < rows; ++r) {
      for (std::size_t c = 0; c < stride; ++c) {
        const std::size_t k = r * stride + c;
        if (c < static_cast<std::size_t>(width)) {
          const std::size_t j = static_cast<std::size_t>(r) * width + c;
          ASSERT_EQ(std::memcmp(&got_samples[k], &want_samples[j], sizeof(float)), 0) << width << " at " << r << "," << c;
          ASSERT_EQ(std::memcmp(&got_probabilities[k], &want_probabilities[j], sizeof(float)), 0)
              << width << " at " << r << "," << c;
        } else {
          ASSERT_EQ(got_samples[k], sentinel) << "padding written, width " << width << " at " << r << "," << c;
          ASSERT_EQ(got_probabilities[k], sentinel) << "padding written, width " << width << " at " << r << "," << c;
        }
      }
    }
  }
}

TEST_F(CudaKernels, StridedGatherAndColumnFillTouchOnlyTheirCells) {
  const int data_rows = 11, width = 9;
  std::vector<std::uint8_t> data(static_cast<std::size_t>(data_rows) * width);
  for (std::size_t k = 0; k < data.size(); ++k) data[k] = static_cast<std::uint8_t>((k * 5 + k / 4) % 2);
  const std::vector<int> rows = {10, 0, 4, 4, 7, 2};
  const std::size_t stride = augmented_stride(width);
  auto data_device = upload(data);
  auto rows_device = upload(rows);
  auto out = upload(std::vector<float>(rows.size() * stride, -1.0f));
  gather_rows(data_device.data(), rows_device.data(), static_cast<int>(rows.size()), width, out.data(), stream(), stride);
  fill_column(out.data() + width, static_cast<int>(rows.size()), stride, 0.25f, stream());
  const auto got = out.to_host();
  for (std::size_t r = 0; r < rows.size(); ++r) {
    for (std::size_t c = 0; c < stride; ++c) {
      const float want = c < static_cast<std::size_t>(width)
                             ? static_cast<float>(data[static_cast<std::size_t>(rows[r]) * width + c])
                             : c == static_cast<std::size_t>(width) ? 0.25f : -1.0f;
      EXPECT_EQ(got[r * stride + c], want) << r << "," << c;
    }
  }
}

// The augmented update against apply_update on the flat gradient: both
// inline the same step function, so the same bits; G's cells that hold no
// entry (padding, G[n][m]) are NaN and must not reach any parameter.
TEST_F(CudaKernels, AugmentedUpdateMatchesTheFlatUpdateBitForBit) {
  for (const auto [n, m] : {std::array{1, 1}, std::array{3, 5}, std::array{7, 4}, std::array{784, 500}}) {
    const std::size_t weights = static_cast<std::size_t>(n) * m, count = weights + n + m;
    const auto parameters = random_floats(count, -1.0, 1.0, n);
    const auto velocity = random_floats(count, -0.1, 0.1, n + 1);
    const auto gradient = random_floats(count, -0.5, 0.5, n + 2);
    std::vector<float> augmented(augmented_gradient_size(n, m), std::nanf(""));
    for (std::size_t k = 0; k < count; ++k) augmented[augmented_gradient_offset(n, m, k)] = gradient[k];
    UpdateValues values;
    values.learning_rate = 0.05f;
    values.momentum = 0.9f;
    values.weight_decay = 0.01f;
    std::vector<int> block(kUpdateBlockInts);
    std::memcpy(block.data(), &values, sizeof values);
    auto block_device = upload(block);

    auto flat_parameters = upload(parameters);
    auto flat_velocity = upload(velocity);
    auto flat_gradient = upload(gradient);
    apply_update(flat_parameters.data(), flat_velocity.data(), flat_gradient.data(), count, weights,
                 values.learning_rate, values.momentum, values.weight_decay, stream());
    auto new_parameters = upload(parameters);
    auto new_velocity = upload(velocity);
    auto augmented_gradient = upload(augmented);
    apply_update_augmented(new_parameters.data(), new_velocity.data(), augmented_gradient.data(), n, m,
                           reinterpret_cast<const UpdateValues*>(block_device.data()), stream());
    EXPECT_TRUE(same_bits(new_parameters.to_host(), flat_parameters.to_host())) << n << "x" << m;
    EXPECT_TRUE(same_bits(new_velocity.to_host(), flat_velocity.to_host())) << n << "x" << m;
  }
}

// ------------------------------------------------------------ resources

TEST_F(CudaKernels, ResourcesKeepTheMemoryPoolsMemory) {
  // Release threshold 0 (the default) returns the pool's memory to the OS at
  // every synchronisation; Resources sets it to the maximum.
  cudaMemPool_t pool = nullptr;
  ASSERT_EQ(cudaDeviceGetDefaultMemPool(&pool, resources_->device()), cudaSuccess);
  std::uint64_t threshold = 0;
  ASSERT_EQ(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold), cudaSuccess);
  EXPECT_EQ(threshold, UINT64_MAX);
  // A freed and synchronised allocation stays reserved for the next one.
  { DeviceBuffer<float> buffer(1 << 20, stream()); }
  resources_->synchronize();
  std::uint64_t reserved = 0;
  ASSERT_EQ(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrReservedMemCurrent, &reserved), cudaSuccess);
  EXPECT_GE(reserved, std::uint64_t{4} << 20);
}

TEST_F(CudaKernels, ThreadResourcesAreOnePerDeviceAndThread) {
  const int devices = static_cast<int>(cuda_devices().size());
  Resources& first = thread_resources(0);
  EXPECT_EQ(&thread_resources(0), &first) << "a second call reuses the handle and stream";
  EXPECT_EQ(first.device(), 0);
  Resources* other_thread = nullptr;
  std::thread([&] { other_thread = &thread_resources(0); }).join();
  EXPECT_NE(other_thread, &first) << "another thread gets its own cuBLAS handle";
  for (int device = 1; device < devices; ++device) EXPECT_EQ(thread_resources(device).device(), device);
  EXPECT_THROW((void)thread_resources(devices), UsageError) << "a device past the last is refused";
  int current = -1;
  ASSERT_EQ(cudaGetDevice(&current), cudaSuccess);
  EXPECT_EQ(current, devices > 1 ? devices - 1 : 0) << "the last good call made its device current";
}

}  // namespace
}  // namespace marbm::detail
