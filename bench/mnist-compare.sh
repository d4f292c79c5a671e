#!/usr/bin/env bash
# MNIST 784x20 with exact likelihoods: CD-1, PCD-1 and mode-assisted training
# (on CD-1 and on PCD-1), each over a learning-rate grid and several seeds,
# compared by exact held-out log-likelihood at equal updates and at equal
# CPU time. Writes bench/results/mnist-784x20.md, .csv and .png.
#
# usage: bench/mnist-compare.sh [BUILD_DIR] [extra mnist_compare options for the grid...]
#   BUILD_DIR defaults to ./build; bench/mnist_compare must be built there.
#   MNIST_STAGES="grid screen" (default) or either one alone.
#   Data: ../shared/data/mnist beside the repository (MARBM_DATA_DIR overrides).
#   About 15 minutes on 2 idle cores (30 when they are shared).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
build="${1:-$root/build}"
shift || true
tool="$build/bench/mnist_compare"
if [[ ! -x "$tool" ]]; then
  echo "mnist-compare.sh: no bench/mnist_compare in '$build' (build the mnist_compare target first)" >&2
  exit 2
fi
data_dir="${MARBM_DATA_DIR:-$root/../shared/data}"
images="$data_dir/mnist/t10k-images-idx3-ubyte.gz"
if [[ ! -f "$images" ]]; then
  echo "mnist-compare.sh: no MNIST images at '$images' (set MARBM_DATA_DIR)" >&2
  exit 1
fi

results="$root/bench/results"
mkdir -p "$results"
csv="$results/mnist-784x20.csv"
variants="cd,pcd,mode,mode-pcd"
lrs="0.05,0.1,0.2"
options=(--train "idx:$images@0:9000" --test "idx:$images@9000:1000" --hidden 20 --batch 100 --iters 3000
         --eval-every 500 --seeds 3 --lrs "$lrs" --variants "$variants" --init-bias data)

# Stages (MNIST_STAGES, default both): "grid" is the comparison above;
# "screen" tries further mode-step variants at lr 0.1 with seed 1 only.
stages="${MNIST_STAGES:-grid screen}"
screen_csv="$results/mnist-784x20-screen.csv"
screen_variants="cd,cd-random-bias,pcd-random-bias,mode,mode-constant,mode-constant-0.1,mode-add,mode-add-constant-0.1,mode-marginal,mode-states-8,mode-states-8-constant,mode-pcd"
screen_options=(--train "idx:$images@0:9000" --test "idx:$images@9000:1000" --hidden 20 --batch 100 --iters 3000
                --eval-every 1000 --seeds 1 --lrs 0.1 --variants "$screen_variants" --init-bias data)
start=$(date +%s)
if [[ " $stages " == *" grid "* ]]; then "$tool" "${options[@]}" "$@" --out "$csv"; fi
if [[ " $stages " == *" screen "* ]]; then "$tool" "${screen_options[@]}" --out "$screen_csv"; fi
wall=$(( $(date +%s) - start ))

cpu="$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1)"
commit="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
dirty="$(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo ' (with local changes)' || true)"
python3 "$here/summarise_mnist.py" "$csv" "$results/mnist-784x20.png" >"$results/mnist-784x20.table.md"

{
  echo "# MNIST 784x20: mode-assisted training against CD-1 and PCD-1, exact log-likelihoods"
  echo
  echo "Training rows: the first 9,000 MNIST test images; held out: the last 1,000; binarized at pixel >= 128."
  echo "784 visible x 20 hidden units, batch 100, 3,000 updates (33 epochs), weights from N(0, 0.01^2), visible"
  echo "biases at the data's base rates (\`--init-visible-bias data\`), hidden biases N(0, 0.01^2). Learning rates"
  echo "$lrs for every method, seeds 1-3. Log-likelihoods are exact (log Z by enumerating the 2^20 hidden states)."
  echo "Times are each run's CPU seconds spent training (one thread, evaluation excluded)."
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "- commit: $commit$dirty"
  echo "- machine: ${cpu:-unknown CPU}, $(nproc) cores; runs in parallel, one thread each"
  echo "- command: \`MNIST_STAGES=\"$stages\" bench/mnist-compare.sh\` (grid: \`mnist_compare ${options[*]}\`), $wall s wall for the stages run"
  echo
  echo "Variants (\`mnist_compare --list\`): \`cd\` CD-1; \`pcd\` PCD-1 with 100 chains; \`mode\` mode-assisted"
  echo "training as in SPEC.md section 3 (joint mode, lr * push, the mode step replaces the CD-1 step) with the"
  echo "seeded local search; \`mode-pcd\` the same on PCD-1."
  echo
  cat "$results/mnist-784x20.table.md"
  echo
  if [[ -f "$screen_csv" ]]; then
    echo "## Screening of mode-step variants (lr 0.1, seed 1, 3,000 updates)"
    echo
    echo "\`mnist_compare ${screen_options[*]}\`: \`mode-constant\` lr_mode = lr; \`-0.1\` lr_mode = 0.1 lr; \`mode-add\`"
    echo "the mode step after the CD-1 step instead of in its place (\`--mode-step add\`); \`mode-marginal\` the"
    echo "marginal mode argmax_v p(v) (\`--mode-target marginal\`); \`-random-bias\` visible biases drawn like the"
    echo "weights instead of the base rates (\`--init-visible-bias random\`); \`mode-states-8\` the 8 lowest"
    echo "minima of the local search weighted by exp(-E) instead of the mode alone (\`--mode-states 8\`)."
    echo
    python3 "$here/summarise_mnist.py" --screen "$screen_csv"
    echo
  fi
  echo "![held-out log-likelihood against updates and CPU seconds](mnist-784x20.png)"
  echo
  cat <<'TEXT'
## What it shows

- **Mode-assisted training does not win on MNIST 784x20 at equal time.** PCD-1 and mode-assisted
  training on PCD-1 are the two best methods, within about a nat of each other. At equal updates the
  mode steps are worth at most a nat, which is the size of the rounding-driven changes between runs. An
  earlier run of this grid, before matrix products changed their summation order, put PCD-1 1.5 nats
  ahead instead. At equal CPU time PCD-1 is ahead, because the searches cost time.
  - On CD-1, mode steps neither help nor hurt beyond seed noise.
  - No variant in the screening does better. A full-size mode step (lr_mode = lr) is far worse: one
    state holds a vanishing share of a 784-unit model's probability, so a full step on it is a strongly
    biased gradient. Averaging the 8 lowest minima by exp(-E) does not change that.
  - The push of SPEC.md section 3 shrinks the step to about 1/40 of a CD step here, so mode steps are
    nearly inert. Where PCD-1 starts to fail (lr 0.2) they steady it by about 2 nats in this run.
- **The solver is not the limit.** The seeded local search finds the exhaustive ground state of these
  models (bench/results/mode-trained.md), so a mode step costs milliseconds instead of the second the
  exhaustive search took. Each mode-assisted run spends 25-75% more CPU time than its base method, mostly
  in about 200 searches.
- **The start is the bigger lever.** PCD-1 whose visible biases start near zero falls into a collapse
  where the hidden units learn nearly the same feature. The `-random-bias` rows of the screening show it
  through the mean cosine between hidden weight vectors; CSV column `hidden_similarity` has it at every
  evaluation. Starting the biases at the data's base rates, `marbm train`'s default, makes PCD-1 the best
  method here, about 18 nats ahead of CD-1.
- **Where mode-assisted training does help:** on the exact-KL toy problems, where a few states carry most
  of the probability and pushing down the mode removes real mass. Shifting bars 6/3 gives 0.0101 against
  CD-1's 0.108; bars and stripes 3x3 and 4x4 give 3.8-6x lower KL than CD-1 (README).
TEXT
} | sed "s|$data_dir|DATA|g" >"$results/mnist-784x20.md"
rm -f "$results/mnist-784x20.table.md"
echo "recorded $results/mnist-784x20.md ($wall s)"
