#!/usr/bin/env python3
"""Runs the `simulated-bifurcation` package (PyTorch) on an RBM ground-state
problem read from a marbm model file, and reports the best energy and the time.

The model file is safetensors with tensors `weights` [n, m], `visible_bias` [n]
and `hidden_bias` [m] (float32 or float64). The problem is

    minimise E(v, h) = -a.v - b.h - v^T W h   over v in {0,1}^n, h in {0,1}^m,

given to the package as a binary quadratic form x^T Q x + l.x over x = [v, h]
with Q = [[0, -W], [0, 0]] and l = [-a, -b]. The energy reported is recomputed
in float64 with numpy from the returned state, the same definition marbm uses,
so the two can be compared directly.

Usage (the instance comes from bench_cuda_mode with MARBM_BENCH_INSTANCE set):

    python bench/peers/sb_gpu_peer.py instance.safetensors --device cuda \
        [--agents 128] [--max-steps 10000] [--ballistic] [--heated] [--repeats 3]

Prints one JSON object: best energy, median and per-run seconds, settings and
the package version.
"""

import argparse
import inspect
import json
import statistics
import struct
import sys
import time

import numpy as np


def read_model(path):
    """Returns (W, a, b) as float64 arrays; safetensors if installed, else a
    minimal reader of the format (8-byte header length, JSON header, data)."""
    try:
        from safetensors.numpy import load_file

        tensors = load_file(path)
    except ImportError:
        tensors = {}
        with open(path, "rb") as handle:
            (header_length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(header_length))
            data = handle.read()
        dtypes = {"F32": np.float32, "F64": np.float64}
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            begin, end = entry["data_offsets"]
            array = np.frombuffer(data[begin:end], dtype=dtypes[entry["dtype"]])
            tensors[name] = array.reshape(entry["shape"])
    for name in ("weights", "visible_bias", "hidden_bias"):
        if name not in tensors:
            sys.exit(f"{path}: no tensor named '{name}'")
    weights = np.asarray(tensors["weights"], dtype=np.float64)
    visible_bias = np.asarray(tensors["visible_bias"], dtype=np.float64)
    hidden_bias = np.asarray(tensors["hidden_bias"], dtype=np.float64)
    n, m = weights.shape
    if visible_bias.shape != (n,) or hidden_bias.shape != (m,):
        sys.exit(f"{path}: bias shapes {visible_bias.shape}, {hidden_bias.shape} do not match weights {weights.shape}")
    return weights, visible_bias, hidden_bias


def energy(weights, visible_bias, hidden_bias, v, h):
    return float(-visible_bias @ v - hidden_bias @ h - v @ weights @ h)


def minimize_call(sb, torch, matrix, vector, args):
    """Calls sb.minimize with the keyword names of the installed version
    (`domain` since 1.2, `input_type` before)."""
    parameters = inspect.signature(sb.minimize).parameters
    options = {
        "agents": args.agents,
        "max_steps": args.max_steps,
        "ballistic": args.ballistic,
        "verbose": False,
        "device": args.device,
        "dtype": torch.float32,
    }
    if "domain" in parameters:
        options["domain"] = "binary"
    else:
        options["input_type"] = "binary"
    if "heated" in parameters:
        options["heated"] = args.heated
    elif "heat" in parameters:
        options["heat"] = args.heated
    if "best_only" in parameters:
        options["best_only"] = True
    options = {key: value for key, value in options.items() if key in parameters}
    return sb.minimize(matrix, vector, 0.0, **options)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="marbm model file (safetensors)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--agents", type=int, default=128)
    parser.add_argument("--max-steps", type=int, default=10000)
    parser.add_argument("--ballistic", action="store_true", help="bSB (default dSB)")
    parser.add_argument("--heated", action="store_true")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after one warm-up run")
    args = parser.parse_args()

    import torch
    import simulated_bifurcation as sb

    weights, visible_bias, hidden_bias = read_model(args.model)
    n, m = weights.shape
    size = n + m
    quadratic = np.zeros((size, size), dtype=np.float32)
    quadratic[:n, n:] = -weights
    linear = np.concatenate([-visible_bias, -hidden_bias]).astype(np.float32)
    matrix = torch.tensor(quadratic, device=args.device)
    vector = torch.tensor(linear, device=args.device)

    def synchronize():
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    minimize_call(sb, torch, matrix, vector, args)  # warm-up: kernels, allocator
    synchronize()
    seconds, energies = [], []
    for _ in range(args.repeats):
        synchronize()
        start = time.perf_counter()
        best_vector, _ = minimize_call(sb, torch, matrix, vector, args)
        synchronize()
        seconds.append(time.perf_counter() - start)
        state = best_vector.detach().to("cpu").double().numpy().reshape(-1)
        energies.append(energy(weights, visible_bias, hidden_bias, state[:n], state[n:]))

    print(
        json.dumps(
            {
                "peer": "simulated-bifurcation",
                "version": getattr(sb, "__version__", "unknown"),
                "torch": torch.__version__,
                "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else args.device,
                "model": args.model,
                "n_visible": int(n),
                "n_hidden": int(m),
                "agents": args.agents,
                "max_steps": args.max_steps,
                "ballistic": args.ballistic,
                "heated": args.heated,
                "best_energy": min(energies),
                "energies": energies,
                "seconds_median": statistics.median(seconds),
                "seconds": seconds,
            }
        )
    )


if __name__ == "__main__":
    main()
