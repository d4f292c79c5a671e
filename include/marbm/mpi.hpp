// A marbm communicator over a caller's MPI communicator: for programs that
// link marbm and run their own MPI. Usable only when marbm was built with MPI
// (marbm/config.hpp: MARBM_WITH_MPI).
#pragma once

#include <mpi.h>

#include <memory>

#include "marbm/communicator.hpp"
#include "marbm/config.hpp"

#if !MARBM_WITH_MPI
#error "this marbm was built without MPI (MARBM_MPI=OFF, or no MPI found): marbm/mpi.hpp is not available"
#endif

namespace marbm {

/// Wraps `comm` (MPI must be initialised; marbm duplicates the communicator,
/// so its messages never meet the caller's, and frees the duplicate when the
/// last copy of the result goes). Throws RuntimeFailure when MPI is not
/// initialised or the duplication fails.
std::shared_ptr<Communicator> mpi_communicator(MPI_Comm comm);

}  // namespace marbm
