"""A/B two source trees on whole networks in short turns: two long-lived processes (one per tree,
KN_ROOT set to it) load the same network with seeded weights and take turns, A B then B A, a small
block of calls each, so every pair of timings sees nearly the same machine state.

On this machine the time of a network moves by 10-40% within minutes (other tenants, clock state):
fresh processes alternating every few seconds (tools/ab.py) still left InceptionV3's ratio at 0.99 in
one 16-round run and 1.09 in another. Turns a fraction of a second apart cancel most of that; what is
left is reported as the median of the per-pair ratios with a bootstrap 95% interval.

A process's OpenMP workers spin for a while after its last parallel region and take the other
process's second core: a call right after the other process's call ran at about twice the time
(MobileNet, 2 threads). So each turn starts after a pause, its first call is untimed, and the turn's
value is the median of the ``--block`` calls after it (as bench/compare_ort.py does between runtimes).

    git worktree add /tmp/base <commit>
    python tools/ab_paired.py /tmp/base . --nets inception_v3 resnet50 --pairs 100

The last column compares the two trees' logits (max relative difference): 0 when both compute the
same network with the same seeded weights; a tree whose seeding differs (7d028f1 drew float64 weights)
gives O(1) there, and the timings compare the same network with other random weights.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np

PAUSE_S = 0.1       # longer than the OpenMP workers' spin after a run


def worker(net: str, batch: int, threads: int, warmup: int) -> None:
    """Runs in a child with KN_ROOT on sys.path: load, warm up, then answer 'run' lines with seconds."""
    sys.path.insert(0, os.environ["KN_ROOT"])
    import nets

    model = nets.load(net, classifier_activation=None, threads=threads, seed=0)
    x = np.random.default_rng(0).normal(size=(batch, *model.input_shape)).astype(np.float32)
    out = None
    for _ in range(warmup):
        out = np.asarray(model(x))
    print("ready " + " ".join(repr(float(v)) for v in out.ravel()[:64]), flush=True)
    for line in sys.stdin:
        if not line.startswith("run"):
            break
        time.sleep(PAUSE_S)
        model(x)
        times = []
        for _ in range(int(line.split()[1])):
            t0 = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - t0)
        print(repr(float(np.median(times))), flush=True)


def start(tree: str, args, net: str) -> subprocess.Popen:
    env = dict(os.environ, KN_ROOT=os.path.abspath(tree))
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", net, "--batch", str(args.batch),
           "--threads", str(args.threads), "--warmup", str(args.warmup)]
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                            cwd=os.path.abspath(tree))


def ready(p: subprocess.Popen, tree: str) -> np.ndarray:
    line = p.stdout.readline()
    if not line.startswith("ready"):
        raise SystemExit(f"{tree}: the worker did not start (exit status {p.wait()})")
    return np.array([float(v) for v in line.split()[1:]])


def call(p: subprocess.Popen, block: int) -> float:
    p.stdin.write(f"run {block}\n")
    p.stdin.flush()
    return float(p.stdout.readline())


def median_interval(ratios: np.ndarray, rng, n: int = 2000) -> tuple[float, float]:
    """Bootstrap 95% interval of the median ratio."""
    idx = rng.integers(0, len(ratios), (n, len(ratios)))
    meds = np.median(ratios[idx], axis=1)
    return float(np.quantile(meds, 0.025)), float(np.quantile(meds, 0.975))


def session(first: str, second: str, net: str, pairs: int, args):
    """Start the two processes in this order and take ``pairs`` pairs of turns (A B, then B A, ...).
    Returns both processes' seconds per turn and their outputs."""
    p1, p2 = start(first, args, net), start(second, args, net)
    try:
        y1, y2 = ready(p1, first), ready(p2, second)
        t1, t2 = [], []
        for i in range(pairs):
            if i % 2 == 0:
                t1.append(call(p1, args.block))
                t2.append(call(p2, args.block))
            else:
                t2.append(call(p2, args.block))
                t1.append(call(p1, args.block))
    finally:
        for p in (p1, p2):
            p.stdin.close()
            p.wait()
    return t1, t2, y1, y2


def compare(a: str, b: str, net: str, args) -> str:
    # The process started second ran ~1% slower in A/A runs (MobileNet, 300 pairs): half the pairs
    # come from a session that starts A first, half from one that starts B first.
    ta, tb, ya, yb = session(a, b, net, args.pairs - args.pairs // 2, args)
    tb2, ta2, _, _ = session(b, a, net, args.pairs // 2, args)
    ta, tb = np.array(ta + ta2), np.array(tb + tb2)
    err = float(np.max(np.abs(ya - yb)) / max(float(np.max(np.abs(ya))), 1e-30))
    r = tb / ta
    lo, hi = median_interval(r, np.random.default_rng(0))
    geo = float(np.exp(np.mean(np.log(r))))
    return (f"| {net} | {args.batch} | {args.threads} | {np.median(ta) * 1e3:.2f} | {np.median(tb) * 1e3:.2f} | "
            f"{np.median(r):.3f} | {lo:.3f}-{hi:.3f} | {geo:.3f} | {len(r)} | {err:.1e} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("a", nargs="?", help="the tree before (A)")
    ap.add_argument("b", nargs="?", help="the tree after (B)")
    ap.add_argument("--nets", nargs="+", default=["resnet50"], help="zoo networks, compared one after another")
    ap.add_argument("--pairs", type=int, default=60, help="pairs of turns per network (default 60)")
    ap.add_argument("--block", type=int, default=3, help="timed calls per turn (default 3)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=5, help="untimed calls in each process first")
    ap.add_argument("--worker", metavar="NET", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.worker, args.batch, args.threads, args.warmup)
        return 0
    if not (args.a and args.b):
        ap.error("give the two trees, A (before) and B (after)")
    print(f"A = {os.path.abspath(args.a)}\nB = {os.path.abspath(args.b)}\n"
          f"load average before: {os.getloadavg()[0]:.2f}\n")
    print("| network | batch | threads | A ms | B ms | B/A median | 95% interval | B/A geomean | pairs "
          "| max rel diff |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for net in args.nets:
        print(compare(args.a, args.b, net, args), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
