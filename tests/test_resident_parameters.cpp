// Initial parameters resident where the engine computes (ResidentParameters,
// Engine::set_resident_model) and the engine's own parameter memory
// (Engine::resident_parameters). On the CPU engine, host parameters with or
// without strides train exactly as the same parameters given as an Rbm;
// resident_parameters() is the engine's model memory, which the updates
// change in place; parameters on a device are refused by an engine that
// cannot read them, and bad shapes and strides in one line. (The CUDA
// engine's device-to-device path is in tests/gpu/test_cuda_resident_parameters.cpp.)
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "marbm/data.hpp"
#include "marbm/engine.hpp"
#include "marbm/error.hpp"
#include "marbm/train.hpp"

namespace marbm {
namespace {

// The parameters of an Rbm in one strided buffer: W rows `row_stride` floats
// apart, then a with stride `bias_stride`, then b with the same stride; every
// float not a parameter is NaN (never read, or the run would say so).
struct StridedParameters {
  std::vector<float> buffer;
  ResidentParameters view;

  StridedParameters(const Rbm& rbm, std::int64_t row_stride, std::int64_t bias_stride) {
    const std::int64_t n = rbm.n_visible(), m = rbm.n_hidden();
    const std::int64_t a_at = n * row_stride, b_at = a_at + n * bias_stride;
    buffer.assign(static_cast<std::size_t>(b_at + m * bias_stride), std::numeric_limits<float>::quiet_NaN());
    for (std::int64_t i = 0; i < n; ++i) {
      for (std::int64_t j = 0; j < m; ++j) buffer[i * row_stride + j] = rbm.weights()[i * m + j];
      buffer[a_at + i * bias_stride] = rbm.visible_bias()[i];
    }
    for (std::int64_t j = 0; j < m; ++j) buffer[b_at + j * bias_stride] = rbm.hidden_bias()[j];
    view.weights = buffer.data();
    view.visible_bias = buffer.data() + a_at;
    view.hidden_bias = buffer.data() + b_at;
    view.n_visible = rbm.n_visible();
    view.n_hidden = rbm.n_hidden();
    view.weights_row_stride = row_stride;
    view.visible_bias_stride = bias_stride;
    view.hidden_bias_stride = bias_stride;
    view.backend = Backend::cpu;
  }
};

TEST(ResidentParameters, HostParametersTrainBitForBitAsTheRbm) {
  const Dataset data = load_dataset("shifting-bars:6:3");
  const Rbm initial = Rbm::random(6, 5, 0.1, 4);
  for (TrainMethod method : {TrainMethod::cd, TrainMethod::pcd, TrainMethod::mode}) {
    TrainConfig config;
    config.method = method;
    config.iterations = 200;
    config.batch_size = 4;
    config.learning_rate = 0.2;
    config.momentum = 0.5;
    config.seed = 9;
    config.eval_every = 50;
    config.mode.p_max = 0.5;
    auto a = make_engine(Backend::cpu, {.threads = 1});
    const TrainResult expected = train(*a, data, initial, config);
    for (auto [row_stride, bias_stride] : {std::pair<int, int>{5, 1}, {8, 3}}) {
      const StridedParameters strided(initial, row_stride, bias_stride);
      auto b = make_engine(Backend::cpu, {.threads = 1});
      const TrainResult resident = train(*b, data, strided.view, config);
      EXPECT_TRUE(resident.model == expected.model) << to_string(method) << " stride " << row_stride;
      ASSERT_EQ(resident.history.size(), expected.history.size());
      for (std::size_t k = 0; k < expected.history.size(); ++k) {
        EXPECT_EQ(resident.history[k].kl, expected.history[k].kl);
      }
      EXPECT_EQ(resident.mode_steps, expected.mode_steps);
    }
  }
}

TEST(ResidentParameters, TheCpuEnginesParameterMemoryIsItsModel) {
  const Dataset data = load_dataset("shifting-bars:6:3");
  auto engine = make_engine(Backend::cpu, {.threads = 1});
  EXPECT_THROW(engine->resident_parameters(), UsageError);  // no model yet
  engine->set_model(Rbm::random(6, 4, 0.1, 2));
  engine->set_data(data);
  const ResidentParameters p = engine->resident_parameters();
  ASSERT_EQ(p.n_visible, 6);
  ASSERT_EQ(p.n_hidden, 4);
  EXPECT_EQ(p.backend, Backend::cpu);
  EXPECT_EQ(p.weights_row_stride, 4);
  std::vector<int> rows{0, 1, 2};
  UpdateStep step;
  step.batch_rows = rows;
  step.learning_rate = 0.5;
  engine->update(step);
  // The same memory, changed in place by the update.
  const ResidentParameters after = engine->resident_parameters();
  EXPECT_EQ(after.weights, p.weights);
  EXPECT_EQ(after.visible_bias, p.visible_bias);
  EXPECT_EQ(after.hidden_bias, p.hidden_bias);
  const Rbm model = engine->model();
  for (std::size_t k = 0; k < model.weights().size(); ++k) EXPECT_EQ(p.weights[k], model.weights()[k]);
  for (std::size_t k = 0; k < 6; ++k) EXPECT_EQ(p.visible_bias[k], model.visible_bias()[k]);
  for (std::size_t k = 0; k < 4; ++k) EXPECT_EQ(p.hidden_bias[k], model.hidden_bias()[k]);
  // Reading the engine's own memory back in gives the same model.
  auto other = make_engine(Backend::cpu, {.threads = 1});
  other->set_resident_model(after);
  EXPECT_TRUE(other->model() == model);
}

TEST(ResidentParameters, RefusalsAreOneLine) {
  const Dataset data = load_dataset("shifting-bars:6:3");
  const Rbm initial = Rbm::random(6, 5, 0.1, 4);
  TrainConfig config;
  config.iterations = 5;
  auto engine = make_engine(Backend::cpu, {.threads = 1});
  StridedParameters strided(initial, 5, 1);

  ResidentParameters on_device = strided.view;
  on_device.backend = Backend::cuda;  // never read: refused first
  on_device.device = 1;
  try {
    train(*engine, data, on_device, config);
    FAIL() << "parameters on a device were taken by the cpu engine";
  } catch (const UsageError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("initial parameters are in the memory of CUDA device 1, which this engine (cpu"),
              std::string::npos)
        << message;
    EXPECT_EQ(message.find('\n'), std::string::npos);
  }

  ResidentParameters narrow = strided.view;
  narrow.weights_row_stride = 4;
  try {
    train(*engine, data, narrow, config);
    FAIL() << "a row stride below the row was taken";
  } catch (const UsageError& e) {
    EXPECT_STREQ(e.what(), "resident parameters: weights rows of 5 floats need a row stride of at least that, got 4");
  }
  ResidentParameters zero_stride = strided.view;
  zero_stride.hidden_bias_stride = 0;
  EXPECT_THROW(train(*engine, data, zero_stride, config), UsageError);
  ResidentParameters empty = strided.view;
  empty.n_hidden = 0;
  EXPECT_THROW(train(*engine, data, empty, config), UsageError);
  ResidentParameters null = strided.view;
  null.visible_bias = nullptr;
  EXPECT_THROW(train(*engine, data, null, config), UsageError);

  ResidentParameters wrong_width = strided.view;
  wrong_width.n_visible = 5;
  EXPECT_THROW(train(*engine, data, wrong_width, config), UsageError);

  strided.buffer[7] = std::numeric_limits<float>::infinity();  // W(1, 2)
  try {
    train(*engine, data, strided.view, config);
    FAIL() << "an infinite weight was taken";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("weights[7] is not finite"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace marbm
