// Pictures of models and samples: tiles of unit values laid out in a grid,
// written and read as 8-bit grayscale PNG by libpng. Host only; CPU.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "marbm/rbm.hpp"

namespace marbm {

/// An 8-bit grayscale picture: height rows of width pixels, row-major,
/// 0 black, 255 white.
struct GrayImage {
  int width = 0;
  int height = 0;
  std::vector<std::uint8_t> pixels;

  std::uint8_t at(int x, int y) const { return pixels[static_cast<std::size_t>(y) * width + x]; }
};

/// The shape of one tile, e.g. 28 x 28 for an MNIST image.
struct TileShape {
  int width = 0;
  int height = 0;
};

/// Parses "WIDTHxHEIGHT" (e.g. "28x28", both in [1, 4096]). Throws
/// UsageError naming the text otherwise.
TileShape parse_tile_shape(std::string_view text);

/// Lays out `count` tiles in a grid of `columns` columns (0: about square),
/// each tile `shape.width x shape.height` values from `values` (tile after
/// tile, each row-major), with a `border`-pixel mid-gray frame around every
/// tile. Values in [0, 1] map to gray 0..255 (outside values are clipped).
/// Throws UsageError when the sizes do not fit (values.size() must be
/// count * width * height) or the picture would exceed 2^28 pixels.
GrayImage tile_grid(std::span<const float> values, int count, TileShape shape, int columns = 0, int border = 1);

/// The weights of every hidden unit j (column j of W, n values) as tiles,
/// each scaled on its own so that 0 is mid-gray and the largest |W_ij| of the
/// unit is black or white (positive white). Needs shape.width * shape.height
/// == n, else UsageError.
GrayImage weight_tiles(const Rbm& rbm, TileShape shape, int columns = 0);

/// Writes `image` as an 8-bit grayscale PNG (libpng), to a temporary name
/// first and then renamed, so a failed write leaves no half file. Throws
/// DataError naming the path when it cannot be written.
void write_png(const std::string& path, const GrayImage& image);

/// Reads a PNG of any colour type as 8-bit grayscale (libpng). Throws
/// DataError naming the path when it is missing or not a PNG.
GrayImage read_png(const std::string& path);

}  // namespace marbm
