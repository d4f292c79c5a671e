// marbm across the ranks of a Communicator (communicator.hpp): exact log Z,
// studies, data-parallel training and the mode search, each equal to the
// single-process computation with the same settings and seed.
#pragma once

#include "marbm/communicator.hpp"
#include "marbm/exact.hpp"
#include "marbm/rbm.hpp"

namespace marbm {

/// log Z by Gray-code enumeration, the chunks split into contiguous ranges,
/// one per rank, and combined by log-sum-exp in chunk order on every rank:
/// bit for bit the single-process log_partition_exact. Collective; CPU.
/// Throws RuntimeFailure beyond the enumeration limit (on every rank).
double log_partition_exact(const Rbm& rbm, Communicator& comm, const ExactOptions& options = {});

}  // namespace marbm
