#!/usr/bin/env bash
# The device check: on a machine with an NVIDIA GPU (sm_90: H100/H200),
# configure with the sm90 preset, build the GPU tests and benchmarks, run
# every `gpu`-labelled test, the GPU benchmarks and the PyTorch reference,
# and end with a short table (device, date, commit, figures, target ratios).
# Finishes within 8 minutes (each part has its own time limit).
#
# usage: bench/device-check.sh [JOBS]
# Output: bench/results/device-check-<UTC date and time>.md (and a copy under
# $OUT when that is set), the raw benchmark JSON beside it.
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
# Time limit for a part: its own limit, cut to what is left of 7.5 minutes
# (the summary needs a few seconds; MARBM_CHECK_SECONDS overrides the 450), at least 5 s.
budget() {
  local left=$((${MARBM_CHECK_SECONDS:-450} - (SECONDS - started)))
  ((left < 5)) && left=5
  echo $(($1 < left ? $1 : left))
}

commit="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
device="$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)"
echo "# marbm device check"
echo
echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "- commit: $commit"
echo "- device: ${device:-none found by nvidia-smi}"
echo "- host: $(nproc) cores"

section "configure and build (preset sm90)"
status_build=0
cd "$root" || exit 1
timeout "$(budget 120)" cmake --preset sm90 >/dev/null || status_build=$?
gpu_benches=()
for source in "$root"/bench/bench_cuda_*.cu; do
  [[ -e "$source" ]] && gpu_benches+=("$(basename "$source" .cu)")
done
if [[ $status_build -eq 0 ]]; then
  timeout "$(budget 300)" cmake --build "$build" -j "$jobs" --target marbm_cli marbm_gpu_tests "${gpu_benches[@]}" 2>&1 | tail -5
  status_build=${PIPESTATUS[0]}
fi
echo "build status: $status_build"

section "CUDA runtime, driver and device (marbm info)"
if [[ -x "$build/marbm" ]]; then
  "$build/marbm" info
else
  echo "marbm: not built"
fi

section "gpu tests (ctest -L gpu, MARBM_REQUIRE_GPU=1)"
# A test that cannot find a usable device fails instead of skipping, and any
# skip left is counted as a failure of the check.
export MARBM_REQUIRE_GPU=1
status_tests=1
test_summary="not run"
skipped=0
if [[ $status_build -eq 0 ]]; then
  timeout "$(budget 180)" ctest --test-dir "$build" -L gpu --output-on-failure -j 1 --timeout 120 >"$raw-ctest.log" 2>&1
  status_tests=$?
  tail -40 "$raw-ctest.log"
  test_summary="$(grep -Eo '[0-9]+% tests passed, [0-9]+ tests failed out of [0-9]+' "$raw-ctest.log" | tail -1)"
  skipped="$(grep -Ec '\*\*\*Skipped' "$raw-ctest.log" || true)"
  if [[ $skipped -gt 0 ]]; then
    echo "skipped tests: $skipped (the device check requires none)"
    status_tests=1
  fi
fi
echo "test status: $status_tests"

section "gpu benchmarks"
for bench in "${gpu_benches[@]}"; do
  if [[ -x "$build/bench/$bench" ]]; then
    timeout "$(budget 120)" "$build/bench/$bench" --benchmark_counters_tabular=true \
      --benchmark_out="$raw-$bench.json" --benchmark_out_format=json 2>&1 | tail -25
  else
    echo "$bench: not built"
  fi
done

section "PyTorch reference"
timeout "$(budget 90)" python3 "$root/bench/torch_reference.py" --json "$raw-torch.json" 2>&1 | tail -10

section "summary"
python3 - "$raw" "$commit" "${device:-unknown}" "$test_summary" <<'PY'
import json, os, sys
raw, commit, device, tests = sys.argv[1:5]

def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None

engine = load(raw + "-bench_cuda_engine.json") or {}
torch = load(raw + "-torch.json") or {}
bench = {b["name"]: b for b in engine.get("benchmarks", []) if "error_message" not in b}

def find(prefix):
    for name, b in bench.items():
        if name.startswith(prefix):
            return b
    return None

def fmt(x, digits=3, suffix=""):
    return "n/a" if x is None else f"{x:.{digits}g}{suffix}"

rows = []
torch_cd = {r["batch"]: r for r in torch.get("cd1", [])} if torch.get("available") else {}
for batch in (128, 1024):
    b = find(f"BM_CudaCd1Update/{batch}/")
    ours = b.get("updates_per_s") if b else None
    ratio = b.get("gemm_ratio") if b else None
    peer = torch_cd.get(batch, {}).get("updates_per_s")
    speedup = ours / peer if ours and peer else None
    target = "<= 1.4x GEMM, >= 1.5x torch" if batch == 1024 else ">= 1.5x torch"
    rows.append((f"CD-1 784x500 batch {batch} (updates/s)", fmt(ours), f"GEMM ratio {fmt(ratio)}",
                 f"torch {fmt(peer)} -> {fmt(speedup, suffix='x')}", target))
b = find("BM_CudaEnsemble6x6/2000/")
ours = b.get("updates_per_s_per_rbm") if b else None
peer = torch.get("ensemble", {}).get("updates_per_s_per_rbm") if torch.get("available") else None
rows.append(("ensemble 1,000 x 6x6 CD-1 (updates/s per RBM)", fmt(ours), "",
             f"torch {fmt(peer)} -> {fmt(ours / peer if ours and peer else None, suffix='x')}", ">= 20x torch"))
b = find("BM_CudaExactLogZ/64/30/")
seconds = b.get("real_time") / 1e3 if b and b.get("time_unit") == "ms" else None
rows.append(("exact log Z 64x30, 2^30 states (s)", fmt(seconds), f"{fmt(b.get('states_per_s') if b else None)} states/s",
             "", "< 2 s"))

# Ground-state search: TTS99 at 24 + 24 units per solver, and the 784x500
# energy reached at the longest run, beside its GEMM-only floor.
mode = {b["name"]: b for b in (load(raw + "-bench_cuda_mode.json") or {}).get("benchmarks", [])
        if "error_message" not in b}
labels = {0: "sb discrete", 1: "sb ballistic", 2: "sa"}
for solver, label in labels.items():
    b = next((v for k, v in mode.items() if k.startswith(f"BM_DeviceModeTts99/{solver}/24/")), None)
    rows.append((f"mode {label} 24+24 TTS99 (ms)", fmt(b.get("tts99_ms") if b else None),
                 f"p_replica {fmt(b.get('p_replica') if b else None)}", "", "CPU best: 0.0101 ms (1 thread)"))
for solver, label in labels.items():
    b = next((v for k, v in mode.items() if k.startswith(f"BM_DeviceModeLarge/{solver}/2000/")), None)
    ms = b.get("real_time") if b and b.get("time_unit") == "ms" else None
    rows.append((f"mode {label} 784x500, 2000 steps (ms)", fmt(ms), f"GEMM floor {fmt(b.get('gemm_floor_ms') if b else None)} ms",
                 f"energy {fmt(b.get('best_energy') if b else None, 8)}", "<= peer energy in 1/10 of its time"))
# Mid-size ensembles: batched strided GEMMs against the same members one by one.
ensemble = (load(raw + "-bench_cuda_ensemble.json") or {}).get("benchmarks", [])
for b in ensemble:
    if "error_message" in b:
        continue
    rows.append((f"batched ensemble {b.get('name', '').split('/manual')[0]} (updates/s per member)",
                 fmt(b.get("batched_updates_per_s_per_member")),
                 f"one by one {fmt(b.get('single_updates_per_s_per_member'))}",
                 f"speedup {fmt(b.get('speedup'), suffix='x')}", ""))

print(f"device: {device}; commit: {commit}; gpu tests: {tests or 'n/a'}")
print()
print("| figure | marbm | floor | peer | target |")
print("|---|---|---|---|---|")
for r in rows:
    print("| " + " | ".join(r) + " |")
PY

echo
echo "total time: $((SECONDS - started)) s"
echo "report: $report"
if [[ -n "${OUT:-}" && -d "${OUT:-}" ]]; then
  cp "$report" "$raw"-*.json "$OUT"/ 2>/dev/null || true
fi
