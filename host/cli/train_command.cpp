// `marbm train`: trains an RBM on a data spec with CD-k, PCD-k, the exact
// gradient or mode-assisted training and saves it as safetensors with
// metadata describing how it was trained.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iostream>
#include <limits>
#include <optional>
#include <sstream>
#include <string>

#include "cli/commands.hpp"
#include "cli/common.hpp"
#include "cli/distributed.hpp"
#include "marbm/checkpoint.hpp"
#include "marbm/data.hpp"
#include "marbm/engine.hpp"
#include "marbm/error.hpp"
#include "marbm/exact.hpp"
#include "marbm/held_out.hpp"
#include "marbm/model_io.hpp"
#include "marbm/train.hpp"
#include "marbm/train_record.hpp"

namespace marbm::cli {
namespace {

struct TrainOptions {
  std::string data;
  std::string test_data;
  std::string init;
  int hidden = 0;
  std::string method = "cd";
  int k = 1;
  double learning_rate = 0.1;
  int batch = 100;
  long iterations = 0;
  int epochs = 0;
  std::uint64_t seed = 0;
  std::string backend = "auto";
  std::string out;
  long eval_every = 0;
  bool json = false;
  double momentum = 0.0;
  double weight_decay = 0.0;
  double init_sigma = 0.01;
  std::string init_visible_bias = "data";
  int chains = 0;
  int threads = 0;
  int exact_max_units = 24;
  long checkpoint_every = 0;
  std::string resume;
  bool sample_positive_hidden = false;
  // Mode-assisted training: numbers in `mode`, words in `mode_words`.
  ModeAssistConfig mode;
  ModeAssistOptions mode_words;
  LearningRateScheduleOptions schedule;
};

// Rough cost (multiply-adds) of one exact evaluation: the Gray-code
// enumeration of the smaller layer plus the free energies of the data rows.
double exact_evaluation_cost(int n, int m, int rows) {
  const int enumerated = std::min(n, m);
  return std::ldexp(1.0, enumerated) * std::max(n, m) + static_cast<double>(rows) * n * m;
}

std::string metrics_text(const TrainMetrics& metrics, long total, bool mode) {
  std::ostringstream line;
  line << "iteration " << metrics.iteration << '/' << total;
  if (std::isfinite(metrics.mean_log_likelihood)) {
    line << "  mean log-likelihood " << format_number(metrics.mean_log_likelihood);
  }
  if (std::isfinite(metrics.kl)) line << "  kl " << format_number(metrics.kl);
  if (std::isfinite(metrics.log_z)) line << "  log Z " << format_number(metrics.log_z);
  if (mode) {
    line << "  p_mode " << format_number(metrics.p_mode, 3) << "  mode steps " << metrics.mode_steps;
  }
  line << "  (" << format_number(metrics.seconds, 3) << " s)";
  return line.str();
}

// Held-out metrics for a metrics line; an AIS log-likelihood says it is an estimate.
std::string held_out_text(const HeldOutMetrics& h) {
  std::ostringstream line;
  line << "  held-out log-likelihood " << format_number(h.mean_log_likelihood);
  if (!h.exact) {
    line << " (AIS estimate, [" << format_number(h.mean_log_likelihood_low) << ", "
         << format_number(h.mean_log_likelihood_high) << "])";
  }
  line << "  reconstruction error " << format_number(h.reconstruction_error, 4) << "  free-energy gap "
       << format_number(h.free_energy_gap, 4);
  return line.str();
}

TrainConfig make_config(const TrainOptions& options, const CLI::App& app) {
  TrainConfig config;
  config.method = parse_train_method(options.method);
  config.gibbs_steps = options.k;
  config.learning_rate = options.learning_rate;
  options.schedule.apply_to(app, config.learning_rate_schedule, config.final_learning_rate);
  config.momentum = options.momentum;
  config.weight_decay = options.weight_decay;
  config.batch_size = options.batch;
  config.iterations = options.iterations;
  config.epochs = options.epochs;
  config.persistent_chains = options.chains;
  config.seed = options.seed;
  config.eval_every = options.eval_every;
  config.exact.max_enumerated_units = options.exact_max_units;
  config.sample_positive_hidden = options.sample_positive_hidden;

  const bool mode = config.method == TrainMethod::mode;
  const bool uses_chains =
      config.method == TrainMethod::pcd || (mode && options.mode_words.base == "pcd");
  if (app.count("--chains") > 0 && !uses_chains) {
    throw UsageError("--chains applies only to --method pcd or --method mode --base pcd");
  }
  for (const std::string& name : ModeAssistOptions::names()) {
    if (!mode && app.count(name) > 0) {
      throw UsageError(name + " applies only to --method mode (got --method " + options.method + ")");
    }
  }
  if (app.count("--iters") == 0 && app.count("--epochs") == 0) {
    throw UsageError("give the training length with --iters N or --epochs E");
  }

  config.mode = options.mode;
  options.mode_words.apply_to(config.mode);
  return config;
}

// What the model file and the JSON summary record about this run.
TrainRecord make_record(const TrainOptions& options, const Dataset& data, const Engine& engine, int n, int m) {
  TrainRecord record;
  record.program = "marbm train";
  record.data = options.data;
  record.data_description = data.description;
  record.data_rows = data.n_rows;
  // Then KL = -mean log-likelihood - log N: the same number, shifted.
  record.rows_distinct = static_cast<int>(distinct_rows(data).rows.size()) == data.n_rows;
  record.n_visible = n;
  record.n_hidden = m;
  record.init = options.init;
  record.init_sigma = options.init_sigma;
  record.init_visible_bias = options.init_visible_bias;
  record.test_data = options.test_data;
  record.out = options.out;
  record.backend = engine.description();
  return record;
}

// A final KL far above that of the uniform model (all parameters 0: more
// than twice it and over 1 nat more) means the run learned nothing useful:
// typically a learning rate so large that it diverged without ever becoming
// non-finite. Say so. (A short run from small random parameters can end a
// little above the uniform model's KL; that is not reported.)
void warn_if_worse_than_uniform(const TrainResult& result, const Dataset& data, int n, int m) {
  if (result.history.empty() || !std::isfinite(result.history.back().kl)) return;
  const double kl = result.history.back().kl;
  const Rbm uniform(n, m);
  const double uniform_kl = kl_divergence(uniform, data, static_cast<double>(n + m) * std::log(2.0));
  if (kl > 2.0 * uniform_kl && kl > uniform_kl + 1.0) {
    print_note("the final KL " + format_number(kl) + " is more than twice the uniform model's " +
               format_number(uniform_kl) + ": the run has probably diverged (lower --lr)");
  }
}

// The arguments a checkpoint records: those of this invocation, or, when
// resuming, those the checkpoint recorded (the run's own settings).
nlohmann::json recorded_arguments(const std::vector<std::string>& arguments) {
  nlohmann::json list = nlohmann::json::array();
  for (const std::string& argument : arguments) list.push_back(argument);
  return list;
}

int run_train(const TrainOptions& options, const CLI::App& app, const TrainCheckpoint* resume,
              const Metadata& resume_metadata, const std::vector<std::string>& arguments) {
  if (options.data.empty()) throw UsageError("--data is required");
  if (options.out.empty()) throw UsageError("--out is required");
  TrainConfig config = make_config(options, app);
  const Dataset data = load_data_option(options.data);
  const int n = data.n_cols;
  // --init continues a saved model: its shape must fit the data (and --hidden, if given).
  std::optional<Rbm> init;
  if (!options.init.empty()) {
    init = load_model_option(options.init);
    if (init->n_visible() != n) {
      throw DataError("--init " + options.init + ": the model has " + std::to_string(init->n_visible()) +
                      " visible units but --data " + options.data + " has " + std::to_string(n) + " columns");
    }
    if (app.count("--hidden") > 0 && options.hidden != init->n_hidden()) {
      throw UsageError("--hidden " + std::to_string(options.hidden) + " differs from the " +
                       std::to_string(init->n_hidden()) + " hidden units of --init " + options.init);
    }
  } else if (app.count("--hidden") == 0) {
    throw UsageError("give the number of hidden units with --hidden M (or continue a model with --init MODEL)");
  }
  const int m = init ? init->n_hidden() : options.hidden;
  const long total = total_iterations(config, data.n_rows);
  if (total <= 0) throw UsageError("--iters/--epochs: the run would make no updates");

  // Refused here, before the engine is made: with --backend auto its
  // fallback note would otherwise come before the error line.
  if (config.method == TrainMethod::exact && std::min(n, m) > config.exact.max_enumerated_units) {
    throw UsageError("--method exact: a " + std::to_string(n) + " x " + std::to_string(m) + " model needs 2^" +
                     std::to_string(std::min(n, m)) + " states enumerated per update, beyond --exact-max-units " +
                     std::to_string(config.exact.max_enumerated_units));
  }

  // Refused in one line before anything large is allocated.
  check_training_memory(config, n, m, data.n_rows);

  const bool mode = config.method == TrainMethod::mode;
  ProgressLine progress("training", total);
  // The driver reports only at evaluations; with no --eval-every and a
  // terminal to show progress on, evaluate about 200 times as long as an
  // exact evaluation is cheap, and print lines only at the user's cadence.
  const long user_eval_every = options.eval_every;
  if (progress.enabled() && user_eval_every == 0 && total >= 200) {
    Rbm shape(n, m);
    if (!exact_enumerable(shape, config.exact) || exact_evaluation_cost(n, m, data.n_rows) < 2e6) {
      config.eval_every = total / 200;
    }
  }

  // Held-out rows: evaluated at every requested evaluation (and at the end).
  Dataset test;
  HeldOutOptions held_out_options;
  held_out_options.exact = config.exact;
  held_out_options.ais.seed = config.seed;
  held_out_options.ais.threads = options.threads;
  HeldOutMetrics last_held_out;
  if (!options.test_data.empty()) {
    test = load_data_option(options.test_data);
    if (test.n_cols != n) {
      throw DataError("--test-data " + options.test_data + ": rows have " + std::to_string(test.n_cols) +
                      " values but --data " + options.data + " has " + std::to_string(n));
    }
  }

  // Data-parallel across the ranks (one without mpiexec), rank 0 reports and writes.
  auto engine = make_training_engine(options.backend, options.threads, options.json);
  const OtherRanksQuiet quiet;
  const TrainRecord record = make_record(options, data, *engine, n, m);
  // A held-out AIS estimate runs where training does (same results either way, up to rounding).
  held_out_options.ais.backend = engine->backend();
  Rbm initial = init ? *init : Rbm::random(n, m, options.init_sigma, options.seed);
  if (!init && options.init_visible_bias == "data") set_base_rate_visible_bias(initial, data);

  // With --json and --eval-every, each evaluation is printed as one JSON
  // line as it happens (JSON Lines) and also goes into the final object.
  nlohmann::json history = nlohmann::json::array();
  if (resume) {
    // The evaluations printed before the checkpoint, for the summary.
    const auto saved = resume_metadata.find("checkpoint_cli_history");
    if (saved != resume_metadata.end()) {
      history = nlohmann::json::parse(saved->second, nullptr, false);
      if (!history.is_array()) throw DataError("--resume " + options.resume + ": damaged checkpoint_cli_history");
    }
  }
  bool warned_collapse = false;
  auto on_metrics = [&](const TrainMetrics& metrics) {
    const bool requested = metrics.iteration == total || metrics.iteration == 0 ||
                           (user_eval_every > 0 && metrics.iteration % user_eval_every == 0);
    const bool held_out = requested && !options.test_data.empty() && (user_eval_every > 0 || metrics.iteration == total);
    if (held_out) last_held_out = evaluate_held_out(engine->model(), data, test, held_out_options);
    if (requested && options.json && user_eval_every > 0) {
      const std::string point = train_evaluation_json(metrics, held_out ? &last_held_out : nullptr);
      std::cout << point << std::endl;
      history.push_back(nlohmann::json::parse(point));
    }
    if (requested && !options.json && user_eval_every > 0) {
      progress.clear();
      std::cerr << "marbm: " << metrics_text(metrics, total, mode);
      if (held_out) std::cerr << held_out_text(last_held_out);
      std::cerr << '\n' << std::flush;
    }
    if (!warned_collapse) {
      const std::string warning = collapse_warning(metrics);
      if (!warning.empty()) {
        progress.clear();
        print_warning(warning);
        warned_collapse = true;
      }
    }
    std::string note;
    if (std::isfinite(metrics.kl)) note = "kl " + format_number(metrics.kl, 4);
    progress.update(metrics.iteration, note);
  };

  // Checkpoints replace --out atomically: the model so far plus the state
  // to continue from, and the arguments of the run.
  CheckpointOptions checkpoints;
  checkpoints.every = options.checkpoint_every;
  checkpoints.resume = resume;
  checkpoints.write = [&](const TrainCheckpoint& checkpoint) {
    TrainResult partial;
    partial.model = checkpoint.model;
    partial.history = checkpoint.history;
    partial.mode_steps = checkpoint.mode.steps_taken;
    partial.seconds = checkpoint.seconds;
    Metadata metadata = train_metadata(record, config, partial, checkpoint.iteration);
    metadata["iterations_planned"] = std::to_string(total);
    metadata["checkpoint_args"] = recorded_arguments(arguments).dump();
    metadata["checkpoint_cli_history"] = history.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    if (writes_outputs()) save_checkpoint(options.out, checkpoint, metadata);
  };

  TrainResult result;
  try {
    result = train(*engine, data, initial, config, on_metrics, checkpoints);
  } catch (const TrainingDiverged& diverged) {
    // Stopped at once; the last finite parameters are kept as the output,
    // marked in the metadata as a diverged run's.
    progress.finish();
    TrainResult partial;
    partial.model = diverged.last_finite_model;
    partial.history = diverged.history;
    Metadata metadata = train_metadata(record, config, partial, diverged.last_finite_iteration);
    metadata["diverged_at"] = std::to_string(diverged.noticed_at);
    if (writes_outputs()) save_rbm(options.out, partial.model, metadata);
    throw RuntimeFailure(std::string(diverged.what()) + "; wrote the last finite model (after " +
                         std::to_string(diverged.last_finite_iteration) + " updates) to " + options.out);
  }
  progress.finish();
  result.model.check_finite("trained model (lower --lr?)");
  warn_if_worse_than_uniform(result, data, n, m);

  Metadata final_metadata = train_metadata(record, config, result, total);
  if (resume) final_metadata["resumed_from"] = std::to_string(resume->iteration);
  if (writes_outputs()) save_rbm(options.out, result.model, final_metadata);

  TrainMetrics last;
  if (!result.history.empty()) last = result.history.back();
  if (options.json) {
    std::vector<std::string> points;
    for (const nlohmann::json& point : history) {
      points.push_back(point.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    }
    std::cout << train_summary_json(record, config, result, total,
                                    options.test_data.empty() ? nullptr : &last_held_out,
                                    user_eval_every > 0 ? &points : nullptr)
              << std::endl;
  } else {
    std::cout << "trained " << to_string(config.method) << ' ' << n << 'x' << m << " on " << options.data << ": "
              << total << " updates in " << format_number(result.seconds, 3) << " s on "
              << engine->description() << '\n';
    if (std::isfinite(last.kl)) {
      // The log-likelihood first: KL adds only the empirical entropy to it,
      // which for distinct rows is log N.
      std::cout << "mean log-likelihood " << format_number(last.mean_log_likelihood) << "  kl "
                << format_number(last.kl);
      if (record.rows_distinct) {
        std::cout << " (the " << data.n_rows << " rows are distinct: kl = -mean log-likelihood - log " << data.n_rows
                  << ")";
      }
      std::cout << "  log Z " << format_number(last.log_z) << '\n';
    } else {
      std::cout << "model too large for exact KL (2^" << std::min(n, m) << " states; --exact-max-units "
                << options.exact_max_units << ")\n";
    }
    if (mode) std::cout << "mode steps " << result.mode_steps << '\n';
    if (!options.test_data.empty()) std::cout << "test data " << options.test_data << ":" << held_out_text(last_held_out) << '\n';
    std::cout << "wrote " << options.out << '\n';
  }
  return 0;
}

void add_train_options(CLI::App& app, TrainOptions& o) {
  app.add_option("--data", o.data, "data spec: shifting-bars:N:L, bars-and-stripes:N, csv:PATH, idx:PATH, digits:PATH "
                                   "(required unless --resume)");
  app.add_option("--test-data", o.test_data,
                 "held-out data spec: log-likelihood (exact, else AIS), reconstruction error and free-energy gap "
                 "at each evaluation");
  app.add_option("--hidden", o.hidden, "hidden units M (not needed with --init)")->check(integer_at_least(1));
  auto* init = app.add_option("--init", o.init, "continue training this saved model instead of a new one");
  app.add_option("--method", o.method, "cd, pcd, exact or mode")
      ->check(one_of({"cd", "pcd", "exact", "mode"}))
      ->capture_default_str();
  app.add_option("--k", o.k, "Gibbs steps of CD-k / PCD-k")->check(integer_at_least(1))->capture_default_str();
  app.add_option("--lr", o.learning_rate, "learning rate (of the first update with --lr-schedule)")
      ->check(positive_number())
      ->capture_default_str();
  o.schedule.add_to(app);
  app.add_option("--batch", o.batch, "minibatch size (clipped to the data rows)")
      ->check(integer_at_least(1))
      ->capture_default_str();
  auto* iters = app.add_option("--iters", o.iterations, "number of updates")->check(integer_at_least(1));
  auto* epochs = app.add_option("--epochs", o.epochs, "number of passes over the data")->check(integer_at_least(1));
  iters->excludes(epochs);
  epochs->excludes(iters);
  app.add_option("--seed", o.seed, "seed of initialisation, batch order, Gibbs and mode choices")
      ->check(integer_at_least(0))
      ->capture_default_str();
  add_backend_option(app, o.backend);
  app.add_option("--out", o.out, "model file to write (safetensors; required unless --resume)")
      ->check(writable_file_path());
  app.add_option("--eval-every", o.eval_every, "exact KL / log-likelihood every N updates on stderr (0: at the end)")
      ->check(integer_at_least(0))
      ->capture_default_str();
  app.add_flag("--sample-positive-hidden", o.sample_positive_hidden,
               "positive phase with sampled hidden units instead of p(h|v) (as the paper's code)");
  app.add_flag("--json", o.json,
               "print one JSON object on stdout at the end (with --eval-every: one line per evaluation as it "
               "happens, then the summary with the history)");
  app.add_option("--momentum", o.momentum, "momentum in [0, 1)")
      ->check(number_in_half_open(0.0, 1.0))
      ->capture_default_str();
  app.add_option("--weight-decay", o.weight_decay, "L2 weight decay on W")
      ->check(non_negative_number())
      ->capture_default_str();
  app.add_option("--init-sigma", o.init_sigma, "initial parameters ~ N(0, sigma^2)")
      ->check(positive_number())
      ->capture_default_str()
      ->excludes(init);
  app.add_option("--init-visible-bias", o.init_visible_bias,
                 "initial visible biases: data (log-odds of the data's base rates) or random (~ N(0, sigma^2))")
      ->check(one_of({"random", "data"}))
      ->capture_default_str()
      ->excludes(init);
  app.add_option("--chains", o.chains, "persistent chains for pcd (0: the batch size)")->check(integer_at_least(0));
  add_threads_option(app, o.threads);
  app.add_option("--exact-max-units", o.exact_max_units,
                 "exact KL only when 2^min(n,m) <= 2^U states (also the exact method's limit)")
      ->check(CLI::Range(1, 40))
      ->capture_default_str();
  o.mode_words.add_to(app, o.mode);
  app.add_option("--checkpoint-every", o.checkpoint_every,
                 "every N updates replace --out atomically by a checkpoint (the model and the state to --resume from)")
      ->check(integer_at_least(1));
}

// `--resume FILE`: the run's settings come from the checkpoint; only where
// and how it runs may change.
int run_resume(const TrainOptions& given, const CLI::App& app) {
  static const char* const changeable[] = {"--resume", "--out", "--threads", "--backend", "--json"};
  for (const CLI::Option* option : app.get_options()) {
    if (option->count() == 0) continue;
    const std::string name = option->get_name();
    if (std::find(std::begin(changeable), std::end(changeable), name) == std::end(changeable)) {
      throw UsageError(name + " cannot be given with --resume: the run continues with the settings recorded in " +
                       given.resume + " (only --out, --threads, --backend and --json may change)");
    }
  }
  Metadata metadata;
  const TrainCheckpoint checkpoint = load_checkpoint(given.resume, &metadata);
  std::vector<std::string> arguments;
  {
    const auto recorded = metadata.find("checkpoint_args");
    const nlohmann::json list = recorded == metadata.end()
                                    ? nlohmann::json()
                                    : nlohmann::json::parse(recorded->second, nullptr, false);
    if (!list.is_array()) throw DataError(given.resume + ": the checkpoint does not record the run's arguments");
    for (const auto& argument : list) {
      if (!argument.is_string()) throw DataError(given.resume + ": the checkpoint's arguments are damaged");
      arguments.push_back(argument.get<std::string>());
    }
  }
  CLI::App stored_app;
  TrainOptions stored;
  add_train_options(stored_app, stored);
  try {
    std::vector<std::string> reversed(arguments.rbegin(), arguments.rend());
    stored_app.parse(reversed);
  } catch (const CLI::ParseError& e) {
    throw DataError(given.resume + ": the recorded arguments no longer parse (" + std::string(e.what()) + ")");
  }
  stored.resume = given.resume;
  stored.out = app.count("--out") > 0 ? given.out : given.resume;
  if (app.count("--threads") > 0) stored.threads = given.threads;
  if (app.count("--backend") > 0) stored.backend = given.backend;
  stored.json = given.json;
  return run_train(stored, stored_app, &checkpoint, metadata, arguments);
}

Runner setup_train(CLI::App& app) {
  auto options = std::make_shared<TrainOptions>();
  add_train_options(app, *options);
  app.add_option("--resume", options->resume,
                 "continue the run of this checkpoint (written with --checkpoint-every) to its end, with its settings");
  return [options, &app] {
    if (!options->resume.empty()) return run_resume(*options, app);
    return run_train(*options, app, nullptr, {}, command_arguments());
  };
}

const bool registered = register_command(
    {"train", "train an RBM (cd, pcd, exact or mode-assisted) and save it", 10, setup_train});

}  // namespace
}  // namespace marbm::cli
