#!/usr/bin/env bash
# Installs the Debian packages marbm's build and tests need, when missing.
# apt-get update runs only when something has to be installed. Needs root
# (or sudo) only in that case. The CUDA toolkit is not a Debian package here:
# without it the build simply leaves the CUDA engine out. Then it runs
# install-python-deps.sh (nanobind from PyPI, as the user, into .deps/python).
set -euo pipefail

packages=(
  cmake
  g++
  libopenblas-dev
  libcli11-dev
  nlohmann-json3-dev
  zlib1g-dev
  libpng-dev
  libgtest-dev
  libbenchmark-dev
  gnuplot-nox
  # the fuzz preset: clang with libFuzzer and OpenMP
  clang
  libclang-rt-dev
  libomp-dev
  # MPI scale-out (MARBM_MPI) and the distributed tests under mpiexec
  libopenmpi-dev
  openmpi-bin
  # the Python module and its tests (nanobind itself comes from PyPI, below)
  python3-dev
  python3-pip
  python3-numpy
  python3-pytest
  python3-sklearn
)

missing=()
for package in "${packages[@]}"; do
  if ! dpkg -s "$package" 2>/dev/null | grep -q '^Status: install ok installed'; then
    missing+=("$package")
  fi
done

here="$(dirname "${BASH_SOURCE[0]}")"
if [ "${#missing[@]}" -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  "$here/install-python-deps.sh"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
run_as_root=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    run_as_root=(sudo)
  else
    echo "install-deps: missing packages (${missing[*]}) and not root; install them and rerun" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
"${run_as_root[@]}" apt-get update
"${run_as_root[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
"$here/install-python-deps.sh"
