// `marbm sample`: block-Gibbs chains of a saved model on the engine, drawn as
// a grid of pictures (one row per chain, one column per snapshot) and, on
// request, written as CSV rows that `csv:PATH` reads back.
#include <algorithm>
#include <cmath>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include <unistd.h>

#include "cli/commands.hpp"
#include "cli/common.hpp"
#include "detail/files.hpp"
#include "marbm/error.hpp"
#include "marbm/image.hpp"
#include "marbm/random.hpp"

namespace marbm::cli {
namespace {

struct SampleOptions {
  std::string model;
  int chains = 16;
  int steps = 1000;
  int snapshots = 1;
  std::string from_data;
  std::string image;
  std::string out;
  std::string csv;
  std::string idx;
  long long seed = 0;
  std::string backend = "auto";
  int threads = 0;
  bool json = false;
};

// Chains start from data rows first, first + 1, ... (cycling) or, without
// data, from uniform random states (bit 31 of Philox words of the
// persistent_chains stream, as the engines start persistent chains).
std::vector<std::uint8_t> starting_states(const SampleOptions& options, int n, std::uint64_t seed) {
  std::vector<std::uint8_t> visible(static_cast<std::size_t>(options.chains) * n);
  if (!options.from_data.empty()) {
    const Dataset data = load_data_option(options.from_data);
    if (data.n_cols != n) {
      throw DataError("--from-data " + options.from_data + ": rows have " + std::to_string(data.n_cols) +
                      " values but the model has " + std::to_string(n) + " visible units");
    }
    for (int c = 0; c < options.chains; ++c) {
      const auto row = data.row(c % data.n_rows);
      std::copy(row.begin(), row.end(), visible.begin() + static_cast<std::ptrdiff_t>(c) * n);
    }
    return visible;
  }
  const PhiloxStream random(seed, random_stream(RandomPurpose::persistent_chains, 1));
  for (std::size_t k = 0; k < visible.size(); ++k) visible[k] = static_cast<std::uint8_t>(random.bits(k) >> 31);
  return visible;
}

void write_csv(const std::string& path, const std::vector<std::uint8_t>& states, int rows, int n) {
  static std::atomic<int> counter{0};
  const std::string temporary = path + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
  {
    std::ofstream out(temporary);
    for (int r = 0; r < rows && out; ++r) {
      std::string line(static_cast<std::size_t>(2 * n - 1), ',');
      for (int i = 0; i < n; ++i) line[2 * static_cast<std::size_t>(i)] = states[static_cast<std::size_t>(r) * n + i] ? '1' : '0';
      out << line << '\n';
    }
    out.flush();
    if (!out) {
      std::error_code ignored;
      std::filesystem::remove(temporary, ignored);
      throw DataError("--csv " + path + ": cannot write the samples");
    }
  }
  std::error_code error;
  std::filesystem::rename(temporary, path, error);
  if (error) {
    std::filesystem::remove(temporary, error);
    throw DataError("--csv " + path + ": cannot write the samples (" + error.message() + ")");
  }
}

// The final states as an IDX3 ubyte file (MNIST's format: magic 0x00000803,
// count, rows, columns, big-endian, then one byte per pixel), 255 for 1 and 0
// for 0, so that `idx:PATH` (binarized at 128) reads back the same states.
// Each state is rows x columns: the --image shape when pictures are drawn,
// else 1 x n.
void write_idx(const std::string& path, const std::vector<std::uint8_t>& states, int count, int rows, int columns) {
  std::string bytes;
  bytes.reserve(16 + states.size());
  auto word = [&bytes](std::uint32_t value) {
    for (int shift = 24; shift >= 0; shift -= 8) bytes.push_back(static_cast<char>((value >> shift) & 0xFFu));
  };
  word(0x00000803u);
  word(static_cast<std::uint32_t>(count));
  word(static_cast<std::uint32_t>(rows));
  word(static_cast<std::uint32_t>(columns));
  for (const std::uint8_t x : states) bytes.push_back(static_cast<char>(x ? 0xFF : 0x00));
  detail::write_file_atomically(path, bytes, "IDX samples");
}

int run_sample(const SampleOptions& options) {
  const Rbm rbm = load_model_option(options.model);
  const int n = rbm.n_visible();
  if (options.out.empty() != options.image.empty()) {
    throw UsageError("--image and --out go together: --image WxH gives the picture shape, --out the PNG to write");
  }
  if (options.out.empty() && options.csv.empty() && options.idx.empty()) {
    throw UsageError("nothing to write: give --image WxH --out FILE.png, --csv FILE and/or --idx FILE");
  }
  if (options.snapshots > options.steps) {
    throw UsageError("--snapshots " + std::to_string(options.snapshots) + " is more than --steps " +
                     std::to_string(options.steps));
  }
  TileShape shape;
  const long pictures = static_cast<long>(options.chains) * options.snapshots;
  if (!options.out.empty()) {
    shape = parse_tile_shape(options.image);
    if (static_cast<long>(shape.width) * shape.height != n) {
      throw UsageError("--image " + options.image + ": " + std::to_string(shape.width * shape.height) +
                       " pixels per picture but model " + options.model + " has " + std::to_string(n) +
                       " visible units");
    }
    // Refused before any work: the grid (tiles plus 1-pixel borders) must stay within 2^28 pixels.
    if (static_cast<double>(pictures) * (shape.width + 1) * (shape.height + 1) > std::ldexp(1.0, 28)) {
      throw UsageError("--chains " + std::to_string(options.chains) + " x --snapshots " +
                       std::to_string(options.snapshots) + " pictures of " + options.image +
                       " make a picture over 2^28 pixels; draw fewer");
    }
  }
  const auto seed = static_cast<std::uint64_t>(options.seed);
  std::vector<std::uint8_t> visible = starting_states(options, n, seed);
  auto engine = make_engine_for(options.backend, options.threads, options.json);
  engine->set_model(rbm);

  // Snapshot s is taken after steps * (s + 1) / snapshots sweeps; each
  // segment of the chain reads its own Gibbs stream.
  const int chains = options.chains;
  std::vector<float> tiles(options.out.empty() ? 0 : static_cast<std::size_t>(pictures) * n);
  int done = 0;
  ProgressLine progress("sampling", options.steps);
  for (int s = 0; s < options.snapshots; ++s) {
    const int until = static_cast<int>(static_cast<long long>(options.steps) * (s + 1) / options.snapshots);
    visible = engine->gibbs_chain(visible, chains, until - done, seed, static_cast<std::uint64_t>(s));
    done = until;
    progress.update(done);
    if (tiles.empty()) continue;
    for (int c = 0; c < chains; ++c) {
      float* tile = tiles.data() + (static_cast<std::size_t>(c) * options.snapshots + s) * n;
      for (int i = 0; i < n; ++i) tile[i] = visible[static_cast<std::size_t>(c) * n + i];
    }
  }
  progress.finish();

  GrayImage picture;
  if (!options.out.empty()) {
    const int columns = options.snapshots > 1 ? options.snapshots : 0;
    picture = tile_grid(tiles, static_cast<int>(pictures), shape, columns);
    write_png(options.out, picture);
  }
  if (!options.csv.empty()) write_csv(options.csv, visible, chains, n);
  if (!options.idx.empty()) {
    if (options.out.empty()) {  // no picture shape was given
      write_idx(options.idx, visible, chains, 1, n);
    } else {
      write_idx(options.idx, visible, chains, shape.height, shape.width);
    }
  }

  if (options.json) {
    nlohmann::json out;
    out["model"] = options.model;
    out["chains"] = chains;
    out["steps"] = options.steps;
    out["snapshots"] = options.snapshots;
    out["start"] = options.from_data.empty() ? std::string("uniform") : options.from_data;
    out["engine"] = engine->description();
    if (!options.out.empty()) {
      out["out"] = options.out;
      out["width"] = picture.width;
      out["height"] = picture.height;
    }
    if (!options.csv.empty()) out["csv"] = options.csv;
    if (!options.idx.empty()) out["idx"] = options.idx;
    print_json(out);
    return 0;
  }
  std::cout << chains << " chains x " << options.steps << " Gibbs sweeps of " << options.model << " on "
            << engine->description() << ", from "
            << (options.from_data.empty() ? std::string("uniform random states") : options.from_data) << '\n';
  if (!options.out.empty()) {
    std::cout << "pictures in " << options.out << " (" << picture.width << "x" << picture.height << " pixels";
    if (options.snapshots > 1) std::cout << "; one row per chain, " << options.snapshots << " snapshots";
    std::cout << ")\n";
  }
  if (!options.csv.empty()) std::cout << "final states in " << options.csv << " (csv:" << options.csv << ")\n";
  if (!options.idx.empty()) std::cout << "final states in " << options.idx << " (idx:" << options.idx << ")\n";
  return 0;
}

Runner setup_sample(CLI::App& app) {
  auto options = std::make_shared<SampleOptions>();
  app.add_option("model", options->model, "model file (safetensors)")->required();
  app.add_option("--chains", options->chains, "independent Gibbs chains")
      ->check(integer_at_least(1) & CLI::Range(1, 100000))
      ->capture_default_str();
  app.add_option("--steps", options->steps, "block-Gibbs sweeps per chain")
      ->check(integer_at_least(1) & CLI::Range(1, 1000000))
      ->capture_default_str();
  app.add_option("--snapshots", options->snapshots, "pictures along each chain, evenly spaced (the last at --steps)")
      ->check(integer_at_least(1) & CLI::Range(1, 1000))
      ->capture_default_str();
  app.add_option("--from-data", options->from_data, "start the chains from these rows (data spec); else uniform");
  app.add_option("--image", options->image, "picture shape WIDTHxHEIGHT of one sample, e.g. 28x28");
  app.add_option("--out", options->out, "PNG file for the pictures")->check(writable_file_path());
  app.add_option("--csv", options->csv, "also write the final states as CSV rows")->check(writable_file_path());
  app.add_option("--idx", options->idx, "also write the final states as an IDX3 ubyte file (0/255; --image shape)")
      ->check(writable_file_path());
  app.add_option("--seed", options->seed, "random seed")->check(integer_at_least(0));
  add_backend_option(app, options->backend);
  add_threads_option(app, options->threads);
  app.add_flag("--json", options->json, "print one JSON object on stdout");
  return [options] { return run_sample(*options); };
}

const bool registered =
    register_command({"sample", "Gibbs samples of a model as a PNG grid and/or CSV", 45, setup_sample});

}  // namespace
}  // namespace marbm::cli
