// `marbm mode`: the ground state (mode) of a saved model.
#include <iostream>
#include <memory>
#include <string>

#include "cli/commands.hpp"
#include "cli/common.hpp"
#include "cli/distributed.hpp"
#include "marbm/communicator.hpp"
#include "marbm/distributed.hpp"
#include "marbm/engine.hpp"
#include "marbm/error.hpp"
#include "marbm/mode.hpp"

namespace marbm::cli {
namespace {

struct ModeOptions {
  std::string model;
  std::string solver = "sb";
  std::string variant = "discrete";
  int replicas = 0;
  int steps = 0;
  double time_step = 0.0;
  double beta_hot = 0.0;
  double beta_cold = 0.0;
  std::string polish = "descent";
  long long seed = 0;
  int max_enumerated_units = 32;
  std::string backend = "auto";
  bool json = false;
  int threads = 0;
};

std::string bit_string(const std::vector<std::uint8_t>& state) {
  std::string text(state.size(), '0');
  for (std::size_t k = 0; k < state.size(); ++k) text[k] = state[k] ? '1' : '0';
  return text;
}

int run_mode(const ModeOptions& options) {
  use_threads(options.threads, options.json);
  const Rbm rbm = load_model_option(options.model);
  ModeSearchConfig config;
  config.solver = parse_mode_solver(options.solver);
  config.sb_variant = options.variant == "ballistic" ? SbVariant::ballistic : SbVariant::discrete;
  config.backend = parse_backend_option(options.backend);
  config.replicas = options.replicas;
  config.steps = options.steps;
  config.time_step = options.time_step;
  config.beta_hot = options.beta_hot;
  config.beta_cold = options.beta_cold;
  config.polish = parse_mode_polish(options.polish);
  config.seed = static_cast<std::uint64_t>(options.seed);
  config.max_enumerated_units = options.max_enumerated_units;
  const bool fell_back = config.backend == Backend::automatic && cuda_devices().empty();
  if (fell_back) config.backend = Backend::cpu;
  // Under mpiexec the replicas are shared among the ranks; rank 0 prints.
  const ModeResult result = find_mode(rbm, config, *world_communicator());
  const OtherRanksQuiet quiet;
  // After the search, so that a refused configuration gets its error line alone.
  if (fell_back) print_note("no usable CUDA device; searched on the cpu");

  if (options.json) {
    nlohmann::json out;
    out["energy"] = json_number(result.energy);
    out["visible"] = bit_string(result.visible);
    out["hidden"] = bit_string(result.hidden);
    out["seconds"] = json_number(result.seconds);
    out["replicas_at_best"] = result.replicas_at_best;
    out["replicas"] = result.replicas;
    out["steps"] = result.steps;
    out["solver"] = std::string(to_string(config.solver));
    if (config.solver == ModeSolver::sb) out["variant"] = options.variant;
    out["backend"] = std::string(to_string(config.backend));
    print_json(out);
    return 0;
  }
  std::cout << "energy: " << format_number(result.energy, 12) << '\n'
            << "visible: " << bit_string(result.visible) << '\n'
            << "hidden: " << bit_string(result.hidden) << '\n'
            << "solver: " << to_string(config.solver);
  if (config.solver == ModeSolver::sb) std::cout << " (" << options.variant << ')';
  std::cout << ", " << result.replicas << " replicas, " << result.steps << " steps, " << result.replicas_at_best
            << " at the best energy, " << format_number(result.seconds, 3) << " s\n";
  return 0;
}

Runner setup_mode(CLI::App& app) {
  auto options = std::make_shared<ModeOptions>();
  app.add_option("model", options->model, "model file (safetensors)")->required();
  app.add_option("--solver", options->solver, "exhaustive | sb | sa | local (default sb)")
      ->check(one_of({"exhaustive", "sb", "sa", "local"}));
  app.add_option("--variant", options->variant, "simulated bifurcation variant: ballistic | discrete (default discrete)")
      ->check(one_of({"ballistic", "discrete"}));
  app.add_option("--replicas", options->replicas, "independent replicas (0: default for the size)")
      ->check(integer_at_least(0));
  app.add_option("--steps", options->steps, "integration or annealing steps (0: default for the size)")
      ->check(integer_at_least(0));
  app.add_option("--time-step", options->time_step, "simulated bifurcation time step (0: default)")
      ->check(non_negative_number());
  app.add_option("--beta-hot", options->beta_hot, "annealing start inverse temperature (0: from the parameters)")
      ->check(non_negative_number());
  app.add_option("--beta-cold", options->beta_cold, "annealing final inverse temperature (0: from the parameters)")
      ->check(non_negative_number());
  app.add_option("--polish", options->polish,
                 "sb and sa: descent | collapsed (descent, then single flips of the smaller layer; cpu only; "
                 "default descent)")
      ->check(one_of({"descent", "collapsed"}));
  app.add_option("--seed", options->seed, "random seed")->check(integer_at_least(0));
  app.add_option("--max-enumerated-units", options->max_enumerated_units,
                 "exhaustive refuses a smaller layer beyond this many units (default 32)")
      ->check(integer_at_least(1));
  add_backend_option(app, options->backend);
  add_threads_option(app, options->threads);
  app.add_flag("--json", options->json, "print one JSON object on stdout");
  return [options, &app] {
    // A variant belongs to simulated bifurcation; with another solver it
    // would be silently ignored.
    if (app.count("--variant") > 0 && options->solver != "sb") {
      throw UsageError("--variant applies only to --solver sb (got --solver " + options->solver + ")");
    }
    if (app.count("--polish") > 0 && options->solver != "sb" && options->solver != "sa") {
      throw UsageError("--polish applies only to --solver sb or sa (got --solver " + options->solver + ")");
    }
    return run_mode(*options);
  };
}

const bool registered = register_command({"mode", "ground state (mode) of a model: exhaustive, sb, sa or local", 40, setup_mode});

}  // namespace
}  // namespace marbm::cli
