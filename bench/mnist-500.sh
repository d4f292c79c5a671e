#!/usr/bin/env bash
# The MNIST 784x500 benchmark: trains 784x500 RBMs on the first 9,000 images
# of the MNIST test set with CD-1, PCD-1 and mode-assisted training, estimates
# the log-likelihood of the other 1,000 images by AIS (the published
# protocol, with the reverse runs' bracket), draws filters and samples, and
# writes bench/results/mnist-500.md (bench/mnist_500_page.py) with the pictures
# beside it.
#
# usage: bench/mnist-500.sh [BUILD_DIR] [UPDATES] [METHODS]
#   BUILD_DIR  defaults to ./build; the marbm executable must be built there
#   UPDATES    parameter updates per method (default 4500: 50 epochs of 90
#              batches of 100; the reduced CPU budget)
#   METHODS    comma-separated subset of cd,pcd,mode,mode-pcd (default all
#              four; mode is mode-assisted training on CD-1, mode-pcd on PCD-1,
#              both with the default solver choice, --mode-solver auto)
# Environment: MARBM_DATA (default ../shared/data beside the repository),
# MARBM_BACKEND (default auto), MARBM_RESULTS (default bench/results),
# MARBM_THREADS (CPU threads of every command; default 0, the runtime default;
# 1 on a machine shared with other work), MARBM_SEED (training, AIS and
# sampling seed; default 1), MARBM_WORK (a folder that keeps the
# models and JSON outputs; default a temporary one, removed at the end).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
build="${1:-$root/build}"
updates="${2:-4500}"
methods="${3:-cd,pcd,mode,mode-pcd}"
marbm="$build/marbm"
data_dir="${MARBM_DATA:-$root/../shared/data}"
backend="${MARBM_BACKEND:-auto}"
threads="${MARBM_THREADS:-0}"
seed="${MARBM_SEED:-1}"
results="${MARBM_RESULTS:-$root/bench/results}"
mnist="$data_dir/mnist/t10k-images-idx3-ubyte.gz"
if [[ ! -x "$marbm" ]]; then
  echo "mnist-500.sh: no marbm executable in '$build' (build the marbm_cli target first)" >&2
  exit 2
fi
if [[ ! -f "$mnist" ]]; then
  echo "mnist-500.sh: no MNIST test set at '$mnist' (set MARBM_DATA)" >&2
  exit 2
fi
mkdir -p "$results"
if [[ -n "${MARBM_WORK:-}" ]]; then
  work="$MARBM_WORK"  # kept: models, JSON outputs and timings stay there
  mkdir -p "$work"
else
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
fi

train_data="idx:$mnist@0:9000"
test_data="idx:$mnist@9000:1000"
# Settings of Salakhutdinov & Murray's CD-1 runs where the budget allows:
# lr 0.05, momentum 0.5 (they raise it to 0.9 after 5 epochs), weight decay 2e-4, batch 100.
common=(--data "$train_data" --hidden 500 --k 1 --lr 0.05 --momentum 0.5 --weight-decay 0.0002 --batch 100
        --iters "$updates" --seed "$seed" --backend "$backend" --threads "$threads" --json)
IFS=',' read -r -a method_list <<<"$methods"
for method in "${method_list[@]}"; do
  case "$method" in
    cd|pcd|mode|mode-pcd) ;;
    *) echo "mnist-500.sh: unknown method '$method' (cd, pcd, mode or mode-pcd)" >&2; exit 2 ;;
  esac
done
# The commit the run starts from (the tree may change while it runs).
commit="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
dirty="$(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo ' (with local changes)' || true)"
load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
started="$(date -u '+%Y-%m-%d %H:%M')"
for method in "${method_list[@]}"; do
  extra=()
  case "$method" in
    cd) extra=(--method cd) ;;
    pcd) extra=(--method pcd --chains 100) ;;
    mode) extra=(--method mode) ;;
    mode-pcd) extra=(--method mode --base pcd --chains 100) ;;
  esac
  model="$work/$method.safetensors"
  cut -d' ' -f1-3 /proc/loadavg >"$work/$method-load-before"
  echo "mnist-500.sh: training $method ($updates updates)" >&2
  # CPU seconds (user + system) of each step beside its wall time.
  /usr/bin/time -f '%U %S' -o "$work/$method-train.cpu" \
    "$marbm" train "${common[@]}" "${extra[@]}" --out "$model" >"$work/$method-train.json"
  echo "mnist-500.sh: AIS for $method" >&2
  /usr/bin/time -f '%U %S' -o "$work/$method-eval.cpu" \
    "$marbm" eval "$model" --data "$test_data" --seed "$seed" --threads "$threads" --json >"$work/$method-eval.json"
  "$marbm" show "$model" --image 28x28 --out "$results/mnist-500-$method-filters.png" --data "$test_data" \
    --backend "$backend" --threads "$threads" --json >"$work/$method-show.json"
  "$marbm" sample "$model" --chains 10 --steps 1000 --snapshots 8 --from-data "$test_data" --image 28x28 \
    --out "$results/mnist-500-$method-samples.png" --seed "$seed" --backend "$backend" --threads "$threads" --json >/dev/null
  cut -d' ' -f1-3 /proc/loadavg >"$work/$method-load-after"
done
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"

cpu="$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1)"
python3 "$here/mnist_500_page.py" "$work" "$methods" "$updates" "$threads" "$seed" "$started" "$commit$dirty" \
  "${cpu:-unknown CPU}, $(nproc) cores" "$load_before" "$load_after" >"$results/mnist-500.md.new"
mv "$results/mnist-500.md.new" "$results/mnist-500.md"
echo "mnist-500.sh: wrote $results/mnist-500.md" >&2
