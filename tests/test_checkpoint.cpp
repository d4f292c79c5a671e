// Checkpoints and resume: a run continued from any checkpoint ends with
// tensors bit-identical to the run never interrupted (library, and the CLI
// with real kill -9); checkpoint files round-trip every field, stay readable
// as plain models, and damaged or mismatched ones are refused.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "cli_runner.hpp"
#include "marbm/checkpoint.hpp"
#include "marbm/data.hpp"
#include "marbm/engine.hpp"
#include "marbm/error.hpp"
#include "marbm/model_io.hpp"
#include "marbm/train.hpp"

extern char** environ;

namespace marbm {
namespace {

namespace fs = std::filesystem;

bool same_bits(std::span<const float> a, std::span<const float> b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

bool same_model(const Rbm& a, const Rbm& b) {
  return same_bits(a.weights(), b.weights()) && same_bits(a.visible_bias(), b.visible_bias()) &&
         same_bits(a.hidden_bias(), b.hidden_bias());
}

bool same_double(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

struct Case {
  const char* name;
  TrainConfig config;
};

std::vector<Case> cases() {
  TrainConfig base;
  base.learning_rate = 0.1;
  base.batch_size = 4;  // 6 rows: two batches per epoch, so a checkpoint can fall mid-epoch
  base.iterations = 300;
  base.seed = 11;
  base.eval_every = 50;
  std::vector<Case> all;
  {
    TrainConfig c = base;
    c.method = TrainMethod::cd;
    c.momentum = 0.9;
    c.weight_decay = 1e-3;
    c.learning_rate_schedule = LearningRateSchedule::exponential;  // the rate is a function of t
    c.final_learning_rate = 0.01;
    all.push_back({"cd", c});
  }
  {
    TrainConfig c = base;
    c.method = TrainMethod::pcd;
    c.gibbs_steps = 2;
    c.persistent_chains = 7;
    c.momentum = 0.5;
    all.push_back({"pcd", c});
  }
  {
    TrainConfig c = base;
    c.method = TrainMethod::exact;
    c.momentum = 0.5;
    all.push_back({"exact", c});
  }
  {
    TrainConfig c = base;
    c.method = TrainMethod::mode;
    c.mode.base = NegativePhase::pcd;
    c.mode.p_max = 0.6;
    c.mode.solver = ModeSolver::local;  // a population carried between mode steps
    c.mode.mode_states = 3;
    c.momentum = 0.5;
    all.push_back({"mode-pcd-local", c});
  }
  {
    TrainConfig c = base;
    c.method = TrainMethod::mode;
    c.mode.p_max = 0.6;
    c.mode.target = ModeTarget::marginal;
    all.push_back({"mode-marginal", c});
  }
  return all;
}

class CheckpointResume : public ::testing::TestWithParam<int> {};

TEST_P(CheckpointResume, ResumedRunsAreBitIdenticalToTheUninterruptedRun) {
  const Case c = cases()[GetParam()];
  SCOPED_TRACE(c.name);
  const Dataset data = shifting_bars(6, 3);
  const Rbm initial = Rbm::random(6, 5, 0.1, 3);

  auto plain_engine = make_engine(Backend::cpu, {.threads = 1});
  const TrainResult plain = train(*plain_engine, data, initial, c.config);

  // The same run writing checkpoints every 37 updates (into files, as the
  // CLI does): writing them must not change the run.
  test::ScratchFolder scratch;
  std::vector<std::string> files;
  CheckpointOptions writing;
  writing.every = 37;
  writing.write = [&](const TrainCheckpoint& checkpoint) {
    files.push_back(scratch.file("at-" + std::to_string(checkpoint.iteration) + ".safetensors"));
    save_checkpoint(files.back(), checkpoint);
  };
  auto writing_engine = make_engine(Backend::cpu, {.threads = 1});
  const TrainResult written = train(*writing_engine, data, initial, c.config, {}, writing);
  ASSERT_TRUE(same_model(plain.model, written.model));
  ASSERT_EQ(files.size(), 8u);  // 37, 74, ..., 296 (none at the last update)

  if (c.config.method == TrainMethod::mode) {
    ASSERT_GT(plain.mode_steps, 10) << "the schedule should take mode steps before and after the checkpoints";
  }
  // Resume from the first, a middle and the last checkpoint, on an engine
  // with another thread count.
  for (const std::size_t k : {std::size_t{0}, std::size_t{3}, files.size() - 1}) {
    SCOPED_TRACE(files[k]);
    const TrainCheckpoint checkpoint = load_checkpoint(files[k]);
    EXPECT_EQ(checkpoint.iteration, 37 * static_cast<long>(k + 1));
    CheckpointOptions resuming;
    resuming.resume = &checkpoint;
    auto engine = make_engine(Backend::cpu, {.threads = 2});
    const TrainResult resumed = train(*engine, data, initial, c.config, {}, resuming);
    EXPECT_TRUE(same_model(plain.model, resumed.model));
    EXPECT_EQ(resumed.mode_steps, plain.mode_steps);
    ASSERT_EQ(resumed.history.size(), plain.history.size());
    for (std::size_t q = 0; q < plain.history.size(); ++q) {
      EXPECT_EQ(resumed.history[q].iteration, plain.history[q].iteration);
      EXPECT_TRUE(same_double(resumed.history[q].kl, plain.history[q].kl)) << "evaluation " << q;
      EXPECT_EQ(resumed.history[q].mode_steps, plain.history[q].mode_steps);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Methods, CheckpointResume, ::testing::Range(0, 5), [](const auto& info) {
  std::string name = cases()[info.param].name;
  for (char& ch : name) ch = ch == '-' ? '_' : ch;
  return name;
});

TrainCheckpoint sample_checkpoint() {
  TrainCheckpoint c;
  c.iteration = 123;
  c.model = Rbm::random(5, 3, 0.3, 9);
  c.optimizer.weights.assign(15, 0.0f);
  for (int k = 0; k < 15; ++k) c.optimizer.weights[k] = 0.01f * static_cast<float>(k) - 0.05f;
  c.optimizer.visible_bias = {0.5f, -0.25f, 1e-7f, 0.0f, 3.0f};
  c.optimizer.hidden_bias = {-1.0f, 2.0f, 0.125f};
  c.chain_count = 2;
  c.chains = {1, 0, 1, 1, 0, 0, 0, 1, 1, 1};
  c.mode.mode_visible = {1, 1, 0, 0, 1};
  c.mode.mode_hidden = {0, 1, 1};
  c.mode.population = {0, 0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 1, 0, 1, 0};
  c.mode.steps_taken = 17;
  c.mode.last_push = 0.1 + 1e-17;
  c.mode.last_energy = -3.25;
  c.seconds = 4.5;
  TrainMetrics a;
  a.iteration = 0;
  a.kl = 1.0 / 3.0;
  TrainMetrics b;
  b.iteration = 100;
  b.mode_steps = 12;
  b.p_mode = 0.07;
  c.history = {a, b};
  return c;
}

TEST(CheckpointFile, RoundTripsEveryField) {
  test::ScratchFolder scratch;
  const std::string path = scratch.file("c.safetensors");
  const TrainCheckpoint c = sample_checkpoint();
  save_checkpoint(path, c, {{"note", "kept"}});
  Metadata metadata;
  const TrainCheckpoint r = load_checkpoint(path, &metadata);
  EXPECT_EQ(metadata.at("note"), "kept");
  EXPECT_TRUE(is_checkpoint(metadata));
  EXPECT_EQ(r.iteration, c.iteration);
  EXPECT_TRUE(same_model(r.model, c.model));
  EXPECT_TRUE(same_bits(r.optimizer.weights, c.optimizer.weights));
  EXPECT_TRUE(same_bits(r.optimizer.visible_bias, c.optimizer.visible_bias));
  EXPECT_TRUE(same_bits(r.optimizer.hidden_bias, c.optimizer.hidden_bias));
  EXPECT_EQ(r.chain_count, 2);
  EXPECT_EQ(r.chains, c.chains);
  EXPECT_EQ(r.mode.mode_visible, c.mode.mode_visible);
  EXPECT_EQ(r.mode.mode_hidden, c.mode.mode_hidden);
  EXPECT_EQ(r.mode.population, c.mode.population);
  EXPECT_EQ(r.mode.steps_taken, 17);
  EXPECT_TRUE(same_double(r.mode.last_push, c.mode.last_push));
  EXPECT_TRUE(same_double(r.mode.last_energy, c.mode.last_energy));
  EXPECT_TRUE(same_double(r.seconds, c.seconds));
  ASSERT_EQ(r.history.size(), 2u);
  EXPECT_TRUE(same_double(r.history[0].kl, c.history[0].kl));
  EXPECT_TRUE(std::isnan(r.history[1].kl));
  EXPECT_EQ(r.history[1].iteration, 100);
  EXPECT_EQ(r.history[1].mode_steps, 12);
  EXPECT_TRUE(same_double(r.history[1].p_mode, 0.07));

  // To any other reader it is a model with more tensors.
  const Rbm plain = load_rbm(path);
  EXPECT_TRUE(same_model(plain, c.model));
}

TEST(CheckpointFile, AFinishedModelIsNotACheckpoint) {
  test::ScratchFolder scratch;
  const std::string path = scratch.file("m.safetensors");
  save_rbm(path, Rbm::random(4, 3, 0.1, 1));
  try {
    load_checkpoint(path);
    FAIL() << "a plain model was read as a checkpoint";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("not a training checkpoint"), std::string::npos) << e.what();
  }
}

TEST(CheckpointFile, DamagedStateIsRefused) {
  test::ScratchFolder scratch;
  const TrainCheckpoint c = sample_checkpoint();
  const std::string good = scratch.file("good.safetensors");
  save_checkpoint(good, c);
  Metadata metadata;
  ExtraTensors extra;
  const Rbm model = load_rbm(good, &metadata, &extra);
  ASSERT_EQ(extra.count("checkpoint.chains"), 1u);

  auto refused = [&](const ExtraTensors& damaged, const std::string& needle) {
    const std::string path = scratch.file("bad.safetensors");
    save_rbm(path, model, metadata, damaged);
    try {
      load_checkpoint(path);
      ADD_FAILURE() << "accepted a checkpoint with damaged " << needle;
    } catch (const DataError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  {
    ExtraTensors damaged = extra;
    damaged.erase("checkpoint.velocity.weights");
    refused(damaged, "checkpoint.velocity.weights");
  }
  {
    ExtraTensors damaged = extra;
    damaged["checkpoint.chains"].bytes[3] = 2;  // not a binary state
    refused(damaged, "checkpoint.chains");
  }
  {
    ExtraTensors damaged = extra;
    damaged["checkpoint.velocity.hidden_bias"].shape = {1, 3};
    refused(damaged, "checkpoint.velocity.hidden_bias");
  }
  {
    ExtraTensors damaged = extra;
    damaged["checkpoint.counters"].bytes[17] = 1;  // 17 + 256 mode steps in 123 updates
    refused(damaged, "counters");
  }
}

TEST(CheckpointFile, ExtraTensorsAreChecked) {
  test::ScratchFolder scratch;
  const Rbm model = Rbm::random(2, 2, 0.1, 1);
  ExtraTensors taken;
  taken["weights"] = {"F32", {1}, std::string(4, '\0')};
  EXPECT_THROW(save_rbm(scratch.file("a.safetensors"), model, {}, taken), UsageError);
  ExtraTensors short_bytes;
  short_bytes["x"] = {"F64", {2}, std::string(8, '\0')};
  EXPECT_THROW(save_rbm(scratch.file("a.safetensors"), model, {}, short_bytes), UsageError);
  ExtraTensors dtype;
  dtype["x"] = {"BF16", {1}, std::string(2, '\0')};
  EXPECT_THROW(save_rbm(scratch.file("a.safetensors"), model, {}, dtype), UsageError);
}

TEST(CheckpointResumeRefusals, MismatchedCheckpointsAreRefused) {
  const Dataset data = shifting_bars(6, 3);
  const Rbm initial = Rbm::random(6, 5, 0.1, 3);
  TrainConfig config;
  config.method = TrainMethod::pcd;
  config.batch_size = 4;
  config.iterations = 100;
  std::vector<TrainCheckpoint> saved;
  CheckpointOptions writing;
  writing.every = 40;
  writing.write = [&](const TrainCheckpoint& c) { saved.push_back(c); };
  auto engine = make_engine(Backend::cpu);
  train(*engine, data, initial, config, {}, writing);
  ASSERT_EQ(saved.size(), 2u);

  CheckpointOptions resuming;
  resuming.resume = &saved[1];  // at 80
  TrainConfig shorter = config;
  shorter.iterations = 60;
  EXPECT_THROW(train(*engine, data, initial, shorter, {}, resuming), UsageError);

  TrainCheckpoint no_chains = saved[1];
  no_chains.chains.clear();
  no_chains.chain_count = 0;
  resuming.resume = &no_chains;
  EXPECT_THROW(train(*engine, data, initial, config, {}, resuming), UsageError);

  resuming.resume = &saved[1];
  const Rbm other_shape = Rbm::random(6, 4, 0.1, 3);
  EXPECT_THROW(train(*engine, data, other_shape, config, {}, resuming), UsageError);

  CheckpointOptions no_writer;
  no_writer.every = 10;
  EXPECT_THROW(train(*engine, data, initial, config, {}, no_writer), UsageError);
}

// ---------------------------------------------------------------------------
// The command line, with real kills.

pid_t spawn_quiet(const std::vector<std::string>& arguments) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
  std::vector<std::string> storage = {MARBM_CLI_PATH};
  storage.insert(storage.end(), arguments.begin(), arguments.end());
  std::vector<char*> argv;
  for (auto& argument : storage) argv.push_back(argument.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int error = posix_spawn(&pid, MARBM_CLI_PATH, &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (error != 0) throw std::runtime_error("cannot start marbm");
  return pid;
}

// The update counter of the checkpoint at `path`, or -1 while there is none.
long checkpoint_iteration(const std::string& path) {
  if (!fs::exists(path)) return -1;
  Metadata metadata;
  try {
    load_rbm(path, &metadata);
  } catch (const Error&) {
    return -1;  // a finished model of the wrong kind would fail the test below
  }
  if (!is_checkpoint(metadata)) return -2;
  return std::stol(metadata.at("checkpoint_iteration"));
}

// Starts `arguments`, waits until the checkpoint at `path` is past `after`,
// waits a random moment more and kills the process with SIGKILL. Returns
// false when the run finished before it could be killed.
bool kill_after_checkpoint(const std::vector<std::string>& arguments, const std::string& path, long after,
                           std::mt19937& random) {
  const pid_t pid = spawn_quiet(arguments);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  int status = 0;
  while (checkpoint_iteration(path) <= after) {
    if (::waitpid(pid, &status, WNOHANG) == pid) return false;
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      throw std::runtime_error("no checkpoint appeared");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  // Anywhere between two checkpoints, or in the middle of writing one.
  std::this_thread::sleep_for(std::chrono::milliseconds(std::uniform_int_distribution<int>(0, 150)(random)));
  ::kill(pid, SIGKILL);
  ::waitpid(pid, &status, 0);
  return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
}

TEST(CliCheckpoint, RunKilledTwiceAndResumedEndsBitIdentical) {
  test::ScratchFolder scratch;
  const std::vector<std::string> run = {
      "train", "--data", "bars-and-stripes:4", "--hidden", "16", "--method", "mode", "--base", "pcd",
      "--p-max", "0.3", "--mode-solver", "local", "--momentum", "0.5", "--lr", "0.05", "--batch", "10",
      "--iters", "6000", "--seed", "4", "--threads", "1", "--eval-every", "1000", "--checkpoint-every", "100"};
  auto with_out = [&](const std::string& out) {
    std::vector<std::string> arguments = run;
    arguments.push_back("--out");
    arguments.push_back(out);
    return arguments;
  };
  const std::string whole = scratch.file("whole.safetensors");
  const test::CliResult uninterrupted = test::run_program(MARBM_CLI_PATH, with_out(whole), scratch);
  ASSERT_EQ(uninterrupted.exit_code, 0) << test::describe(uninterrupted);

  const std::string out = scratch.file("killed.safetensors");
  std::mt19937 random(std::random_device{}());
  ASSERT_TRUE(kill_after_checkpoint(with_out(out), out, 0, random)) << "the run ended before it was killed";
  const long first = checkpoint_iteration(out);
  ASSERT_GE(first, 100) << "a killed run must leave its last checkpoint";
  // Resumed, killed again, resumed to the end.
  const std::vector<std::string> resume = {"train", "--resume", out, "--threads", "2"};
  kill_after_checkpoint(resume, out, first, random);
  if (checkpoint_iteration(out) != -2) {  // not finished before the kill
    EXPECT_GT(checkpoint_iteration(out), first);
    const test::CliResult finished = test::run_program(MARBM_CLI_PATH, resume, scratch);
    ASSERT_EQ(finished.exit_code, 0) << test::describe(finished);
  }

  Metadata metadata;
  const Rbm resumed = load_rbm(out, &metadata);
  EXPECT_FALSE(is_checkpoint(metadata)) << "the finished run writes the final model";
  EXPECT_EQ(metadata.at("iterations"), "6000");
  EXPECT_TRUE(same_model(resumed, load_rbm(whole))) << "resumed run differs from the uninterrupted one";
  // No temporaries of the killed processes are left beside the output.
  for (const auto& entry : fs::directory_iterator(scratch.path())) {
    EXPECT_EQ(entry.path().filename().string().find(".marbm-tmp-"), std::string::npos) << entry.path();
  }
}

TEST(CliCheckpoint, ResumeRefusesChangedSettingsAndFinishedModels) {
  test::ScratchFolder scratch;
  const std::string out = scratch.file("m.safetensors");
  const test::CliResult trained = test::run_program(
      MARBM_CLI_PATH,
      {"train", "--data", "shifting-bars:6:3", "--hidden", "4", "--iters", "50", "--checkpoint-every", "10", "--out", out},
      scratch);
  ASSERT_EQ(trained.exit_code, 0) << test::describe(trained);
  test::expect_refusal(test::run_program(MARBM_CLI_PATH, {"train", "--resume", out}, scratch), 1,
                       "not a training checkpoint");
  test::expect_refusal(test::run_program(MARBM_CLI_PATH, {"train", "--resume", out, "--lr", "0.5"}, scratch), 2,
                       "--lr cannot be given with --resume");
  test::expect_refusal(test::run_program(MARBM_CLI_PATH, {"train", "--hidden", "4"}, scratch), 2, "--data is required");
  test::expect_refusal(
      test::run_program(MARBM_CLI_PATH, {"train", "--data", "shifting-bars:6:3", "--hidden", "4", "--iters", "5"}, scratch),
      2, "--out is required");
}

}  // namespace
}  // namespace marbm
