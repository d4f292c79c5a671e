#!/usr/bin/env bash
# Scale-out on the ranks this machine allows, and a model of 8 GPUs per node
# x 64 nodes from the measured compute and reduction times. Records
# bench/results/mpi-scaling.md.
#
# usage: bench/mpi-scaling.sh [BUILD_DIR]
#   BUILD_DIR (default ./build) must hold marbm and bench/mpi_scaling, built
#   with MPI (MARBM_MPI=AUTO finds OpenMPI). Runs as root set OpenMPI's
#   run-as-root variables for these mpiexec calls only.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
build="${1:-$root/build}"
marbm="$build/marbm"
tool="$build/bench/mpi_scaling"
for program in "$marbm" "$tool"; do
  if [[ ! -x "$program" ]]; then
    echo "mpi-scaling.sh: no $(basename "$program") in '$build' (build with MPI first)" >&2
    exit 2
  fi
done
command -v mpiexec >/dev/null || { echo "mpi-scaling.sh: no mpiexec (install openmpi-bin)" >&2; exit 2; }

mpi=(env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
  OMP_NUM_THREADS=1 mpiexec --oversubscribe)
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cores="$(nproc)"
max_ranks=$(( cores < 2 ? 1 : cores ))
value() { sed -n "s/.*\"$2\": \([-0-9.e+]*\).*/\1/p" "$1"; }

# Data-parallel CD-1 784 x 500: strong scaling (batch 384 = 6 blocks of 64
# rows) and weak scaling (192 rows per rank).
updates=20
for ranks in $(seq 1 "$max_ranks"); do
  "${mpi[@]}" -n "$ranks" "$tool" train 384 "$updates" >"$work/strong-$ranks.json"
  "${mpi[@]}" -n "$ranks" "$tool" train $((192 * ranks)) "$updates" >"$work/weak-$ranks.json"
done
# The reductions of one update at batch 384: 6 blocks of 784 x 500 + 784 + 500 values.
values=$((784 * 500 + 784 + 500))
if (( max_ranks >= 2 )); then
  "${mpi[@]}" -n 2 "$tool" reduce "$values" 6 9 >"$work/reduce.json"
else
  echo '{"allreduce_float_seconds": nan, "ordered_block_sum_seconds": nan, "ordered_block_sum_cpu_seconds": nan}' >"$work/reduce.json"
fi

# A 1,000-run study (500 runs x cd and mode, the reference experiment's
# settings) as one process with all cores, and as one rank per core.
study=(study --runs 500 --no-plot)
start=$(date +%s.%N)
"$marbm" "${study[@]}" --out "$work/study-1" >/dev/null
study_one=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
start=$(date +%s.%N)
"${mpi[@]}" -n "$max_ranks" "$marbm" "${study[@]}" --threads 1 --out "$work/study-r" >/dev/null
study_ranks=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
same_csv=$(cmp -s "$work/study-1/kl.csv" "$work/study-r/kl.csv" && echo "identical" || echo "DIFFERENT")

cpu="$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1)"
commit="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
dirty="$(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo ' (with local changes)' || true)"
mpi_version="$(mpiexec --version 2>/dev/null | head -n 1)"
load="$(cut -d' ' -f1-3 /proc/loadavg)"

t1=$(value "$work/strong-1.json" seconds_per_update)
allreduce=$(value "$work/reduce.json" allreduce_float_seconds)
ordered=$(value "$work/reduce.json" ordered_block_sum_seconds)
ordered_cpu=$(value "$work/reduce.json" ordered_block_sum_cpu_seconds)

{
  echo "# Scale-out: data-parallel CD-1 784 x 500 and a 1,000-run study across MPI ranks"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "- commit: $commit$dirty"
  echo "- machine: ${cpu:-unknown CPU}, $cores cores, ranks on localhost ($mpi_version); load average at the end: $load"
  echo "- command: \`bench/mpi-scaling.sh\` (one thread per rank; $updates updates per point)"
  echo "- the cores were shared with other work while this ran: wall times are upper bounds"
  echo
  echo "## Data-parallel training (mpiexec -n R, cpu engine, one thread per rank)"
  echo
  echo "Wall time per update, the slowest rank's CPU time per update (its busiest process), rows per second of"
  echo "wall time and the efficiency from wall time (strong: t1 / (R t_R); weak: t1 / t_R)."
  echo
  echo "| run | ranks | batch | s / update | CPU s / update (max rank) | rows / s | efficiency |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
  for ranks in $(seq 1 "$max_ranks"); do
    s=$(value "$work/strong-$ranks.json" seconds_per_update)
    rows=$(value "$work/strong-$ranks.json" rows_per_second)
    eff=$(awk -v a="$t1" -v b="$s" -v r="$ranks" 'BEGIN { printf "%.0f%%", 100 * a / (b * r) }')
    cpu_s=$(value "$work/strong-$ranks.json" cpu_seconds_per_update)
    echo "| strong | $ranks | 384 | $s | $cpu_s | $rows | $eff |"
  done
  w1=$(value "$work/weak-1.json" seconds_per_update)
  for ranks in $(seq 1 "$max_ranks"); do
    s=$(value "$work/weak-$ranks.json" seconds_per_update)
    rows=$(value "$work/weak-$ranks.json" rows_per_second)
    eff=$(awk -v a="$w1" -v b="$s" 'BEGIN { printf "%.0f%%", 100 * a / b }')
    cpu_s=$(value "$work/weak-$ranks.json" cpu_seconds_per_update)
    echo "| weak | $ranks | $((192 * ranks)) | $s | $cpu_s | $rows | $eff |"
  done
  echo
  echo "Reductions of one update at batch 384 on 2 ranks ($values values per block):"
  echo
  echo "- MPI_Allreduce of the $values-float gradient: $allreduce s"
  echo "- the deterministic ordered sum of 6 float64 blocks of that length (the data-parallel engine's"
  echo "  reduction, one block per 64 batch rows; for CD a block holds data minus model statistics):"
  echo "  $ordered s wall, $ordered_cpu s CPU on the slower rank"
  echo
  echo "With the load average above the core count, every rank of a data-parallel update waits for the"
  echo "slowest, and a descheduled rank stalls the others: wall times of the rank-parallel rows vary by a"
  echo "factor of 2 between runs of this script, and on this machine data-parallel training is slower than"
  cpu1=$(value "$work/strong-1.json" cpu_seconds_per_update)
  cpu2=$(value "$work/strong-2.json" cpu_seconds_per_update)
  ratio=$(awk -v a="$cpu1" -v b="$cpu2" 'BEGIN { printf "%.2f", b / a }')
  echo "one rank. In CPU time, the slower of 2 ranks used $ratio times the single rank's CPU per update (MPI's"
  echo "busy waiting included) where perfect scaling would be 0.5."
  echo
  echo "## A 1,000-run study"
  echo
  echo "\`marbm study --runs 500\` (500 runs each of CD-1 and mode-assisted, 20,000 updates, the reference"
  echo "experiment): $study_one s as one process on $cores threads, $study_ranks s as \`mpiexec -n $max_ranks\`"
  echo "(one thread per rank). kl.csv of the two: $same_csv. Independent runs need no communication until"
  echo "the gather at the end; their wall times here follow the machine's load, not the method."
  echo
  echo "## A model of 8 GPUs per node x 64 nodes (512 ranks)"
  echo
  awk -v t1="$t1" -v ar="$allreduce" -v ord="$ordered" -v values="$values" -f "$here/mpi_scaling_model.awk"
} >"$root/bench/results/mpi-scaling.md"
echo "wrote bench/results/mpi-scaling.md"
