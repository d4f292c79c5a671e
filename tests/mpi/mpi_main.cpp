// The distributed tests' main: every rank runs the same tests on the run's
// communicator (MPI_COMM_WORLD under mpiexec, a single process otherwise);
// the exit status is nonzero when any rank failed.
#include <gtest/gtest.h>

#include "marbm/communicator.hpp"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  auto world = marbm::world_communicator();
  if (world->rank() != 0) {
    // One report, from rank 0; the others print only their failures.
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  const int status = RUN_ALL_TESTS();
  // Every rank learns whether any failed.
  std::vector<double> failed{status != 0 ? 1.0 : 0.0};
  world->all_reduce_max(failed);
  return failed[0] != 0.0 ? 1 : 0;
}
