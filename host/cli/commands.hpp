// The CLI's subcommands register themselves here; main.cpp parses and runs.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

namespace marbm::cli {

/// Runs a parsed subcommand; returns the exit status.
using Runner = std::function<int()>;

/// A subcommand: `setup` adds its options to `app` and returns its runner
/// (which reads the values the options were bound to).
struct Command {
  std::string name;
  std::string description;
  int order = 0;  ///< position in --help
  std::function<Runner(CLI::App& app)> setup;
};

/// Adds a command to the registry (call from a namespace-scope initialiser).
bool register_command(Command command);
/// All registered commands, in `order`.
std::vector<Command>& registered_commands();

/// The arguments after the command's name, as given (main sets them before
/// parsing): `train --checkpoint-every` records them so that `--resume`
/// can continue a run with its own settings.
std::vector<std::string>& command_arguments();

}  // namespace marbm::cli
