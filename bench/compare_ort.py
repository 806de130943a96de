"""Side by side with ONNX Runtime and OpenVINO: the same graph and weights, the same threads, one process.

For each network: build it with seeded weights (logits, no softmax), export the source graph to ONNX
(BatchNorm left for the peers to fuse, as with a framework export), check the outputs agree, then time
ours, ORT and OpenVINO (when installed) in turn — warm-up first, then alternating blocks of repeats so all
see the same machine noise — and report the medians, ours/ORT, ours/OV, ours/best and GFLOP/s (1 MAC =
2 FLOPs, MACs from nets.graph.ops.node_macs). A ratio is the median over rounds of that round's ratio
(each engine's block median in the round): engines timed a second apart see the same machine state,
so the ratios are steadier than the times, which move by 20-35% between sessions here. OpenVINO
reads the same ONNX bytes (``core.read_model``), reshaped to the static batch, compiled for CPU with
INFERENCE_NUM_THREADS, PERFORMANCE_HINT=LATENCY, INFERENCE_PRECISION_HINT=f32 and NUM_STREAMS=1.

    python bench/compare_ort.py                              # six networks, batch 1, 2 threads
    python bench/compare_ort.py --models resnet50 mobilenet --batch 1 8 --threads 1 2 --repeat 20
    python bench/compare_ort.py --markdown                   # a table for bench/RESULTS.md

A network whose build, export or run fails still gets a row, with the error in it.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import time
import traceback

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

MODELS = ("vgg16", "vgg19", "resnet50", "inception_v3", "xception", "mobilenet")


def machine_info() -> dict:
    import numba
    import onnxruntime
    try:
        import openvino
        ov_version = openvino.__version__.split("-")[0]
    except ImportError:
        ov_version = "not installed"

    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    commit = "?"
    try:
        import subprocess

        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                                text=True, check=False).stdout.strip() or "?"
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "numba": numba.__version__,
            "numba_threads": numba.config.NUMBA_NUM_THREADS, "onnxruntime": onnxruntime.__version__,
            "openvino": ov_version,
            "numpy": np.__version__, "python": platform.python_version(), "commit": commit}


def graph_macs(g) -> int:
    """Multiply-accumulates of one sample over the whole source graph."""
    from nets.graph.ops import node_macs

    return sum(node_macs(n, [g.shapes[v] for v in n.inputs], g.shapes[n.output]) for n in g.nodes)


def ort_session(data: bytes, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])


def ov_compile(data: bytes, shape, threads: int, **config):
    """The ONNX model compiled by OpenVINO's CPU plugin for a static input ``shape`` (None when
    openvino is absent): LATENCY hint, f32, one stream, ``threads`` threads, plus ``config``."""
    try:
        import openvino as ov
    except ImportError:
        return None
    core = ov.Core()
    model = core.read_model(data)
    model.reshape({model.inputs[0].get_any_name(): list(shape)})
    return core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
                                             "INFERENCE_PRECISION_HINT": "f32", "NUM_STREAMS": 1, **config})


def ov_runner(data: bytes, x: np.ndarray, threads: int):
    """A callable running the ONNX model on OpenVINO's CPU plugin (None when openvino is absent)."""
    compiled = ov_compile(data, x.shape, threads)
    if compiled is None:
        return None
    req = compiled.create_infer_request()

    def run():
        req.infer({0: x})
        return req.get_output_tensor(0).data.copy()
    return run


def _short(e: BaseException) -> str:
    msg = f"{type(e).__name__}: {e}".replace("\n", " ").replace("|", "/")
    return msg if len(msg) <= 160 else msg[:157] + "..."


def interleaved(fns: dict, repeat: int, warmup: int, budget_s: float) -> dict:
    """Median seconds per callable, timed in turn each round. ``budget_s`` caps a slow configuration
    (at least 3 rounds). A callable that raises is dropped and its error kept."""
    times = {k: [] for k in fns}
    blocks = {k: [] for k in fns}      # each round's block median: the per-round ratios
    errors = {}
    live = dict(fns)
    for _ in range(warmup):
        for k, fn in list(live.items()):
            try:
                fn()
            except Exception as e:  # noqa: BLE001 - reported in the row
                errors[k] = _short(e)
                del live[k]
    # Both runtimes keep their worker threads spinning for a moment after a run (ONNX Runtime's
    # intra-op worker ~36 ms here), which steals the other runtime's second core when they alternate.
    # So time in small blocks per runtime, with a pause longer than that spin between blocks and the
    # first call of each block untimed.
    start = time.perf_counter()
    block = 3
    for r in range(-(-repeat // block)):
        for k, fn in list(live.items()):
            time.sleep(0.1)
            fn()
            got = []
            for _ in range(block):
                t0 = time.perf_counter()
                fn()
                got.append(time.perf_counter() - t0)
            times[k] += got
            blocks[k].append(statistics.median(got))
        if r >= 1 and time.perf_counter() - start > budget_s:
            break
    out = {k: statistics.median(v) for k, v in times.items() if v}
    out["rounds"] = max((len(v) for v in times.values()), default=0)
    out["blocks"] = {k: v for k, v in blocks.items() if v}
    out["errors"] = errors
    return out


def round_ratio(blocks: dict, peers: list) -> float:
    """Median over rounds of ours / the fastest of ``peers`` in that round."""
    n = min(len(blocks[k]) for k in ["ours", *peers])
    return statistics.median(blocks["ours"][i] / min(blocks[k][i] for k in peers) for i in range(n))


def bench_config(model, data: bytes, x: np.ndarray, threads: int, flops: float, repeat: int, warmup: int,
                 budget_s: float) -> dict:
    """One network at one batch and thread count: agreement, then interleaved timing."""
    row = {"gflop": flops / 1e9}
    notes = []
    try:
        sess = ort_session(data, threads)
        in_name = sess.get_inputs()[0].name
        run_ort = lambda: sess.run(None, {in_name: x})[0]
    except Exception as e:  # noqa: BLE001 - reported in the row
        run_ort = None
        notes.append(f"ORT: {_short(e)}")
    model.threads = threads
    run_ours = lambda: model(x)
    # the first run of ours includes Numba compilation and executor set-up: reported apart
    try:
        t0 = time.perf_counter()
        ours_out = run_ours()
        row["ours_first_ms"] = 1e3 * (time.perf_counter() - t0)
    except Exception as e:  # noqa: BLE001
        traceback.print_exc(file=sys.stderr)
        ours_out = None
        notes.append(f"ours: {_short(e)}")
    run_ov = None
    try:
        run_ov = ov_runner(data, x, threads)
    except Exception as e:  # noqa: BLE001 - reported in the row
        notes.append(f"OV: {_short(e)}")
    for key, fn in (("ort", run_ort), ("ov", run_ov)):
        if fn is None:
            continue
        try:
            peer_out = fn()
            if ours_out is not None:
                row[f"{key}_rel_err"] = float(np.max(np.abs(ours_out - peer_out)) /
                                              max(float(np.max(np.abs(peer_out))), 1e-30))
        except Exception as e:  # noqa: BLE001
            notes.append(f"{key.upper()}: {_short(e)}")
            if key == "ort":
                run_ort = None
            else:
                run_ov = None
    row["max_rel_err"] = max((row[k] for k in ("ort_rel_err", "ov_rel_err") if k in row), default=None)
    fns = {k: fn for k, fn in (("ours", run_ours if ours_out is not None else None), ("ort", run_ort),
                               ("ov", run_ov)) if fn is not None}
    timing = interleaved(fns, repeat, warmup, budget_s)
    notes += [f"{k}: {err}" for k, err in timing["errors"].items()]
    row["rounds"] = timing["rounds"]
    for k in ("ours", "ort", "ov"):
        if k in timing:
            row[f"{k}_ms"] = 1e3 * timing[k]
            row[f"{k}_gflops"] = flops / timing[k] / 1e9
    blocks = timing["blocks"]
    row["rounds_ms"] = {k: [1e3 * t for t in v] for k, v in blocks.items()}
    peers = [k for k in ("ort", "ov") if k in blocks]
    if "ours" in blocks:
        for key, against in (("ratio", ["ort"]), ("ratio_ov", ["ov"]), ("ratio_best", peers)):
            if against and all(k in blocks for k in against):
                row[key] = round_ratio(blocks, against)
    if notes:
        row["error"] = "; ".join(notes)
    return row


def bench_network(name, batches, threads_list, repeat, warmup, budget_s, seed=0) -> list[dict]:
    import nets
    from nets.io.onnx.export import export_onnx_bytes

    rows = []
    base = {"model": name}
    try:
        t0 = time.perf_counter()
        model = nets.load(name, classifier_activation=None, threads=threads_list[0], seed=seed)
        build_s = time.perf_counter() - t0
        g = model.source_graph
        data = export_onnx_bytes(g)
        macs = graph_macs(g)
    except Exception as e:  # noqa: BLE001
        traceback.print_exc(file=sys.stderr)
        return [dict(base, batch=b, threads=t, error=f"build/export: {_short(e)}")
                for b in batches for t in threads_list]
    print(f"# {name}: {macs / 1e9:.3f} GMAC/sample, ONNX {len(data) / 2**20:.0f} MiB, "
          f"built in {build_s:.1f} s", file=sys.stderr)
    for batch in batches:
        x = np.random.default_rng(seed + batch).normal(size=(batch, *model.input_shape)).astype(np.float32)
        for threads in threads_list:
            row = dict(base, batch=batch, threads=threads)
            row.update(bench_config(model, data, x, threads, 2.0 * macs * batch, repeat, warmup, budget_s))
            rows.append(row)
            print(f"#   batch {batch} threads {threads}: ours {_fmt(row.get('ours_ms'))} ms, "
                  f"ORT {_fmt(row.get('ort_ms'))} ms, OV {_fmt(row.get('ov_ms'))} ms, "
                  f"rel err {_fmt(row.get('max_rel_err'), '.1e')}", file=sys.stderr)
            gc.collect()
    del model, data
    gc.collect()
    return rows


def _fmt(v, spec=".2f") -> str:
    return "-" if v is None else format(v, spec)


COLUMNS = [("model", "model", "s"), ("batch", "batch", "d"), ("threads", "threads", "d"),
           ("ours_ms", "ours ms", ".2f"), ("ort_ms", "ORT ms", ".2f"), ("ov_ms", "OV ms", ".2f"),
           ("ratio", "ours/ORT", ".2f"), ("ratio_ov", "ours/OV", ".2f"), ("ratio_best", "ours/best", ".2f"),
           ("ours_gflops", "ours GFLOP/s", ".1f"), ("max_rel_err", "max rel err", ".1e"),
           ("ours_first_ms", "ours 1st run ms", ".0f"), ("rounds", "repeats", "d")]


def format_table(rows: list[dict], markdown: bool) -> str:
    head = [title for _, title, _ in COLUMNS] + ["error"]
    body = [[_fmt(r.get(k), spec) if spec != "s" else str(r.get(k, "-")) for k, _, spec in COLUMNS]
            + [r.get("error", "")] for r in rows]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        lines += ["| " + " | ".join(cells) + " |" for cells in body]
        return "\n".join(lines)
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
    fmt_row = lambda cells: "  ".join(c.ljust(w) if i in (0, len(head) - 1) else c.rjust(w)
                                      for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    return "\n".join([fmt_row(head)] + [fmt_row(b) for b in body])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(MODELS), metavar="NAME",
                   help=f"networks to run (default: {' '.join(MODELS)})")
    p.add_argument("--batch", nargs="+", type=int, default=[1], help="batch sizes (default 1)")
    p.add_argument("--threads", nargs="+", type=int, default=[2], help="thread counts (default 2)")
    p.add_argument("--repeat", type=int, default=20, help="interleaved timed rounds (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed rounds first (default 3)")
    p.add_argument("--budget", type=float, default=60.0,
                   help="seconds of timed rounds per configuration before stopping early (default 60)")
    p.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = p.parse_args(argv)

    info = machine_info()
    rows = []
    for name in args.models:
        rows += bench_network(name, args.batch, args.threads, args.repeat, args.warmup, args.budget)
    header = (f"machine: {info['cpu']}, {info['cores']} cores (Numba threads available "
              f"{info['numba_threads']}); numba {info['numba']}, onnxruntime {info['onnxruntime']}, "
              f"openvino {info['openvino']}, "
              f"numpy {info['numpy']}, python {info['python']}, commit {info['commit']}\n"
              f"seeded weights, logits; median of interleaved repeats after {args.warmup} warm-up rounds, ratios "
              "the median of each round's ratio; "
              "ORT: CPUExecutionProvider, sequential, inter_op 1, graph optimizations ALL; OV: CPU, static "
              "batch, LATENCY hint, f32, 1 stream; "
              "GFLOP/s with 1 MAC = 2 FLOPs")
    command = "python bench/compare_ort.py " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.markdown:
        print(f"`{command.strip()}`\n\n{header}\n")
    else:
        print(header + "\n")
    print(format_table(rows, args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
