#!/usr/bin/env bash
# Builds the libFuzzer harnesses (preset `fuzz`, clang) and runs each for a
# fixed time on a copy of its seed corpus with its dictionary:
#
#   scripts/fuzz.sh [SECONDS_PER_HARNESS]   (default 20)
#
# A finding (crash, sanitizer report, an exception that is not a
# marbm::Error) stops with status 1; the input is kept in build-fuzz/findings.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds="${1:-20}"
cmake --preset fuzz >/dev/null
cmake --build --preset fuzz --target fuzz_model fuzz_csv fuzz_idx fuzz_digits fuzz_data_spec
work=build-fuzz/corpus-run
findings=build-fuzz/findings
mkdir -p "$findings"
status=0
for name in model csv idx digits data_spec; do
  rm -rf "$work/$name"
  mkdir -p "$work/$name"
  cp tests/fuzz/corpus/"$name"/* "$work/$name"/
  echo "fuzz: $name for ${seconds} s"
  if ! ASAN_OPTIONS=detect_leaks=1 build-fuzz/tests/fuzz/fuzz_"$name" -max_total_time="$seconds" -max_len=4096 \
      -timeout=10 -rss_limit_mb=2048 -dict=tests/fuzz/"$name".dict -artifact_prefix="$findings/$name-" \
      -print_final_stats=1 "$work/$name" >"$work/$name.log" 2>&1; then
    echo "fuzz: $name found a problem (see $work/$name.log and $findings)" >&2
    tail -40 "$work/$name.log" >&2
    status=1
  else
    grep -E "stat::number_of_executed_units" "$work/$name.log" || true
  fi
done
exit "$status"
