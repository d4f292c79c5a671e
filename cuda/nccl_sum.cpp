// DeviceSum and the NCCL queries (nccl_sum.hpp). NCCL is included only here,
// and only when the build found it (MARBM_HAVE_NCCL).
#include "nccl_sum.hpp"

#include <cstring>
#include <string>

#include "error.cuh"
#include "marbm/error.hpp"

#ifdef MARBM_HAVE_NCCL
#include <nccl.h>
#endif

namespace marbm::detail {

#ifdef MARBM_HAVE_NCCL

static_assert(sizeof(ncclUniqueId) == nccl_unique_id_bytes, "ncclUniqueId is not NCCL_UNIQUE_ID_BYTES long");

namespace {

void nccl_try(ncclResult_t status, const char* call) {
  if (status == ncclSuccess) return;
  throw CudaError(std::string("NCCL error in ") + call + ": " + ncclGetErrorString(status));
}

}  // namespace

int nccl_version_impl() {
  int version = 0;
  return ncclGetVersion(&version) == ncclSuccess ? version : 0;
}

std::vector<std::byte> nccl_unique_id_impl() {
  ncclUniqueId id{};
  nccl_try(ncclGetUniqueId(&id), "ncclGetUniqueId");
  std::vector<std::byte> bytes(sizeof(id));
  std::memcpy(bytes.data(), &id, sizeof(id));
  return bytes;
}

DeviceSum::DeviceSum(std::span<const std::byte> unique_id, int rank, int size, int device) : rank_(rank), size_(size) {
  MARBM_EXPECTS(unique_id.size() == sizeof(ncclUniqueId), UsageError,
                "NCCL: the unique id has " + std::to_string(unique_id.size()) + " bytes, expected " +
                    std::to_string(sizeof(ncclUniqueId)));
  MARBM_EXPECTS(size >= 1 && rank >= 0 && rank < size, UsageError,
                "NCCL: rank " + std::to_string(rank) + " of " + std::to_string(size));
  ncclUniqueId id{};
  std::memcpy(&id, unique_id.data(), sizeof(id));
  MARBM_CUDA_TRY(cudaSetDevice(device));
  ncclComm_t communicator = nullptr;
  nccl_try(ncclCommInitRank(&communicator, size, id, rank), "ncclCommInitRank");
  communicator_ = communicator;
}

DeviceSum::~DeviceSum() {
  if (communicator_ != nullptr) (void)ncclCommDestroy(static_cast<ncclComm_t>(communicator_));
}

void DeviceSum::sum_in_place(float* values, std::size_t count, cudaStream_t stream) {
  nccl_try(ncclAllReduce(values, values, count, ncclFloat32, ncclSum, static_cast<ncclComm_t>(communicator_), stream),
           "ncclAllReduce");
}

#else

namespace {
[[noreturn]] void no_nccl() {
  throw CudaError("this build of marbm has no NCCL (MARBM_NCCL=OFF, or nccl.h and libnccl were not found beside the "
                  "CUDA toolkit)");
}
}  // namespace

int nccl_version_impl() { return 0; }
std::vector<std::byte> nccl_unique_id_impl() { no_nccl(); }
DeviceSum::DeviceSum(std::span<const std::byte>, int, int, int) { no_nccl(); }
DeviceSum::~DeviceSum() = default;
void DeviceSum::sum_in_place(float*, std::size_t, cudaStream_t) { no_nccl(); }

#endif

}  // namespace marbm::detail
