#!/usr/bin/env bash
# The device check: on a machine with an NVIDIA GPU (sm_90: H100/H200),
# configure with the sm90 preset, build the CLI, the GPU tests and the GPU
# benchmarks, run every `gpu`-labelled test with MARBM_REQUIRE_GPU=1 (a test
# that finds no usable device fails instead of skipping), the GPU benchmarks,
# the PyTorch reference and, when installed, the simulated-bifurcation peer,
# and end with one table: the test counts and every benchmark figure beside
# its target, met or not. Runs offline (no package registry is used), with
# a 450 s budget, build included (each part, each benchmark too, has its
# own time limit; MARBM_CHECK_SECONDS overrides the 450 s overall budget).
#
# usage: bench/device-check.sh [JOBS]
# Output: bench/results/device-check-<UTC date and time>.md (and a copy under
# $OUT when that is set), the raw logs and benchmark JSON beside it.
# Exit status: 0 only when the build succeeded, every GPU test passed with
# none skipped, and the NCCL check passed (one rank; two with two GPUs).
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
jobs="${1:-$(nproc)}"
stamp="$(date -u +%Y-%m-%d-%H%M)"
results="$root/bench/results"
mkdir -p "$results"
report="$results/device-check-$stamp.md"
raw="$results/device-check-$stamp"
build="$root/build-sm90"
started=$SECONDS

# Everything below also goes to the report.
exec > >(tee "$report") 2>&1

section() { printf '\n## %s (t = %ds)\n\n' "$1" $((SECONDS - started)); }
# Time limit for a part: its own limit, cut to what is left of the overall
# budget (the summary needs a few seconds), at least 5 s.
budget() {
  local left=$((${MARBM_CHECK_SECONDS:-450} - (SECONDS - started)))
  ((left < 5)) && left=5
  echo $(($1 < left ? $1 : left))
}

commit="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
dirty="$(git -C "$root" status --porcelain 2>/dev/null | grep -qv '^??' && echo " (with uncommitted changes)")"
device="$(nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total --format=csv,noheader 2>/dev/null | head -1)"
echo "# marbm device check"
echo
echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "- commit: $commit$dirty"
echo "- device (nvidia-smi: name, driver, compute capability, memory): ${device:-none found by nvidia-smi}"
echo "- host: $(nproc) cores"

section "configure and build (preset sm90)"
status_build=0
cd "$root" || exit 1
timeout "$(budget 60)" cmake --preset sm90 >/dev/null || status_build=$?
gpu_benches=()
for source in "$root"/bench/bench_cuda_*.cu; do
  [[ -e "$source" ]] && gpu_benches+=("$(basename "$source" .cu)")
done
if [[ $status_build -eq 0 ]]; then
  timeout "$(budget 240)" cmake --build "$build" -j "$jobs" --target marbm_cli marbm_gpu_tests "${gpu_benches[@]}" 2>&1 | tail -5
  status_build=${PIPESTATUS[0]}
fi
echo "build status: $status_build"

section "CUDA runtime, driver and device (marbm info)"
if [[ -x "$build/marbm" ]]; then
  "$build/marbm" info
  "$build/marbm" info --json >"$raw-info.json" 2>/dev/null
else
  echo "marbm: not built"
fi

section "gpu tests (ctest -L gpu, MARBM_REQUIRE_GPU=1)"
export MARBM_REQUIRE_GPU=1
status_tests=1
if [[ $status_build -eq 0 ]]; then
  timeout "$(budget 200)" ctest --test-dir "$build" -L gpu --output-on-failure -j 1 --timeout 120 >"$raw-ctest.log" 2>&1
  status_tests=$?
  tail -40 "$raw-ctest.log"
  skipped="$(grep -Ec '\*\*\*Skipped' "$raw-ctest.log" || true)"
  if [[ ${skipped:-0} -gt 0 ]]; then
    echo "skipped tests: $skipped (the device check requires none)"
    status_tests=1
  fi
fi
echo "test status: $status_tests"

# NCCL between GPU ranks. On one GPU only one rank can run (NCCL refuses two
# ranks on one device), so the check is `mpiexec -n 1 marbm train --backend
# cuda` (NCCL set up, the all-reduce of one rank) against the plain CUDA
# engine's run: the same tensor bytes. With 2 or more GPUs the two-rank test
# runs too. A failure here fails the check.
section "NCCL: mpiexec -n 1 marbm train --backend cuda against the plain engine"
status_nccl=0
nccl_version="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("nccl_version") or "")' "$raw-info.json" 2>/dev/null)"
if [[ -z "$nccl_version" ]]; then
  echo "not run: this build has no usable NCCL (marbm info)"
  echo "not run (no NCCL)" >"$raw-nccl.txt"
  status_nccl=1
elif ! command -v mpiexec >/dev/null; then
  echo "not run: no mpiexec on this machine"
  echo "not run (no mpiexec)" >"$raw-nccl.txt"
else
  nccl_args=(train --data bars-and-stripes:4 --hidden 40 --method pcd --chains 50 --batch 30 --iters 300 --seed 3
             --lr 0.05 --momentum 0.5 --backend cuda --json)
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  timeout "$(budget 60)" mpiexec -n 1 "$build/marbm" "${nccl_args[@]}" --out "$raw-nccl-1.safetensors" \
    >"$raw-nccl.log" 2>&1 || status_nccl=$?
  timeout "$(budget 60)" "$build/marbm" "${nccl_args[@]}" --out "$raw-plain.safetensors" >>"$raw-nccl.log" 2>&1 ||
    status_nccl=$?
  tail -5 "$raw-nccl.log"
  if [[ $status_nccl -eq 0 ]]; then
    python3 - "$raw-nccl-1.safetensors" "$raw-plain.safetensors" <<'PY' || status_nccl=1
import struct, sys
def tensors(path):
    data = open(path, "rb").read()
    (length,) = struct.unpack("<Q", data[:8])
    return data[8 + length:]
same = tensors(sys.argv[1]) == tensors(sys.argv[2])
print("NCCL, 1 rank, equals the plain CUDA engine bit for bit:", same)
sys.exit(0 if same else 1)
PY
  fi
  devices_found="$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["devices"]))' "$raw-info.json" 2>/dev/null || echo 0)"
  if [[ ${devices_found:-0} -ge 2 && $status_nccl -eq 0 ]]; then
    timeout "$(budget 240)" cmake --build "$build" -j "$jobs" --target marbm_mpi_tests 2>&1 | tail -2
    timeout "$(budget 120)" ctest --test-dir "$build" -R distributed_nccl_2_gpu_ranks --output-on-failure 2>&1 | tail -15
    [[ ${PIPESTATUS[0]} -eq 0 ]] || status_nccl=1
  else
    echo "2 GPU ranks: not run (${devices_found:-0} device(s); NCCL needs one GPU per rank)"
  fi
  [[ $status_nccl -eq 0 ]] && echo "passed (NCCL $nccl_version)" >"$raw-nccl.txt" || echo "FAILED" >"$raw-nccl.txt"
fi
echo "nccl status: $status_nccl"

section "gpu benchmarks"
# One process per benchmark, each with its own JSON file and time limit: a
# benchmark that hangs, crashes or runs out of time costs its own figure
# only (one process per tool would lose the whole tool's JSON).
for bench in "${gpu_benches[@]}"; do
  exe="$build/bench/$bench"
  if [[ ! -x "$exe" ]]; then
    echo "$bench: not built"
    continue
  fi
  mapfile -t names < <(timeout 30 "$exe" --benchmark_list_tests=true 2>/dev/null)
  echo "$bench: ${#names[@]} benchmarks"
  index=0
  for name in "${names[@]}"; do
    index=$((index + 1))
    pattern="^$(printf '%s' "$name" | sed 's/[][\.*^$+?(){}|]/\\&/g')\$"
    # bench_cuda_mode also writes its 784x500 instance for the peer below.
    MARBM_BENCH_INSTANCE="$raw-instance.safetensors" timeout "$(budget 60)" "$exe" --benchmark_filter="$pattern" \
      --benchmark_counters_tabular=true --benchmark_out="$raw-$bench-$index.json" --benchmark_out_format=json \
      >"$raw-$bench-$index.log" 2>&1
    status=$?
    grep -E "^BM_" "$raw-$bench-$index.log" | tail -2
    [[ $status -eq 0 ]] || echo "$name: exit status $status (log: $(basename "$raw-$bench-$index.log"))"
  done
done

section "PyTorch reference"
timeout "$(budget 60)" python3 "$root/bench/torch_reference.py" --json "$raw-torch.json" 2>&1 | tail -10

section "simulated-bifurcation peer on the 784x500 instance"
if [[ -f "$raw-instance.safetensors" ]] && python3 -c "import simulated_bifurcation" 2>/dev/null; then
  timeout "$(budget 60)" python3 "$root/bench/peers/sb_gpu_peer.py" "$raw-instance.safetensors" --device cuda \
    --repeats 1 >"$raw-peer.json" 2>"$raw-peer.log"
  cat "$raw-peer.json"
else
  echo "not run: the instance file or the simulated_bifurcation package is missing (the machine is offline)"
fi

section "summary"
python3 - "$raw" "$commit" "${device:-unknown}" "$status_build" <<'PY'
import glob, json, re, sys
raw, commit, device, status_build = sys.argv[1:5]

def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None

def benchmarks(name):
    # One JSON file per benchmark run (see "gpu benchmarks" above).
    found = {}
    for path in sorted(glob.glob(f"{glob.escape(raw)}-{name}-*.json")):
        for b in (load(path) or {}).get("benchmarks", []):
            if "error_message" not in b:
                found[b["name"]] = b
    return found

def find(bench, prefix):
    return next((b for name, b in bench.items() if name.startswith(prefix)), None)

def fmt(x, digits=3, suffix=""):
    return "n/a" if x is None else f"{x:.{digits}g}{suffix}"

def met(value):
    return "n/a (not measured)" if value is None else ("yes" if value else "NO")

rows = []  # (figure, marbm, beside it, target, met)

# Tests.
log = ""
try:
    with open(f"{raw}-ctest.log") as f:
        log = f.read()
except OSError:
    pass
summary = re.search(r"(\d+)% tests passed, (\d+) tests failed out of (\d+)", log)
skipped = len(re.findall(r"\*\*\*Skipped", log))
if summary:
    failed, total = int(summary.group(2)), int(summary.group(3))
    passed = total - failed - skipped
    rows.append(("gpu tests, MARBM_REQUIRE_GPU=1", f"{passed} passed, {failed} failed, {skipped} skipped of {total}",
                 "", "all pass, none skipped", met(failed == 0 and skipped == 0 and total > 0)))
else:
    rows.append(("gpu tests, MARBM_REQUIRE_GPU=1", "not run" if status_build == "0" else "build failed", "",
                 "all pass, none skipped", "NO"))

# CUDA engine: CD-1 784x500 against the GEMM-only floor and PyTorch.
engine = benchmarks("bench_cuda_engine")
torch = load(f"{raw}-torch.json") or {}
torch_ok = bool(torch.get("available"))
torch_cd = {r["batch"]: r for r in torch.get("cd1", [])} if torch_ok else {}
for batch in (128, 1024):
    b = find(engine, f"BM_CudaCd1Update/{batch}/")
    ours = b.get("updates_per_s") if b else None
    ratio = b.get("gemm_ratio") if b else None
    peer = torch_cd.get(batch, {}).get("updates_per_s")
    speedup = ours / peer if ours and peer else None
    detail = f"{fmt(ratio, suffix='x')} GEMM-only; torch {fmt(peer)} ({fmt(speedup, suffix='x')})"
    if batch == 1024:
        ok = None if ratio is None or speedup is None else (ratio <= 1.2 and speedup >= 1.5)
        target = "<= 1.2x GEMM-only time, >= 1.5x torch"
        direct = find(engine, f"BM_CudaCd1UpdateDirect/{batch}/")
        detail += f"; MARBM_CUDA_GRAPH=0 {fmt(direct.get('updates_per_s') if direct else None)}"
    else:
        ok = None if speedup is None else speedup >= 1.5
        target = ">= 1.5x torch"
    rows.append((f"CD-1 784x500 batch {batch} (updates/s)", fmt(ours), detail, target, met(ok)))
# Ensemble: 2,000 updates (the torch side's count), the launch rule's kernel;
# beside it the 20,000-update run (set-up amortised), the block kernel forced,
# and torch replaying the update as a CUDA graph (launch overhead removed).
def per_rbm(b):
    return b.get("updates_per_s_per_rbm") if b else None
ours = per_rbm(find(engine, "BM_CudaEnsemble6x6/2000/"))
peer = torch.get("ensemble", {}).get("updates_per_s_per_rbm") if torch_ok else None
graph = torch.get("ensemble_graph", {}).get("updates_per_s_per_rbm") if torch_ok else None
speedup = ours / peer if ours and peer else None
rows.append(("ensemble 1,000 x 6x6 CD-1 (updates/s per RBM)", fmt(ours),
             f"torch {fmt(peer)} ({fmt(speedup, suffix='x')}); torch graph {fmt(graph)}; "
             f"20,000 updates {fmt(per_rbm(find(engine, 'BM_CudaEnsemble6x6/20000/')))}; "
             f"block kernel {fmt(per_rbm(find(engine, 'BM_CudaEnsemble6x6BlockKernel/2000/')))}",
             ">= 20x torch", met(None if speedup is None else speedup >= 20)))
def exact_seconds(n, m, legacy):
    b = find(engine, f"BM_CudaExactLogZ/{n}/{m}/{legacy}/")
    return (b.get("real_time") / 1e3 if b and b.get("time_unit") == "ms" else None), b
seconds, b = exact_seconds(64, 30, 0)
previous, _ = exact_seconds(64, 30, 1)
rows.append(("exact log Z 64x30, 2^30 states (s)", fmt(seconds),
             f"{fmt(b.get('states_per_s') if b else None)} states/s; previous kernels {fmt(previous)} s",
             "< 2 s", met(None if seconds is None else seconds < 2.0)))
for n, m, label in ((33, 30, "33x30, 2^30 states, 33 of 64 slots (s)"), (784, 20, "784x20, 2^20 states, wide layer (s)")):
    seconds, b = exact_seconds(n, m, 0)
    previous, _ = exact_seconds(n, m, 1)
    rows.append((f"exact log Z {label}", fmt(seconds), f"previous kernels {fmt(previous)} s",
                 "< previous kernels", met(None if seconds is None or previous is None else seconds < previous)))

# AIS, the published protocol on 784x500: under 2 s with the reverse runs
# (marbm eval's default), beside the CPU figure (bench/results/ais-cpu.md).
ais = benchmarks("bench_cuda_ais")
for reverse, label, cpu_seconds in ((1, "forward + reverse (eval's default)", 106.0), (0, "forward only", 45.8)):
    b = find(ais, f"BM_CudaAis_784x500/14500/{reverse}/")
    seconds = b.get("seconds") if b else None
    rows.append((f"AIS 784x500, M 100, 14,500 betas, {label} (s)", fmt(seconds),
                 f"{fmt(b.get('transitions_per_s') if b else None)} transitions/s; CPU {cpu_seconds} s on 2 shared cores",
                 "< 2 s" if reverse else "", met(None if seconds is None else seconds < 2.0) if reverse else ""))

# Ground-state search: TTS99 at 24 + 24 against the best CPU figure
# (bench/results/mode-tts-cpu.md, one thread), and 784x500 at 2000 steps.
mode = benchmarks("bench_cuda_mode")
labels = {0: "sb discrete", 1: "sb ballistic", 2: "sa"}
cpu_best_ms = 0.0101
for solver, label in labels.items():
    b = find(mode, f"BM_DeviceModeTts99/{solver}/24/")
    tts = b.get("tts99_ms") if b else None
    rows.append((f"mode {label} 24+24 TTS99 (ms)", fmt(tts), f"p_replica {fmt(b.get('p_replica') if b else None)}",
                 f"< {cpu_best_ms} ms (CPU best, 1 thread)", met(None if tts is None else tts < cpu_best_ms)))
peer = load(f"{raw}-peer.json")
peer_energy = peer.get("best_energy") if isinstance(peer, dict) else None
peer_seconds = peer.get("seconds_median") if isinstance(peer, dict) else None
for solver, label in labels.items():
    b = find(mode, f"BM_DeviceModeLarge/{solver}/2000/")
    ms = b.get("real_time") if b and b.get("time_unit") == "ms" else None
    energy = b.get("best_energy") if b else None
    ok = None
    if energy is not None and peer_energy is not None and peer_seconds and ms is not None:
        ok = energy <= peer_energy + 1e-6 * abs(peer_energy) and ms / 1e3 <= peer_seconds / 10
    rows.append((f"mode {label} 784x500, 2000 steps (ms)", fmt(ms),
                 f"GEMM floor {fmt(b.get('gemm_floor_ms') if b else None)} ms; energy {fmt(energy, 8)}; "
                 f"peer {fmt(peer_energy, 8)} in {fmt(peer_seconds)} s",
                 "peer's energy or lower in 1/10 of its time", met(ok)))

# 200x200, 4,224 replicas, 1,000 steps: the fused kernels with W shared in
# opted-in shared memory against the legacy kernels (the cuBLAS path there).
for solver, label in labels.items():
    current = find(mode, f"BM_DeviceModeShared200/{solver}/0/")
    legacy = find(mode, f"BM_DeviceModeShared200/{solver}/1/")
    ms = current.get("real_time") if current and current.get("time_unit") == "ms" else None
    legacy_ms = legacy.get("real_time") if legacy and legacy.get("time_unit") == "ms" else None
    rows.append((f"mode {label} 200x200 shared-W fused, 4224 replicas x 1000 steps (ms)", fmt(ms),
                 f"legacy {fmt(legacy_ms)} ms; energy {fmt(current.get('best_energy') if current else None, 8)} "
                 f"(legacy {fmt(legacy.get('best_energy') if legacy else None, 8)})",
                 "faster than legacy", met(None if ms is None or legacy_ms is None else ms < legacy_ms)))

# Exhaustive search: one state per thread against the old one state per warp
# (enumeration kernel alone); a mode step's E_bar on the device against a host
# copy of the 784x500 model.
for k, l in ((32, 64), (20, 20)):
    new = find(mode, f"BM_DeviceExhaustive/0/{k}/{l}/")
    old = find(mode, f"BM_DeviceExhaustive/1/{k}/{l}/")
    ms_new = new.get("real_time") if new and new.get("time_unit") == "ms" else None
    ms_old = old.get("real_time") if old and old.get("time_unit") == "ms" else None
    speedup = ms_old / ms_new if ms_new and ms_old else None
    rows.append((f"mode exhaustive {k}x{l}, 2^{k} states (ms)", fmt(ms_new),
                 f"old kernel {fmt(ms_old)} ms ({fmt(speedup, suffix='x')})", "faster than one state per warp",
                 met(None if speedup is None else speedup > 1.0)))
new = find(mode, "BM_DeviceModeStepMeanEnergy/0/")
old = find(mode, "BM_DeviceModeStepMeanEnergy/1/")
us_new = new.get("real_time") if new and new.get("time_unit") == "us" else None
us_old = old.get("real_time") if old and old.get("time_unit") == "us" else None
rows.append(("mode step E_bar 784x500 on the device (us)", fmt(us_new), f"host copy of the model {fmt(us_old)} us",
             "below the host copy", met(None if us_new is None or us_old is None else us_new < us_old)))

# Mid-size ensembles: batched strided GEMMs against the same members one by one.
ensemble_benchmarks = benchmarks("bench_cuda_ensemble")
for b in ensemble_benchmarks.values():
    if not b.get("name", "").startswith("BM_CudaEnsembleBatchedVsSingle"):
        continue
    speedup = b.get("speedup")
    rows.append((f"batched ensemble {b.get('name', '').split('/manual')[0]} (updates/s per member)",
                 fmt(b.get("batched_updates_per_s_per_member")),
                 f"one by one {fmt(b.get('single_updates_per_s_per_member'))} ({fmt(speedup, suffix='x')})",
                 "> 1x one by one", met(None if speedup is None else speedup > 1.0)))
# Mode steps of the batched ensemble: the members' exhaustive searches in one
# launch against one search per member (MARBM_ENSEMBLE_MODE_SEARCH=per-member).
for args in ("64/100/12/50", "16/200/14/20"):
    b = find(ensemble_benchmarks, f"BM_CudaEnsembleModeSteps/{args}/")
    speedup = b.get("speedup") if b else None
    rows.append((f"ensemble mode steps {args} (members/n/m/updates), batched search (updates/s per member)",
                 fmt(b.get("batched_updates_per_s_per_member") if b else None),
                 f"per member {fmt(b.get('per_member_updates_per_s_per_member') if b else None)} "
                 f"({fmt(speedup, suffix='x')})",
                 "faster than per member", met(None if speedup is None else speedup > 1.0)))

try:
    nccl = open(f"{raw}-nccl.txt").read().strip()
except OSError:
    nccl = "not run"
rows.append(("NCCL: mpiexec -n 1 train --backend cuda = plain CUDA engine (bits)", nccl, "2 ranks need 2 GPUs",
             "same bits", met(True if nccl.startswith("passed") else (False if nccl == "FAILED" else None))))

info = load(f"{raw}-info.json") or {}
devices = info.get("devices") or []
capability = devices[0].get("compute_capability") if devices else "n/a"
print(f"device: {device}; compute capability {capability}; CUDA runtime {info.get('cuda_runtime_version')}, "
      f"driver supports {info.get('cuda_driver_version')}; commit: {commit}")
print()
print("| figure | marbm | beside it | target | met |")
print("|---|---|---|---|---|")
for r in rows:
    print("| " + " | ".join(r) + " |")
PY

echo
echo "total time: $((SECONDS - started)) s"
echo "report: $report"
if [[ -n "${OUT:-}" && -d "${OUT:-}" ]]; then
  cp "$report" "$raw"-*.json "$raw"-*.log "$OUT"/ 2>/dev/null || true
fi
[[ $status_build -eq 0 && $status_tests -eq 0 && $status_nccl -eq 0 ]]
