// The device exhaustive search's plan and the CPU twin of its thread kernel
// (detail/mode_exhaustive_plan.hpp).
#include "detail/mode_exhaustive_plan.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <string>
#include <string_view>

#include "marbm/error.hpp"

namespace marbm::detail {

namespace {

// The smallest b with 2^b >= x (x >= 1).
int ceil_log2(std::uint64_t x) { return x <= 1 ? 0 : 64 - std::countl_zero(x - 1); }

}  // namespace

ExhaustivePlan plan_exhaustive(int k, int l, int multiprocessors, bool force_warp) {
  MARBM_EXPECTS(k >= 1 && k <= 62 && l >= k, UsageError,
                "exhaustive plan: need 1 <= k <= 62 and l >= k (got k " + std::to_string(k) + ", l " +
                    std::to_string(l) + ")");
  ExhaustivePlan plan;
  if (force_warp || l > kExhaustiveThreadMaxUnits) return plan;
  plan.kernel = ExhaustiveKernel::thread;
  plan.size_class = l <= 16 ? 16 : (l <= 32 ? 32 : 64);
  const std::uint64_t total = std::uint64_t{1} << k;
  const std::uint64_t target_threads = static_cast<std::uint64_t>(std::max(multiprocessors, 1)) * 1024;
  const int shortest = ceil_log2(static_cast<std::uint64_t>(std::max(32, 2 * k)));
  const int filling = ceil_log2((total + target_threads - 1) / target_threads);
  plan.chunk_bits = std::min(k, std::max(shortest, filling));
  plan.chunks = total >> plan.chunk_bits;
  plan.blocks = (plan.chunks + kExhaustiveThreadBlock - 1) / kExhaustiveThreadBlock;
  plan.slots = plan.blocks * (kExhaustiveThreadBlock / 32);
  plan.shared_bytes = static_cast<std::size_t>(plan.chunk_bits) * (plan.size_class + 1) * exhaustive_row_bytes(plan.size_class);
  return plan;
}

bool exhaustive_force_warp(const char* value) {
  if (value == nullptr) return false;
  const std::string_view text(value);
  if (text.empty() || text == "auto") return false;
  if (text == "warp") return true;
  throw UsageError("MARBM_EXHAUSTIVE_KERNEL must be auto or warp (got '" + std::string(text) + "')");
}

ExhaustiveProblem exhaustive_problem(const Rbm& rbm) {
  const int n = rbm.n_visible(), m = rbm.n_hidden();
  ExhaustiveProblem problem;
  problem.enumerate_hidden = m <= n;
  problem.k = std::min(n, m);
  problem.l = std::max(n, m);
  const auto weights = rbm.weights();
  if (problem.enumerate_hidden) {
    problem.rows.resize(weights.size());
    for (int i = 0; i < n; ++i) {
      for (int j = 0; j < m; ++j) problem.rows[static_cast<std::size_t>(j) * n + i] = weights[static_cast<std::size_t>(i) * m + j];
    }
  } else {
    problem.rows.assign(weights.begin(), weights.end());
  }
  const auto a = rbm.visible_bias();
  const auto b = rbm.hidden_bias();
  problem.bias_k.assign(problem.enumerate_hidden ? b.begin() : a.begin(), problem.enumerate_hidden ? b.end() : a.end());
  problem.bias_l.assign(problem.enumerate_hidden ? a.begin() : b.begin(), problem.enumerate_hidden ? a.end() : b.end());
  return problem;
}

ExhaustiveLowest exhaustive_thread_twin(const ExhaustiveProblem& problem, int chunk_bits) {
  const int k = problem.k, l = problem.l;
  MARBM_EXPECTS(k >= 1 && k <= 40 && chunk_bits >= 0 && chunk_bits <= k, UsageError,
                "exhaustive twin: need 1 <= k <= 40 and 0 <= chunk_bits <= k");
  const std::uint64_t total = std::uint64_t{1} << k;
  const std::uint64_t chunk = std::uint64_t{1} << chunk_bits;
  const float* rows = problem.rows.data();
  std::vector<double> field(static_cast<std::size_t>(l));
  ExhaustiveLowest overall{std::numeric_limits<double>::infinity(), ~std::uint64_t{0}};
  for (std::uint64_t begin = 0; begin < total; begin += chunk) {
    std::uint64_t gray = begin ^ (begin >> 1);
    double linear = 0.0;
    for (int u = 0; u < k; ++u) {
      if ((gray >> u) & 1u) linear += problem.bias_k[u];
    }
    for (int p = 0; p < l; ++p) field[p] = problem.bias_l[p];
    for (int u = 0; u < k; ++u) {
      if (!((gray >> u) & 1u)) continue;
      for (int p = 0; p < l; ++p) field[p] += rows[static_cast<std::size_t>(u) * l + p];
    }
    double best = std::numeric_limits<double>::infinity();
    std::uint64_t best_at = ~std::uint64_t{0};
    for (std::uint64_t i = 0;;) {
      double part[4] = {0.0, 0.0, 0.0, 0.0};
      for (int p = 0; p < l; ++p) part[p % 4] += std::fmax(0.0, field[p]);
      const double energy = -linear - ((part[0] + part[1]) + (part[2] + part[3]));
      if (energy < best) {
        best = energy;
        best_at = begin + i;
      }
      if (++i == chunk) break;
      const int u = std::countr_zero(i);
      gray ^= std::uint64_t{1} << u;
      const bool on = (gray >> u) & 1u;
      const float bias = problem.bias_k[u];
      linear += on ? bias : -bias;
      const float* row = rows + static_cast<std::size_t>(u) * l;
      for (int p = 0; p < l; ++p) field[p] += on ? row[p] : -row[p];
    }
    if (best < overall.energy || (best == overall.energy && best_at < overall.index)) overall = {best, best_at};
  }
  return overall;
}

}  // namespace marbm::detail
