// Initial parameters already on the CUDA engine's device (ResidentParameters,
// backend cuda): copied device to device into the engine, never through the
// host, and the run is the run from the same parameters as a host Rbm on the
// same engine, bit for bit; strided parameters (W rows padded, biases with a
// stride) work and the padding (NaN) is never read. resident_parameters() is
// the engine's own device memory: its address stays, its values are model()'s
// and an update changes them in place. Parameters on another device and
// parameters given to the CPU engine are refused in one line. Never run so far
// (no device): the CPU twin is tests/test_resident_parameters.cpp.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "device_test.hpp"
#include "marbm/data.hpp"
#include "marbm/engine.hpp"
#include "marbm/error.hpp"
#include "marbm/train.hpp"

namespace marbm {
namespace {

// The parameters of `rbm` in one device allocation: W rows `row_stride`
// floats apart, then a and b with stride `bias_stride`; every other float NaN.
struct DeviceParameters {
  float* data = nullptr;
  ResidentParameters view;

  DeviceParameters(const Rbm& rbm, std::int64_t row_stride, std::int64_t bias_stride) {
    const std::int64_t n = rbm.n_visible(), m = rbm.n_hidden();
    const std::int64_t a_at = n * row_stride, b_at = a_at + n * bias_stride;
    std::vector<float> host(static_cast<std::size_t>(b_at + m * bias_stride), std::numeric_limits<float>::quiet_NaN());
    for (std::int64_t i = 0; i < n; ++i) {
      for (std::int64_t j = 0; j < m; ++j) host[i * row_stride + j] = rbm.weights()[i * m + j];
      host[a_at + i * bias_stride] = rbm.visible_bias()[i];
    }
    for (std::int64_t j = 0; j < m; ++j) host[b_at + j * bias_stride] = rbm.hidden_bias()[j];
    EXPECT_EQ(cudaSetDevice(0), cudaSuccess);
    EXPECT_EQ(cudaMalloc(reinterpret_cast<void**>(&data), host.size() * sizeof(float)), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(data, host.data(), host.size() * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
    view.weights = data;
    view.visible_bias = data + a_at;
    view.hidden_bias = data + b_at;
    view.n_visible = rbm.n_visible();
    view.n_hidden = rbm.n_hidden();
    view.weights_row_stride = row_stride;
    view.visible_bias_stride = bias_stride;
    view.hidden_bias_stride = bias_stride;
    view.backend = Backend::cuda;
    view.device = 0;
  }
  ~DeviceParameters() { cudaFree(data); }
  DeviceParameters(const DeviceParameters&) = delete;
  DeviceParameters& operator=(const DeviceParameters&) = delete;
};

TEST(CudaResidentParameters, DeviceParametersTrainAsTheHostRbm) {
  MARBM_SKIP_WITHOUT_DEVICE();
  const Dataset data = load_dataset("shifting-bars:6:3");
  const Rbm initial = Rbm::random(6, 5, 0.1, 4);
  for (TrainMethod method : {TrainMethod::cd, TrainMethod::pcd, TrainMethod::mode}) {
    TrainConfig config;
    config.method = method;
    config.iterations = 200;
    config.batch_size = 4;
    config.learning_rate = 0.2;
    config.momentum = 0.5;
    config.seed = 5;
    config.eval_every = 50;
    config.mode.p_max = 0.5;
    auto host_engine = make_engine(Backend::cuda);
    const TrainResult expected = train(*host_engine, data, initial, config);
    // (5, 1): contiguous (one plain copy each); (8, 3): the strided copies.
    for (auto [row_stride, bias_stride] : {std::pair<int, int>{5, 1}, {8, 3}}) {
      DeviceParameters device(initial, row_stride, bias_stride);
      auto engine = make_engine(Backend::cuda);
      const TrainResult resident = train(*engine, data, device.view, config);
      EXPECT_TRUE(resident.model == expected.model) << to_string(method) << " stride " << row_stride;
      ASSERT_EQ(resident.history.size(), expected.history.size());
      for (std::size_t k = 0; k < expected.history.size(); ++k) {
        EXPECT_EQ(resident.history[k].kl, expected.history[k].kl);
      }
      EXPECT_EQ(resident.mode_steps, expected.mode_steps);
    }
  }
}

TEST(CudaResidentParameters, SetResidentModelEqualsSetModel) {
  MARBM_SKIP_WITHOUT_DEVICE();
  const Rbm rbm = Rbm::random(7, 3, 0.5, 11);
  for (auto [row_stride, bias_stride] : {std::pair<int, int>{3, 1}, {4, 2}}) {
    DeviceParameters device(rbm, row_stride, bias_stride);
    auto engine = make_engine(Backend::cuda);
    engine->set_model(Rbm::random(2, 2, 0.5, 1));  // another shape first: the buffers are remade
    engine->set_resident_model(device.view);
    EXPECT_TRUE(engine->model() == rbm);
    // The velocity is zeroed as set_model zeroes it.
    const OptimizerState velocity = engine->optimizer_state();
    for (float x : velocity.weights) EXPECT_EQ(x, 0.0f);
  }
}

TEST(CudaResidentParameters, ResidentParametersAreTheEnginesDeviceMemory) {
  MARBM_SKIP_WITHOUT_DEVICE();
  const Dataset data = load_dataset("shifting-bars:6:3");
  auto engine = make_engine(Backend::cuda);
  engine->set_model(Rbm::random(6, 4, 0.1, 2));
  engine->set_data(data);
  const ResidentParameters p = engine->resident_parameters();
  ASSERT_EQ(p.backend, Backend::cuda);
  EXPECT_EQ(p.device, 0);
  EXPECT_EQ(p.n_visible, 6);
  EXPECT_EQ(p.n_hidden, 4);
  EXPECT_EQ(p.weights_row_stride, 4);
  EXPECT_EQ(p.visible_bias, p.weights + 24);
  EXPECT_EQ(p.hidden_bias, p.weights + 30);
  cudaPointerAttributes attributes{};
  ASSERT_EQ(cudaPointerGetAttributes(&attributes, p.weights), cudaSuccess);
  EXPECT_EQ(attributes.type, cudaMemoryTypeDevice);
  EXPECT_EQ(attributes.device, 0);
  std::vector<int> rows{0, 1, 2};
  UpdateStep step;
  step.batch_rows = rows;
  step.learning_rate = 0.5;
  engine->update(step);
  const ResidentParameters after = engine->resident_parameters();
  EXPECT_EQ(after.weights, p.weights);
  std::vector<float> values(34);
  ASSERT_EQ(cudaMemcpy(values.data(), after.weights, values.size() * sizeof(float), cudaMemcpyDeviceToHost),
            cudaSuccess);
  const Rbm model = engine->model();
  for (std::size_t k = 0; k < 24; ++k) EXPECT_EQ(values[k], model.weights()[k]);
  for (std::size_t k = 0; k < 6; ++k) EXPECT_EQ(values[24 + k], model.visible_bias()[k]);
  for (std::size_t k = 0; k < 4; ++k) EXPECT_EQ(values[30 + k], model.hidden_bias()[k]);
  // The engine's memory as another engine's start: device to device.
  auto other = make_engine(Backend::cuda);
  other->set_resident_model(after);
  EXPECT_TRUE(other->model() == model);
  // The engine's own memory as its own start: left in place (no copy onto
  // itself), the velocity zeroed, the buffer unchanged; with another shape
  // it is refused in one line.
  engine->update(step);
  const Rbm before = engine->model();
  engine->set_resident_model(engine->resident_parameters());
  EXPECT_EQ(engine->resident_parameters().weights, p.weights);
  EXPECT_TRUE(engine->model() == before);
  for (float x : engine->optimizer_state().weights) EXPECT_EQ(x, 0.0f);
  ResidentParameters reshaped = engine->resident_parameters();
  reshaped.n_visible = 4;
  reshaped.n_hidden = 6;
  reshaped.weights_row_stride = 6;
  EXPECT_THROW(engine->set_resident_model(reshaped), UsageError);
}

TEST(CudaResidentParameters, RefusalsAreOneLine) {
  MARBM_SKIP_WITHOUT_DEVICE();
  const Dataset data = load_dataset("shifting-bars:6:3");
  const Rbm initial = Rbm::random(6, 5, 0.1, 4);
  TrainConfig config;
  config.iterations = 5;
  DeviceParameters device(initial, 5, 1);
  ResidentParameters elsewhere = device.view;
  elsewhere.device = static_cast<int>(cuda_devices().size());
  auto engine = make_engine(Backend::cuda);
  EXPECT_THROW(train(*engine, data, elsewhere, config), UsageError);
  ResidentParameters narrow = device.view;
  narrow.weights_row_stride = 4;
  EXPECT_THROW(train(*engine, data, narrow, config), UsageError);
  auto cpu = make_engine(Backend::cpu);
  try {
    train(*cpu, data, device.view, config);
    FAIL() << "the cpu engine took device parameters";
  } catch (const UsageError& e) {
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("CUDA device 0"), std::string::npos) << e.what();
  }
  // Non-finite device parameters: the driver's read back refuses them.
  const float infinity = std::numeric_limits<float>::infinity();
  ASSERT_EQ(cudaMemcpy(device.data + 7, &infinity, sizeof infinity, cudaMemcpyHostToDevice), cudaSuccess);
  try {
    train(*engine, data, device.view, config);
    FAIL() << "an infinite weight was taken";
  } catch (const DataError& e) {
    EXPECT_STREQ(e.what(), "train: initial model: weights[7] is not finite");
  }
}

}  // namespace
}  // namespace marbm
