"""Per layer, side by side with ONNX Runtime and OpenVINO: where a network's gap to the peers is.

For one network: build it with seeded weights, export the source graph to ONNX (`nets export`'s
exporter: every node is named after the source layer it comes from, ``layer`` or ``layer/part``),
then time each engine's kernels on that file with its own instrumentation:

- ours: ``Model.profile`` (median seconds per kernel; a kernel owns its layer and the layers fused
  into it);
- ONNX Runtime: its profiler (``SessionOptions.enable_profiling``; the ``*_kernel_time`` events of
  every node, median over the runs). ORT's profiler adds ~15-30 µs per node;
- OpenVINO: ``PERF_COUNT=YES`` and ``InferRequest.get_profiling_info()`` (``real_time`` of every
  executed node, median over the runs).

Each peer node is attributed to the layer its name comes from (``source_layer``: OpenVINO lists the
ONNX nodes fused into each of its nodes, ``originalLayersNames``; ORT names a fused node after the
last node of the chain), and so to the one of our kernels that runs that layer (its own or fused).
Rows are our kernels, sorted by how much longer ours takes than the faster peer; peers' nodes that
match no layer (layout transposes of the export) are totalled apart.

    python bench/compare_layers.py resnet50                        # batch 1, 2 threads, top 25 rows
    python bench/compare_layers.py mobilenet --batch 8 --top 0     # every kernel
    python bench/compare_layers.py xception --csv /tmp/xception.csv --markdown

Sums of per-layer times are not the end-to-end times: every engine's instrumentation adds a little
per node, and ORT's the most; bench/compare_ort.py times whole networks.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import tempfile
from collections import defaultdict

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))        # compare_ort, the whole-network bench

UNMATCHED = "(not a layer: layout and export glue)"


SUFFIXES = ("_kernel_time", "_nchwc")   # ORT: profiler events; nodes its NCHWc transformer rewrote


def source_layer(node_name: str, layers, aliases=()) -> str | None:
    """The layer of ours a peer's node belongs to: its name or one of its ``aliases`` (OpenVINO's
    ``originalLayersNames``: every ONNX node fused into it), with an engine's suffixes removed
    (ORT names a fused node after the last node of the chain, plus ``_nchwc``, and writes '/' as
    '__'), else the part before the first '/' (``layer/relu``, ``layer/WithoutBiases``)."""
    names = []
    for name in (node_name, *aliases):
        for suffix in SUFFIXES:
            name = name.removesuffix(suffix)
        names += [name, name.replace("__", "/")]
    for cand in names + [n.split("/", 1)[0] for n in names]:
        if cand in layers:
            return cand
    return None


def ours_per_kernel(model, x, repeat: int) -> tuple[list[dict], dict]:
    """Our kernels: [{kernel, layer, variant, layers (own + fused), ms}], and source layer -> row index."""
    pk = {"kind": "cpu", "name": "-", "cores": 2, "threads_measured": 2, "fma_gflops_1": 1.0,
          "fma_gflops_all": 2.0, "dram_gbs_1": 1.0, "dram_gbs_all": 2.0, "l2_gbs_1": 1.0, "method": "-",
          "measured_at": "-"}        # the roofline columns are not used here: no need to measure peaks
    prof = model.profile(x, repeat=repeat, warmup=3, peaks=pk, progress=False)
    rows, owner = [], {}
    for r in prof.kernels:
        layers = [r["layer"], *r["fused"]]
        for name in layers:
            owner[name] = len(rows)
        rows.append({"layer": r["layer"], "op": r["op"], "variant": r["kernel"], "layers": layers,
                     "ours_ms": r["time_ms"]})
    return rows, owner


def ort_per_node(data: bytes, x: np.ndarray, threads: int, repeat: int) -> dict:
    """ONNX Runtime's median ms per node name over ``repeat`` profiled runs."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.enable_profiling = True
    opts.profile_file_prefix = os.path.join(tempfile.mkdtemp(prefix="kn-ort-prof-"), "ort")
    sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: x}
    for _ in range(3 + repeat):
        sess.run(None, feed)
    path = sess.end_profiling()
    with open(path) as f:
        events = json.load(f)
    os.unlink(path)
    times = defaultdict(list)
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            times[e["name"].removesuffix("_kernel_time")].append(e["dur"] / 1e3)
    # the last `repeat` runs only (the profile also holds the warm-up runs)
    return {k: statistics.median(v[-repeat:]) for k, v in times.items()}


def ov_per_node(data: bytes, x: np.ndarray, threads: int, repeat: int) -> tuple[dict, dict] | None:
    """OpenVINO's median ms per executed node over ``repeat`` runs, and each node's original ONNX
    nodes (None when openvino is absent)."""
    from compare_ort import ov_compile

    compiled = ov_compile(data, x.shape, threads, PERF_COUNT=True)
    if compiled is None:
        return None
    req = compiled.create_infer_request()
    for _ in range(3):
        req.infer({0: x})
    aliases = {}
    for op in compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        if "originalLayersNames" in info:
            aliases[op.get_friendly_name()] = [a for a in info["originalLayersNames"].astype(str).split(",") if a]
    times = defaultdict(list)
    for _ in range(repeat):
        req.infer({0: x})
        for p in req.get_profiling_info():
            if p.status == p.Status.EXECUTED:
                times[p.node_name].append(p.real_time.total_seconds() * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}, aliases


def attribute(rows: list[dict], owner: dict, per_node: dict, key: str, aliases=None) -> tuple[float, list[str]]:
    """Add a peer's node times to our kernel rows under ``key``; returns (unmatched ms, their names)."""
    for r in rows:
        r.setdefault(key, 0.0)
        r.setdefault(key + "_nodes", [])
    other, names = 0.0, []
    for node, ms in per_node.items():
        layer = source_layer(node, owner, (aliases or {}).get(node, ()))
        if layer is None:
            other += ms
            names.append(node)
            continue
        r = rows[owner[layer]]
        r[key] += ms
        r[key + "_nodes"].append(node)
    return other, names


def compare(name: str, batch: int, threads: int, repeat: int, seed: int = 0) -> dict:
    import nets

    model = nets.load(name, classifier_activation=None, threads=threads, seed=seed)
    x = np.random.default_rng(seed + batch).normal(size=(batch, *model.input_shape)).astype(np.float32)
    return dict(compare_model(model, x, threads, repeat), model=name)


def compare_model(model, x: np.ndarray, threads: int, repeat: int) -> dict:
    """Our kernels as rows, with the ORT and OpenVINO nodes of the same layers attributed to them."""
    from nets.io.onnx.export import export_onnx_bytes

    data = export_onnx_bytes(model.source_graph)
    model.threads = threads
    model(x)                                       # compile before anything is timed
    rows, owner = ours_per_kernel(model, x, repeat)
    extra = {"ort": attribute(rows, owner, ort_per_node(data, x, threads, repeat), "ort_ms")}
    ov = ov_per_node(data, x, threads, repeat)
    if ov is not None:
        extra["ov"] = attribute(rows, owner, ov[0], "ov_ms", ov[1])
    for r in rows:
        peers = [r[k] for k in ("ort_ms", "ov_ms") if r.get(k + "_nodes")]
        r["best_ms"] = min(peers) if peers else None
        r["excess_ms"] = r["ours_ms"] - r["best_ms"] if peers else None
        r["ratio_best"] = r["ours_ms"] / r["best_ms"] if peers and r["best_ms"] > 0 else None
    return {"model": model.name, "batch": x.shape[0], "threads": threads, "rows": rows, "unmatched": extra,
            "ov_available": ov is not None}


def _f(v, spec=".3f"):
    return "" if v is None else format(v, spec)


def table(res: dict, top: int, markdown: bool) -> str:
    rows = sorted(res["rows"], key=lambda r: -(r["excess_ms"] or 0.0))
    shown = rows if top <= 0 else rows[:top]
    cols = ["kernel (layer)", "op", "ours variant", "ours ms", "ORT ms", "OV ms", "ours/best", "ours-best ms"]
    lines = []
    if markdown:
        lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * 3 + "---:|" * 5]
    else:
        lines.append(f"{'kernel (layer)':32s} {'op':16s} {'ours variant':26s} {'ours ms':>8s} {'ORT ms':>8s} "
                     f"{'OV ms':>8s} {'o/best':>7s} {'excess':>8s}")
    for r in shown:
        vals = [r["layer"], r["op"], r["variant"], _f(r["ours_ms"]), _f(r.get("ort_ms")) if r.get("ort_ms_nodes")
                else "", _f(r.get("ov_ms")) if r.get("ov_ms_nodes") else "", _f(r["ratio_best"], ".2f"),
                _f(r["excess_ms"], "+.3f")]
        if markdown:
            lines.append("| " + " | ".join(vals) + " |")
        else:
            lines.append(f"{vals[0][:32]:32s} {vals[1][:16]:16s} {vals[2][:26]:26s} {vals[3]:>8s} {vals[4]:>8s} "
                         f"{vals[5]:>8s} {vals[6]:>7s} {vals[7]:>8s}")
    tot = {k: sum(r.get(k) or 0.0 for r in res["rows"]) for k in ("ours_ms", "ort_ms", "ov_ms")}
    glue = {k: v[0] for k, v in res["unmatched"].items()}
    lines.append("")
    lines.append(f"sum of kernels: ours {tot['ours_ms']:.2f} ms, ORT {tot['ort_ms']:.2f} ms "
                 f"(+{glue.get('ort', 0):.2f} ms not a layer), "
                 + (f"OV {tot['ov_ms']:.2f} ms (+{glue.get('ov', 0):.2f} ms not a layer)" if res["ov_available"]
                    else "OV not installed"))
    by_op = defaultdict(lambda: [0.0, 0.0, 0.0, 0])
    for r in res["rows"]:
        g = by_op[r["variant"].split("-")[0] or r["op"]]
        g[0] += r["ours_ms"]
        g[1] += r.get("ort_ms") or 0.0
        g[2] += r.get("ov_ms") or 0.0
        g[3] += 1
    lines.append("by our kernel variant: " + "; ".join(
        f"{k} x{n}: ours {a:.2f} / ORT {b:.2f} / OV {c:.2f} ms"
        for k, (a, b, c, n) in sorted(by_op.items(), key=lambda kv: -kv[1][0])))
    return "\n".join(lines)


def write_csv(res: dict, path: str) -> None:
    keys = ["layer", "op", "variant", "ours_ms", "ort_ms", "ov_ms", "best_ms", "ratio_best", "excess_ms",
            "layers", "ort_ms_nodes", "ov_ms_nodes"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(keys)
        for r in res["rows"]:
            w.writerow([" ".join(r[k]) if isinstance(r.get(k), list) else r.get(k) for k in keys])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="a zoo network (resnet50, mobilenet, ...)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=30, help="profiled runs per engine (medians)")
    ap.add_argument("--top", type=int, default=25, help="rows to print, largest excess first (0: all)")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--csv", metavar="FILE", help="every row, with the peer nodes attributed to it")
    args = ap.parse_args(argv)
    res = compare(args.model, args.batch, args.threads, args.repeat)
    print(f"# {args.model} batch {args.batch}, {args.threads} threads, medians of {args.repeat} profiled runs")
    print(table(res, args.top, args.markdown))
    for key, (ms, names) in res["unmatched"].items():
        if names:
            print(f"# {key}: {len(names)} nodes attributed to no layer ({ms:.2f} ms): {', '.join(names[:8])}"
                  + (" ..." if len(names) > 8 else ""))
    if args.csv:
        write_csv(res, args.csv)
        print(f"wrote {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
