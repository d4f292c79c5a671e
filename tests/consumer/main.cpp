// Downstream check of the installed package: log Z of small random models
// from marbm against a brute-force sum over every (v, h) written here,
// independently of the library. Exit status 0 only when all agree.
#include <marbm/marbm.hpp>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

namespace {

// log sum_{v,h} exp(-E(v,h)) over all 2^(n+m) joint states, with the
// maximum subtracted first so the sum cannot overflow.
double brute_force_log_z(const marbm::Rbm& rbm) {
  const int n = rbm.n_visible();
  const int m = rbm.n_hidden();
  const auto a = rbm.visible_bias();
  const auto b = rbm.hidden_bias();
  std::vector<double> minus_energy;
  for (std::uint64_t state = 0; state < (std::uint64_t{1} << (n + m)); ++state) {
    double value = 0.0;
    for (int i = 0; i < n; ++i) {
      if (!((state >> i) & 1)) continue;
      value += a[i];
      for (int j = 0; j < m; ++j) {
        if ((state >> (n + j)) & 1) value += rbm.weight(i, j);
      }
    }
    for (int j = 0; j < m; ++j) {
      if ((state >> (n + j)) & 1) value += b[j];
    }
    minus_energy.push_back(value);
  }
  double largest = minus_energy.front();
  for (double value : minus_energy) largest = std::max(largest, value);
  double sum = 0.0;
  for (double value : minus_energy) sum += std::exp(value - largest);
  return largest + std::log(sum);
}

}  // namespace

int main() {
  int failures = 0;
  struct Case {
    int n, m;
    double sigma;
    std::uint64_t seed;
  };
  for (const Case c : {Case{5, 4, 1.0, 1}, Case{3, 7, 2.0, 2}, Case{8, 6, 0.5, 3}}) {
    const marbm::Rbm rbm = marbm::Rbm::random(c.n, c.m, c.sigma, c.seed);
    const double library = marbm::log_partition_exact(rbm);
    const double reference = brute_force_log_z(rbm);
    // Both sums run in float64 over at most 2^14 terms: agreement to 1e-10
    // relative leaves room only for rounding, not for a wrong term.
    const bool ok = std::fabs(library - reference) <= 1e-10 * std::max(1.0, std::fabs(reference));
    std::printf("%dx%d sigma %.1f: marbm log Z %.15g, brute force %.15g %s\n", c.n, c.m, c.sigma, library, reference,
                ok ? "ok" : "MISMATCH");
    if (!ok) ++failures;
  }
  std::printf("marbm %s, cuda engine %s\n", marbm::version().c_str(), marbm::cuda_compiled() ? "compiled" : "not compiled");
  return failures == 0 ? 0 : 1;
}
