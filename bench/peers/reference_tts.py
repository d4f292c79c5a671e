#!/usr/bin/env python3
"""Writes DIR/reference.tsv, the energy each TTS run must reach, from the
exact ground energies (DIR/exact.tsv, `bench_mode --write-instances`) and the
REF lines of the long reference runs on stdin (`bench_mode --reference`,
`peers_mode.py --reference`).

An instance with an exact energy keeps it (and a reference run below it is an
error: exit 1). Any other instance gets the lowest energy any reference run
found, with the solvers that found it (within 1e-9 relative). Prints, per size,
how many instances each solver's long run reached the reference on.

Usage: reference_tts.py DIR < REF-lines
"""
import os
import sys


def reached(energy, ground):
    return energy <= ground + 1e-9 * max(1.0, abs(ground))


def main():
    folder = sys.argv[1]
    exact = {}
    path = os.path.join(folder, "exact.tsv")
    if os.path.exists(path):
        for line in open(path):
            size, k, energy = line.split("\t")[:3]
            exact[(int(size), int(k))] = float(energy)
    runs = {}  # (size, k) -> {solver: energy}
    for line in sys.stdin:
        fields = line.rstrip("\n").split("\t")
        if fields[0] != "REF":
            continue
        solver, size, k, energy = fields[1], int(fields[2]), int(fields[3]), float(fields[4])
        runs.setdefault((size, k), {})[solver] = energy
    out = ["# size\tinstance\tenergy\tsource\tsolvers_reaching_it_in_the_reference_run"]
    agreement = {}  # (size, solver) -> instances reached
    sizes_runs = {}
    for key in sorted(set(exact) | set(runs)):
        found = runs.get(key, {})
        if key in exact:
            ground, source = exact[key], "exact"
            for solver, energy in found.items():
                if energy < ground - 1e-6 * max(1.0, abs(ground)):
                    sys.exit(f"reference_tts.py: {solver} found {energy:.17g} below the exact ground energy "
                             f"{ground:.17g} of size {key[0]} instance {key[1]}")
        else:
            ground, source = min(found.values()), "lowest-of-reference-runs"
        winners = sorted(s for s, e in found.items() if reached(e, ground))
        for solver in found:
            agreement[(key[0], solver)] = agreement.get((key[0], solver), 0) + (solver in winners)
        sizes_runs[key[0]] = sizes_runs.get(key[0], 0) + 1
        out.append(f"{key[0]}\t{key[1]}\t{ground:.17g}\t{source}\t{','.join(winners) or '-'}")
    with open(os.path.join(folder, "reference.tsv"), "w") as f:
        f.write("\n".join(out) + "\n")
    for (size, solver), count in sorted(agreement.items()):
        print(f"reference run, size {size}: {solver} reached the reference on {count}/{sizes_runs[size]} instances")


if __name__ == "__main__":
    main()
