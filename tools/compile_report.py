"""Where a cold start's time goes: Numba compile seconds per compiled function and specialisation.

Each network runs in a fresh process with ``NUMBA_CACHE_DIR`` set to a new, empty folder (its own, so
every network is measured as a first-ever start): ``nets.load(name)`` and one batch-1 inference. A
listener on Numba's ``numba:compile`` events records every compilation of a dispatcher for one type
signature (a *specialisation*), with its time exclusive of the compilations nested inside it (callees
compiled on the way). The report lists, per network, the wall time of the first inference, the
compile time and the number of specialisations, then the costliest specialisations. All of these
are this process's: on a machine with more than one core, helper processes compile part of the
kernels alongside (``nets.runtime.compile``; the "helpers" column), and what they compile is not
listed; ``--helpers 0`` measures one process alone.

    python tools/compile_report.py                          # the six networks, 2 threads
    python tools/compile_report.py mobilenet --top 25 --markdown
    python tools/compile_report.py --shared                 # one cache for all: what each adds
    python tools/compile_report.py resnet50 --helpers 0     # this process alone
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = ("vgg16", "vgg19", "resnet50", "inception_v3", "xception", "mobilenet")


def _name(dispatcher) -> str:
    fn = getattr(dispatcher, "py_func", None)
    return f"{fn.__module__}.{fn.__qualname__}" if fn is not None else repr(dispatcher)


def child(model: str, threads: int) -> dict:
    """In this (fresh) process: record compilations while the network loads and runs once."""
    from numba.core import event

    stacks = threading.local()
    records = []

    class Compiles(event.Listener):
        def on_start(self, ev):
            if not hasattr(stacks, "s"):
                stacks.s = []
            stacks.s.append([time.perf_counter(), 0.0])

        def on_end(self, ev):
            t0, nested = stacks.s.pop()
            total = time.perf_counter() - t0
            if stacks.s:
                stacks.s[-1][1] += total
            args = ev.data.get("args")
            records.append(dict(function=_name(ev.data["dispatcher"]), signature=str(tuple(args) if args else ()),
                                seconds=total - nested, total=total))

    import numpy as np

    t = time.perf_counter()
    event.register("numba:compile", Compiles())
    import nets

    m = nets.load(model, threads=threads)
    loaded = time.perf_counter() - t
    x = np.zeros((1,) + m.input_shape, np.float32)
    t1 = time.perf_counter()
    m(x)
    first = time.perf_counter() - t1
    from nets.runtime.compile import last_run

    return dict(model=model, load_s=loaded, first_s=first, records=records, helpers=last_run.get("helpers", 0),
                deferred=len(last_run.get("deferred", ())))


def measure(model: str, threads: int, cache: str, helpers: int | None = None) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if helpers is not None:
        env["NETS_COMPILE_HELPERS"] = str(helpers)
    cmd = [sys.executable, __file__, "--child", model, "--threads", str(threads)]
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{model}: the child failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["wall_s"] = time.perf_counter() - t
    return out


def summarise(results: list[dict], top: int, markdown: bool) -> str:
    lines = []
    bar = "|" if markdown else ""
    head = ["network", "process wall s", "load s", "first inference s", "compile s", "specialisations", "helpers"]
    if markdown:
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    else:
        lines.append(f"{head[0]:<14}{head[1]:>16}{head[2]:>8}{head[3]:>19}{head[4]:>11}{head[5]:>17}{head[6]:>9}")
    by_fn = defaultdict(lambda: [0.0, 0, set()])
    for r in results:
        comp = sum(x["seconds"] for x in r["records"])
        for x in r["records"]:
            agg = by_fn[x["function"]]
            agg[0] += x["seconds"]
            agg[1] += 1
            agg[2].add(r["model"])
        cells = [r["model"], f"{r['wall_s']:.1f}", f"{r['load_s']:.1f}", f"{r['first_s']:.1f}", f"{comp:.1f}",
                 str(len(r["records"])), str(r.get("helpers", 0))]
        lines.append(("| " + " | ".join(cells) + " |") if markdown else
                     f"{cells[0]:<14}{cells[1]:>16}{cells[2]:>8}{cells[3]:>19}{cells[4]:>11}{cells[5]:>17}{cells[6]:>9}")
    lines += ["", f"costliest compiled functions (exclusive seconds summed over the networks above, top {top}):"]
    head = ["function", "seconds", "specialisations", "networks"]
    if markdown:
        lines += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for fn, (sec, n, nets_) in sorted(by_fn.items(), key=lambda kv: -kv[1][0])[:top]:
        short = fn.replace("kernels.cpu.", "")
        if markdown:
            lines.append(f"| `{short}` | {sec:.1f} | {n} | {len(nets_)} |")
        else:
            lines.append(f"  {short:<70}{sec:>8.1f} s {n:>4} specs {len(nets_):>2} nets")
    return "\n".join(lines).replace("\n\n|", "\n\n" + bar) if markdown else "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*", default=list(MODELS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--shared", action="store_true", help="one cache folder for all networks, in order")
    ap.add_argument("--helpers", type=int, default=None,
                    help="helper processes compiling alongside (NETS_COMPILE_HELPERS; default: one per further core)")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--json", metavar="FILE", help="also write every record as JSON")
    ap.add_argument("--child", metavar="MODEL", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.threads)))
        return 0
    results = []
    with tempfile.TemporaryDirectory(prefix="numba-cold-") as shared:
        for name in args.models:
            if args.shared:
                results.append(measure(name, args.threads, shared, args.helpers))
            else:
                with tempfile.TemporaryDirectory(prefix="numba-cold-") as cache:
                    results.append(measure(name, args.threads, cache, args.helpers))
            r = results[-1]
            print(f"# {name}: {r['wall_s']:.1f} s, {len(r['records'])} specialisations", file=sys.stderr)
    cmd = "python tools/compile_report.py " + " ".join(sys.argv[1:] if argv is None else argv)
    print(f"`{cmd.strip()}` ({'one shared' if args.shared else 'an empty'} Numba cache"
          f"{'' if args.shared else ' per network'}, {args.threads} threads, load average before "
          f"{os.getloadavg()[0]:.1f})\n")
    print(summarise(results, args.top, args.markdown))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
