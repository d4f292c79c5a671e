// `marbm show`: what a model learned. The weights of every hidden unit as
// tiles of a PNG (the picture RBM papers show) and statistics of the hidden
// units: weight norms and, with data, how often each unit is on.
#include <algorithm>
#include <cmath>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.hpp"
#include "cli/common.hpp"
#include "marbm/error.hpp"
#include "marbm/image.hpp"

namespace marbm::cli {
namespace {

struct ShowOptions {
  std::string model;
  std::string image;
  std::string out;
  std::string data;
  int columns = 0;
  std::string backend = "auto";
  int threads = 0;
  bool json = false;
};

// Minimum, median and maximum of a list of numbers.
struct Spread {
  double low = 0.0, median = 0.0, high = 0.0;
};

Spread spread_of(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return {values.front(), values[values.size() / 2], values.back()};
}

nlohmann::json spread_json(const Spread& s) {
  return {{"min", json_number(s.low)}, {"median", json_number(s.median)}, {"max", json_number(s.high)}};
}

// Units whose mean activation is below this are "rarely on", above 1 minus it "nearly always on".
constexpr double rare = 0.01;

int run_show(const ShowOptions& options) {
  const Rbm rbm = load_model_option(options.model);
  const int n = rbm.n_visible(), m = rbm.n_hidden();
  if (options.out.empty() != options.image.empty()) {
    throw UsageError("--image and --out go together: --image WxH gives the tile shape, --out the PNG to write");
  }
  Dataset data;
  if (!options.data.empty()) {
    data = load_data_option(options.data);
    if (data.n_cols != n) {
      throw DataError("--data " + options.data + ": rows have " + std::to_string(data.n_cols) + " values but model " +
                      options.model + " has " + std::to_string(n) + " visible units");
    }
  }
  GrayImage picture;
  if (!options.out.empty()) {
    const TileShape shape = parse_tile_shape(options.image);
    if (static_cast<long>(shape.width) * shape.height != n) {
      throw UsageError("--image " + options.image + ": " + std::to_string(shape.width * shape.height) +
                       " pixels per tile but model " + options.model + " has " + std::to_string(n) +
                       " visible units");
    }
    picture = weight_tiles(rbm, shape, options.columns);
  }

  std::vector<double> norms(m);
  for (int j = 0; j < m; ++j) {
    double sum = 0.0;
    for (int i = 0; i < n; ++i) sum += static_cast<double>(rbm.weight(i, j)) * rbm.weight(i, j);
    norms[j] = std::sqrt(sum);
  }
  std::vector<double> activation;
  if (!options.data.empty()) {
    auto engine = make_engine_for(options.backend, options.threads, options.json);
    engine->set_model(rbm);
    activation.assign(m, 0.0);
    constexpr int chunk = 1000;
    for (int first = 0; first < data.n_rows; first += chunk) {
      const int rows = std::min(chunk, data.n_rows - first);
      const auto p = engine->hidden_probabilities(
          std::span(data.values).subspan(static_cast<std::size_t>(first) * n, static_cast<std::size_t>(rows) * n),
          rows);
      for (int r = 0; r < rows; ++r) {
        for (int j = 0; j < m; ++j) activation[j] += p[static_cast<std::size_t>(r) * m + j];
      }
    }
    for (double& a : activation) a /= data.n_rows;
  }
  if (!options.out.empty()) write_png(options.out, picture);

  const Spread norm = spread_of(norms);
  std::vector<double> hidden_bias(rbm.hidden_bias().begin(), rbm.hidden_bias().end());
  const Spread bias = spread_of(hidden_bias);
  const long rarely = std::count_if(activation.begin(), activation.end(), [](double a) { return a < rare; });
  const long mostly = std::count_if(activation.begin(), activation.end(), [](double a) { return a > 1.0 - rare; });
  if (options.json) {
    nlohmann::json out;
    out["model"] = options.model;
    out["n_visible"] = n;
    out["n_hidden"] = m;
    out["weight_norm"] = spread_json(norm);
    out["hidden_bias"] = spread_json(bias);
    if (!activation.empty()) {
      out["data"] = options.data;
      out["rows"] = data.n_rows;
      out["activation"] = spread_json(spread_of(activation));
      out["activation_mean"] = activation;
      out["units_rarely_on"] = rarely;
      out["units_nearly_always_on"] = mostly;
    }
    if (!options.out.empty()) {
      out["out"] = options.out;
      out["width"] = picture.width;
      out["height"] = picture.height;
    }
    print_json(out);
    return 0;
  }
  std::cout << options.model << ": " << n << "x" << m << " RBM\n";
  std::cout << "weight norm per hidden unit: min " << format_number(norm.low, 4) << ", median "
            << format_number(norm.median, 4) << ", max " << format_number(norm.high, 4) << '\n';
  std::cout << "hidden bias: min " << format_number(bias.low, 4) << ", median " << format_number(bias.median, 4)
            << ", max " << format_number(bias.high, 4) << '\n';
  if (!activation.empty()) {
    const Spread a = spread_of(activation);
    std::cout << "mean p(h_j = 1 | v) over " << options.data << " (" << data.n_rows << " rows): min "
              << format_number(a.low, 4) << ", median " << format_number(a.median, 4) << ", max "
              << format_number(a.high, 4) << "; " << rarely << " of " << m << " units below " << rare << ", "
              << mostly << " above " << 1.0 - rare << '\n';
  }
  if (!options.out.empty()) {
    std::cout << "filters of " << m << " hidden units in " << options.out << " (" << picture.width << "x"
              << picture.height << " pixels; mid-gray 0, white positive)\n";
  }
  return 0;
}

Runner setup_show(CLI::App& app) {
  auto options = std::make_shared<ShowOptions>();
  app.add_option("model", options->model, "model file (safetensors)")->required();
  app.add_option("--image", options->image, "tile shape WIDTHxHEIGHT of one unit's weights, e.g. 28x28");
  app.add_option("--out", options->out, "PNG file for the filters")->check(writable_file_path());
  app.add_option("--columns", options->columns, "tiles per row (0: about square)")->check(integer_at_least(0));
  app.add_option("--data", options->data, "data spec for hidden-unit activation statistics");
  add_backend_option(app, options->backend);
  add_threads_option(app, options->threads);
  app.add_flag("--json", options->json, "print one JSON object on stdout");
  return [options] { return run_show(*options); };
}

const bool registered =
    register_command({"show", "filters of a model as a PNG, and hidden-unit statistics", 50, setup_show});

}  // namespace
}  // namespace marbm::cli
