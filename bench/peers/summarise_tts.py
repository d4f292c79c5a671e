#!/usr/bin/env python3
"""Per-instance TTS99 from RUN lines (bench_mode --tts=DIR, peers_mode.py) on
stdin.

For each solver, setting (steps / sweeps) and instance i: p_i = hits / replicas
(the share of that instance's replicas, reads or agents reaching the reference
energy), t_run = CPU seconds of the call / replicas, and
TTS99_i = t_run log(0.01) / log(1 - p_i) (t_run when p_i = 1, infinite when
p_i = 0). A setting qualifies at a size only if it solves every instance
(p_i > 0 for all); its TTS is the median of TTS99_i over the instances (the
90th percentile, nearest rank, and the max are reported too). A solver's best
setting at a size is its qualifying setting with the lowest median.

Prints a plain summary; --markdown FILE writes the page's tables, --png FILE
the picture (TTS99 against size, log scale; needs matplotlib).

Usage: summarise_tts.py [--markdown FILE] [--png FILE] < RUN-lines
"""
import argparse
import math
import statistics
import sys

NAMES = {
    "marbm-sb-ballistic": "marbm sb ballistic",
    "marbm-sb-discrete": "marbm sb discrete",
    "marbm-sa": "marbm sa",
    "marbm-sb-ballistic-collapsed": "marbm sb ballistic, collapsed polish",
    "marbm-sb-discrete-collapsed": "marbm sb discrete, collapsed polish",
    "marbm-sa-collapsed": "marbm sa, collapsed polish",
    "peer-dwave-sa": "dwave-samplers SA",
    "peer-sb-ballistic": "simulated-bifurcation ballistic",
    "peer-sb-discrete": "simulated-bifurcation discrete",
}
ORDER = list(NAMES)
TARGET = 10.0


def tts99(p, t_run):
    if p <= 0.0:
        return math.inf
    if p >= 1.0:
        return t_run
    return t_run * math.log(0.01) / math.log1p(-p)


def nearest_rank(values, q):
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def seconds(x):
    if x is None or math.isinf(x):
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if x >= scale:
            return f"{x / scale:.3g} {unit}"
    return f"{x / 1e-9:.3g} ns"


def read(stream):
    runs = {}  # (solver, size, steps) -> {instance: (replicas, hits, cpu_s)}
    for line in stream:
        fields = line.rstrip("\n").split("\t")
        if fields[0] != "RUN":
            continue
        solver, size, steps, k, replicas, hits, cpu = fields[1:8]
        runs.setdefault((solver, int(size), int(steps)), {})[int(k)] = (int(replicas), int(hits), float(cpu))
    return runs


def settings(runs):
    """Every setting with its per-instance figures and whether it qualifies."""
    count = {}
    for (_, size, _), by_instance in runs.items():
        count[size] = max(count.get(size, 0), len(by_instance))
    out = {}
    for (solver, size, steps), by_instance in runs.items():
        tts = []
        p_all = []
        t_all = []
        for replicas, hits, cpu in by_instance.values():
            p, t = hits / replicas, cpu / replicas
            p_all.append(p)
            t_all.append(t)
            tts.append(tts99(p, t))
        solved = sum(1 for p in p_all if p > 0)
        qualifies = solved == count[size] and len(by_instance) == count[size]
        out[(solver, size, steps)] = {
            "solved": solved,
            "count": count[size],
            "qualifies": qualifies,
            "median": statistics.median(tts) if qualifies else math.inf,
            "p90": nearest_rank(tts, 0.9) if qualifies else math.inf,
            "max": max(tts) if qualifies else math.inf,
            "p_min": min(p_all),
            "p_median": statistics.median(p_all),
            "t_run": statistics.median(t_all),
            "replicas": next(iter(by_instance.values()))[0],
        }
    return out


def best_per_size(table):
    best = {}  # (size, solver) -> (steps, row) or None
    for (solver, size, steps), row in table.items():
        key = (size, solver)
        best.setdefault(key, None)
        if row["qualifies"] and (best[key] is None or row["median"] < best[key][1]["median"]):
            best[key] = (steps, row)
    return best


def marbm_best(best, size, descent_only=False):
    candidates = [(v[1]["median"], s) for (z, s), v in best.items()
                  if z == size and v and s.startswith("marbm-") and not (descent_only and s.endswith("-collapsed"))]
    return min(candidates) if candidates else (math.inf, None)


def markdown(table, best):
    sizes = sorted({size for size, _ in best})
    lines = []
    w = lines.append
    w("| size | solver | best steps | median TTS99 | p90 | max | vs best marbm (median) | instances solved |")
    w("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for size in sizes:
        mine, _ = marbm_best(best, size)
        for solver in ORDER:
            if (size, solver) not in best:
                continue
            entry = best[(size, solver)]
            if entry is None:
                most = max((r["solved"] for (s, z, _), r in table.items() if s == solver and z == size), default=0)
                count = next(r["count"] for (s, z, _), r in table.items() if z == size)
                w(f"| {size} | {NAMES[solver]} | none qualifies | - | - | - | - | at most {most}/{count} |")
                continue
            steps, row = entry
            ratio = row["median"] / mine if math.isfinite(mine) else math.nan
            emphasis = "**" if solver == "peer-dwave-sa" else ""
            w(f"| {size} | {NAMES[solver]} | {steps} | {seconds(row['median'])} | {seconds(row['p90'])} | "
              f"{seconds(row['max'])} | {emphasis}{ratio:.2f}{emphasis} | {row['solved']}/{row['count']} |")
    lines.append("")
    w("Target check (dwave-samplers SA's best median TTS99 over marbm's best; target >= 10). The last two")
    w("columns say why: per replica (read), the median share reaching the reference and the CPU time.")
    w("")
    w("| size | marbm best | its median TTS99 | dwave best median | ratio | at p90 | at max | target | marbm p_i, t_run | dwave p_i, t_run |")
    w("| ---: | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |")
    for size in sizes:
        mine, solver = marbm_best(best, size)
        peer = best.get((size, "peer-dwave-sa"))
        if solver is None or peer is None:
            mine_text = f"{NAMES[solver]}: {seconds(mine)}" if solver else "none qualifies"
            peer_text = seconds(peer[1]["median"]) if peer else "none qualifies"
            w(f"| {size} | {mine_text} | - | {peer_text} | - | - | - | not decided | - | - |")
            continue
        own = best[(size, solver)][1]
        ratio = peer[1]["median"] / mine
        verdict = "**met**" if ratio >= TARGET else f"**missed by {TARGET / ratio:.2f}x**"
        w(f"| {size} | {NAMES[solver]} ({best[(size, solver)][0]} steps) | {seconds(mine)} | "
          f"{seconds(peer[1]['median'])} ({peer[0]} sweeps) | {ratio:.1f}x | {peer[1]['p90'] / own['p90']:.1f}x | "
          f"{peer[1]['max'] / own['max']:.1f}x | {verdict} | {own['p_median']:.3f}, {seconds(own['t_run'])} | "
          f"{peer[1]['p_median']:.3f}, {seconds(peer[1]['t_run'])} |")
    lines.append("")
    w("The same with marbm's default polish only (the descent; without `--polish collapsed`):")
    w("")
    w("| size | marbm best, descent polish | its median TTS99 | ratio dwave / it | target |")
    w("| ---: | --- | ---: | ---: | --- |")
    for size in sizes:
        mine, solver = marbm_best(best, size, descent_only=True)
        peer = best.get((size, "peer-dwave-sa"))
        if solver is None or peer is None:
            w(f"| {size} | {NAMES.get(solver, 'none qualifies')} | {seconds(mine)} | - | not decided |")
            continue
        ratio = peer[1]["median"] / mine
        verdict = "met" if ratio >= TARGET else f"missed by {TARGET / ratio:.2f}x"
        w(f"| {size} | {NAMES[solver]} ({best[(size, solver)][0]} steps) | {seconds(mine)} | {ratio:.1f}x | {verdict} |")
    lines.append("")
    w("Every setting (median over instances of p_i and of t_run; TTS99 columns over qualifying settings only):")
    w("")
    w("| size | solver | steps | replicas | solved | min p_i | median p_i | t_run | median TTS99 | max TTS99 |")
    w("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for (solver, size, steps) in sorted(table, key=lambda k: (k[1], ORDER.index(k[0]), k[2])):
        row = table[(solver, size, steps)]
        w(f"| {size} | {NAMES[solver]} | {steps} | {row['replicas']} | {row['solved']}/{row['count']} | "
          f"{row['p_min']:.3f} | {row['p_median']:.3f} | {seconds(row['t_run'])} | {seconds(row['median'])} | "
          f"{seconds(row['max'])} |")
    return "\n".join(lines) + "\n"


def picture(best, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=110)
    for solver in ORDER:
        points = sorted((size, v[1]) for (size, s), v in best.items() if s == solver and v)
        if not points:
            continue
        xs = [p[0] for p in points]
        ys = [p[1]["median"] for p in points]
        low = [0.0 for _ in points]
        high = [p[1]["max"] - p[1]["median"] for p in points]
        style = "-" if solver.startswith("marbm-") else "--"
        ax.errorbar(xs, ys, yerr=[low, high], linestyle=style, marker="o", capsize=2, elinewidth=0.7,
                    label=NAMES[solver])
        if solver == "peer-dwave-sa":
            ax.plot(xs, [y / TARGET for y in ys], linestyle=":", color="black", label="dwave-samplers SA / 10 (target)")
    ax.set_yscale("log")
    ax.set_xlabel("units per layer (n = m)")
    ax.set_ylabel("TTS99, CPU s (median over instances; bar to max)")
    ax.set_title("Ground state TTS99, one thread, best qualifying setting per size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--markdown")
    parser.add_argument("--png")
    args = parser.parse_args()
    table = settings(read(sys.stdin))
    best = best_per_size(table)
    print("%4s  %-32s %8s %11s %11s %8s  %s" % ("size", "solver", "steps", "median_s", "max_s", "ratio", "solved"))
    for size in sorted({s for s, _ in best}):
        mine, _ = marbm_best(best, size)
        for solver in ORDER:
            if (size, solver) not in best:
                continue
            entry = best[(size, solver)]
            if entry is None:
                print("%4d  %-32s %8s" % (size, NAMES[solver], "none qualifies"))
                continue
            steps, row = entry
            print("%4d  %-32s %8d %11.3e %11.3e %8.2f  %d/%d" % (size, NAMES[solver], steps, row["median"], row["max"],
                                                                 row["median"] / mine, row["solved"], row["count"]))
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(markdown(table, best))
    if args.png:
        picture(best, args.png)


if __name__ == "__main__":
    main()
