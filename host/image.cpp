// Tile grids and PNG files (libpng's simplified API: no setjmp, no partial
// writes reaching the final name).
#include "marbm/image.hpp"

#include <png.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>

#include "marbm/error.hpp"

namespace marbm {
namespace {

constexpr long max_pixels = 1L << 28;
constexpr std::uint8_t border_gray = 128;

std::string str(long long x) { return std::to_string(x); }

std::uint8_t to_gray(float value) {
  const float clipped = std::clamp(value, 0.0f, 1.0f);  // NaN stays NaN: map it to black below
  if (!(clipped >= 0.0f)) return 0;
  return static_cast<std::uint8_t>(std::lround(clipped * 255.0f));
}

}  // namespace

TileShape parse_tile_shape(std::string_view text) {
  const auto bad = [&] {
    return UsageError("image shape '" + std::string(text) + "' is not WIDTHxHEIGHT with both in [1, 4096] (e.g. 28x28)");
  };
  const auto x = text.find('x');
  if (x == std::string_view::npos) throw bad();
  TileShape shape;
  const auto parse = [&](std::string_view part, int& out) {
    const auto [end, error] = std::from_chars(part.data(), part.data() + part.size(), out);
    if (part.empty() || error != std::errc() || end != part.data() + part.size() || out < 1 || out > 4096) throw bad();
  };
  parse(text.substr(0, x), shape.width);
  parse(text.substr(x + 1), shape.height);
  return shape;
}

GrayImage tile_grid(std::span<const float> values, int count, TileShape shape, int columns, int border) {
  MARBM_EXPECTS(count >= 1, UsageError, "tile grid: no tiles");
  MARBM_EXPECTS(shape.width >= 1 && shape.height >= 1, UsageError, "tile grid: empty tile shape");
  MARBM_EXPECTS(columns >= 0 && border >= 0, UsageError, "tile grid: negative columns or border");
  const long tile_size = static_cast<long>(shape.width) * shape.height;
  MARBM_EXPECTS(static_cast<long>(values.size()) == tile_size * count, UsageError,
                "tile grid: " + str(static_cast<long long>(values.size())) + " values for " + str(count) +
                    " tiles of " + str(shape.width) + "x" + str(shape.height));
  if (columns == 0) columns = static_cast<int>(std::ceil(std::sqrt(static_cast<double>(count))));
  columns = std::min(columns, count);
  const int rows = (count + columns - 1) / columns;
  const long width = static_cast<long>(columns) * (shape.width + border) + border;
  const long height = static_cast<long>(rows) * (shape.height + border) + border;
  MARBM_EXPECTS(width * height <= max_pixels, UsageError,
                "tile grid: a " + str(width) + "x" + str(height) + " picture is too large");
  GrayImage image;
  image.width = static_cast<int>(width);
  image.height = static_cast<int>(height);
  image.pixels.assign(static_cast<std::size_t>(width * height), border_gray);
  for (int t = 0; t < count; ++t) {
    const int left = (t % columns) * (shape.width + border) + border;
    const int top = (t / columns) * (shape.height + border) + border;
    const float* tile = values.data() + t * tile_size;
    for (int y = 0; y < shape.height; ++y) {
      for (int x = 0; x < shape.width; ++x) {
        image.pixels[static_cast<std::size_t>(top + y) * width + left + x] = to_gray(tile[y * shape.width + x]);
      }
    }
  }
  return image;
}

GrayImage weight_tiles(const Rbm& rbm, TileShape shape, int columns) {
  const int n = rbm.n_visible(), m = rbm.n_hidden();
  MARBM_EXPECTS(static_cast<long>(shape.width) * shape.height == n, UsageError,
                "image shape " + str(shape.width) + "x" + str(shape.height) + " has " +
                    str(static_cast<long long>(shape.width) * shape.height) + " pixels but the model has " + str(n) +
                    " visible units");
  std::vector<float> values(static_cast<std::size_t>(n) * m);
  for (int j = 0; j < m; ++j) {
    float largest = 0.0f;
    for (int i = 0; i < n; ++i) largest = std::max(largest, std::fabs(rbm.weight(i, j)));
    const float scale = largest > 0.0f ? 0.5f / largest : 0.0f;
    for (int i = 0; i < n; ++i) values[static_cast<std::size_t>(j) * n + i] = 0.5f + scale * rbm.weight(i, j);
  }
  return tile_grid(values, m, shape, columns);
}

void write_png(const std::string& path, const GrayImage& image) {
  MARBM_EXPECTS(image.width >= 1 && image.height >= 1 &&
                    image.pixels.size() == static_cast<std::size_t>(image.width) * image.height,
                UsageError, "write_png: " + path + ": the picture has no pixels or the wrong number of them");
  static std::atomic<int> counter{0};
  const std::string temporary = path + ".tmp-" + str(::getpid()) + "-" + str(counter++);
  png_image png{};
  png.version = PNG_IMAGE_VERSION;
  png.width = static_cast<png_uint_32>(image.width);
  png.height = static_cast<png_uint_32>(image.height);
  png.format = PNG_FORMAT_GRAY;
  const int written = png_image_write_to_file(&png, temporary.c_str(), 0, image.pixels.data(), image.width, nullptr);
  const std::string message = png.message;
  png_image_free(&png);
  std::error_code error;
  if (!written) {
    std::filesystem::remove(temporary, error);
    throw DataError(path + ": cannot write the PNG (" + message + ")");
  }
  std::filesystem::rename(temporary, path, error);
  if (error) {
    std::filesystem::remove(temporary, error);
    throw DataError(path + ": cannot write the PNG (" + error.message() + ")");
  }
}

GrayImage read_png(const std::string& path) {
  png_image png{};
  png.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_file(&png, path.c_str())) {
    const std::string message = png.message;
    png_image_free(&png);
    throw DataError(path + ": cannot read the PNG (" + message + ")");
  }
  png.format = PNG_FORMAT_GRAY;
  GrayImage image;
  image.width = static_cast<int>(png.width);
  image.height = static_cast<int>(png.height);
  image.pixels.resize(PNG_IMAGE_SIZE(png));
  if (!png_image_finish_read(&png, nullptr, image.pixels.data(), 0, nullptr)) {
    const std::string message = png.message;
    png_image_free(&png);
    throw DataError(path + ": cannot read the PNG (" + message + ")");
  }
  return image;
}

}  // namespace marbm
