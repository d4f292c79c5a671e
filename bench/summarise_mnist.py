#!/usr/bin/env python3
"""Summarises mnist_compare's CSV: a markdown table on stdout and a plot.

usage: summarise_mnist.py RESULTS.csv PLOT.png
       summarise_mnist.py --screen SCREEN.csv   (one row per run, final values)

For each variant, the learning rate of the grid with the best median final
held-out log-likelihood is its tuned rate. The table gives, per variant and
rate, the median (min..max over seeds) final held-out and training
log-likelihood and the median training CPU time; then the tuned rates at
equal updates and at equal CPU time (the held-out log-likelihood at the last
evaluation within the budget of the fastest tuned variant). The plot needs
gnuplot; without it the table is still written.
"""
import csv
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict


def screen(path):
    last = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            key = (row["variant"], float(row["lr"]), int(row["seed"]))
            if key not in last or int(row["iteration"]) > int(last[key]["iteration"]):
                last[key] = row
    print("| variant | held-out LL | training LL | mode steps | CPU s | hidden-unit cosine |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for (variant, _, _), row in sorted(last.items(), key=lambda kv: -float(kv[1]["test_ll"])):
        print(f"| {variant} | {float(row['test_ll']):.2f} | {float(row['train_ll']):.2f} | {row['mode_steps']} | "
              f"{float(row['train_seconds']):.1f} | {float(row['hidden_similarity']):.2f} |")
    return 0


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--screen":
        return screen(sys.argv[2])
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    path, plot_path = sys.argv[1], sys.argv[2]
    runs = defaultdict(list)  # (variant, lr, seed) -> rows sorted by iteration
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            key = (row["variant"], float(row["lr"]), int(row["seed"]))
            runs[key].append({
                "iteration": int(row["iteration"]),
                "train_ll": float(row["train_ll"]),
                "test_ll": float(row["test_ll"]),
                "seconds": float(row["train_seconds"]),
                "similarity": float(row["hidden_similarity"]),
            })
    for rows in runs.values():
        rows.sort(key=lambda r: r["iteration"])
    variants = []
    for variant, _, _ in runs:
        if variant not in variants:
            variants.append(variant)
    configs = defaultdict(list)  # (variant, lr) -> list of run rows
    for (variant, lr, seed), rows in sorted(runs.items()):
        configs[(variant, lr)].append(rows)

    def final(rows_list, field):
        return [rows[-1][field] for rows in rows_list]

    print("| variant | lr | held-out LL, median (min..max) | training LL, median | CPU s per run | hidden-unit cosine |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    tuned = {}
    for variant in variants:
        for (v, lr), rows_list in sorted(configs.items()):
            if v != variant:
                continue
            test = final(rows_list, "test_ll")
            med = statistics.median(test)
            print(f"| {variant} | {lr:g} | {med:.2f} ({min(test):.2f}..{max(test):.2f}) | "
                  f"{statistics.median(final(rows_list, 'train_ll')):.2f} | "
                  f"{statistics.median(final(rows_list, 'seconds')):.1f} | "
                  f"{statistics.median(final(rows_list, 'similarity')):.2f} |")
            if variant not in tuned or med > tuned[variant][1]:
                tuned[variant] = (lr, med)
    print()
    budget = min(statistics.median(final(configs[(v, lr)], "seconds")) for v, (lr, _) in tuned.items())
    print(f"Tuned (best rate of the grid per variant). Equal CPU time: the held-out LL at the last evaluation "
          f"within {budget:.1f} s of training, the median run time of the fastest tuned variant.")
    print()
    print("| variant | tuned lr | held-out LL at 3,000 updates | held-out LL within the equal-time budget | CPU s per run |")
    print("| --- | ---: | ---: | ---: | ---: |")
    order = sorted(tuned, key=lambda v: -tuned[v][1])
    for variant in order:
        lr, med = tuned[variant]
        rows_list = configs[(variant, lr)]
        within = []
        for rows in rows_list:
            inside = [r for r in rows if r["seconds"] <= budget * 1.0001]
            within.append(inside[-1]["test_ll"] if inside else float("nan"))
        test = final(rows_list, "test_ll")
        print(f"| {variant} | {lr:g} | {med:.2f} ({min(test):.2f}..{max(test):.2f}) | "
              f"{statistics.median(within):.2f} | {statistics.median(final(rows_list, 'seconds')):.1f} |")

    if shutil.which("gnuplot") is None:
        print("\n(gnuplot not found: no plot)", file=sys.stderr)
        return 0
    with tempfile.TemporaryDirectory() as work:
        # Median curve of each tuned variant: against updates and against seconds.
        files = []
        for variant in order:
            lr, _ = tuned[variant]
            rows_list = configs[(variant, lr)]
            name = os.path.join(work, f"{len(files)}.dat")
            with open(name, "w") as out:
                for k in range(min(len(r) for r in rows_list)):
                    it = rows_list[0][k]["iteration"]
                    ll = statistics.median(r[k]["test_ll"] for r in rows_list)
                    sec = statistics.median(r[k]["seconds"] for r in rows_list)
                    out.write(f"{it} {ll} {sec}\n")
            files.append((name, f"{variant} (lr {lr:g})"))
        temporary = os.path.join(work, "plot.png")
        script = os.path.join(work, "plot.gp")
        with open(script, "w") as gp:
            gp.write("set terminal pngcairo size 1200,480 font ',10'\n")
            gp.write(f"set output '{temporary}'\n")
            gp.write("set multiplot layout 1,2\nset grid\nset key bottom right\n")
            gp.write("set ylabel 'held-out mean log-likelihood (nats, exact)'\n")
            gp.write("set yrange [-230:*]\n")
            for column, label in ((1, "updates"), (3, "training CPU seconds (one thread)")):
                gp.write(f"set xlabel '{label}'\n")
                gp.write("plot " + ", ".join(
                    f"'{name}' using {column}:2 with linespoints title '{title}'" for name, title in files) + "\n")
            gp.write("unset multiplot\n")
        subprocess.run(["gnuplot", script], check=True)
        shutil.move(temporary, plot_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
