#!/usr/bin/env bash
# Puts nanobind, which Debian 12 does not package, into .deps/python in the
# repository (git-ignored), where CMake looks for it when the Python in PATH
# has no nanobind of its own. The other Python packages the tests need
# (numpy, pytest, scikit-learn) are Debian packages that install-deps.sh
# installs. Without pip or PyPI this says so and succeeds: the build
# (MARBM_PYTHON=AUTO) then leaves the Python module out.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="$root/.deps/python"
python="${PYTHON:-python3}"

if [ -f "$target/nanobind/__init__.py" ]; then
  echo "install-python-deps: nanobind present in .deps/python"
  exit 0
fi
if "$python" -c 'import nanobind' 2>/dev/null; then
  echo "install-python-deps: $python has nanobind"
  exit 0
fi
if ! "$python" -m pip --version >/dev/null 2>&1; then
  echo "install-python-deps: no pip for $python; the Python module will not be built" >&2
  exit 0
fi
# --target installs beside the system's packages without touching them.
if "$python" -m pip install --disable-pip-version-check --no-input --quiet \
     --target "$target" 'nanobind>=2.1,<3'; then
  echo "install-python-deps: nanobind installed in .deps/python"
else
  rm -rf "$target"
  echo "install-python-deps: could not install nanobind from PyPI; the Python module will not be built" >&2
fi
