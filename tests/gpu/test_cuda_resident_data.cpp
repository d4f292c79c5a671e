// Training rows already on the CUDA engine's device (ResidentRows, backend
// cuda): copied device to device, never through the host. Trains the same bits
// as the same rows given as a host Dataset to the same engine; strided rows
// (a column slice of a wider array) work; values other than 0/1, rows on
// another device and rows given to the CPU engine are refused in one line.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "device_test.hpp"
#include "marbm/data.hpp"
#include "marbm/engine.hpp"
#include "marbm/error.hpp"
#include "marbm/train.hpp"

namespace marbm {
namespace {

// `host` (rows x pitch bytes) copied to a fresh allocation on `device`.
struct DeviceBytes {
  std::uint8_t* data = nullptr;
  DeviceBytes(const std::vector<std::uint8_t>& host, int device) {
    EXPECT_EQ(cudaSetDevice(device), cudaSuccess);
    EXPECT_EQ(cudaMalloc(reinterpret_cast<void**>(&data), host.size()), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(data, host.data(), host.size(), cudaMemcpyHostToDevice), cudaSuccess);
  }
  ~DeviceBytes() { cudaFree(data); }
};

std::vector<std::uint8_t> padded(const Dataset& data, int pad, std::uint8_t filler) {
  std::vector<std::uint8_t> bytes;
  for (int r = 0; r < data.n_rows; ++r) {
    const auto row = data.row(r);
    bytes.insert(bytes.end(), row.begin(), row.end());
    bytes.insert(bytes.end(), static_cast<std::size_t>(pad), filler);
  }
  return bytes;
}

TEST(CudaResidentData, DeviceRowsTrainAsHostRows) {
  MARBM_SKIP_WITHOUT_DEVICE();
  const Dataset data = load_dataset("shifting-bars:6:3");
  const Rbm initial = Rbm::random(6, 6, 0.1, 4);
  for (TrainMethod method : {TrainMethod::cd, TrainMethod::pcd}) {
    TrainConfig config;
    config.method = method;
    config.iterations = 200;
    config.batch_size = 4;
    config.learning_rate = 0.2;
    config.seed = 5;
    auto host_engine = make_engine(Backend::cuda);
    const TrainResult expected = train(*host_engine, data, initial, config);
    for (int pad : {0, 5}) {
      const std::vector<std::uint8_t> bytes = padded(data, pad, 9);  // the padding is never read
      DeviceBytes device(bytes, 0);
      ResidentRows rows;
      rows.data = device.data;
      rows.rows = data.n_rows;
      rows.cols = data.n_cols;
      rows.row_stride = data.n_cols + pad;
      rows.backend = Backend::cuda;
      rows.device = 0;
      auto engine = make_engine(Backend::cuda);
      const TrainResult resident = train(*engine, rows, initial, config);
      EXPECT_TRUE(resident.model == expected.model) << to_string(method) << " pad " << pad;
      EXPECT_TRUE(std::isnan(resident.history.back().kl));
      EXPECT_EQ(resident.history.back().log_z, expected.history.back().log_z);
    }
  }
}

TEST(CudaResidentData, BadRowsAreRefusedInOneLine) {
  MARBM_SKIP_WITHOUT_DEVICE();
  const Dataset data = load_dataset("shifting-bars:6:3");
  std::vector<std::uint8_t> bytes = padded(data, 0, 0);
  bytes[3 * 6 + 1] = 5;
  DeviceBytes device(bytes, 0);
  ResidentRows rows;
  rows.data = device.data;
  rows.rows = data.n_rows;
  rows.cols = data.n_cols;
  rows.row_stride = data.n_cols;
  rows.backend = Backend::cuda;
  auto engine = make_engine(Backend::cuda);
  engine->set_model(Rbm(6, 6));
  try {
    engine->set_resident_data(rows);
    FAIL() << "a value 5 was taken";
  } catch (const DataError& e) {
    EXPECT_STREQ(e.what(), "resident data: row 3, column 1 is 5; the values must be 0 or 1");
  }
  ResidentRows elsewhere = rows;
  elsewhere.device = static_cast<int>(cuda_devices().size());
  EXPECT_THROW(engine->set_resident_data(elsewhere), UsageError);
  auto cpu = make_engine(Backend::cpu);
  try {
    cpu->set_resident_data(rows);
    FAIL() << "the cpu engine took device rows";
  } catch (const UsageError& e) {
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("CUDA device 0"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace marbm
