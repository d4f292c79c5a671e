// The mode search across the ranks of a communicator.
#include "marbm/communicator.hpp"
#include "marbm/distributed.hpp"
#include "marbm/mode.hpp"
#include "mode_solvers.hpp"

namespace marbm {

ModeResult find_mode(const Rbm& rbm, const ModeSearchConfig& config, Communicator& comm) {
  detail::check_mode_search_config(rbm.n_visible(), rbm.n_hidden(), config);
  const bool replicas = config.solver == ModeSolver::sb || config.solver == ModeSolver::sa;
  if (comm.size() > 1 && replicas && config.backend == Backend::cpu) {
    return detail::mode_replicas_distributed(rbm, config, comm);
  }
  // Exhaustive and local searches, and device searches: every rank alike.
  return find_mode(rbm, config);
}

}  // namespace marbm
