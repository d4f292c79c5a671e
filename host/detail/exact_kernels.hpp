// The inner loops of exact enumeration (host/exact_kernels.cpp). Internal;
// not part of the public API, declared here so that tests can check them
// against long double references.
//
// The sum over the other layer, sum_i softplus(x_i), is computed as the log
// of a product: sum_i log(1 + e^{x_i}) = log prod_i (1 + e^{x_i}). States are
// enumerated in blocks of 2^g that share the enumerated units above the
// lowest g: the block's fields x_i give B_i = e^{x_i} once per block, and a
// table holds T_si = e^{sum of the low units' weights in subset s}, so each
// state's factors are 1 + B_i T_si: two multiplies and an add per unit and no
// exp or log per unit. Nothing is updated multiplicatively from state to
// state, so rounding does not accumulate: every factor is within a few ulp.
// The products are renormalised (exponent bits moved into an integer) often
// enough that they never overflow, and one log per state finishes the sum.
#pragma once

#include <cstdint>

namespace marbm::detail {

/// Lanes of the product kernel: the other layer is padded to a multiple of
/// this with B = T = 0 (factor exactly 1).
inline constexpr int product_lanes = 8;

/// out[i] = exp(x[i]) for |x[i]| <= 708 (a few ulp; 2^k from the exponent
/// bits, so nothing beyond that range).
void exp_array(const double* x, double* out, int count);

/// out[i] = softplus(x[i]) within 2 ulp for any x (0 where softplus is
/// below the smallest normal double).
void softplus_array(const double* x, double* out, int count);

/// For each state s < states: the product over i < stride of
/// (1 + base[i] * table[s * stride + i]) as mantissa[s] * 2^exponent[s].
/// stride is a multiple of product_lanes; every factor must be finite and at
/// most 2^(1020 / group_vectors - 1) so that `group_vectors` factors per lane
/// cannot overflow between renormalisations (group_vectors >= 1).
void one_plus_products(const double* base, const double* table, int stride, int states, int group_vectors,
                       double* mantissa, std::int64_t* exponent);

/// out[s] = offset + addend[s] + log(mantissa[s]) + exponent[s] * ln 2 for
/// positive normal mantissas (the states' values from one_plus_products).
void log_products(const double* mantissa, const std::int64_t* exponent, double offset, const double* addend,
                  double* out, int count);

/// For the block's states s < states, with E_si = base[i] * table[s * stride + i]
/// and the other layer's conditional p(unit i on | state s) = E_si / (1 + E_si):
/// adds probability[s] * E_si / (1 + E_si) to weighted[s * stride + i] and to
/// block_weighted[i], for i < stride (padded entries add 0).
void add_weighted_conditionals(const double* base, const double* table, int stride, int states,
                               const double* probability, double* weighted, double* block_weighted);

/// field[i] += sign * column[i] (sign +1 or -1, exact negation).
void add_signed(double* field, const double* column, double sign, int count);

/// Adds sign * column to the fields and writes the softplus of the new fields.
void step_softplus_array(double* field, const double* column, double sign, double* out, int count);

}  // namespace marbm::detail
