"""Exact log Z of an RBM by brute-force enumeration in plain numpy.

A numpy re-implementation of the algorithm of the paper authors' `exactZ`
(enumerate every state of the smaller layer as a 0/1 matrix, fields by one
matrix product, softplus summed over the other layer, log-sum-exp over the
states), written for this benchmark; it is not their code. States are
enumerated in blocks of 2^16 rows so that memory stays bounded.

usage: exact_z_numpy.py N_VISIBLE N_HIDDEN SEED REPEATS
Draws W, a, b from N(0, 0.5^2) with numpy (not marbm's Philox stream, so log
Z differs from marbm's model of the same seed) and prints, for the fastest of
REPEATS runs: log_z wall_seconds cpu_seconds.
"""
import sys
import time

import numpy as np


def exact_log_z(weights, visible_bias, hidden_bias, block_bits=16):
    n, m = weights.shape
    # Enumerate the smaller layer.
    if m <= n:
        columns, enumerated_bias, other_bias = weights, hidden_bias, visible_bias  # fields: v = s W^T + a
        k = m
        project = lambda states: states @ columns.T + other_bias
    else:
        k = n
        enumerated_bias, other_bias = visible_bias, hidden_bias
        project = lambda states: states @ weights + other_bias
    block = 1 << min(k, block_bits)
    bits = np.arange(k)
    maxima, sums = [], []
    for first in range(0, 1 << k, block):
        index = np.arange(first, first + block, dtype=np.int64)
        states = ((index[:, None] >> bits) & 1).astype(np.float64)
        values = states @ enumerated_bias + np.logaddexp(0.0, project(states)).sum(axis=1)
        top = values.max()
        maxima.append(top)
        sums.append(np.exp(values - top).sum())
    maxima = np.array(maxima)
    top = maxima.max()
    return top + np.log((np.array(sums) * np.exp(maxima - top)).sum())


def main():
    n, m, seed, repeats = (int(x) for x in sys.argv[1:5])
    random = np.random.default_rng(seed)
    weights = 0.5 * random.standard_normal((n, m))
    visible_bias = 0.5 * random.standard_normal(n)
    hidden_bias = 0.5 * random.standard_normal(m)
    best = None
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        log_z = exact_log_z(weights, visible_bias, hidden_bias)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if best is None or wall < best[1]:
            best = (log_z, wall, cpu)
    print(f"{best[0]:.15g} {best[1]:.4f} {best[2]:.4f}")


if __name__ == "__main__":
    main()
