#!/usr/bin/env bash
# Static resource use of the exact-log-Z kernels (cuda/exact_enumeration.cu)
# as ptxas reports it (-Xptxas -v) for sm_90 and sm_80: registers, spills,
# static shared memory, and the occupancy those registers allow at 128
# threads per block. These figures need no GPU; no kernel here has run on
# one. The previous kernels (enumerate_registers_kernel,
# enumerate_scratch_kernel) are still compiled (MARBM_EXACT_KERNEL=legacy),
# so one compile gives "before" and "after". Records
# bench/results/exact-ptxas.md.
#
# usage: bench/exact-ptxas.sh [BUILD_DIR]
#   BUILD_DIR  a CUDA-configured build of this tree (default build-cuda), for its generated headers
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
build="${1:-$root/build-cuda}"
[[ -f "$build/include/marbm/config.hpp" ]] || {
  echo "exact-ptxas.sh: '$build' is not a configured CUDA build folder (no include/marbm/config.hpp)" >&2
  exit 2
}
nvcc="${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

for arch in 90 80; do
  "$nvcc" -O3 -DNDEBUG -std=c++20 --expt-relaxed-constexpr -x cu -c "$root/cuda/exact_enumeration.cu" \
    -I"$root/host" -I"$root/cuda" -I"$root/include" -I"$build/include" \
    --generate-code="arch=compute_$arch,code=sm_$arch" -Xptxas -v -o "$work/sm$arch.o" >"$work/sm$arch.log" 2>&1
done

out="$root/bench/results/exact-ptxas.md"
python3 - "$work" "$(git -C "$root" rev-parse --short HEAD)" "$("$nvcc" --version | tail -1)" >"$out" <<'PY'
import datetime, os, platform, re, subprocess, sys
work, commit, nvcc_version = sys.argv[1:4]

def demangle(name):
    try:
        return subprocess.run(["c++filt", name], capture_output=True, text=True).stdout.strip()
    except OSError:
        return name

def short(name):
    name = re.sub(r"marbm::detail::\(anonymous namespace\)::", "", name)
    name = re.sub(r"^void ", "", name)
    return re.sub(r"\(.*\)$", "", name)

def parse(path):
    rows, current = {}, None
    for line in open(path):
        m = re.search(r"Compiling entry function '([^']+)'", line)
        if m:
            current = short(demangle(m.group(1)))
            rows[current] = {}
            continue
        if current is None:
            continue
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m:
            rows[current].update(stack=int(m.group(1)), spill_st=int(m.group(2)), spill_ld=int(m.group(3)))
        m = re.search(r"Used (\d+) registers", line)
        if m:
            rows[current]["regs"] = int(m.group(1))
            s = re.search(r"(\d+) bytes smem", line)
            rows[current]["smem"] = int(s.group(1)) if s else 0
    return rows

def occupancy(regs):
    # 65,536 registers per SM, allocated per warp in units of 256; 64 warps
    # and 32 blocks per SM at most; blocks of 4 warps.
    per_warp = -(-regs * 32 // 256) * 256
    blocks = min(32, (65536 // per_warp) // 4)
    warps = min(64, blocks * 4)
    return warps

order = ["enumerate_registers_kernel<16>", "enumerate_registers_kernel<32>", "enumerate_registers_kernel<64>",
         "enumerate_scratch_kernel",
         "enumerate_table_kernel<16, 0>", "enumerate_table_kernel<32, 0>", "enumerate_table_kernel<64, 0>",
         "enumerate_table_kernel<16, 4>", "enumerate_table_kernel<32, 4>", "enumerate_table_kernel<64, 4>",
         "enumerate_warp_kernel<4>", "enumerate_warp_kernel<8>", "enumerate_warp_kernel<16>",
         "enumerate_warp_kernel<32>", "final_combine_kernel", "prepare_problem_kernel"]
role = {
    "enumerate_registers_kernel": "previous (legacy): <= 64 fields, every slot pays an exp",
    "enumerate_scratch_kernel": "previous (legacy) for > 64 fields; current for > 1024",
    "enumerate_table_kernel": "current: <= 64 fields, padding predicated; <., 4>: 16-state subset table",
    "enumerate_warp_kernel": "current: 65..1024 fields, one warp per chunk, fields across lanes",
    "final_combine_kernel": "both", "prepare_problem_kernel": "both",
}
print("# Exact log Z kernels: static resource use (ptxas)")
print()
print(f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; commit: {commit}")
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
print(f"- machine: {cpu}, {os.cpu_count()} cores, no GPU; compiler: {nvcc_version}")
print("- command: `bench/exact-ptxas.sh` (nvcc -O3 -Xptxas -v on cuda/exact_enumeration.cu, sm_90 and sm_80)")
print()
print("Compiled, never run: these are what ptxas allocates, not measurements of a running kernel. Occupancy is")
print("the register limit alone at 128 threads per block (65,536 registers per SM, 64 warps at most); the")
print("register kernels' dynamic shared memory (k x 64 doubles plus the table, at most 42 KiB with the")
print("2 KiB static) allows more blocks than their registers do.")
print()
print("Which kernel runs (host/detail/exact_device_plan.hpp, 132 SMs): 64x30 and 33x30 take")
print("`enumerate_table_kernel<64, 4>` (previously `enumerate_registers_kernel<64>`); 784x20 takes")
print("`enumerate_warp_kernel<32>` (previously `enumerate_scratch_kernel`). `MARBM_EXACT_KERNEL=legacy`")
print("runs the previous ones.")
for arch in ("90", "80"):
    rows = parse(f"{work}/sm{arch}.log")
    print()
    print(f"## sm_{arch}")
    print()
    print("| kernel | role | registers | spill stores / loads (bytes) | stack | static smem | warps per SM (of 64) |")
    print("|---|---|---|---|---|---|---|")
    names = [n for n in order if n in rows] + sorted(n for n in rows if n not in order)
    for name in names:
        r = rows[name]
        base = name.split("<")[0]
        print(f"| `{name}` | {role.get(base, '')} | {r.get('regs', '?')} | {r.get('spill_st', '?')} / "
              f"{r.get('spill_ld', '?')} | {r.get('stack', '?')} | {r.get('smem', '?')} | "
              f"{occupancy(r['regs']) if 'regs' in r else '?'} |")
PY
echo "wrote $out"
