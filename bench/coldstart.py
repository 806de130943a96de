"""Time to first result: each network's first ``nets run`` in a fresh process with an empty kernel cache,
then again with the cache that run left (warm), then all six in turn from one empty cache.

    python bench/coldstart.py                       # the six networks, 2 threads
    python bench/coldstart.py mobilenet resnet50 --markdown
    python bench/coldstart.py resnet50 --helpers 0          # the first run compiling alone

Cold: ``NUMBA_CACHE_DIR`` is a new, empty folder for each network. Warm: the same command again with
that folder. "first result" is the wall time of the whole ``nets run`` process (interpreter start,
imports, building the network with seeded weights, the first inference including compilation),
measured outside it; ``nets run`` is given ``--repeat 1 --warmup 0`` so little else is in it, and the
steady-state inference time it prints is subtracted to give "beyond inference". No timed assertions
anywhere: this is a benchmark (see bench/RESULTS.md, "Cold start").
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

MODELS = ("vgg16", "vgg19", "resnet50", "inception_v3", "xception", "mobilenet")


def nets_run(model: str, cache: str, threads: int, helpers: int | None = None) -> tuple[float, float]:
    """(process wall seconds, steady-state median ms it printed) of one ``nets run``."""
    env = dict(os.environ, NUMBA_CACHE_DIR=cache)
    if helpers is not None:
        env["NETS_COMPILE_HELPERS"] = str(helpers)
    cmd = [sys.executable, "-m", "nets.cli.main", "run", model, "--threads", str(threads), "--repeat", "3",
           "--warmup", "0"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    m = re.search(r"steady state median ([0-9.]+) ms", proc.stdout)
    return wall, float(m.group(1)) if m else float("nan")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="*", default=list(MODELS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--helpers", type=int, default=None,
                    help="helper processes compiling alongside a first run (NETS_COMPILE_HELPERS; default: one "
                         "per further core, at most 3; 0: the first run compiles alone)")
    args = ap.parse_args(argv)
    load = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory(prefix="kn-coldstart-") as tmp:
        for name in args.models:
            cache = os.path.join(tmp, name)
            os.makedirs(cache)
            cold, _ = nets_run(name, cache, args.threads, args.helpers)
            warm, ms = nets_run(name, cache, args.threads, args.helpers)
            rows.append((name, cold, warm, warm - 4 * ms / 1e3))   # 4 inferences: first + 3 timed
            print(f"# {name}: cold {cold:.1f} s, warm {warm:.1f} s", file=sys.stderr, flush=True)
            shutil.rmtree(cache)
        shared = os.path.join(tmp, "all")
        os.makedirs(shared)
        t0 = time.perf_counter()
        for name in args.models:
            nets_run(name, shared, args.threads, args.helpers)
        all_cold = time.perf_counter() - t0
    cmd = "python bench/coldstart.py " + " ".join(sys.argv[1:] if argv is None else argv)
    print(f"`{cmd.strip()}` ({args.threads} threads, load average before {load:.1f}; wall seconds of the "
          "whole `nets run` process)\n")
    sep = "|" if args.markdown else " "
    head = ["network", "cold (empty cache) s", "warm s", "warm, beyond inference s"]
    if args.markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
    else:
        print(f"{head[0]:<14} {head[1]:>22} {head[2]:>8} {head[3]:>26}")
    for name, cold, warm, beyond in rows:
        if args.markdown:
            print(f"{sep} {name} {sep} {cold:.1f} {sep} {warm:.2f} {sep} {beyond:.2f} {sep}")
        else:
            print(f"{name:<14} {cold:>22.1f} {warm:>8.2f} {beyond:>26.2f}")
    print(f"\nall {len(args.models)} in turn from one empty cache: {all_cold:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
