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

#include "detail/exact_kernels.hpp"
#include "detail/fast_math.hpp"
#include "marbm/communicator.hpp"
#include "marbm/distributed.hpp"
#include "marbm/error.hpp"

namespace marbm {

namespace {

using detail::exp_nonpositive;
using detail::fast_sigmoid;

// The largest enumeration the option may ask for: 2^62 states still fit the
// 64-bit state counter with room for the chunk arithmetic.
constexpr int max_supported_units = 62;

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

Layout make_layout(const RbmFloat64& rbm, bool enumerate_hidden) {
  const int n = rbm.n_visible, m = rbm.n_hidden;
  Layout layout;
  layout.enumerate_hidden = enumerate_hidden;
  layout.k = enumerate_hidden ? m : n;
  layout.other = enumerate_hidden ? n : m;
  layout.columns.resize(static_cast<std::size_t>(n) * m);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < m; ++j) {
      const std::size_t index = enumerate_hidden ? static_cast<std::size_t>(j) * n + i : static_cast<std::size_t>(i) * m + j;
      layout.columns[index] = rbm.weights[static_cast<std::size_t>(i) * m + j];
    }
  const auto& a = rbm.visible_bias;
  const auto& b = rbm.hidden_bias;
  layout.enumerated_bias.assign(enumerate_hidden ? b.begin() : a.begin(), enumerate_hidden ? b.end() : a.end());
  layout.other_bias.assign(enumerate_hidden ? a.begin() : b.begin(), enumerate_hidden ? a.end() : b.end());
  return layout;
}

Layout make_layout(const Rbm& rbm, bool enumerate_hidden) {
  return make_layout(RbmFloat64::from(rbm), enumerate_hidden);
}

void check_model(const Rbm& rbm) {
  MARBM_EXPECTS(rbm.n_visible() >= 1 && rbm.n_hidden() >= 1, UsageError, "exact evaluation needs a model with units");
}

void check_model(const RbmFloat64& rbm) {
  MARBM_EXPECTS(rbm.n_visible >= 1 && rbm.n_hidden >= 1 &&
                    rbm.weights.size() == static_cast<std::size_t>(rbm.n_visible) * rbm.n_hidden &&
                    rbm.visible_bias.size() == static_cast<std::size_t>(rbm.n_visible) &&
                    rbm.hidden_bias.size() == static_cast<std::size_t>(rbm.n_hidden),
                UsageError, "exact evaluation needs a model with units and parameters of matching sizes");
}

int visible_units(const Rbm& rbm) { return rbm.n_visible(); }
int visible_units(const RbmFloat64& rbm) { return rbm.n_visible; }
int hidden_units(const Rbm& rbm) { return rbm.n_hidden(); }
int hidden_units(const RbmFloat64& rbm) { return rbm.n_hidden; }

template <class Model>
void check_limit(const Model& rbm, const ExactOptions& options) {
  check_model(rbm);
  MARBM_EXPECTS(options.max_enumerated_units >= 0 && options.max_enumerated_units <= max_supported_units,
                UsageError,
                "max_enumerated_units must be in 0.." + std::to_string(max_supported_units) + " (got " +
                    std::to_string(options.max_enumerated_units) + ")");
  const int n = visible_units(rbm), m = hidden_units(rbm);
  const int k = std::min(n, m);
  MARBM_EXPECTS(k <= options.max_enumerated_units, RuntimeFailure,
                "exact evaluation of a " + std::to_string(n) + " x " + std::to_string(m) +
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

// ---------------------------------------------------------------- product kernel
//
// The sum over the other layer as the log of a product of (1 + B_i T_si)
// (detail/exact_kernels.hpp). It needs every factor finite and every B and T
// a normal number, so it runs on a chunk only when all fields the chunk can
// reach lie within +-field_window; other chunks (huge weights, where softplus
// is linear) take the per-state softplus path. Both are exact to rounding.
constexpr double field_window = 690.0;

struct ProductPlan {
  bool usable = false;  // every low subset sum within the window
  int low_bits = 0;     // g: the units of a block's states
  int stride = 0;       // the other layer padded to the kernel's lanes
  std::vector<double> table;       // 2^g x stride: exp(sum of the subset's columns)
  std::vector<double> low_linear;  // 2^g: sum of the subset's biases
  std::vector<double> low_high;    // per unit of the other layer: the largest low subset sum
  std::vector<double> block_high;  // the largest sum over the chunk's block units
  std::vector<double> block_low;   // the smallest
};

ProductPlan make_product_plan(const Layout& layout, int chunk_bits) {
  ProductPlan plan;
  const int other = layout.other;
  plan.stride = (other + detail::product_lanes - 1) / detail::product_lanes * detail::product_lanes;
  // Blocks of up to 64 states; the table (2^g rows) kept within 512 KiB so
  // that it stays in the core's cache when the other layer is wide.
  int g = std::min(6, chunk_bits);
  while (g > 1 && (std::size_t{1} << g) * static_cast<std::size_t>(plan.stride) * sizeof(double) > (512u << 10)) --g;
  plan.low_bits = g;
  plan.low_high.assign(other, 0.0);
  plan.block_high.assign(other, 0.0);
  plan.block_low.assign(other, 0.0);
  plan.usable = true;
  for (int i = 0; i < other; ++i) {
    double low_low = 0.0;
    for (int j = 0; j < layout.k && j < chunk_bits; ++j) {
      const double w = layout.column(j)[i];
      if (j < g) {
        (w > 0 ? plan.low_high[i] : low_low) += w;
      } else {
        (w > 0 ? plan.block_high[i] : plan.block_low[i]) += w;
      }
    }
    if (plan.low_high[i] > field_window || low_low < -field_window) plan.usable = false;
  }
  if (!plan.usable) return plan;
  const std::size_t states = std::size_t{1} << g;
  plan.table.assign(states * plan.stride, 0.0);
  plan.low_linear.assign(states, 0.0);
  for (std::size_t s = 0; s < states; ++s) {
    long double linear = 0.0L;
    for (int j = 0; j < g; ++j)
      if ((s >> j) & 1u) linear += layout.enumerated_bias[j];
    plan.low_linear[s] = static_cast<double>(linear);
    for (int i = 0; i < other; ++i) {
      // In long double and rounded once: each entry within half an ulp.
      long double sum = 0.0L;
      for (int j = 0; j < g; ++j)
        if ((s >> j) & 1u) sum += layout.column(j)[i];
      plan.table[s * plan.stride + i] = static_cast<double>(std::exp(sum));
    }
  }
  return plan;
}

// Per-thread buffers of the chunk loop.
struct ChunkScratch {
  std::vector<double> field, terms, values, scratch, block_exp, mantissa;
  std::vector<std::int64_t> exponent;
  ChunkScratch(const Layout& layout, const ProductPlan& product, int batch)
      : field(layout.other),
        terms(layout.other),
        values(batch),
        scratch(batch),
        block_exp(product.stride, 0.0),
        mantissa(batch),
        exponent(batch) {}
};

// How many factors of the product kernel a lane multiplies between
// renormalisations for a chunk starting at these fields, or 0 when a field of
// the chunk may leave the window (the chunk then goes by softplus).
int product_group(const Layout& layout, const ProductPlan& product, const double* field) {
  double high = 0.0;
  for (int i = 0; i < layout.other; ++i) {
    const double top = field[i] + product.block_high[i] + product.low_high[i];
    if (top > field_window || field[i] + product.block_low[i] < -field_window) return 0;
    high = std::max(high, top);
  }
  // Each factor is below 2^(high log2(e) + 1); a lane's product must stay
  // below 2^1023 between renormalisations.
  const double factor_bits = high * 1.4426950408889634 + 1.0;
  return static_cast<int>(std::min(1.0e6, std::floor(1022.0 / factor_bits)));
}

// The Gray-code step from block-1 to block of the units above the g low bits:
// fields and linear term follow; returns the unit that flipped.
int block_step(const Layout& layout, int g, std::uint64_t block, double* field, double& linear) {
  int unit = 0;
  bool on = false;
  gray_step(block, unit, on);
  unit += g;
  linear += on ? layout.enumerated_bias[unit] : -layout.enumerated_bias[unit];
  detail::add_signed(field, layout.column(unit), on ? 1.0 : -1.0, layout.other);
  return unit;
}

// The chunk's states by the product kernel, or false (nothing done) when a
// field of the chunk may leave the window.
bool chunk_by_products(const Layout& layout, const ProductPlan& product, const ChunkPlan& plan, double* field,
                       double linear, ChunkScratch& scratch, LogSumExp& lse) {
  const int group = product_group(layout, product, field);
  if (group == 0) return false;
  const int g = product.low_bits;
  const int states = 1 << g;
  const std::uint64_t blocks = plan.chunk_states >> g;
  for (std::uint64_t block = 0; block < blocks; ++block) {
    if (block > 0) block_step(layout, g, block, field, linear);
    detail::exp_array(field, scratch.block_exp.data(), layout.other);
    detail::one_plus_products(scratch.block_exp.data(), product.table.data(), product.stride, states, group,
                              scratch.mantissa.data(), scratch.exponent.data());
    detail::log_products(scratch.mantissa.data(), scratch.exponent.data(), linear, product.low_linear.data(),
                         scratch.values.data(), states);
    lse.add_batch(scratch.values.data(), states, scratch.scratch.data());
  }
  return true;
}

// The chunk's states one by one: the fields walked in Gray-code order and
// softplus per unit.
void chunk_by_softplus(const Layout& layout, const ChunkPlan& plan, double* field, double linear, int batch,
                       ChunkScratch& scratch, LogSumExp& lse) {
  double* terms = scratch.terms.data();
  double* values = scratch.values.data();
  detail::softplus_array(field, terms, layout.other);
  values[0] = linear + sum_of(terms, layout.other);
  for (std::uint64_t t = 1; t < plan.chunk_states; ++t) {
    int unit = 0;
    bool on = false;
    gray_step(t, unit, on);
    linear += on ? layout.enumerated_bias[unit] : -layout.enumerated_bias[unit];
    detail::step_softplus_array(field, layout.column(unit), on ? 1.0 : -1.0, terms, layout.other);
    const int slot = static_cast<int>(t % static_cast<std::uint64_t>(batch));
    values[slot] = linear + sum_of(terms, layout.other);
    if (slot == batch - 1) lse.add_batch(values, batch, scratch.scratch.data());
  }
}

// Each chunk's running log-sum-exp, for chunks [first, last): a rank of a
// distributed enumeration takes a contiguous range.
std::vector<LogSumExp> chunk_partials(const Layout& layout, const ChunkPlan& plan, std::int64_t first,
                                      std::int64_t last) {
  std::vector<LogSumExp> partial(static_cast<std::size_t>(last - first));
  const ProductPlan product = make_product_plan(layout, plan.chunk_bits);
  // Chunk sizes are powers of two, so batches divide them evenly.
  const int batch = static_cast<int>(std::min<std::uint64_t>(plan.chunk_states, 256));
#pragma omp parallel if (last - first > 1)
  {
    ChunkScratch scratch(layout, product, batch);
#pragma omp for schedule(dynamic, 1)
    for (std::int64_t chunk = first; chunk < last; ++chunk) {
      double linear = 0.0;
      start_chunk(layout, static_cast<std::uint64_t>(chunk) << plan.chunk_bits, scratch.field.data(), linear);
      LogSumExp lse;
      if (!product.usable ||
          !chunk_by_products(layout, product, plan, scratch.field.data(), linear, scratch, lse)) {
        chunk_by_softplus(layout, plan, scratch.field.data(), linear, batch, scratch, lse);
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

template <class Model>
void check_data(const Model& rbm, const Dataset& data) {
  MARBM_EXPECTS(data.n_rows >= 1, DataError, "data set '" + data.description + "' has no rows");
  MARBM_EXPECTS(data.n_cols == visible_units(rbm), DataError,
                "data set '" + data.description + "' has " + std::to_string(data.n_cols) +
                    " columns, the model has " + std::to_string(visible_units(rbm)) + " visible units");
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

double log_partition_exact(const RbmFloat64& rbm, const ExactOptions& options) {
  check_limit(rbm, options);
  return log_partition_gray(make_layout(rbm, rbm.n_hidden <= rbm.n_visible));
}

RbmFloat64 RbmFloat64::from(const Rbm& rbm) {
  RbmFloat64 wide;
  wide.n_visible = rbm.n_visible();
  wide.n_hidden = rbm.n_hidden();
  wide.weights.assign(rbm.weights().begin(), rbm.weights().end());
  wide.visible_bias.assign(rbm.visible_bias().begin(), rbm.visible_bias().end());
  wide.hidden_bias.assign(rbm.hidden_bias().begin(), rbm.hidden_bias().end());
  return wide;
}

double RbmFloat64::free_energy(std::span<const std::uint8_t> visible) const {
  MARBM_EXPECTS(visible.size() == static_cast<std::size_t>(n_visible), UsageError,
                "free_energy: the visible vector has " + std::to_string(visible.size()) + " entries, the model " +
                    std::to_string(n_visible));
  const int n = n_visible, m = n_hidden;
  std::vector<double> field(hidden_bias);
  double linear = 0.0;
  for (int i = 0; i < n; ++i) {
    if (!visible[i]) continue;
    linear += visible_bias[i];
    const double* row = weights.data() + static_cast<std::size_t>(i) * m;
    for (int j = 0; j < m; ++j) field[j] += row[j];
  }
  double sum = 0.0;
  for (double x : field) sum += softplus(x);
  return -linear - sum;
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

namespace {

template <class Model>
double mean_log_likelihood_of(const Model& rbm, const Dataset& data, double log_z) {
  check_data(rbm, data);
  std::vector<double> free_energy(static_cast<std::size_t>(data.n_rows));
#pragma omp parallel for schedule(static) if (data.n_rows > 256)
  for (int r = 0; r < data.n_rows; ++r) free_energy[static_cast<std::size_t>(r)] = rbm.free_energy(data.row(r));
  // Summed in row order so the result does not depend on the thread count.
  double sum = 0.0;
  for (double f : free_energy) sum += f;
  return -sum / data.n_rows - log_z;
}

template <class Model>
double kl_divergence_of(const Model& rbm, const Dataset& data, double log_z) {
  check_data(rbm, data);
  const DistinctRows distinct = distinct_rows(data);
  double kl = 0.0;
  for (std::size_t r = 0; r < distinct.rows.size(); ++r) {
    const double p_data = static_cast<double>(distinct.counts[r]) / data.n_rows;
    kl += p_data * (std::log(p_data) - (-rbm.free_energy(distinct.rows[r]) - log_z));
  }
  return kl;
}

}  // namespace

double mean_log_likelihood(const Rbm& rbm, const Dataset& data, double log_z) {
  return mean_log_likelihood_of(rbm, data, log_z);
}

double mean_log_likelihood(const RbmFloat64& rbm, const Dataset& data, double log_z) {
  return mean_log_likelihood_of(rbm, data, log_z);
}

double mean_log_likelihood_exact(const Rbm& rbm, const Dataset& data, const ExactOptions& options) {
  check_data(rbm, data);
  return mean_log_likelihood(rbm, data, log_partition_exact(rbm, options));
}

double kl_divergence(const Rbm& rbm, const Dataset& data, double log_z) { return kl_divergence_of(rbm, data, log_z); }

double kl_divergence(const RbmFloat64& rbm, const Dataset& data, double log_z) {
  return kl_divergence_of(rbm, data, log_z);
}

double kl_divergence_exact(const Rbm& rbm, const Dataset& data, const ExactOptions& options) {
  check_data(rbm, data);
  return kl_divergence(rbm, data, log_partition_exact(rbm, options));
}

namespace {

// Sums of p(state) times the other layer's conditionals, by enumerated unit:
// cross[j][i] = sum over states with unit j on of p * p(other unit i on | state).
struct ExpectationSums {
  std::vector<double> cross, enumerated, other_layer;
  ExpectationSums(int k, int other)
      : cross(static_cast<std::size_t>(k) * other, 0.0), enumerated(k, 0.0), other_layer(other, 0.0) {}
  // Adds one set of totals to every enumerated unit that is on in `bits`.
  void add_to_units(std::uint64_t bits, const double* weighted, double probability, int other) {
    for (; bits != 0; bits &= bits - 1) {
      const int j = std::countr_zero(bits);
      enumerated[j] += probability;
      double* row = cross.data() + static_cast<std::size_t>(j) * other;
      for (int i = 0; i < other; ++i) row[i] += weighted[i];
    }
  }
};

struct ExpectationScratch {
  std::vector<double> field, terms, weighted, chunk_weighted, block_exp, values, probability, mantissa, low_weighted,
      low_probability, block_weighted;
  std::vector<std::int64_t> exponent;
  ExpectationScratch(const Layout& layout, const ProductPlan& product)
      : field(layout.other),
        terms(layout.other),
        weighted(layout.other),
        chunk_weighted(layout.other),
        block_exp(product.stride, 0.0),
        values(std::size_t{1} << product.low_bits),
        probability(values.size()),
        mantissa(values.size()),
        low_weighted(values.size() * product.stride),
        low_probability(values.size()),
        block_weighted(product.stride),
        exponent(values.size()) {}
};

// One chunk by blocks of the product kernel (as chunk_by_products), or false
// when a field may leave the window. The states' conditionals are E / (1 + E)
// with the same E = B T; totals are kept per low subset, per block and per
// chunk, and each is added to the units that are on throughout it.
bool chunk_expectations_by_products(const Layout& layout, const ProductPlan& product, const ChunkPlan& plan,
                                    std::uint64_t base, double linear, double log_z, ExpectationScratch& scratch,
                                    ExpectationSums& acc) {
  double* field = scratch.field.data();
  const int group = product_group(layout, product, field);
  if (group == 0) return false;
  const int g = product.low_bits, states = 1 << g, other = layout.other, stride = product.stride;
  std::fill(scratch.low_weighted.begin(), scratch.low_weighted.end(), 0.0);
  std::fill(scratch.low_probability.begin(), scratch.low_probability.end(), 0.0);
  std::fill(scratch.chunk_weighted.begin(), scratch.chunk_weighted.end(), 0.0);
  double chunk_probability = 0.0;
  std::uint64_t block_bits = 0;  // the Gray-code state of the block units
  const std::uint64_t blocks = plan.chunk_states >> g;
  for (std::uint64_t block = 0; block < blocks; ++block) {
    if (block > 0) block_bits ^= std::uint64_t{1} << block_step(layout, g, block, field, linear);
    detail::exp_array(field, scratch.block_exp.data(), other);
    detail::one_plus_products(scratch.block_exp.data(), product.table.data(), stride, states, group,
                              scratch.mantissa.data(), scratch.exponent.data());
    // log p(state) = value - log Z, then p.
    detail::log_products(scratch.mantissa.data(), scratch.exponent.data(), linear - log_z, product.low_linear.data(),
                         scratch.values.data(), states);
    exp_shifted_into(scratch.values.data(), 0.0, scratch.probability.data(), states);
    std::fill(scratch.block_weighted.begin(), scratch.block_weighted.end(), 0.0);
    detail::add_weighted_conditionals(scratch.block_exp.data(), product.table.data(), stride, states,
                                      scratch.probability.data(), scratch.low_weighted.data(),
                                      scratch.block_weighted.data());
    const double block_probability = sum_of(scratch.probability.data(), states);
    for (int s = 0; s < states; ++s) scratch.low_probability[s] += scratch.probability[s];
    acc.add_to_units(block_bits, scratch.block_weighted.data(), block_probability, other);
    for (int i = 0; i < other; ++i) scratch.chunk_weighted[i] += scratch.block_weighted[i];
    chunk_probability += block_probability;
  }
  for (int s = 1; s < states; ++s)
    acc.add_to_units(static_cast<std::uint64_t>(s), scratch.low_weighted.data() + static_cast<std::size_t>(s) * stride,
                     scratch.low_probability[s], other);
  for (int i = 0; i < other; ++i) acc.other_layer[i] += scratch.chunk_weighted[i];
  acc.add_to_units(base, scratch.chunk_weighted.data(), chunk_probability, other);
  return true;
}

// One chunk state by state, with softplus and sigmoid per unit.
void chunk_expectations_by_softplus(const Layout& layout, const ChunkPlan& plan, std::uint64_t base, double linear,
                                    double log_z, ExpectationScratch& scratch, ExpectationSums& acc) {
  const int other = layout.other;
  double* field = scratch.field.data();
  double* terms = scratch.terms.data();
  double* weighted = scratch.weighted.data();
  std::uint64_t low = 0;  // the Gray-code state of the chunk's low bits
  // Units above the chunk bits are constant over the chunk: their terms
  // are the chunk's totals, added once at its end.
  std::fill(scratch.chunk_weighted.begin(), scratch.chunk_weighted.end(), 0.0);
  double chunk_probability = 0.0;
  for (std::uint64_t t = 0; t < plan.chunk_states; ++t) {
    if (t == 0) {
      detail::softplus_array(field, terms, other);
    } else {
      int unit = 0;
      bool on = false;
      gray_step(t, unit, on);
      low ^= std::uint64_t{1} << unit;
      linear += on ? layout.enumerated_bias[unit] : -layout.enumerated_bias[unit];
      detail::step_softplus_array(field, layout.column(unit), on ? 1.0 : -1.0, terms, other);
    }
    const double spsum = sum_of(terms, other);
    // The state's marginal probability; the other layer's conditionals
    // given the state are exact sigmoids of its fields.
    const double p = std::exp(linear + spsum - log_z);
    sigmoid_into(field, p, weighted, other);
    for (int i = 0; i < other; ++i) scratch.chunk_weighted[i] += weighted[i];
    chunk_probability += p;
    acc.add_to_units(low, weighted, p, other);
  }
  for (int i = 0; i < other; ++i) acc.other_layer[i] += scratch.chunk_weighted[i];
  acc.add_to_units(base, scratch.chunk_weighted.data(), chunk_probability, other);
}

}  // namespace

ModelExpectations model_expectations_exact(const Rbm& rbm, const ExactOptions& options) {
  check_limit(rbm, options);
  const Layout layout = make_layout(rbm, rbm.n_hidden() <= rbm.n_visible());
  const double log_z = log_partition_gray(layout);
  const int k = layout.k, other = layout.other;
  const ChunkPlan plan = plan_chunks(k);
  const ProductPlan product = make_product_plan(layout, plan.chunk_bits);

  // Chunks are grouped into a fixed number of shares, each with its own
  // accumulators, summed in share order: bounded memory and results that do
  // not depend on the thread count.
  const std::int64_t shares = std::min<std::int64_t>(plan.chunks, 64);
  const std::size_t cross_size = static_cast<std::size_t>(k) * other;
  std::vector<ExpectationSums> share_sums(static_cast<std::size_t>(shares), ExpectationSums(0, 0));

#pragma omp parallel if (plan.chunks > 1)
  {
    ExpectationScratch scratch(layout, product);
#pragma omp for schedule(dynamic, 1)
    for (std::int64_t share = 0; share < shares; ++share) {
      ExpectationSums acc(k, other);
      const std::int64_t first_chunk = plan.chunks * share / shares;
      const std::int64_t last_chunk = plan.chunks * (share + 1) / shares;
      for (std::int64_t chunk = first_chunk; chunk < last_chunk; ++chunk) {
        const std::uint64_t base = static_cast<std::uint64_t>(chunk) << plan.chunk_bits;
        double linear = 0.0;
        start_chunk(layout, base, scratch.field.data(), linear);
        if (!product.usable ||
            !chunk_expectations_by_products(layout, product, plan, base, linear, log_z, scratch, acc)) {
          chunk_expectations_by_softplus(layout, plan, base, linear, log_z, scratch, acc);
        }
      }
      share_sums[static_cast<std::size_t>(share)] = std::move(acc);
    }
  }

  std::vector<double> cross(cross_size, 0.0), enumerated(k, 0.0), other_layer(other, 0.0);
  for (const ExpectationSums& acc : share_sums) {
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
