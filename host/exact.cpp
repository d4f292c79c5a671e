#include "marbm/exact.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <span>
#include <limits>
#include <string>
#include <vector>

#include "detail/fast_math.hpp"
#include "marbm/communicator.hpp"
#include "marbm/distributed.hpp"
#include "marbm/error.hpp"

namespace marbm {

namespace {

using detail::exp_nonpositive;
using detail::fast_sigmoid;
using detail::fast_softplus;

// The largest enumeration the option may ask for: 2^62 states still fit the
// 64-bit state counter with room for the chunk arithmetic.
constexpr int max_supported_units = 62;

MARBM_VECTOR_CLONES
void softplus_into(const double* __restrict field, double* __restrict out, int count) {
  for (int i = 0; i < count; ++i) out[i] = fast_softplus(field[i]);
}

// Adds sign * column to the fields and writes the softplus of the new fields.
MARBM_VECTOR_CLONES
void step_softplus_into(double* __restrict field, const double* __restrict column, double sign,
                        double* __restrict out, int count) {
  for (int i = 0; i < count; ++i) {
    const double x = field[i] + sign * column[i];
    field[i] = x;
    out[i] = fast_softplus(x);
  }
}

// out[i] = exp(values[i] - shift) for values[i] <= shift (log-sum-exp terms).
MARBM_VECTOR_CLONES
void exp_shifted_into(const double* __restrict values, double shift, double* __restrict out, int count) {
  for (int i = 0; i < count; ++i) {
    const double t = values[i] - shift;
    const double inside = t > -708.0 ? 1.0 : 0.0;
    out[i] = exp_nonpositive(t * inside - 708.0 * (1.0 - inside));
  }
}

MARBM_VECTOR_CLONES
void sigmoid_into(const double* __restrict field, double scale, double* __restrict out, int count) {
  for (int i = 0; i < count; ++i) out[i] = scale * fast_sigmoid(field[i]);
}

// Sum with four interleaved partial sums: a fixed order (so results do not
// depend on anything but the values) without one long dependency chain.
double sum_of(const double* values, int count) {
  double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
  int i = 0;
  for (; i + 4 <= count; i += 4) {
    s0 += values[i];
    s1 += values[i + 1];
    s2 += values[i + 2];
    s3 += values[i + 3];
  }
  for (; i < count; ++i) s0 += values[i];
  return (s0 + s1) + (s2 + s3);
}

// ---------------------------------------------------------------- layout

// The enumerated layer (k units) and the other layer (L units), with each
// enumerated unit's contribution to the other layer's fields stored
// contiguously (a row of W for visible units, a column for hidden units).
struct Layout {
  bool enumerate_hidden = true;
  int k = 0;
  int other = 0;
  std::vector<double> columns;          // k x other
  std::vector<double> enumerated_bias;  // k
  std::vector<double> other_bias;       // other

  const double* column(int j) const { return columns.data() + static_cast<std::size_t>(j) * other; }
};

Layout make_layout(const Rbm& rbm, bool enumerate_hidden) {
  const int n = rbm.n_visible(), m = rbm.n_hidden();
  Layout layout;
  layout.enumerate_hidden = enumerate_hidden;
  layout.k = enumerate_hidden ? m : n;
  layout.other = enumerate_hidden ? n : m;
  layout.columns.resize(static_cast<std::size_t>(n) * m);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < m; ++j) {
      const std::size_t index = enumerate_hidden ? static_cast<std::size_t>(j) * n + i : static_cast<std::size_t>(i) * m + j;
      layout.columns[index] = rbm.weight(i, j);
    }
  const auto a = rbm.visible_bias();
  const auto b = rbm.hidden_bias();
  layout.enumerated_bias.assign(enumerate_hidden ? b.begin() : a.begin(), enumerate_hidden ? b.end() : a.end());
  layout.other_bias.assign(enumerate_hidden ? a.begin() : b.begin(), enumerate_hidden ? a.end() : b.end());
  return layout;
}

void check_model(const Rbm& rbm) {
  MARBM_EXPECTS(rbm.n_visible() >= 1 && rbm.n_hidden() >= 1, UsageError, "exact evaluation needs a model with units");
}

void check_limit(const Rbm& rbm, const ExactOptions& options) {
  check_model(rbm);
  MARBM_EXPECTS(options.max_enumerated_units >= 0 && options.max_enumerated_units <= max_supported_units,
                UsageError,
                "max_enumerated_units must be in 0.." + std::to_string(max_supported_units) + " (got " +
                    std::to_string(options.max_enumerated_units) + ")");
  const int k = std::min(rbm.n_visible(), rbm.n_hidden());
  MARBM_EXPECTS(k <= options.max_enumerated_units, RuntimeFailure,
                "exact evaluation of a " + std::to_string(rbm.n_visible()) + " x " + std::to_string(rbm.n_hidden()) +
                    " RBM must enumerate 2^" + std::to_string(k) + " states, beyond the limit 2^" +
                    std::to_string(options.max_enumerated_units) + " (max_enumerated_units)");
}

// Chunk size depends only on k, never on the thread count, so every chunk's
// arithmetic and the order chunks are combined in are the same for any number
// of threads: results are bit-identical. Chunks are small enough that a
// Gray-code walk (one rounding per field update) stays far inside 1e-12
// relative, and large enough that the exact restart is negligible.
int chunk_bits_for(int k) {
  if (k <= 10) return k;
  return std::max(10, std::min(14, k - 6));
}

// Fields and linear term of the first state of a chunk (low bits zero),
// computed from scratch.
void start_chunk(const Layout& layout, std::uint64_t first_state, double* field, double& linear) {
  std::copy(layout.other_bias.begin(), layout.other_bias.end(), field);
  linear = 0.0;
  for (int j = 0; j < layout.k; ++j) {
    if (!((first_state >> j) & 1u)) continue;
    linear += layout.enumerated_bias[j];
    const double* col = layout.column(j);
    for (int i = 0; i < layout.other; ++i) field[i] += col[i];
  }
}

// The Gray-code step from state index t-1 to t inside a chunk: the unit that
// flips and whether it turns on.
inline void gray_step(std::uint64_t t, int& unit, bool& on) {
  unit = std::countr_zero(t);
  on = (((t ^ (t >> 1)) >> unit) & 1u) != 0;
}

// Running log-sum-exp: max and sum of exp(value - max).
struct LogSumExp {
  double max = -std::numeric_limits<double>::infinity();
  double sum = 0.0;

  void add(double value) {
    if (value > max) {
      sum = sum * std::exp(max - value) + 1.0;
      max = value;
    } else {
      sum += std::exp(value - max);
    }
  }
  // Adds a batch of values: one rescale per batch and the exponentials
  // vectorised, instead of a libm exp per value.
  void add_batch(const double* values, int count, double* scratch) {
    double batch_max = values[0];
    for (int i = 1; i < count; ++i) batch_max = values[i] > batch_max ? values[i] : batch_max;
    if (batch_max > max) {
      sum *= std::exp(max - batch_max);
      max = batch_max;
    }
    exp_shifted_into(values, max, scratch, count);
    sum += sum_of(scratch, count);
  }
  double result() const { return max + std::log(sum); }
};

struct ChunkPlan {
  int chunk_bits = 0;
  std::uint64_t chunk_states = 0;
  std::int64_t chunks = 0;
};

ChunkPlan plan_chunks(int k) {
  ChunkPlan plan;
  plan.chunk_bits = chunk_bits_for(k);
  plan.chunk_states = std::uint64_t{1} << plan.chunk_bits;
  plan.chunks = std::int64_t{1} << (k - plan.chunk_bits);
  return plan;
}

// Each chunk's running log-sum-exp, for chunks [first, last): a rank of a
// distributed enumeration takes a contiguous range.
std::vector<LogSumExp> chunk_partials(const Layout& layout, const ChunkPlan& plan, std::int64_t first,
                                      std::int64_t last) {
  std::vector<LogSumExp> partial(static_cast<std::size_t>(last - first));
#pragma omp parallel if (last - first > 1)
  {
    // Chunk sizes are powers of two, so batches divide them evenly.
    const int batch = static_cast<int>(std::min<std::uint64_t>(plan.chunk_states, 256));
    std::vector<double> field(layout.other), terms(layout.other), values(batch), scratch(batch);
#pragma omp for schedule(dynamic, 1)
    for (std::int64_t chunk = first; chunk < last; ++chunk) {
      double linear = 0.0;
      start_chunk(layout, static_cast<std::uint64_t>(chunk) << plan.chunk_bits, field.data(), linear);
      LogSumExp lse;
      softplus_into(field.data(), terms.data(), layout.other);
      values[0] = linear + sum_of(terms.data(), layout.other);
      for (std::uint64_t t = 1; t < plan.chunk_states; ++t) {
        int unit = 0;
        bool on = false;
        gray_step(t, unit, on);
        linear += on ? layout.enumerated_bias[unit] : -layout.enumerated_bias[unit];
        step_softplus_into(field.data(), layout.column(unit), on ? 1.0 : -1.0, terms.data(), layout.other);
        const int slot = static_cast<int>(t % static_cast<std::uint64_t>(batch));
        values[slot] = linear + sum_of(terms.data(), layout.other);
        if (slot == batch - 1) lse.add_batch(values.data(), batch, scratch.data());
      }
      partial[static_cast<std::size_t>(chunk - first)] = lse;
    }
  }
  return partial;
}

// The chunks combined in chunk order.
double combine_partials(const std::vector<LogSumExp>& partial) {
  double max = -std::numeric_limits<double>::infinity();
  for (const LogSumExp& p : partial) max = std::max(max, p.max);
  if (!std::isfinite(max)) return max;
  double sum = 0.0;
  for (const LogSumExp& p : partial) sum += p.sum * std::exp(p.max - max);
  return max + std::log(sum);
}

double log_partition_gray(const Layout& layout) {
  const ChunkPlan plan = plan_chunks(layout.k);
  return combine_partials(chunk_partials(layout, plan, 0, plan.chunks));
}

void check_data(const Rbm& rbm, const Dataset& data) {
  MARBM_EXPECTS(data.n_rows >= 1, DataError, "data set '" + data.description + "' has no rows");
  MARBM_EXPECTS(data.n_cols == rbm.n_visible(), DataError,
                "data set '" + data.description + "' has " + std::to_string(data.n_cols) +
                    " columns, the model has " + std::to_string(rbm.n_visible()) + " visible units");
  MARBM_EXPECTS(data.values.size() == static_cast<std::size_t>(data.n_rows) * data.n_cols, DataError,
                "data set '" + data.description + "' holds " + std::to_string(data.values.size()) +
                    " values, not rows x columns");
  // Free energies read any non-zero byte as 1 while distinct_rows keys on the
  // raw bytes: a value such as 255 would give a silently wrong KL.
  const auto bad = std::find_if(data.values.begin(), data.values.end(), [](std::uint8_t x) { return x > 1; });
  if (bad != data.values.end()) {
    const auto k = static_cast<std::size_t>(bad - data.values.begin());
    throw DataError("data set '" + data.description + "': value " + std::to_string(*bad) + " at row " +
                    std::to_string(k / data.n_cols) + ", column " + std::to_string(k % data.n_cols) +
                    " is not 0 or 1");
  }
}

}  // namespace

bool exact_enumerable(const Rbm& rbm, const ExactOptions& options) {
  return rbm.n_visible() >= 1 && rbm.n_hidden() >= 1 &&
         std::min(rbm.n_visible(), rbm.n_hidden()) <= std::min(options.max_enumerated_units, max_supported_units);
}

double log_partition_exact(const Rbm& rbm, const ExactOptions& options) {
  check_limit(rbm, options);
  return log_partition_gray(make_layout(rbm, rbm.n_hidden() <= rbm.n_visible()));
}

double log_partition_exact(const Rbm& rbm, Communicator& comm, const ExactOptions& options) {
  check_limit(rbm, options);
  const Layout layout = make_layout(rbm, rbm.n_hidden() <= rbm.n_visible());
  const ChunkPlan plan = plan_chunks(layout.k);
  // Contiguous chunk ranges in rank order; every rank gets every chunk's
  // (max, sum) and combines them in chunk order, exactly as one process does.
  const ItemRange mine = contiguous_share(plan.chunks, comm.size(), comm.rank());
  const std::vector<LogSumExp> local = chunk_partials(layout, plan, mine.first, mine.last);
  std::vector<double> pairs;
  pairs.reserve(2 * local.size());
  for (const LogSumExp& p : local) {
    pairs.push_back(p.max);
    pairs.push_back(p.sum);
  }
  const auto parts = comm.all_gather(std::as_bytes(std::span<const double>(pairs)));
  std::vector<LogSumExp> all;
  all.reserve(static_cast<std::size_t>(plan.chunks));
  for (const auto& part : parts) {
    std::vector<double> values(part.size() / sizeof(double));
    std::memcpy(values.data(), part.data(), values.size() * sizeof(double));
    for (std::size_t q = 0; q + 1 < values.size(); q += 2) {
      LogSumExp p;
      p.max = values[q];
      p.sum = values[q + 1];
      all.push_back(p);
    }
  }
  MARBM_EXPECTS(static_cast<std::int64_t>(all.size()) == plan.chunks, RuntimeFailure,
                "distributed log Z: the ranks returned " + std::to_string(all.size()) + " chunks, expected " +
                    std::to_string(plan.chunks));
  return combine_partials(all);
}

double log_partition_direct(const Rbm& rbm, int layer) {
  check_model(rbm);
  MARBM_EXPECTS(layer == 0 || layer == 1, UsageError,
                "layer must be 0 (visible) or 1 (hidden), got " + std::to_string(layer));
  const Layout layout = make_layout(rbm, layer == 1);
  MARBM_EXPECTS(layout.k <= 30, RuntimeFailure,
                "direct enumeration of " + std::to_string(layout.k) + " units is beyond its limit of 30");
  LogSumExp lse;
  std::vector<double> field(layout.other);
  for (std::uint64_t state = 0; state < (std::uint64_t{1} << layout.k); ++state) {
    double value = 0.0;
    std::copy(layout.other_bias.begin(), layout.other_bias.end(), field.begin());
    for (int j = 0; j < layout.k; ++j) {
      if (!((state >> j) & 1u)) continue;
      value += layout.enumerated_bias[j];
      for (int i = 0; i < layout.other; ++i) field[i] += layout.column(j)[i];
    }
    for (double x : field) value += softplus(x);
    lse.add(value);
  }
  return lse.result();
}

double log_partition_brute_force(const Rbm& rbm) {
  check_model(rbm);
  const int n = rbm.n_visible(), m = rbm.n_hidden();
  MARBM_EXPECTS(n + m <= 24, RuntimeFailure,
                "brute force over both layers of a " + std::to_string(n) + " x " + std::to_string(m) +
                    " RBM is refused (n + m must be <= 24)");
  LogSumExp lse;
  std::vector<double> hidden_field(m);
  for (std::uint64_t v = 0; v < (std::uint64_t{1} << n); ++v) {
    double visible_term = 0.0;
    for (int j = 0; j < m; ++j) hidden_field[j] = rbm.hidden_bias()[j];
    for (int i = 0; i < n; ++i) {
      if (!((v >> i) & 1u)) continue;
      visible_term += rbm.visible_bias()[i];
      for (int j = 0; j < m; ++j) hidden_field[j] += rbm.weight(i, j);
    }
    for (std::uint64_t h = 0; h < (std::uint64_t{1} << m); ++h) {
      double minus_energy = visible_term;
      for (int j = 0; j < m; ++j)
        if ((h >> j) & 1u) minus_energy += hidden_field[j];
      lse.add(minus_energy);
    }
  }
  return lse.result();
}

double log_probability(const Rbm& rbm, std::span<const std::uint8_t> visible, double log_z) {
  return -rbm.free_energy(visible) - log_z;
}

double mean_log_likelihood(const Rbm& rbm, const Dataset& data, double log_z) {
  check_data(rbm, data);
  std::vector<double> free_energy(static_cast<std::size_t>(data.n_rows));
#pragma omp parallel for schedule(static) if (data.n_rows > 256)
  for (int r = 0; r < data.n_rows; ++r) free_energy[static_cast<std::size_t>(r)] = rbm.free_energy(data.row(r));
  // Summed in row order so the result does not depend on the thread count.
  double sum = 0.0;
  for (double f : free_energy) sum += f;
  return -sum / data.n_rows - log_z;
}

double mean_log_likelihood_exact(const Rbm& rbm, const Dataset& data, const ExactOptions& options) {
  check_data(rbm, data);
  return mean_log_likelihood(rbm, data, log_partition_exact(rbm, options));
}

double kl_divergence(const Rbm& rbm, const Dataset& data, double log_z) {
  check_data(rbm, data);
  const DistinctRows distinct = distinct_rows(data);
  double kl = 0.0;
  for (std::size_t r = 0; r < distinct.rows.size(); ++r) {
    const double p_data = static_cast<double>(distinct.counts[r]) / data.n_rows;
    kl += p_data * (std::log(p_data) - log_probability(rbm, distinct.rows[r], log_z));
  }
  return kl;
}

double kl_divergence_exact(const Rbm& rbm, const Dataset& data, const ExactOptions& options) {
  check_data(rbm, data);
  return kl_divergence(rbm, data, log_partition_exact(rbm, options));
}

ModelExpectations model_expectations_exact(const Rbm& rbm, const ExactOptions& options) {
  check_limit(rbm, options);
  const Layout layout = make_layout(rbm, rbm.n_hidden() <= rbm.n_visible());
  const double log_z = log_partition_gray(layout);
  const int k = layout.k, other = layout.other;
  const ChunkPlan plan = plan_chunks(k);

  // Chunks are grouped into a fixed number of blocks, each with its own
  // accumulators, summed in block order: bounded memory and results that do
  // not depend on the thread count.
  const std::int64_t blocks = std::min<std::int64_t>(plan.chunks, 64);
  const std::size_t cross_size = static_cast<std::size_t>(k) * other;
  struct Accumulators {
    std::vector<double> cross, enumerated, other_layer;
  };
  std::vector<Accumulators> block_sums(static_cast<std::size_t>(blocks));

#pragma omp parallel if (plan.chunks > 1)
  {
    std::vector<double> field(other), terms(other), weighted(other), chunk_weighted(other);
#pragma omp for schedule(dynamic, 1)
    for (std::int64_t block = 0; block < blocks; ++block) {
      Accumulators acc{std::vector<double>(cross_size, 0.0), std::vector<double>(k, 0.0),
                       std::vector<double>(other, 0.0)};
      const std::int64_t first_chunk = plan.chunks * block / blocks;
      const std::int64_t last_chunk = plan.chunks * (block + 1) / blocks;
      for (std::int64_t chunk = first_chunk; chunk < last_chunk; ++chunk) {
        const std::uint64_t base = static_cast<std::uint64_t>(chunk) << plan.chunk_bits;
        double linear = 0.0;
        start_chunk(layout, base, field.data(), linear);
        std::uint64_t low = 0;  // the Gray-code state of the chunk's low bits
        // Units above the chunk bits are constant over the chunk: their terms
        // are the chunk's totals, added once at its end.
        std::fill(chunk_weighted.begin(), chunk_weighted.end(), 0.0);
        double chunk_probability = 0.0;
        for (std::uint64_t t = 0; t < plan.chunk_states; ++t) {
          if (t == 0) {
            softplus_into(field.data(), terms.data(), other);
          } else {
            int unit = 0;
            bool on = false;
            gray_step(t, unit, on);
            low ^= std::uint64_t{1} << unit;
            linear += on ? layout.enumerated_bias[unit] : -layout.enumerated_bias[unit];
            step_softplus_into(field.data(), layout.column(unit), on ? 1.0 : -1.0, terms.data(), other);
          }
          const double spsum = sum_of(terms.data(), other);
          // The state's marginal probability; the other layer's conditionals
          // given the state are exact sigmoids of its fields.
          const double p = std::exp(linear + spsum - log_z);
          sigmoid_into(field.data(), p, weighted.data(), other);
          for (int i = 0; i < other; ++i) chunk_weighted[i] += weighted[i];
          chunk_probability += p;
          for (std::uint64_t bits = low; bits != 0; bits &= bits - 1) {
            const int j = std::countr_zero(bits);
            acc.enumerated[j] += p;
            double* row = acc.cross.data() + static_cast<std::size_t>(j) * other;
            for (int i = 0; i < other; ++i) row[i] += weighted[i];
          }
        }
        for (int i = 0; i < other; ++i) acc.other_layer[i] += chunk_weighted[i];
        for (std::uint64_t bits = base; bits != 0; bits &= bits - 1) {
          const int j = std::countr_zero(bits);
          acc.enumerated[j] += chunk_probability;
          double* row = acc.cross.data() + static_cast<std::size_t>(j) * other;
          for (int i = 0; i < other; ++i) row[i] += chunk_weighted[i];
        }
      }
      block_sums[static_cast<std::size_t>(block)] = std::move(acc);
    }
  }

  std::vector<double> cross(cross_size, 0.0), enumerated(k, 0.0), other_layer(other, 0.0);
  for (const Accumulators& acc : block_sums) {
    for (std::size_t q = 0; q < cross_size; ++q) cross[q] += acc.cross[q];
    for (int j = 0; j < k; ++j) enumerated[j] += acc.enumerated[j];
    for (int i = 0; i < other; ++i) other_layer[i] += acc.other_layer[i];
  }

  const int n = rbm.n_visible(), m = rbm.n_hidden();
  ModelExpectations out;
  out.visible_hidden.resize(static_cast<std::size_t>(n) * m);
  if (layout.enumerate_hidden) {
    // cross[j][i] = <v_i h_j>
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < m; ++j)
        out.visible_hidden[static_cast<std::size_t>(i) * m + j] = cross[static_cast<std::size_t>(j) * n + i];
    out.visible = std::move(other_layer);
    out.hidden = std::move(enumerated);
  } else {
    out.visible_hidden = std::move(cross);  // cross[i][j] = <v_i h_j>, already row-major n x m
    out.visible = std::move(enumerated);
    out.hidden = std::move(other_layer);
  }
  return out;
}

}  // namespace marbm
