#!/usr/bin/env bash
# TTS99 of marbm's CPU ground-state solvers against dwave-samplers and the
# simulated-bifurcation package on the same instances, one thread each, in
# one run, accounted per instance (bench/peers/summarise_tts.py): a setting
# counts at a size only if it solves every instance, and its TTS99 there is
# the median over the instances. Writes the results page.
#
# Usage: bench/peers/compare-mode.sh [BUILD_DIR] [SIZES] [COUNT] [PAGE]
#   BUILD_DIR  a marbm build with bench_mode (default: build)
#   SIZES      comma-separated layer sizes, n = m (default 8,12,16,24,32,48,64)
#   COUNT      instances per size (default 20)
#   PAGE       the page to write (default bench/results/mode-tts-cpu.md; the
#              picture and the reference energies go beside it, .png and
#              -reference.tsv; the raw per-instance runs, -runs.tsv.gz)
# Sizes up to EXACT_MAX (default 24) per layer get their exact ground energy
# by enumeration; larger ones the lowest energy of long reference runs of all
# solvers. PEERS (default dwave-sa,sb-ballistic,sb-discrete) chooses the peer
# solvers of the timed runs. marbm's and the peers' runs go side by side (two
# processes; times are per-process CPU seconds). Needs bench/.venv
# (bench/peers/setup-venv.sh).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
build="${1:-$root/build}"
sizes="${2:-8,12,16,24,32,48,64}"
count="${3:-20}"
page="${4:-$root/bench/results/mode-tts-cpu.md}"
exact_max="${EXACT_MAX:-24}"
peers="${PEERS:-dwave-sa,sb-ballistic,sb-discrete}"
reference_steps=1000 reference_replicas=128 reference_sweeps=10000 reference_reads=32
bench="$build/bench/bench_mode"
python="$root/bench/.venv/bin/python"
[[ -x "$bench" ]] || { echo "compare-mode.sh: $bench not found (build the bench_mode target)" >&2; exit 2; }
[[ -x "$python" ]] || { echo "compare-mode.sh: $python not found (run bench/peers/setup-venv.sh)" >&2; exit 2; }
"$python" -c "import matplotlib" 2>/dev/null ||
  { echo "compare-mode.sh: matplotlib missing in bench/.venv (rerun bench/peers/setup-venv.sh)" >&2; exit 2; }

export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
instances="$work/instances"
base="${page%.md}"
mkdir -p "$(dirname "$page")"
started="$(date -u '+%Y-%m-%d %H:%M UTC')"
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
SECONDS=0

"$bench" --write-instances="$instances" --sizes="$sizes" --count="$count" --exact-max="$exact_max" >&2
large="$(tr ',' '\n' <<<"$sizes" | awk -v max="$exact_max" '$1 > max' | paste -sd, -)"
: >"$work/reference-runs.tsv"
# Two commands side by side; fails when either does.
both() {
  eval "$1" & local first=$!
  eval "$2" & local second=$!
  local status=0
  wait "$first" || status=$?
  wait "$second" || status=$?
  return "$status"
}
if [[ -n "$large" ]]; then
  echo "reference runs for sizes $large" >&2
  both '"$bench" --reference="$instances" --sizes="$large" --count="$count" --reference-steps=$reference_steps \
          --reference-replicas=$reference_replicas >"$work/reference-marbm.tsv"' \
       '"$python" "$here/peers_mode.py" "$instances" --reference --sizes="$large" --count="$count" --solvers=dwave-sa \
          --reference-sweeps=$reference_sweeps --reference-reads=$reference_reads >"$work/reference-peers.tsv"'
  cat "$work/reference-marbm.tsv" "$work/reference-peers.tsv" >"$work/reference-runs.tsv"
fi
"$python" "$here/reference_tts.py" "$instances" <"$work/reference-runs.tsv" | tee "$work/agreement.txt" >&2
reference_cpu="$(awk -F'\t' '$1 == "REF" { s += $6 } END { printf "%.0f", s }' "$work/reference-runs.tsv")"

both '"$bench" --tts="$instances" --sizes="$sizes" --count="$count" >"$work/runs-marbm.tsv"' \
     '"$python" "$here/peers_mode.py" "$instances" --sizes="$sizes" --count="$count" --solvers="$peers" \
        >"$work/runs-peers.tsv"'
cat "$work/runs-marbm.tsv" "$work/runs-peers.tsv" >"$work/runs.tsv"
"$python" "$here/summarise_tts.py" --markdown "$work/tables.md" --png "$base.png" <"$work/runs.tsv"
cp "$instances/reference.tsv" "$base-reference.tsv"
gzip -9n <"$work/runs.tsv" >"$base-runs.tsv.gz"
runs_cpu="$(awk -F'\t' '$1 == "RUN" { s += $8 } END { printf "%.0f", s }' "$work/runs.tsv")"
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"
wall="$SECONDS"

commit="$(git -C "$root" rev-parse --short HEAD)"
git -C "$root" diff --quiet HEAD -- host bench include 2>/dev/null || commit="$commit plus uncommitted changes"
cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
versions="$("$python" -c 'import dwave.samplers, simulated_bifurcation, torch, numpy
print(f"dwave-samplers {dwave.samplers.__version__}, simulated-bifurcation {simulated_bifurcation.__version__} "
      f"on torch {torch.__version__} (run on the CPU), numpy {numpy.__version__}")')"
{
  cat <<PAGE
# Ground-state search on the CPU: TTS99 against peers, per instance

**Target:** marbm's best solver at least 10x faster TTS99 than dwave-samplers' simulated annealing at
every size from 8 to 64 units per layer, one thread each, by per-instance TTS over settings that solve
every instance. Where it is met and by how much it is missed: the target table below.

- Date: $started. Code: commit $commit. Wall time of the whole run: $((wall / 60)) min $((wall % 60)) s
  (process CPU: reference runs ${reference_cpu} s, timed runs ${runs_cpu} s).
- Machine: $(nproc --all)-core $cpu virtual machine, shared with other jobs while measuring (load average
  $load_before before, $load_after after). Times are process CPU seconds of one thread, which such
  sharing affects little (cache and memory bandwidth still are shared).
- Peers from PyPI by \`bench/peers/setup-venv.sh\`: $versions.
- Command (one run, everything on the same instances; writes this page, its picture, the reference
  energies and the raw runs):

      $([[ -n "${PEERS:-}" ]] && echo "PEERS=$peers ")bench/peers/compare-mode.sh BUILD_DIR $sizes $count

## How it is counted

- Instances: n = m in {$sizes}, $count per size, W, a, b ~ N(0, 1) (bench_mode's Philox streams).
- Reference energy: up to $exact_max units per layer the exact ground energy (\`mode_exhaustive\`, the
  smaller layer enumerated). Beyond, **not proven optimal**: the lowest energy found by long reference
  runs with other seeds (marbm sb discrete, sb ballistic and sa, each with both polishes, $reference_replicas
  replicas of $reference_steps steps; dwave-samplers SA, $reference_reads reads of $reference_sweeps sweeps;
  the simulated-bifurcation package, the weakest solver here, is left out of them), recorded in \`$(basename "$base")-reference.tsv\` with the solvers that reached it. Every timed
  run is checked against it: an energy below the reference stops the benchmark with an error (none did).
- Peers timed: $peers.
- Per instance i and setting: p_i = share of the instance's replicas (reads, agents) whose state has
  the reference energy (marbm: after its polish; peers: their returned states, energies recomputed in
  float64); t_run = CPU seconds of the call / replicas; TTS99_i = t_run log(0.01) / log(1 - p_i)
  (t_run when p_i = 1; infinite when p_i = 0).
- A setting qualifies at a size only if p_i > 0 on every instance; its TTS99 is the median over the
  instances (p90 and max reported). Each solver's best is its qualifying setting with the lowest
  median. Grids: marbm 3..2,000 steps with 128 replicas per call, each solver with the default
  descent polish and with \`--polish collapsed\`; dwave-samplers 3..10,000 sweeps with
  256 reads per call (128, 64 and 32 at 2,000, 5,000 and 10,000 sweeps); simulated-bifurcation
  20..3,000 steps with 128 agents. A grid stops early once every replica of every instance reaches the
  reference, or once the median TTS99 has risen at two qualifying settings in a row after its lowest.
- With 128 to 256 replicas per instance, p_i below about 1% is seen as 0 or 1 hit, so the max column
  is noisy; the median is not.

## Results

PAGE
  cat "$work/tables.md"
  cat <<PAGE

![TTS99 against size](./$(basename "$base").png)

Reference runs (sizes beyond $exact_max per layer): on how many instances each solver's long run
reached the reference energy.

\`\`\`
$(cat "$work/agreement.txt")
\`\`\`
PAGE
  if [[ -f "$here/tts_notes.md" ]]; then
    echo
    cat "$here/tts_notes.md"
  fi
} >"$page"
echo "wrote $page, $base.png, $base-reference.tsv, $base-runs.tsv.gz (${wall} s)" >&2
