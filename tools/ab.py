"""A/B two source trees: run the same benchmark command in alternating fresh processes, per line
the best of the rounds.

On this machine a process sometimes runs ~10% slow as a whole, so a single before/after pair
misleads; alternating A B B A ... and keeping each line's minimum does not. KN_ROOT is set to each
tree in turn (bench/bench_conv.py and bench/bench_kernels.py then import that tree's kernels) and
``{root}`` in the command is replaced by it; make the other tree with
``git worktree add /tmp/base <commit>``.

    python tools/ab.py /tmp/base . -- python bench/bench_kernels.py --only depthwise --threads 1
    python tools/ab.py /tmp/base . --key-words 4 -- python bench/bench_conv.py --no-torch --threads 2 --cold

Each output line is keyed by its first ``--key-words`` words (default: the words before the first
number-like token); its value is the ``--field``-th token after the key that parses as a float
(default 2: the ms column of both benches).
"""

import argparse
import os
import subprocess
import sys


def floats(line):
    out = []
    for tok in line.replace("|", " ").split():
        try:
            out.append(float(tok))
        except ValueError:
            pass
    return out


def key_of(line, nwords=0):
    if nwords:
        return " ".join(line.split()[:nwords])
    words = []
    for tok in line.split():
        try:
            float(tok)
            break
        except ValueError:
            words.append(tok)
    return " ".join(words)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--field", type=int, default=2, help="which float after the key is the value (1-based)")
    ap.add_argument("--key-words", type=int, default=0, help="key lines by their first N words")
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--" not in argv:
        ap.error("give the benchmark command after --")
    cut = argv.index("--")
    args = ap.parse_args(argv[:cut])
    cmd = argv[cut + 1:]
    trees = [os.path.abspath(args.a), os.path.abspath(args.b)]
    best = {t: {} for t in trees}
    order = []
    for r in range(args.rounds):
        for tree in trees if r % 2 == 0 else trees[::-1]:
            run = [c.replace("{root}", tree) for c in cmd]
            out = subprocess.run(run, env=dict(os.environ, KN_ROOT=tree), capture_output=True, text=True).stdout
            for line in out.splitlines():
                key = key_of(line, args.key_words)
                vals = floats(" ".join(line.split()[len(key.split()):])) if key else []
                if len(vals) < args.field or not key:
                    continue
                if key not in order:
                    order.append(key)
                v = vals[args.field - 1]
                best[tree][key] = min(v, best[tree].get(key, v))
    width = max([len(k) for k in order] + [10])
    print(f"{'':{width}s} {'A':>10s} {'B':>10s}  B/A    (A = {trees[0]}, B = {trees[1]}, best of {args.rounds})")
    for k in order:
        va, vb = best[trees[0]].get(k), best[trees[1]].get(k)
        if va is None or vb is None:
            continue
        print(f"{k:{width}s} {va:10.4g} {vb:10.4g}  {vb / va if va else float('nan'):5.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
