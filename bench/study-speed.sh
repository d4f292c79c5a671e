#!/usr/bin/env bash
# Speed of the reference study (`marbm study` with its defaults: shifting bars
# 6/3, 6 x 6, CD-1 and mode-assisted, 10 runs x 20,000 updates, exact KL every
# 200 updates, kl.csv + summary.json + kl.png) on one thread, against the
# 436 s of the paper authors' numpy + dimod code. Runs the study N times
# (alternating with a baseline build when one is given) and records the
# median wall and CPU time (user + system, gnuplot included) in
# bench/results/study-speed.md, with instruction counts per update from
# callgrind when valgrind is installed.
#
# usage: bench/study-speed.sh [BUILD_DIR] [N] [BASELINE_BUILD_DIR BASELINE_LABEL]
#   BUILD_DIR defaults to ./build-cpu, N to 9. BASELINE_LABEL names the
#   baseline on the page (for example the commit it was built from).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
build="${1:-$root/build-cpu}"
runs="${2:-9}"
baseline="${3:-}"
baseline_label="${4:-baseline}"
for b in "$build" ${baseline:+"$baseline"}; do
  if [[ ! -x "$b/marbm" ]]; then
    echo "study-speed.sh: no marbm executable in '$b' (build the marbm_cli target first)" >&2
    exit 2
  fi
done
# The original code's time: measured on this machine kind (2-core Intel Xeon
# virtual machine) when the 1,000x target was set; see the page.
original_seconds=436

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"

# One timed study: appends "wall user+sys" to $2.
one_run() {
  local marbm="$1" log="$2"
  rm -rf "$work/study"
  /usr/bin/time -f "%e %U %S" -o "$work/t" "$marbm" study --out "$work/study" --threads 1 >"$work/table.txt"
  [[ -s "$work/study/kl.png" ]] || { echo "study-speed.sh: no plot was written" >&2; exit 1; }
  awk '{ printf "%s %.3f\n", $1, $2 + $3 }' "$work/t" >>"$log"
}
median() {  # column $2 of file $1
  local middle=$(( ($(wc -l <"$1") + 1) / 2 ))
  sort -n -k"$2" "$1" | sed -n "${middle}p" | cut -d' ' -f"$2"
}

: >"$work/after"
: >"$work/before"
"$build/marbm" study --out "$work/warm" --threads 1 >/dev/null  # warm the file cache
for ((k = 0; k < runs; k++)); do
  one_run "$build/marbm" "$work/after"
  if [[ -n "$baseline" ]]; then one_run "$baseline/marbm" "$work/before"; fi
done
# Where the CPU time goes: the same study without the plot, and its fixed
# costs alone (start-up, the 2 x 10 x 101 exact evaluations, mode-step
# set-up, the files) with 200 updates per run and a KL point every 2.
: >"$work/noplot"
: >"$work/fixed"
for ((k = 0; k < runs; k++)); do
  rm -rf "$work/np"
  /usr/bin/time -f "%e %U %S" -o "$work/t" "$build/marbm" study --out "$work/np" --threads 1 --no-plot >/dev/null
  awk '{ printf "%s %.3f\n", $1, $2 + $3 }' "$work/t" >>"$work/noplot"
  rm -rf "$work/np"
  /usr/bin/time -f "%e %U %S" -o "$work/t" "$build/marbm" study --out "$work/np" --threads 1 --no-plot \
    --iters 200 --eval-every 2 >/dev/null
  awk '{ printf "%s %.3f\n", $1, $2 + $3 }' "$work/t" >>"$work/fixed"
done
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"
cp "$work/table.txt" "$work/after-table.txt"
wall_after="$(median "$work/after" 1)"
cpu_after="$(median "$work/after" 2)"
range_after="$(sort -n -k1 "$work/after" | awk 'NR==1{lo=$1} {hi=$1} END{print lo "-" hi}')"

# Instructions of the whole study (10 runs of 2,000 updates, the same
# number of evaluations and the same mode-step share, no plot), per update.
instructions() {
  local marbm="$1"
  if ! command -v valgrind >/dev/null; then echo "n/a"; return; fi
  rm -rf "$work/cg"
  valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" "$marbm" study --out "$work/cg" --threads 1 \
    --iters 2000 --eval-every 20 --no-plot >/dev/null 2>"$work/cg.err"
  sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$work/cg.err" | head -n 1
}
instr_after="$(instructions "$build/marbm")"

commit="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
dirty="$(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo ' (with local changes)' || true)"
cpu="$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1)"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", a / b }'; }

{
  echo "# Speed of the reference study"
  echo
  echo "\`marbm study --out DIR --threads 1\`: the reference experiment with its defaults (shifting bars 6/3,"
  echo "6 x 6 RBM, batch 6, CD-1 and mode-assisted, 10 runs x 20,000 updates each, exact KL every 200"
  echo "updates), writing kl.csv, summary.json and the plot kl.png. Wall and CPU time (user + system of the"
  echo "process and its gnuplot child) are medians of $runs runs; the baseline, when measured, ran alternately"
  echo "with it."
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "- commit: $commit$dirty"
  echo "- machine: ${cpu:-unknown CPU}, $(nproc) cores, shared with other work: load average $load_before before,"
  echo "  $load_after after (wall times on a loaded machine are inflated; CPU time is the steadier figure)"
  echo "- command: \`bench/study-speed.sh BUILD_DIR $runs${baseline:+ BASELINE_BUILD_DIR $baseline_label}\`, BUILD_DIR a"
  echo "  Release build of this commit${baseline:+, BASELINE_BUILD_DIR one of $baseline_label}"
  echo
  echo "| build | median wall s | wall range s | median CPU s | original code / wall | original code / CPU |"
  echo "|---|---:|---:|---:|---:|---:|"
  echo "| this commit | $wall_after | $range_after | $cpu_after | $(ratio $original_seconds "$wall_after")x | $(ratio $original_seconds "$cpu_after")x |"
  if [[ -n "$baseline" ]]; then
    wall_before="$(median "$work/before" 1)"
    cpu_before="$(median "$work/before" 2)"
    range_before="$(sort -n -k1 "$work/before" | awk 'NR==1{lo=$1} {hi=$1} END{print lo "-" hi}')"
    echo "| $baseline_label | $wall_before | $range_before | $cpu_before | $(ratio $original_seconds "$wall_before")x | $(ratio $original_seconds "$cpu_before")x |"
  fi
  echo
  echo "The original code (the paper authors' numpy + dimod implementation of the same study) took"
  echo "$original_seconds s on this machine kind, one thread, measured when the 1,000x target was set; it was not"
  echo "rerun here. The target, >= 1,000x, is a study of at most 0.436 s wall including the plot."
  echo
  awk -v w="$wall_after" -v c="$cpu_after" -v o="$original_seconds" 'BEGIN {
    t = o / 1000
    if (w <= t) {
      printf "Target met: %.3f s wall <= %.3f s.\n", w, t
    } else {
      printf "Target missed on wall time by %.3f s (%.0fx instead of 1,000x). ", w - t, o / w
      if (c <= t) printf "The CPU time, %.3f s, is within it: on this shared machine the wall time waits for the cores.\n", c
      else printf "The CPU time, %.3f s, misses it too, by %.3f s.\n", c, c - t
    }
  }'
  echo
  cpu_noplot="$(median "$work/noplot" 2)"
  cpu_fixed="$(median "$work/fixed" 2)"
  echo "Where this commit's CPU time goes (medians of $runs runs each): the study without the plot takes"
  echo "$cpu_noplot s, so the plot (gnuplot's pngcairo rendering and PNG compression) about"
  awk -v a="$cpu_after" -v b="$cpu_noplot" -v f="$cpu_fixed" 'BEGIN {
    printf "%.3f s; the same study with 200 updates per run and as many evaluations (start-up, the\n", a - b
    printf "2,020 exact KL evaluations, the files) takes %.3f s, which leaves about %.3f s for the 400,000\n", f, b - f
    printf "updates and their mode steps (%.2f us per update).\n", (b - f) / 400000 * 1e6
  }'
  echo
  if [[ "$instr_after" != "n/a" ]]; then
    echo "Instructions (callgrind, repeatable whatever the load; valgrind runs the AVX2 code, not the AVX-512) of the same study with 2,000 updates per run,"
    echo "the same 101 evaluations per run and no plot: $instr_after in all for 40,000 updates."
    if [[ -n "$baseline" ]]; then
      instr_before="$(instructions "$baseline/marbm")"
      echo "The baseline: $instr_before."
    fi
    echo
  fi
  echo "The table the study printed (last run):"
  echo
  echo '```'
  grep -v '^wrote ' "$work/after-table.txt"
  echo '```'
} >"$root/bench/results/study-speed.md"
cat "$root/bench/results/study-speed.md"
