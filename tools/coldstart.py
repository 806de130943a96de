"""Cold-start cost of `nets run MODEL`: first-ever run, first run with a warm Numba cache, steady state.

Runs the CLI in fresh subprocesses, each with NUMBA_CACHE_DIR pointing at one temporary folder:
    1. first-ever run: the folder is empty, every kernel specialisation is compiled and written there
    2. warm cache:     the same folder again (repeated), compiled code is loaded from disk
and prints, per run, the process wall time, the CLI's own load / first-run / steady-state figures, and
the overhead "beyond the inference": wall time minus the time the timed inferences themselves need
(every run, first run included, counted at the steady-state median).

    python tools/coldstart.py                        # resnet50, 2 threads
    python tools/coldstart.py --model vgg16 --warm-runs 3 --threads 1
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LATENCY = re.compile(r"load ([\d.]+) s \| first run ([\d.]+) s .*steady state median ([\d.]+) ms")


def run_cli(model, threads, repeat, warmup, cache_dir):
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "nets.cli", "run", model, "--threads", str(threads), "--repeat", str(repeat),
           "--warmup", str(warmup)]
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t
    m = LATENCY.search(proc.stdout)
    if proc.returncode != 0 or m is None:
        raise SystemExit(f"`{' '.join(cmd)}` failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n"
                         f"{proc.stderr[-2000:]}")
    load, first, steady_ms = float(m.group(1)), float(m.group(2)), float(m.group(3))
    inference = (1 + warmup + repeat) * steady_ms / 1e3
    return dict(wall=wall, load=load, first=first, steady_ms=steady_ms, overhead=wall - inference)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--warm-runs", type=int, default=2, help="warm-cache runs after the first-ever one")
    args = ap.parse_args(argv)
    print(f"nets run {args.model} --threads {args.threads} --repeat {args.repeat} --warmup {args.warmup}; "
          f"load avg {os.getloadavg()[0]:.1f}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="numba-cache-") as cache:
        rows.append(("first-ever (empty cache)", run_cli(args.model, args.threads, args.repeat, args.warmup, cache)))
        for i in range(args.warm_runs):
            rows.append((f"warm cache #{i + 1}", run_cli(args.model, args.threads, args.repeat, args.warmup, cache)))
    print(f"{'run':26} {'wall s':>7} {'load s':>7} {'first run s':>11} {'steady ms':>9} {'beyond inference s':>18}")
    for name, r in rows:
        print(f"{name:26} {r['wall']:7.2f} {r['load']:7.2f} {r['first']:11.2f} {r['steady_ms']:9.2f} "
              f"{r['overhead']:18.2f}")
    print(f"load avg after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
