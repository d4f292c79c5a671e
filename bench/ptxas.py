#!/usr/bin/env python3
"""Static resource use of CUDA kernels as ptxas reports it, as one Markdown table.

Compiles each SOURCE (a path relative to the tree, e.g. cuda/mode_sb.cu) with
`nvcc -O3 -Xptxas -v` for each architecture and prints, per kernel: registers,
spill stores and loads, stack frame, barriers and static shared memory. These
figures need no GPU. Several trees can be compared in one table: the working
tree ("current"), a git revision (--base), or any folder holding cuda/, host/
and include/ (--tree LABEL=DIR, e.g. a copy with a changed launch bound).

usage: bench/ptxas.py [--arch 90] [--arch 80] [--base REV] [--tree LABEL=DIR]
                      [--only REGEX] [--occupancy THREADS] SOURCE...
       bench/ptxas.py --provenance COMMAND   (a results page's date, commit,
                      machine, compiler and command lines)

The bench/ptxas-*.sh page scripts call this for their tables.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fail(message):
    print(f"ptxas.py: {message}", file=sys.stderr)
    sys.exit(2)


def nvcc_path():
    found = os.environ.get("NVCC") or os.environ.get("CUDACXX") or shutil.which("nvcc")
    if not found and os.path.exists("/usr/local/cuda/bin/nvcc"):
        found = "/usr/local/cuda/bin/nvcc"
    if not found:
        fail("no nvcc found (set NVCC)")
    return found


def compile_log(nvcc, tree, source, arch, work):
    """ptxas's report for one source of one tree, demangled."""
    generated = os.path.join(work, "generated", "marbm")
    os.makedirs(generated, exist_ok=True)
    with open(os.path.join(generated, "config.hpp"), "w") as f:
        f.write("#pragma once\n#define MARBM_WITH_MPI 0\n")
    command = [nvcc, "-DMARBM_HAVE_CUDA=1", "-I" + os.path.join(tree, "host"), "-I" + os.path.join(tree, "cuda"),
               "-I" + os.path.join(tree, "include"), "-I" + os.path.join(work, "generated"), "-O3", "-DNDEBUG",
               f"--generate-code=arch=compute_{arch},code=sm_{arch}", "--expt-relaxed-constexpr", "-std=c++20",
               "-Xptxas", "-v", "-x", "cu", "-c", os.path.join(tree, source), "-o", os.path.join(work, "out.o")]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        fail(f"nvcc failed on {source} (sm_{arch}):\n{result.stderr[-2000:]}")
    return subprocess.run(["c++filt"], input=result.stderr, capture_output=True, text=True).stdout


def short_name(signature):
    """`void marbm::detail::(anonymous namespace)::k<4, true>(args)` -> `k<4, true>`."""
    name = re.sub(r"^void ", "", signature.strip())
    name = name.replace("(anonymous namespace)::", "")
    depth, cut = 0, len(name)
    for i, c in enumerate(name):  # the argument list: the first '(' outside template brackets
        if c == "<":
            depth += 1
        elif c == ">":
            depth -= 1
        elif c == "(" and depth == 0:
            cut = i
            break
    name = name[:cut]
    return re.sub(r"^marbm::detail::", "", name)


def kernels(log):
    found, name = {}, None
    for line in log.splitlines():
        m = re.search(r"Compiling entry function '(.+)' for", line)
        if m:
            name = short_name(m.group(1))
            found[name] = {}
            continue
        m = re.search(r"Function properties for (.+)$", line)
        if m:
            name = short_name(m.group(1))
            found.setdefault(name, {})
            continue
        if name is None:
            continue
        for key, pattern in (("stack", r"(\d+) bytes stack frame"), ("spill_stores", r"(\d+) bytes spill stores"),
                             ("spill_loads", r"(\d+) bytes spill loads"), ("registers", r"Used (\d+) registers"),
                             ("barriers", r"used (\d+) barriers"), ("smem", r"(\d+) bytes smem")):
            m = re.search(pattern, line)
            if m:
                found[name][key] = int(m.group(1))
    # Device functions have properties too; kernels are those with registers.
    return {k: v for k, v in found.items() if "registers" in v}


def resident_warps(registers, threads):
    """Warps per SM that registers allow (65,536 per SM, allotted per warp in
    units of 256; at most 64 warps and 32 blocks per SM) for blocks of
    `threads` threads."""
    per_warp = -(-registers * 32 // 256) * 256
    warps_per_block = -(-threads // 32)
    blocks = min(32, (65536 // per_warp) // warps_per_block)
    return min(64, blocks * warps_per_block)


def print_provenance(nvcc, command):
    def run(*argv):
        return subprocess.run(argv, capture_output=True, text=True).stdout.strip()
    commit = run("git", "-C", ROOT, "rev-parse", "--short", "HEAD")
    if run("git", "-C", ROOT, "status", "--porcelain", "--", "cuda", "host", "include"):
        commit += " (with uncommitted changes)"
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               os.uname().machine)
    compiler = run(nvcc, "--version").splitlines()
    print(f"- date: {run('date', '-u', '+%Y-%m-%d %H:%M UTC')}")
    print(f"- commit: {commit}")
    print(f"- machine: {cpu}, {os.cpu_count()} cores, no GPU needed; {compiler[-1] if compiler else nvcc}")
    print(f"- command: `{command}`")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sources", nargs="*", metavar="SOURCE")
    parser.add_argument("--provenance", metavar="COMMAND",
                        help="print the page's date, commit, machine, compiler and COMMAND lines instead")
    parser.add_argument("--arch", action="append", help="compute capability without the dot (default 90)")
    parser.add_argument("--base", help="a git revision compiled beside the working tree")
    parser.add_argument("--tree", action="append", default=[], help="LABEL=DIR, another tree to compile")
    parser.add_argument("--only", help="keep the kernels whose name matches this regular expression")
    parser.add_argument("--occupancy", type=int, metavar="THREADS",
                        help="add the warps per SM that registers allow for blocks of THREADS threads")
    args = parser.parse_args()
    nvcc = nvcc_path()
    if args.provenance:
        print_provenance(nvcc, args.provenance)
        return
    if not args.sources:
        fail("no SOURCE given")
    archs = args.arch or ["90"]
    with tempfile.TemporaryDirectory() as work:
        trees = [("current", ROOT)]
        if args.base:
            base = os.path.join(work, "base")
            os.makedirs(base)
            archive = subprocess.run(["git", "-C", ROOT, "archive", args.base, "cuda", "host", "include"],
                                     capture_output=True)
            if archive.returncode != 0:
                fail(f"no revision '{args.base}': {archive.stderr.decode().strip()}")
            subprocess.run(["tar", "-x", "-C", base], input=archive.stdout, check=True)
            trees.insert(0, (f"base {args.base}", base))
        for spec in args.tree:
            label, _, folder = spec.partition("=")
            if not folder or not os.path.isdir(folder):
                fail(f"--tree wants LABEL=DIR with an existing folder, got '{spec}'")
            trees.append((label, folder))
        rows = []
        for label, tree in trees:
            for arch in archs:
                for source in args.sources:
                    if not os.path.exists(os.path.join(tree, source)):
                        continue  # a source the base revision does not have yet
                    for name, k in sorted(kernels(compile_log(nvcc, tree, source, arch, work)).items()):
                        if args.only and not re.search(args.only, name):
                            continue
                        rows.append((label, f"sm_{arch}", name, k))
    columns = ["kernel"]
    if len(trees) > 1:
        columns.append("tree")
    if len(archs) > 1:
        columns.append("arch")
    columns += ["registers", "spill stores / loads (B)", "stack (B)", "barriers", "static shared (B)"]
    if args.occupancy:
        columns.append(f"warps per SM ({args.occupancy}-thread blocks, registers)")
    print("| " + " | ".join(columns) + " |")
    print("|" + "|".join("---" if c in ("kernel", "tree", "arch") else "---:" for c in columns) + "|")
    for label, arch, name, k in rows:
        cells = [f"`{name}`"]
        if len(trees) > 1:
            cells.append(label)
        if len(archs) > 1:
            cells.append(arch)
        cells += [str(k["registers"]), f"{k.get('spill_stores', 0)} / {k.get('spill_loads', 0)}",
                  str(k.get("stack", 0)), str(k.get("barriers", 0)), str(k.get("smem", 0))]
        if args.occupancy:
            cells.append(str(resident_warps(k["registers"], args.occupancy)))
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
