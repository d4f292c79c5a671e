// A study across ranks equals the single-process study with the same seed:
// the same KL curves, hence the same kl.csv and summary (timings aside).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "marbm/communicator.hpp"
#include "marbm/distributed.hpp"
#include "marbm/study.hpp"

namespace marbm {
namespace {

std::string read_all(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// summary.json without the timings, which no two runs share.
nlohmann::json without_timings(const std::string& text) {
  nlohmann::json root = nlohmann::json::parse(text);
  for (auto& [key, value] : root.items()) {
    if (value.is_object()) value.erase("seconds");
  }
  root["settings"].erase("wall_seconds");
  return root;
}

TEST(DistributedStudy, EqualsTheSingleProcessStudy) {
  Communicator& comm = *world_communicator();
  StudyConfig config;
  config.runs = 7;  // not a multiple of 2 or 3: ranks take different counts
  config.iterations = 600;
  config.eval_every = 150;
  config.seed = 5;
  config.threads = 1;
  config.methods = {TrainMethod::cd, TrainMethod::pcd, TrainMethod::mode};
  config.mode.p_max = 0.5;  // mode steps early enough to matter in 600 updates
  const StudyResult distributed = run_study(config, comm);
  if (comm.rank() != 0) return;
  const StudyResult single = run_study(config);
  ASSERT_EQ(distributed.runs.size(), single.runs.size());
  for (std::size_t k = 0; k < single.runs.size(); ++k) {
    ASSERT_EQ(distributed.runs[k].history.size(), single.runs[k].history.size()) << k;
    for (std::size_t p = 0; p < single.runs[k].history.size(); ++p) {
      EXPECT_EQ(distributed.runs[k].history[p].kl, single.runs[k].history[p].kl) << k << " " << p;
      EXPECT_EQ(distributed.runs[k].history[p].mode_steps, single.runs[k].history[p].mode_steps);
    }
  }
  const auto dir = std::filesystem::temp_directory_path() / ("marbm-dstudy-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  write_study_csv(single, (dir / "single.csv").string());
  write_study_csv(distributed, (dir / "distributed.csv").string());
  write_study_summary(single, (dir / "single.json").string());
  write_study_summary(distributed, (dir / "distributed.json").string());
  const std::string csv = read_all(dir / "single.csv");
  EXPECT_GT(csv.size(), 100u);
  EXPECT_EQ(read_all(dir / "distributed.csv"), csv);
  EXPECT_EQ(without_timings(read_all(dir / "distributed.json")), without_timings(read_all(dir / "single.json")));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace marbm
