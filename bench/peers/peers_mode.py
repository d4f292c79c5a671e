#!/usr/bin/env python3
"""TTS99 of peer ground-state solvers on the instances `bench_mode
--write-instances=DIR` wrote (safetensors with weights [n, m], visible_bias,
hidden_bias and the exact ground energy in the metadata).

Peers, one thread each: dwave-samplers' SimulatedAnnealingSampler (C++ core)
and the simulated-bifurcation package (PyTorch, CPU, ballistic and discrete).
Each runs over a grid of sweeps / steps; every line is one setting, so the
driver can take each peer's best. Times are process CPU seconds, as in
bench_mode --tts. Output lines match bench_mode --tts:

    TTS <solver> <size> <steps> <replicas> <p_replica> <t_run_s> <tts99_s> <solved>/<count>

Usage: peers_mode.py DIR [--sizes 8,16,24] [--solvers dwave-sa,sb-ballistic,sb-discrete]
"""
import argparse
import glob
import math
import os
import re
import sys
import time

# One thread everywhere, before numpy and torch start their pools.
for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[variable] = "1"

import numpy as np  # noqa: E402
from safetensors import safe_open  # noqa: E402


def load(path):
    with safe_open(path, framework="numpy") as f:
        weights = f.get_tensor("weights").astype(np.float64)
        visible_bias = f.get_tensor("visible_bias").astype(np.float64)
        hidden_bias = f.get_tensor("hidden_bias").astype(np.float64)
        ground = float(f.metadata()["ground_energy"])
    return weights, visible_bias, hidden_bias, ground


def energies(states, weights, visible_bias, hidden_bias):
    """E(v, h) = -a.v - b.h - v^T W h in float64 for rows x = [v, h]."""
    n = weights.shape[0]
    v = states[:, :n].astype(np.float64)
    h = states[:, n:].astype(np.float64)
    return -(v @ visible_bias) - (h @ hidden_bias) - np.einsum("ri,ij,rj->r", v, weights, h)


def tts99(p, t_run):
    if p <= 0.0:
        return math.inf
    if p >= 1.0:
        return t_run
    return t_run * math.log(0.01) / math.log1p(-p)


def reached(energy, ground):
    return energy <= ground + 1e-9 * max(1.0, abs(ground))


def run_dwave(instance, sweeps, reads, seed):
    import dimod
    from dwave.samplers import SimulatedAnnealingSampler

    weights, a, b, _ = instance
    n, m = weights.shape
    linear = {i: -a[i] for i in range(n)}
    linear.update({n + j: -b[j] for j in range(m)})
    quadratic = {(i, n + j): -weights[i, j] for i in range(n) for j in range(m)}
    bqm = dimod.BinaryQuadraticModel(linear, quadratic, 0.0, dimod.BINARY)
    sampler = SimulatedAnnealingSampler()
    start = time.process_time()
    result = sampler.sample(bqm, num_reads=reads, num_sweeps=sweeps, seed=seed)
    seconds = time.process_time() - start
    states = result.record.sample[:, [result.variables.index(k) for k in range(n + m)]]
    return states, seconds


def run_sb(instance, steps, agents, mode):
    import torch
    import simulated_bifurcation as sb

    torch.set_num_threads(1)
    weights, a, b, _ = instance
    n, m = weights.shape
    quadratic = np.zeros((n + m, n + m))
    quadratic[:n, n:] = -weights
    linear = -np.concatenate([a, b])
    q = torch.tensor(quadratic, dtype=torch.float32)
    l = torch.tensor(linear, dtype=torch.float32)
    start = time.process_time()
    states, _ = sb.minimize(q, l, domain="binary", agents=agents, max_steps=steps, best_only=False, mode=mode,
                            early_stopping=False, verbose=False)
    seconds = time.process_time() - start
    return states.numpy().reshape(agents, n + m), seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder")
    parser.add_argument("--sizes", default="")
    parser.add_argument("--solvers", default="dwave-sa,sb-ballistic,sb-discrete")
    args = parser.parse_args()

    by_size = {}
    for path in sorted(glob.glob(os.path.join(args.folder, "n*_k*.safetensors"))):
        match = re.search(r"n(\d+)_k(\d+)\.safetensors$", path)
        by_size.setdefault(int(match.group(1)), []).append(path)
    if not by_size:
        sys.exit(f"peers_mode.py: {args.folder}: no instances (run bench_mode --write-instances={args.folder})")
    sizes = [int(s) for s in args.sizes.split(",") if s] or sorted(by_size)

    grids = {
        # Many reads per call so that the Python overhead of a call is spread
        # thin (the peer's best case); agents as the package's default.
        "dwave-sa": ([3, 5, 10, 30, 100, 300, 1000], 256),
        "sb-ballistic": ([20, 50, 100, 300, 1000], 128),
        "sb-discrete": ([20, 50, 100, 300, 1000], 128),
    }
    print("# TTS\tsolver\tsize\tsteps\treplicas\tp_replica\tt_run_s\ttts99_s\tinstances_solved", flush=True)
    for size in sizes:
        instances = [load(path) for path in by_size.get(size, [])]
        for solver in args.solvers.split(","):
            steps_list, replicas = grids[solver]
            for steps in steps_list:
                seconds = 0.0
                hits = 0
                solved = 0
                for k, instance in enumerate(instances):
                    if solver == "dwave-sa":
                        states, t = run_dwave(instance, steps, replicas, seed=k + 1)
                    else:
                        states, t = run_sb(instance, steps, replicas, solver.split("-")[1])
                    seconds += t
                    found = energies(states, *instance[:3])
                    ground = instance[3]
                    # The exact ground energy is a lower bound: a lower value
                    # would mean a broken oracle or reader.
                    assert found.min() >= ground - 1e-6 * max(1.0, abs(ground)), (solver, size, k)
                    count = sum(1 for e in found if reached(e, ground))
                    hits += count
                    solved += count > 0
                total = replicas * len(instances)
                p = hits / total
                t_run = seconds / total
                print(f"TTS\tpeer-{solver}\t{size}\t{steps}\t{replicas}\t{p:.4f}\t{t_run:.3e}\t{tts99(p, t_run):.3e}\t"
                      f"{solved}/{len(instances)}", flush=True)


if __name__ == "__main__":
    main()
