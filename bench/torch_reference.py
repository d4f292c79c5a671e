#!/usr/bin/env python3
"""PyTorch reference for the CUDA engine's benchmarks, timed in the same run.

The same work as bench_cuda_engine:
  - one CD-1 update of a 784 x 500 RBM at batch 128 and 1024 (float32, TF32
    off): p(h|v0), h0 ~ Bernoulli, p(v|h0), v1 ~ Bernoulli, p(h|v1), then
    W += lr (v0^T p0 - v1^T p1) / B and the bias means;
  - 1,000 independent 6 x 6 RBMs trained at once with CD-1 on shifting bars
    6/3 (all 6 patterns per batch, lr 0.2), as batched matrix products (eager,
    and replayed from a CUDA graph for comparison).

Times are CUDA-event times after a warm-up. Prints a table and, with --json,
writes the figures for bench/device-check.sh. Without torch or a device it
says so and exits 0 (the figures are then missing, not invented).

With --cpu THREADS it times instead the CPU engine's benchmark update
(bench_cpu_cd): CD-1 of a 784 x 500 RBM at batch 100 on 1,000 random rows of
density 0.13, in float32 on the CPU with torch.set_num_threads(THREADS),
process CPU and wall time over at least --seconds (bench/cpu-cd.sh).
"""
import argparse
import json
import sys


def shifting_bars(n=6, length=3):
    rows = []
    for start in range(n):
        row = [0] * n
        for k in range(length):
            row[n - 1 - ((start + k) % n)] = 1
        rows.append(row)
    return rows


def time_cuda(torch, fn, repetitions, warmup):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    start = torch.cuda.Event(enable_timing=True)
    stop = torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repetitions):
        fn()
    stop.record()
    stop.synchronize()
    return start.elapsed_time(stop) / 1000.0 / repetitions  # seconds per call


def cd1_benchmark(torch, batch, repetitions=200):
    device = torch.device("cuda")
    gen = torch.Generator(device=device)
    gen.manual_seed(1)
    n, m, lr = 784, 500, 0.01
    W = 0.01 * torch.randn(n, m, device=device, generator=gen)
    a = torch.zeros(n, device=device)
    b = torch.zeros(m, device=device)
    data = (torch.rand(4 * batch, n, device=device, generator=gen) < 0.2).float()
    state = {"t": 0}

    def update():
        t = state["t"]
        state["t"] = t + 1
        v0 = data[(t % 4) * batch:(t % 4 + 1) * batch]
        ph0 = torch.sigmoid(v0 @ W + b)
        h0 = (torch.rand(ph0.shape, device=device, generator=gen) < ph0).float()
        pv1 = torch.sigmoid(h0 @ W.t() + a)
        v1 = (torch.rand(pv1.shape, device=device, generator=gen) < pv1).float()
        ph1 = torch.sigmoid(v1 @ W + b)
        W.add_((v0.t() @ ph0 - v1.t() @ ph1), alpha=lr / batch)
        a.add_(v0.mean(0) - v1.mean(0), alpha=lr)
        b.add_(ph0.mean(0) - ph1.mean(0), alpha=lr)

    seconds = time_cuda(torch, update, repetitions, warmup=20)
    return {"batch": batch, "update_us": seconds * 1e6, "updates_per_s": 1.0 / seconds}


def cd1_cpu_benchmark(torch, threads, seconds, batch=100):
    import time
    torch.set_num_threads(threads)
    gen = torch.Generator()
    gen.manual_seed(1)
    n, m, lr, rows = 784, 500, 0.01, 1000
    W = 0.01 * torch.randn(n, m, generator=gen)
    a = torch.zeros(n)
    b = torch.zeros(m)
    data = (torch.rand(rows, n, generator=gen) < 0.13).float()
    state = {"t": 0}

    def update():
        t = state["t"]
        state["t"] = t + 1
        first = (t * batch) % (rows - batch + 1)
        v0 = data[first:first + batch]
        ph0 = torch.sigmoid(torch.addmm(b, v0, W))
        h0 = (torch.rand(ph0.shape, generator=gen) < ph0).float()
        pv1 = torch.sigmoid(torch.addmm(a, h0, W.t()))
        v1 = (torch.rand(pv1.shape, generator=gen) < pv1).float()
        ph1 = torch.sigmoid(torch.addmm(b, v1, W))
        W.add_(v0.t() @ ph0 - v1.t() @ ph1, alpha=lr / batch)
        a.add_(v0.mean(0) - v1.mean(0), alpha=lr)
        b.add_(ph0.mean(0) - ph1.mean(0), alpha=lr)

    with torch.no_grad():
        for _ in range(20):
            update()
        count = 0
        wall0, cpu0 = time.perf_counter(), time.process_time()
        while True:
            for _ in range(10):
                update()
            count += 10
            wall = time.perf_counter() - wall0
            if wall >= seconds:
                break
        cpu = time.process_time() - cpu0
    return {"threads": threads, "updates": count, "update_ms": wall / count * 1e3,
            "updates_per_s": count / wall, "cpu_ms_per_update": cpu / count * 1e3}


def ensemble_benchmark(torch, members=1000, iterations=2000, graph=False, device="cuda", trained=None):
    """CD-1 on `members` independent 6 x 6 RBMs as one batched program: every
    update is a fixed sequence of batched kernels over all members (torch.bmm /
    baddbmm on E x B x n stacks, one Philox generator for every draw), no
    Python loop over members. With graph=True the update is captured once in
    a CUDA graph and replayed (the same kernels without the per-launch host
    cost); draws then come from the default CUDA generator (seeded the same
    way), which graph capture supports on every torch version. device="cpu"
    runs the same program on the CPU with wall-clock timing: a check that it
    runs, not a reference figure. A dict passed as `trained` receives the
    final W (E x n x m), a (E x 1 x n) and b (E x 1 x m)."""
    import time
    device = torch.device(device)
    gen = torch.Generator(device=device)
    gen.manual_seed(2)
    n = m = 6
    lr = 0.2
    data = torch.tensor(shifting_bars(), dtype=torch.float32, device=device)  # 6 x 6
    v0 = data.unsqueeze(0).expand(members, -1, -1).contiguous()  # E x B x n
    batch = v0.shape[1]
    W = 0.01 * torch.randn(members, n, m, device=device, generator=gen)
    a = 0.01 * torch.randn(members, 1, n, device=device, generator=gen)  # as marbm's Rbm::random
    b = 0.01 * torch.randn(members, 1, m, device=device, generator=gen)
    v0_t = v0.transpose(1, 2)
    v0_mean = v0.mean(1, keepdim=True)
    if graph:
        torch.cuda.manual_seed(2)
        draws = None  # the default generator: capturable
    else:
        draws = gen

    def update():
        ph0 = torch.sigmoid(torch.baddbmm(b, v0, W))
        h0 = torch.bernoulli(ph0, generator=draws)
        pv1 = torch.sigmoid(torch.baddbmm(a, h0, W.transpose(1, 2)))
        v1 = torch.bernoulli(pv1, generator=draws)
        ph1 = torch.sigmoid(torch.baddbmm(b, v1, W))
        W.baddbmm_(v0_t, ph0, alpha=lr / batch)
        W.baddbmm_(v1.transpose(1, 2), ph1, alpha=-lr / batch)
        a.add_(v0_mean - v1.mean(1, keepdim=True), alpha=lr)
        b.add_(ph0.mean(1, keepdim=True) - ph1.mean(1, keepdim=True), alpha=lr)

    with torch.no_grad():
        if device.type == "cpu":
            for _ in range(5):
                update()
            start = time.perf_counter()
            for _ in range(iterations):
                update()
            seconds = (time.perf_counter() - start) / iterations
        elif graph:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):  # warm-up off the capture stream, as capture requires
                for _ in range(3):
                    update()
            torch.cuda.current_stream().wait_stream(side)
            captured = torch.cuda.CUDAGraph()
            with torch.cuda.graph(captured):
                update()
            seconds = time_cuda(torch, captured.replay, iterations, warmup=50)
        else:
            seconds = time_cuda(torch, update, iterations, warmup=50)
    if trained is not None:
        trained.update(W=W, a=a, b=b)
    return {"members": members, "iterations": iterations, "update_us": seconds * 1e6,
            "updates_per_s_per_rbm": 1.0 / seconds, "updates_per_s_total": members / seconds,
            "graph": graph, "device": str(device)}


def ensemble_graph_benchmark(torch, iterations):
    """ensemble_benchmark(graph=True), or why it could not run (the eager
    figure stands either way)."""
    try:
        return ensemble_benchmark(torch, iterations=iterations, graph=True)
    except Exception as error:  # capture unsupported by this torch/driver: say so
        return {"available": False, "reason": f"{type(error).__name__}: {error}".splitlines()[0]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--cpu", type=int, metavar="THREADS",
                        help="time the CPU CD-1 update (784 x 500, batch 100) on THREADS threads instead")
    parser.add_argument("--seconds", type=float, default=3.0, help="with --cpu: time at least this long")
    args = parser.parse_args()
    if args.cpu is not None:
        return cpu_main(args)
    result = {"available": False}
    try:
        import torch
    except ImportError as error:
        result["reason"] = f"torch not importable: {error}"
        torch = None
    if torch is not None and not torch.cuda.is_available():
        result["reason"] = "torch sees no CUDA device"
        torch = None
    if torch is not None:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        repetitions = 50 if args.quick else 200
        result = {
            "available": True,
            "torch": torch.__version__,
            "device": torch.cuda.get_device_name(0),
            "cd1": [cd1_benchmark(torch, batch, repetitions) for batch in (128, 1024)],
            "ensemble": ensemble_benchmark(torch, iterations=500 if args.quick else 2000),
            "ensemble_graph": ensemble_graph_benchmark(torch, iterations=500 if args.quick else 2000),
        }
        print(f"PyTorch {result['torch']} on {result['device']} (float32, TF32 off, eager)")
        print(f"{'work':<34}{'time per update':>18}{'updates/s':>16}")
        for row in result["cd1"]:
            print(f"{'CD-1 784x500 batch ' + str(row['batch']):<34}{row['update_us']:>15.1f} us{row['updates_per_s']:>16.0f}")
        e = result["ensemble"]
        print(f"{'ensemble 1,000 x 6x6 CD-1':<34}{e['update_us']:>15.1f} us{e['updates_per_s_per_rbm']:>16.0f} per RBM")
        g = result["ensemble_graph"]
        if "update_us" in g:
            print(f"{'  the same, CUDA graph replay':<34}{g['update_us']:>15.1f} us{g['updates_per_s_per_rbm']:>16.0f} per RBM")
        else:
            print(f"  the same as a CUDA graph: not run ({g['reason']})")
    else:
        print(f"torch_reference: skipped ({result['reason']})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


def cpu_main(args):
    try:
        import torch
    except ImportError as error:
        print(f"torch_reference: skipped (torch not importable: {error})")
        result = {"available": False, "reason": f"torch not importable: {error}"}
    else:
        row = cd1_cpu_benchmark(torch, args.cpu, args.seconds)
        result = {"available": True, "torch": torch.__version__, "mkldnn": torch.backends.mkldnn.is_available(),
                  "blas": torch.__config__.show().count("BLAS_INFO=mkl") and "mkl" or "other", "cd1_cpu": row}
        print(f"PyTorch {torch.__version__} CPU, {row['threads']} thread(s): CD-1 784x500 batch 100 "
              f"{row['update_ms']:.3f} ms per update, {row['updates_per_s']:.1f} updates/s, "
              f"{row['cpu_ms_per_update']:.3f} CPU ms per update")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
