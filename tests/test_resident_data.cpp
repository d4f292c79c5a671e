// Training on rows resident where the engine computes (ResidentRows,
// Engine::set_resident_data): on the CPU engine host rows, strided or not,
// train exactly as the same rows given as a Dataset; rows on a device are
// refused by an engine that cannot read them; bad values and shapes are
// refused in one line. (The CUDA engine's device-to-device path is in
// tests/gpu/test_cuda_resident_data.cpp.)
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "marbm/data.hpp"
#include "marbm/engine.hpp"
#include "marbm/error.hpp"
#include "marbm/exact.hpp"
#include "marbm/train.hpp"

namespace marbm {
namespace {

Dataset bars() { return load_dataset("shifting-bars:6:3"); }

// The rows of `data` inside a wider buffer: each row followed by `pad` bytes of 7.
std::vector<std::uint8_t> padded_rows(const Dataset& data, int pad) {
  std::vector<std::uint8_t> buffer;
  for (int r = 0; r < data.n_rows; ++r) {
    const auto row = data.row(r);
    buffer.insert(buffer.end(), row.begin(), row.end());
    buffer.insert(buffer.end(), static_cast<std::size_t>(pad), 7);
  }
  return buffer;
}

ResidentRows host_rows(const std::vector<std::uint8_t>& buffer, const Dataset& data, int pad) {
  ResidentRows rows;
  rows.data = buffer.data();
  rows.rows = data.n_rows;
  rows.cols = data.n_cols;
  rows.row_stride = data.n_cols + pad;
  rows.backend = Backend::cpu;
  return rows;
}

bool same_bits(const Rbm& a, const Rbm& b) { return a == b; }

TEST(ResidentData, HostRowsTrainBitForBitAsTheDataset) {
  const Dataset data = bars();
  const Rbm initial = Rbm::random(6, 6, 0.1, 4);
  for (TrainMethod method : {TrainMethod::cd, TrainMethod::pcd, TrainMethod::exact, TrainMethod::mode}) {
    TrainConfig config;
    config.method = method;
    config.iterations = 300;
    config.batch_size = 4;
    config.learning_rate = 0.2;
    config.momentum = 0.5;
    config.seed = 9;
    config.eval_every = 100;
    config.mode.p_max = 0.5;
    config.mode.solver = ModeSolver::exhaustive;  // starts from no data rows either way
    auto a = make_engine(Backend::cpu, {.threads = 1});
    auto b = make_engine(Backend::cpu, {.threads = 1});
    const TrainResult expected = train(*a, data, initial, config);
    for (int pad : {0, 3}) {
      const std::vector<std::uint8_t> buffer = padded_rows(data, pad);
      const TrainResult resident = train(*b, host_rows(buffer, data, pad), initial, config);
      EXPECT_TRUE(same_bits(resident.model, expected.model)) << to_string(method) << " pad " << pad;
      EXPECT_EQ(resident.mode_steps, expected.mode_steps);
      ASSERT_EQ(resident.history.size(), expected.history.size());
      for (std::size_t k = 0; k < expected.history.size(); ++k) {
        // log Z is the engine's; what needs the rows on the host is left out.
        EXPECT_EQ(resident.history[k].log_z, expected.history[k].log_z);
        EXPECT_TRUE(std::isnan(resident.history[k].kl));
        EXPECT_TRUE(std::isnan(resident.history[k].mean_log_likelihood));
        EXPECT_TRUE(std::isnan(resident.history[k].saturated_hidden));
        EXPECT_EQ(resident.history[k].hidden_similarity, expected.history[k].hidden_similarity);
        EXPECT_FALSE(std::isnan(expected.history[k].kl));
      }
    }
  }
}

TEST(ResidentData, RefusalsAreOneLine) {
  const Dataset data = bars();
  const Rbm initial = Rbm::random(6, 6, 0.1, 4);
  TrainConfig config;
  config.iterations = 5;
  auto engine = make_engine(Backend::cpu, {.threads = 1});
  std::vector<std::uint8_t> buffer = padded_rows(data, 0);
  ResidentRows rows = host_rows(buffer, data, 0);

  ResidentRows on_device = rows;
  on_device.backend = Backend::cuda;
  on_device.device = 1;
  try {
    train(*engine, on_device, initial, config);
    FAIL() << "rows on a device were taken by the cpu engine";
  } catch (const UsageError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("in the memory of CUDA device 1, which this engine (cpu"), std::string::npos) << message;
    EXPECT_EQ(message.find('\n'), std::string::npos);
  }

  buffer[2 * 6 + 4] = 2;
  try {
    train(*engine, rows, initial, config);
    FAIL() << "a value 2 was taken";
  } catch (const DataError& e) {
    EXPECT_STREQ(e.what(), "resident data: row 2, column 4 is 2; the values must be 0 or 1");
  }
  buffer[2 * 6 + 4] = 0;

  ResidentRows narrow = rows;
  narrow.row_stride = 5;
  EXPECT_THROW(train(*engine, narrow, initial, config), UsageError);
  ResidentRows wrong_width = rows;
  wrong_width.cols = 5;
  wrong_width.row_stride = 6;
  EXPECT_THROW(train(*engine, wrong_width, initial, config), UsageError);
  ResidentRows empty = rows;
  empty.rows = 0;
  EXPECT_THROW(train(*engine, empty, initial, config), UsageError);
}

}  // namespace
}  // namespace marbm
