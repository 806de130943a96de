"""``nets profile``, ``nets compare`` and ``nets peaks``."""

from __future__ import annotations

import argparse
import sys

from nets.cli.common import arch_options, load_from_args, model_args, positive, timing_args
from nets.tools.compare import compare, require_device
from nets.tools.profile import profile_model
from nets.tools.timing import synthetic_input

PROFILE_EPILOG = """\
examples:
  nets profile inception_v3 --plot p.png --trace t.json    table, picture, and a trace for ui.perfetto.dev
  nets profile resnet50 --batch 8 --threads 2 --repeat 50 --csv r50.csv --json r50.json
  nets profile mobilenet --top 20                          only the 20 slowest kernels
"""

COMPARE_EPILOG = """\
examples:
  nets compare resnet50                                    CPU vs GPU (needs a usable CUDA device)
  nets compare mobilenet --devices cpu reference           our kernels vs the NumPy oracle
  nets compare resnet50 --devices cpu cpu --unfused        fused vs unfused graph on the CPU
"""


def cmd_profile(args) -> int:
    from nets.tools.peaks import peaks  # compiles its probes with Numba: kept off `nets --help`

    require_device(args.device)
    model = load_from_args(args, device=args.device, threads=args.threads if args.device == "cpu" else None)
    pk = peaks("gpu" if args.device == "gpu" else "cpu")
    prof = profile_model(model, synthetic_input(model, args.batch), repeat=args.repeat, warmup=args.warmup,
                         peaks=pk)
    print(prof.to_text(top=args.top, fused=not args.no_fused))
    written = []
    for path, fn in ((args.csv, prof.to_csv), (args.json, prof.to_json), (args.trace, prof.to_chrome_trace),
                     (args.plot, prof.plot)):
        if path:
            fn(path)
            written.append(path)
    if written:
        print("wrote " + ", ".join(written) + (" (open the trace at https://ui.perfetto.dev)" if args.trace else ""))
    return 0


def cmd_compare(args) -> int:
    for d in args.devices:
        require_device(d)
    cmp = compare(args.model, devices=tuple(args.devices), batch=args.batch, unfused=args.unfused,
                  repeat=args.repeat, warmup=args.warmup, tol=args.tol, threads=args.threads, **arch_options(args))
    print(cmp.to_text())
    for path, fn in ((args.csv, cmp.to_csv), (args.json, cmp.to_json), (args.plot, cmp.plot)):
        if path:
            fn(path)
            print(f"wrote {path}")
    return 0


def cmd_peaks(args) -> int:
    import json

    from nets.tools.peaks import bandwidth_table, bandwidth_text, peaks, peaks_text

    require_device(args.device)
    if args.table:
        if args.device != "cpu":
            print("nets peaks: error: --table measures the CPU; drop --device gpu", file=sys.stderr)
            return 2
        rows = bandwidth_table(args.threads, mib=args.mib)
        print(json.dumps(rows, indent=1) if args.json else bandwidth_text(rows))
        return 0
    p = peaks(args.device, force=args.force)
    print(json.dumps(p, indent=1) if args.json else peaks_text(p))
    return 0


def register(sub):
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser(
        "profile", help="per-layer kernel times, GFLOP/s, GB/s and bound, with CSV/JSON/trace/plot exports",
        description="Run a network and time every kernel: one row per kernel in execution order with the layer "
                    "name, kernel variant, shapes, params, MACs, bytes, median time, share, GFLOP/s, GB/s and "
                    "whether it is compute-, memory- or launch-bound against this machine's measured peaks "
                    "(nets peaks). Layers fused into a kernel are listed under it. The footer has the "
                    "end-to-end median measured without instrumentation and the first-run (compile) time.",
        epilog=PROFILE_EPILOG, formatter_class=fmt)
    model_args(p)
    p.add_argument("--device", choices=["cpu", "gpu", "reference"], default="cpu", help="backend (default cpu)")
    timing_args(p, 20)
    p.add_argument("--top", type=positive, metavar="N", help="show only the N slowest kernels")
    p.add_argument("--no-fused", action="store_true", help="hide the rows of layers fused into a kernel")
    p.add_argument("--csv", metavar="FILE", help="write the rows as CSV")
    p.add_argument("--json", metavar="FILE", help="write rows, footer and by-op summary as JSON")
    p.add_argument("--trace", metavar="FILE", help="write a Chrome trace (open in ui.perfetto.dev)")
    p.add_argument("--plot", metavar="FILE.png", help="per-layer time bars and a roofline (needs matplotlib)")
    p.set_defaults(fn=cmd_profile)

    c = sub.add_parser(
        "compare", help="the same network on two backends: per-layer times, speed-up and numerical agreement",
        description="Run the same network and input on two backends (default: cpu and gpu) and show per layer "
                    "both median times, the speed-up and the agreement of that layer's output (max abs, max "
                    "rel = max|a-b|/max|a|, cosine), flagged over the fp32 tolerance. Without a usable GPU it "
                    "says so and exits with status 1.",
        epilog=COMPARE_EPILOG, formatter_class=fmt)
    model_args(c)
    c.add_argument("--devices", nargs=2, metavar=("A", "B"), default=["cpu", "gpu"],
                   choices=["cpu", "gpu", "reference"], help="baseline and other backend (default: cpu gpu)")
    c.add_argument("--unfused", action="store_true", help="run the second side without the fusion passes")
    timing_args(c, 10)
    c.add_argument("--tol", type=float, default=1e-4, help="flag layers whose max rel exceeds this (default 1e-4)")
    c.add_argument("--plot", metavar="FILE.png", help="per-layer times, speed-up and agreement (needs matplotlib)")
    c.add_argument("--json", metavar="FILE", help="write the comparison as JSON")
    c.add_argument("--csv", metavar="FILE", help="write the rows as CSV")
    c.set_defaults(fn=cmd_compare)

    k = sub.add_parser("peaks", help="measure (and cache) this machine's FMA peak and memory bandwidth",
                       description="Measure the fp32 FMA peak (one core and all cores) and the triad bandwidth "
                                   "(DRAM and L2) that profiles compare against; cached under "
                                   "~/.cache/kernelnets/ per CPU model and core count.")
    k.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    k.add_argument("--force", action="store_true", help="measure again even when cached")
    k.add_argument("--json", action="store_true", help="print JSON")
    k.add_argument("--table", action="store_true",
                   help="print FMA GFLOP/s and read / copy / triad GB/s on one and all cores (STREAM-style, "
                        "not cached; run it when the machine is otherwise idle)")
    k.add_argument("--threads", type=positive, metavar="N", help="all-core thread count for --table (default: all)")
    k.add_argument("--mib", type=positive, default=256, metavar="MIB",
                   help="size of each --table array in MiB (default 256: far past the caches)")
    k.set_defaults(fn=cmd_peaks)
