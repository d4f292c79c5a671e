// Pictures: tile grids, PNG files read back by libpng, and the `show` and
// `sample` commands checked pixel by pixel.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "cli_checks.hpp"
#include "cli_runner.hpp"
#include "marbm/data.hpp"
#include "marbm/error.hpp"
#include "marbm/image.hpp"
#include "marbm/model_io.hpp"
#include "marbm/rbm.hpp"

namespace marbm {
namespace {

using test::describe;
using test::expect_refusal;
using test::parse_json_output;
using test::run_cli;
using test::ScratchFolder;

constexpr std::uint8_t border = 128;

TEST(Pictures, TileShapeParses) {
  const TileShape shape = parse_tile_shape("28x14");
  EXPECT_EQ(shape.width, 28);
  EXPECT_EQ(shape.height, 14);
  for (const char* bad : {"28", "0x3", "axb", "28x28x", "x28", "5000x1", "-3x3", ""}) {
    EXPECT_THROW(parse_tile_shape(bad), UsageError) << bad;
  }
}

TEST(Pictures, GridPlacesTilesInsideBorders) {
  // Three 2x2 tiles, two per row: 7x7 pixels, the fourth slot left as border.
  const std::vector<float> values = {0.0f, 1.0f, 0.5f, 0.25f,  1.0f, 1.0f, 1.0f, 1.0f,  0.0f, 0.0f, 0.0f, 2.0f};
  const GrayImage image = tile_grid(values, 3, {2, 2}, 2);
  ASSERT_EQ(image.width, 7);
  ASSERT_EQ(image.height, 7);
  EXPECT_EQ(image.at(0, 0), border);
  EXPECT_EQ(image.at(1, 1), 0);    // tile 0 (0, 0)
  EXPECT_EQ(image.at(2, 1), 255);  // tile 0 (1, 0)
  EXPECT_EQ(image.at(1, 2), 128);  // tile 0 (0, 1): 0.5 * 255 rounds to 128
  EXPECT_EQ(image.at(2, 2), 64);   // 0.25 * 255 = 63.75
  EXPECT_EQ(image.at(3, 1), border);
  EXPECT_EQ(image.at(4, 1), 255);  // tile 1 starts at x = 4
  EXPECT_EQ(image.at(1, 4), 0);    // tile 2 starts at y = 4
  EXPECT_EQ(image.at(2, 5), 255);  // 2.0 is clipped to white
  EXPECT_EQ(image.at(4, 4), border);  // no fourth tile
  EXPECT_THROW(tile_grid(values, 4, {2, 2}), UsageError);
}

TEST(Pictures, PngRoundTripKeepsEveryPixel) {
  ScratchFolder scratch;
  GrayImage image;
  image.width = 13;
  image.height = 5;
  for (int k = 0; k < 65; ++k) image.pixels.push_back(static_cast<std::uint8_t>(k * 4));
  const std::string path = scratch.file("round.png");
  write_png(path, image);
  const std::string bytes = test::read_whole_file(path);
  ASSERT_GE(bytes.size(), 8u);
  EXPECT_EQ(bytes.substr(1, 3), "PNG");
  const GrayImage back = read_png(path);
  EXPECT_EQ(back.width, 13);
  EXPECT_EQ(back.height, 5);
  EXPECT_EQ(back.pixels, image.pixels);
  // Only the final file is left: the temporary name was renamed.
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(scratch.path())) files += entry.is_regular_file();
  EXPECT_EQ(files, 1);

  EXPECT_THROW(write_png(scratch.file("no-such-folder/x.png"), image), DataError);
  const std::string text = scratch.file("text.png");
  std::ofstream(text) << "not a picture\n";
  EXPECT_THROW(read_png(text), DataError);
  EXPECT_THROW(read_png(scratch.file("missing.png")), DataError);
}

TEST(Pictures, WeightTilesScaleEachUnitAroundMidGray) {
  Rbm rbm(4, 2);
  const float unit0[] = {1.0f, -1.0f, 0.5f, 0.0f};
  const float unit1[] = {0.0f, 0.0f, 0.0f, -0.1f};
  for (int i = 0; i < 4; ++i) {
    rbm.weight(i, 0) = unit0[i];
    rbm.weight(i, 1) = unit1[i];
  }
  const GrayImage image = weight_tiles(rbm, {2, 2}, 2);
  ASSERT_EQ(image.width, 7);
  ASSERT_EQ(image.height, 4);
  EXPECT_EQ(image.at(1, 1), 255);  // +max: white
  EXPECT_EQ(image.at(2, 1), 0);    // -max: black
  EXPECT_EQ(image.at(1, 2), 191);  // 0.5 of max: 0.75 * 255
  EXPECT_EQ(image.at(2, 2), 128);  // zero: mid-gray
  EXPECT_EQ(image.at(4, 1), 128);  // unit 1, zero weight
  EXPECT_EQ(image.at(5, 2), 0);    // unit 1's only weight is its -max
  EXPECT_THROW(weight_tiles(rbm, {3, 1}), UsageError);
}

// A 16x6 model saved for the CLI tests.
struct ModelFile {
  ScratchFolder scratch;
  std::string path = scratch.file("model.safetensors");
  Rbm rbm;
  explicit ModelFile(Rbm model) : rbm(std::move(model)) { save_rbm(path, rbm); }
};

TEST(Pictures, ShowDrawsFiltersAndReportsActivations) {
  const ModelFile file(Rbm::random(16, 6, 1.0, 3));
  const std::string png = file.scratch.file("filters.png");
  const auto out = parse_json_output(run_cli({"show", file.path, "--image", "4x4", "--out", png, "--data",
                                              "shifting-bars:16:4", "--backend", "cpu", "--json"},
                                             file.scratch));
  const GrayImage image = read_png(png);
  // Six tiles, three per row (about square): 3 * 5 + 1 by 2 * 5 + 1.
  ASSERT_EQ(image.width, 16);
  ASSERT_EQ(image.height, 11);
  EXPECT_EQ(out["width"], 16);
  EXPECT_EQ(out["height"], 11);
  // Every pixel of every tile is the unit's weight scaled by its largest |w|.
  for (int j = 0; j < 6; ++j) {
    double largest = 0.0;
    for (int i = 0; i < 16; ++i) largest = std::max(largest, std::fabs(static_cast<double>(file.rbm.weight(i, j))));
    for (int i = 0; i < 16; ++i) {
      const int x = (j % 3) * 5 + 1 + i % 4, y = (j / 3) * 5 + 1 + i / 4;
      const double expected = 255.0 * (0.5 + 0.5 * file.rbm.weight(i, j) / largest);
      EXPECT_NEAR(image.at(x, y), expected, 0.51) << "unit " << j << " pixel " << i;
    }
  }
  // Mean p(h_j = 1 | v) over the 16 rows of shifting bars 16/4.
  const Dataset data = shifting_bars(16, 4);
  ASSERT_EQ(out["activation_mean"].size(), 6u);
  for (int j = 0; j < 6; ++j) {
    double mean = 0.0;
    for (int r = 0; r < data.n_rows; ++r) mean += file.rbm.hidden_probabilities(data.row(r))[j] / data.n_rows;
    EXPECT_NEAR(out["activation_mean"][j].get<double>(), mean, 1e-5) << "unit " << j;
  }
  EXPECT_EQ(out["rows"], 16);

  const auto text = run_cli({"show", file.path}, file.scratch);
  ASSERT_EQ(text.exit_code, 0) << describe(text);
  EXPECT_NE(text.out.find("weight norm per hidden unit"), std::string::npos) << text.out;
}

TEST(Pictures, ShowAndSampleRefuseBadShapes) {
  const ModelFile file(Rbm::random(16, 6, 1.0, 3));
  const std::string png = file.scratch.file("x.png");
  expect_refusal(run_cli({"show", file.path, "--image", "5x5", "--out", png}, file.scratch), 2, "--image 5x5");
  expect_refusal(run_cli({"show", file.path, "--out", png}, file.scratch), 2, "--image");
  expect_refusal(run_cli({"sample", file.path, "--image", "8x3", "--out", png}, file.scratch), 2, "--image 8x3");
  expect_refusal(run_cli({"sample", file.path}, file.scratch), 2, "--out");
  expect_refusal(run_cli({"sample", file.path, "--image", "4x4", "--out", png, "--chains", "100000", "--snapshots",
                          "1000"},
                         file.scratch),
                 2, "2^28 pixels");
  expect_refusal(run_cli({"sample", file.path, "--csv", file.scratch.file("s.csv"), "--chains", "0"}, file.scratch), 2,
                 "--chains");
  expect_refusal(run_cli({"sample", file.path, "--csv", file.scratch.file("s.csv"), "--from-data",
                          "shifting-bars:7:3"},
                         file.scratch),
                 1, "shifting-bars:7:3");
  EXPECT_FALSE(std::filesystem::exists(png));
}

TEST(Pictures, SampleGridShowsEachChainsSnapshots) {
  const ModelFile file(Rbm::random(16, 6, 1.0, 5));
  const std::string png = file.scratch.file("samples.png");
  const std::string csv = file.scratch.file("samples.csv");
  const std::vector<std::string> arguments = {"sample",  file.path, "--chains", "5",     "--steps", "20",
                                              "--snapshots", "4",   "--image",  "4x4",   "--out",   png,
                                              "--csv",   csv,       "--seed",   "7",     "--backend", "cpu", "--json"};
  const auto out = parse_json_output(run_cli(arguments, file.scratch));
  EXPECT_EQ(out["chains"], 5);
  const GrayImage image = read_png(png);
  // One row per chain, one column per snapshot.
  ASSERT_EQ(image.width, 4 * 5 + 1);
  ASSERT_EQ(image.height, 5 * 5 + 1);
  for (const std::uint8_t p : image.pixels) ASSERT_TRUE(p == 0 || p == 255 || p == border) << int(p);
  // The last snapshot column is the final state, which the CSV holds.
  const Dataset final_states = load_dataset("csv:" + csv);
  ASSERT_EQ(final_states.n_rows, 5);
  ASSERT_EQ(final_states.n_cols, 16);
  for (int c = 0; c < 5; ++c) {
    for (int i = 0; i < 16; ++i) {
      EXPECT_EQ(image.at(3 * 5 + 1 + i % 4, c * 5 + 1 + i / 4), final_states.row(c)[i] ? 255 : 0);
    }
  }
  // The same final states as IDX (0/255), read back by idx:PATH; the bytes
  // are the header (magic, count, the --image shape) and one byte per pixel.
  const std::string idx = file.scratch.file("samples.idx");
  auto with_idx = arguments;
  with_idx.insert(with_idx.end() - 1, {"--idx", idx});
  ASSERT_EQ(parse_json_output(run_cli(with_idx, file.scratch))["idx"], idx);
  const Dataset from_idx = load_dataset("idx:" + idx);
  ASSERT_EQ(from_idx.n_rows, 5);
  ASSERT_EQ(from_idx.n_cols, 16);
  EXPECT_EQ(from_idx.values, final_states.values);
  const std::string bytes = test::read_whole_file(idx);
  ASSERT_EQ(bytes.size(), 16u + 5u * 16u);
  EXPECT_EQ(bytes.substr(0, 16), std::string("\0\0\x08\x03\0\0\0\x05\0\0\0\x04\0\0\0\x04", 16));
  for (std::size_t k = 16; k < bytes.size(); ++k) {
    EXPECT_TRUE(bytes[k] == '\0' || static_cast<unsigned char>(bytes[k]) == 0xFF) << k;
  }
  // Without a picture, each state is 1 x n.
  const std::string flat = file.scratch.file("flat.idx");
  ASSERT_EQ(run_cli({"sample", file.path, "--chains", "5", "--steps", "20", "--snapshots", "4", "--idx", flat, "--seed",
                     "7", "--backend", "cpu"},
                    file.scratch)
                .exit_code,
            0);
  const std::string flat_bytes = test::read_whole_file(flat);
  EXPECT_EQ(flat_bytes.substr(8, 8), std::string("\0\0\0\x01\0\0\0\x10", 8));
  EXPECT_EQ(load_dataset("idx:" + flat).values, final_states.values);

  // Same seed, same samples; another seed, other samples.
  const std::string again = file.scratch.file("again.csv");
  ASSERT_EQ(run_cli({"sample", file.path, "--chains", "5", "--steps", "20", "--snapshots", "4", "--csv", again, "--seed",
                     "7", "--backend", "cpu"},
                    file.scratch)
                .exit_code,
            0);
  EXPECT_EQ(test::read_whole_file(again), test::read_whole_file(csv));
}

TEST(Pictures, SamplesFollowTheModel) {
  // W = 0 and visible biases of +-12: p(v_i = 1) is 1 - 6e-6 on the left
  // half of each row and 6e-6 on the right half, whatever the state before,
  // so 64 chains started from data rows must end showing exactly this
  // pattern, bar a 0.6% chance of one flipped pixel among the 1,024.
  Rbm rbm(16, 3);
  for (int i = 0; i < 16; ++i) rbm.visible_bias()[i] = (i % 4) < 2 ? 12.0f : -12.0f;
  const ModelFile file(rbm);
  const std::string png = file.scratch.file("s.png");
  const auto result = run_cli({"sample", file.path, "--chains", "64", "--steps", "3", "--from-data",
                               "shifting-bars:16:8", "--image", "4x4", "--out", png, "--backend", "cpu"},
                              file.scratch);
  ASSERT_EQ(result.exit_code, 0) << describe(result);
  const GrayImage image = read_png(png);
  ASSERT_EQ(image.width, 8 * 5 + 1);
  ASSERT_EQ(image.height, 8 * 5 + 1);
  int wrong = 0;
  for (int t = 0; t < 64; ++t) {
    for (int i = 0; i < 16; ++i) {
      const int x = (t % 8) * 5 + 1 + i % 4, y = (t / 8) * 5 + 1 + i / 4;
      wrong += image.at(x, y) != ((i % 4) < 2 ? 255 : 0);
    }
  }
  EXPECT_LE(wrong, 1);
  EXPECT_NE(result.out.find("from shifting-bars:16:8"), std::string::npos) << result.out;
}

}  // namespace
}  // namespace marbm
