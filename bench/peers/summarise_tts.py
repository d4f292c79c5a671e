#!/usr/bin/env python3
"""Reads TTS lines (bench_mode --tts, peers_mode.py) on stdin and prints, per
size, each solver's best TTS99 over its steps grid and its ratio to the best
marbm solver at that size (above 1: slower than marbm)."""
import sys

best = {}
for line in sys.stdin:
    fields = line.rstrip("\n").split("\t")
    if fields[0] != "TTS":
        continue
    key = (int(fields[2]), fields[1])
    tts = float(fields[7])
    if key not in best or tts < best[key][0]:
        best[key] = (tts, fields[3], fields[8])

print("%4s  %-20s %6s %10s %8s  %s" % ("size", "solver", "steps", "tts99_s", "ratio", "solved"))
for size in sorted({s for s, _ in best}):
    mine = min((v[0] for (s, name), v in best.items() if s == size and name.startswith("marbm-")), default=float("nan"))
    for (s, name), (tts, steps, solved) in sorted(best.items()):
        if s == size:
            print("%4d  %-20s %6s %10.3e %8.2f  %s" % (size, name, steps, tts, tts / mine, solved))
