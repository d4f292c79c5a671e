// marbm: the command-line tool. Each subcommand lives in its own file and
// registers itself (commands.hpp); here the exit-status rules live:
// 0 success, 2 bad usage, 1 bad data or a failed run. Errors are one line.
#include <algorithm>
#include <iostream>
#include <new>

#include "cli/commands.hpp"
#include "cli/common.hpp"
#include "marbm/communicator.hpp"
#include "marbm/engine.hpp"
#include "marbm/error.hpp"

namespace marbm::cli {

std::vector<Command>& registered_commands() {
  static std::vector<Command> commands;
  return commands;
}

std::vector<std::string>& command_arguments() {
  static std::vector<std::string> arguments;
  return arguments;
}

bool register_command(Command command) {
  registered_commands().push_back(std::move(command));
  return true;
}

}  // namespace marbm::cli

namespace {

// Messages can carry user input (a file name with a line break, say), so
// they go through print_error, which keeps them to one line.
int fail(const std::string& message, int status) { return marbm::cli::print_error(message, status); }

// A command that failed on one rank of an MPI run ends them all: the others
// would wait for it in a collective.
int end_run(int status) {
  if (marbm::launched_by_mpi() && marbm::world_communicator()->size() > 1) {
    marbm::world_communicator()->abort(status);
  }
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace marbm::cli;
  CLI::App app{"marbm " + marbm::version() +
               ": mode-assisted training of restricted Boltzmann machines"};
  app.require_subcommand(1);
  app.set_version_flag("--version", marbm::version());

  auto& commands = registered_commands();
  std::sort(commands.begin(), commands.end(), [](const Command& a, const Command& b) { return a.order < b.order; });
  std::vector<std::pair<CLI::App*, Runner>> runners;
  for (auto& command : commands) {
    CLI::App* sub = app.add_subcommand(command.name, command.description);
    runners.emplace_back(sub, command.setup(*sub));
  }

  // CLI11 reports an unknown first word as "a subcommand is required";
  // name it instead.
  if (argc > 1 && argv[1][0] != '-') {
    const std::string word = argv[1];
    const bool known = std::any_of(commands.begin(), commands.end(),
                                   [&](const Command& command) { return command.name == word; });
    if (!known) {
      std::string names;
      for (const auto& command : commands) names += (names.empty() ? "" : ", ") + command.name;
      return fail("unknown command '" + word + "' (expected one of " + names + "; see marbm --help)", 2);
    }
  }

  for (int k = 2; k < argc; ++k) command_arguments().emplace_back(argv[k]);
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::string message = e.what();
    std::replace(message.begin(), message.end(), '\n', ' ');
    return fail(message + " (see marbm --help)", 2);
  } catch (const marbm::UsageError& e) {
    return fail(e.what(), 2);
  }

  try {
    for (auto& [sub, run] : runners) {
      if (sub->parsed()) return run();
    }
    return fail("no command given (see marbm --help)", 2);
  } catch (const marbm::UsageError& e) {
    return end_run(fail(e.what(), 2));
  } catch (const marbm::Error& e) {
    return end_run(fail(e.what(), 1));
  } catch (const std::bad_alloc&) {
    return end_run(fail("out of memory", 1));
  } catch (const std::exception& e) {
    return end_run(fail(e.what(), 1));
  }
}
