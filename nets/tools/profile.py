"""Per-layer profile of a model: one row per executed kernel, keyed by the model's layer names.

``profile_model(model, x)`` (also ``model.profile(x)``) runs the model's executor:
1. a first run on a fresh executor, step by step (kernel compilation + setup; reported apart),
2. ``warmup`` untimed runs,
3. ``repeat`` rounds of one uninstrumented run (the end-to-end time) and one instrumented run (each
   step timed, with a device synchronise around it on a GPU); per-layer time is the median.

Rows, in execution order: every executed kernel once (``kind="kernel"``, ``idx`` = its step number),
each followed by the source layers the passes folded into it (``kind="fused"``, time 0, ``fused_into``
names the kernel, ``idx`` is the kernel's), and the model's input (``kind="input"``, ``idx`` -1) first,
so every source layer appears. Conventions: 1 MAC = 2 FLOPs;
bytes = inputs + output + weights, float32 (zero for views and in-place concatenations); a layer is
``launch``-bound when its median is below the launch floor, otherwise ``compute``- or ``memory``-bound
by its arithmetic intensity against the ridge point (peak FLOP/s / DRAM bandwidth, both measured by
``nets.tools.peaks``); ``roof_pct`` is its GFLOP/s over the roofline at its intensity (GB/s over bandwidth for
ops without FLOPs).
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import time
from dataclasses import dataclass, field

import numpy as np

from nets.errors import ModelError
from nets.graph.ir import Graph, Node
from nets.graph.ops import node_macs
from nets.runtime.threads import set_threads
from nets.tools.timing import device_sync, first_run, time_runs

FIELDS = ("idx", "layer", "kind", "op", "kernel", "device", "in_shapes", "out_shape", "params", "macs", "bytes",
          "time_ms", "pct", "gflops", "gbs", "bound", "roof_pct", "first_ms", "fused_into", "fused")
INT_FIELDS = ("idx", "params", "macs", "bytes")
FLOAT_FIELDS = ("time_ms", "pct", "gflops", "gbs", "roof_pct", "first_ms")
NO_TRAFFIC = ("view", "concat-inplace")     # kernels that move nothing


def _size(shape) -> int:
    return math.prod(int(d) for d in shape)


def node_params(n: Node) -> int:
    return n.params


def kernel_info(g: Graph, node: Node, kernel: str, batch: int) -> dict:
    """Static facts of one executed node: shapes (with the batch axis), params, MACs and bytes moved."""
    ins = [tuple(g.shapes[v]) for v in node.inputs]
    out = tuple(g.shapes[node.output])
    params = node_params(node)
    macs = node_macs(node, ins, out) * batch
    moved = 0 if kernel in NO_TRAFFIC else 4 * (batch * (sum(_size(s) for s in ins) + _size(out)) + params)
    return dict(op=node.op, kernel=kernel, in_shapes=[(batch,) + s for s in ins], out_shape=(batch,) + out,
                params=params, macs=int(macs), bytes=int(moved))


def classify(flops: float, moved: float, seconds: float, ceil: dict, floor_s: float) -> tuple[str, float]:
    """(bound, percent of the roofline reached) of one kernel."""
    if seconds <= 0:
        return "", 0.0
    if seconds < floor_s:
        bound = "launch"
    elif moved == 0:
        bound = "compute" if flops else ""
    else:
        bound = "compute" if flops / moved >= ceil["gflops"] / ceil["dram_gbs"] else "memory"
    if flops and moved:
        roof = min(ceil["gflops"] * 1e9, flops / moved * ceil["dram_gbs"] * 1e9)
        return bound, 100.0 * flops / seconds / roof
    if moved:
        return bound, 100.0 * moved / seconds / (ceil["dram_gbs"] * 1e9)
    return bound, 0.0


def versions(xp=np) -> dict:
    import numba

    import nets
    v = {"kernelnets": nets.__version__, "python": platform.python_version(), "numpy": np.__version__,
         "numba": numba.__version__}
    if xp is not np:
        v["cupy"] = xp.__version__
    return v


@dataclass
class Profile:
    rows: list[dict]
    footer: dict = field(default_factory=dict)

    @property
    def kernels(self) -> list[dict]:
        return [r for r in self.rows if r["kind"] == "kernel"]

    def by_op(self) -> list[dict]:
        """Kernels grouped by op, slowest first: count, time, share, MACs, GFLOP/s; fused layers by op."""
        groups: dict[str, dict] = {}
        total = sum(r["time_ms"] for r in self.kernels) or 1.0
        for r in self.rows:
            if r["kind"] == "input":
                continue
            g = groups.setdefault(r["op"], dict(op=r["op"], kernels=0, fused=0, time_ms=0.0, macs=0, bytes=0))
            if r["kind"] == "kernel":
                g["kernels"] += 1
                g["time_ms"] += r["time_ms"]
                g["macs"] += r["macs"]
                g["bytes"] += r["bytes"]
            else:
                g["fused"] += 1
        out = sorted(groups.values(), key=lambda g: -g["time_ms"])
        for g in out:
            g["pct"] = 100.0 * g["time_ms"] / total
            g["gflops"] = 2 * g["macs"] / (g["time_ms"] * 1e6) if g["time_ms"] else 0.0
        return out

    # ------------------------------------------------------------------ text

    def to_text(self, top: int | None = None, fused: bool = True) -> str:
        """The table (``top``: only the N slowest kernels; ``fused=False``: hide fused-layer rows),
        the footer and the summary by op."""
        rows = self.rows
        if top:
            keep = {id(r) for r in sorted(self.kernels, key=lambda r: -r["time_ms"])[:top]}
            rows = [r for r in rows if id(r) in keep]
        elif not fused:
            rows = [r for r in rows if r["kind"] != "fused"]
        wl = min(36, max([len(r["layer"]) + 2 * (r["kind"] != "kernel") for r in rows] + [5]))
        wk = min(32, max([len(r["kernel"]) for r in rows] + [6]))
        wo = max([len(r["op"]) for r in rows] + [16])
        head = (f"{'idx':>4} {'layer':<{wl}} {'op':<{wo}} {'kernel':<{wk}} {'input':<16} {'output':<16} "
                f"{'params':>9} {'MFLOP':>9} {'MB':>7} {'ms':>8} {'%':>5} {'GFLOP/s':>8} {'GB/s':>7} "
                f"{'bound':<7} {'%roof':>5}")
        f = self.footer
        lines = [f"Profile of {f.get('model', '?')}: batch {f.get('batch', '?')}, device {f.get('device', '?')}, "
                 f"threads {f.get('threads', '-')}, {f.get('repeat', '?')} repeats after {f.get('warmup', '?')} "
                 f"warm-up (per-layer time = median)", head, "-" * len(head)]
        for r in rows:
            name = r["layer"] if r["kind"] == "kernel" else "  " + r["layer"]
            name = name if len(name) <= wl else name[:wl - 1] + "~"
            ins = _shape_str(r["in_shapes"][0]) + (f"+{len(r['in_shapes']) - 1}" if len(r["in_shapes"]) > 1 else "") \
                if r["in_shapes"] else ""
            if r["kind"] != "kernel":
                note = f"fused into {r['fused_into']}" if r["kind"] == "fused" else "model input"
                lines.append(f"{'':>4} {name:<{wl}} {r['op']:<{wo}} {'-':<{wk}} {ins:<16} "
                             f"{_shape_str(r['out_shape']):<16} {r['params']:>9,} {'':>41} {note}")
                continue
            lines.append(
                f"{r['idx']:>4} {name:<{wl}} {r['op']:<{wo}} {r['kernel'][:wk]:<{wk}} {ins:<16} "
                f"{_shape_str(r['out_shape']):<16} {r['params']:>9,} {2 * r['macs'] / 1e6:>9.1f} "
                f"{r['bytes'] / 1e6:>7.2f} {r['time_ms']:>8.3f} {r['pct']:>5.1f} {r['gflops']:>8.1f} "
                f"{r['gbs']:>7.1f} {r['bound']:<7} {r['roof_pct']:>5.0f}")
        lines.append("-" * len(head))
        lines += self.footer_text()
        lines += ["", "By op type:",
                  f"  {'op':<18} {'kernels':>7} {'fused':>6} {'ms':>9} {'%':>6} {'GFLOP':>8} {'GFLOP/s':>8}"]
        for g in self.by_op():
            lines.append(f"  {g['op']:<18} {g['kernels']:>7} {g['fused']:>6} {g['time_ms']:>9.3f} {g['pct']:>6.1f} "
                         f"{2 * g['macs'] / 1e9:>8.3f} {g['gflops']:>8.1f}")
        return "\n".join(lines)

    def footer_text(self) -> list[str]:
        f = self.footer
        if not f:
            return []
        ceil, ver = f.get("ceilings", {}), f.get("versions", {})
        lines = [
            f"end-to-end      {f['e2e_median_ms']:.3f} ms median, {f['e2e_min_ms']:.3f} ms min, uninstrumented "
            f"({f['total_gflop']:.2f} GFLOP -> {f['e2e_gflops']:.1f} GFLOP/s)",
            f"sum of layers   {f['sum_layers_ms']:.3f} ms (instrumented runs: {f['instrumented_median_ms']:.3f} ms "
            "median)",
            f"unattributed    {f['unattributed_ms']:+.3f} ms (end-to-end minus sum of layers: input/output copies, "
            "Python between kernels)",
            f"first run       {f['first_run_ms'] / 1e3:.3f} s on a fresh executor (kernel compilation and setup; "
            f"setup alone {f['setup_ms']:.1f} ms)",
            f"settings        repeats {f['repeat']}, warm-up {f['warmup']}, threads {f.get('threads', '-')}, "
            f"device {f['device']} ({f.get('device_name', '')}), batch {f['batch']}, "
            f"load average {f.get('load_average')}",
        ]
        if ceil:
            ridge = ceil["gflops"] / ceil["dram_gbs"]
            lines.append(f"peaks           {ceil['gflops']:.0f} GFLOP/s FMA, {ceil['dram_gbs']:.1f} GB/s DRAM, ridge "
                         f"{ridge:.1f} FLOP/byte (measured: nets peaks); launch floor {f['launch_floor_us']:.0f} us")
        lines.append("versions        " + ", ".join(f"{k} {v}" for k, v in ver.items()))
        lines.append("conventions     1 MAC = 2 FLOPs; bytes = inputs + output + weights (float32)")
        return lines

    # ------------------------------------------------------------------ files

    def to_json(self, path):
        with open(path, "w") as fh:
            json.dump({"format": "kernelnets-profile/1", "rows": self.rows, "footer": self.footer,
                       "by_op": self.by_op()}, fh, indent=1)

    @classmethod
    def from_json(cls, path) -> Profile:
        with open(path) as fh:
            data = json.load(fh)
        rows = []
        for r in data["rows"]:
            r = dict(r)
            r["in_shapes"] = [tuple(s) for s in r["in_shapes"]]
            r["out_shape"] = tuple(r["out_shape"])
            rows.append(r)
        return cls(rows, data.get("footer", {}))

    def to_csv(self, path):
        """One line per row; shapes as ``1x35x35x64``, lists joined with ``;``."""
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(FIELDS)
            for r in self.rows:
                w.writerow([_csv_cell(k, r[k]) for k in FIELDS])

    @classmethod
    def from_csv(cls, path) -> Profile:
        """Rows back from ``to_csv`` (the footer lives in the JSON export only)."""
        with open(path, newline="") as fh:
            rows = [{k: _csv_value(k, v) for k, v in rec.items()} for rec in csv.DictReader(fh)]
        return cls(rows, {})

    def to_chrome_trace(self, path):
        write_chrome_trace([self], path)

    def plot(self, path, top: int = 40):
        from nets.tools.plots import plot_profile
        plot_profile(self, path, top=top)


def _shape_str(shape) -> str:
    return "x".join(str(d) for d in shape)


def _csv_cell(key, v):
    if key == "in_shapes":
        return ";".join(_shape_str(s) for s in v)
    if key == "out_shape":
        return _shape_str(v)
    if key == "fused":
        return ";".join(v)
    return v


def _csv_value(key, v: str):
    if key in INT_FIELDS:
        return int(v)
    if key in FLOAT_FIELDS:
        return float(v)
    if key == "in_shapes":
        return [tuple(int(d) for d in s.split("x")) for s in v.split(";")] if v else []
    if key == "out_shape":
        return tuple(int(d) for d in v.split("x")) if v else ()
    if key == "fused":
        return v.split(";") if v else []
    return v


def write_chrome_trace(profiles: list[Profile], path):
    """Chrome trace events (a JSON array, times in microseconds) that Perfetto and chrome://tracing open;
    one process per profile (device), node events in ONNX Runtime's form (``cat: "Node"``, ``args.op_name``,
    ``args.input_type_shape``, ``args.output_type_shape``). Each process shows the first run (compile) and
    then one steady-state run laid out from the per-layer medians."""
    events = []
    for pid, prof in enumerate(profiles, 1):
        f = prof.footer
        label = f"{f.get('device', '?')}: {f.get('device_name', '')} ({f.get('threads', '-')} threads)"
        events.append({"name": "process_name", "ph": "M", "pid": pid, "tid": 0, "args": {"name": label}})
        events.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": 0,
                       "args": {"name": f"{f.get('model', '')} batch {f.get('batch', '')}"}})
        ts = 0.0
        for phase, key in (("first_run", "first_ms"), ("model_run", "time_ms")):
            ks = prof.kernels
            total = sum(r[key] for r in ks) * 1e3
            events.append({"name": phase, "cat": "Session", "ph": "X", "pid": pid, "tid": 0, "ts": round(ts, 3),
                           "dur": round(total, 3), "args": {"model": f.get("model", "")}})
            for r in ks:
                dur = r[key] * 1e3
                events.append({
                    "name": r["layer"], "cat": "Node", "ph": "X", "pid": pid, "tid": 0, "ts": round(ts, 3),
                    "dur": round(dur, 3),
                    "args": {"op_name": r["op"], "kernel": r["kernel"], "provider": f.get("device", ""),
                             "input_type_shape": [{"float": list(s)} for s in r["in_shapes"]],
                             "output_type_shape": [{"float": list(r["out_shape"])}],
                             "macs": r["macs"], "bytes": r["bytes"], "fused": list(r["fused"]),
                             "phase": phase}})
                ts += dur
            ts += 1000.0                                 # a 1 ms gap between the phases
    with open(path, "w") as fh:
        json.dump(events, fh)


def profile_model(model, x, repeat: int = 20, warmup: int = 3, peaks: dict | None = None,
                  progress: bool = True, launch_floor_us: float = 20.0) -> Profile:
    """Profile ``model`` on input ``x`` (see the module docstring). ``peaks``: a ``nets.tools.peaks`` result
    (default: this machine's cached peaks, measured on first use)."""
    from nets.tools.peaks import ceilings
    from nets.tools.peaks import peaks as measured
    from nets.tools.progress import Progress

    if repeat < 1 or warmup < 0:
        raise ModelError(f"profile needs repeat >= 1 and warmup >= 0, got repeat={repeat}, warmup={warmup}")
    x = model.check_input(x)
    if model.device == "cpu":
        set_threads(model.threads)
    if peaks is None:
        peaks = measured("gpu" if model.device == "gpu" else "cpu")
    ceil = ceilings(peaks, model.threads if model.device == "cpu" else None)
    batch = x.shape[0]
    g = model.graph

    t_start = time.perf_counter()
    ex = model.new_executor(batch)
    setup = time.perf_counter() - t_start
    xp = ex.xp
    sync = device_sync(xp)
    first = first_run(ex, x, sync, progress)
    first_total = time.perf_counter() - t_start

    bar = Progress(warmup + repeat, "profiling", enabled=progress)
    e2e, med, instrumented = time_runs(ex, x, repeat, warmup, sync, bar.update)
    bar.close()
    total = float(med.sum())

    source = {n.name: n for n in model.source_graph.nodes}
    sg = model.source_graph
    rows: list[dict] = []

    def add_source_row(name, kind, into, idx):
        n = source.get(name)
        ins = [(batch,) + tuple(sg.shapes[v]) for v in n.inputs] if n else []
        out = (batch,) + tuple(sg.shapes[n.output]) if n else ()
        rows.append(dict(idx=idx, layer=name, kind=kind, op=n.op if n else "?", kernel="", device=model.device,
                         in_shapes=ins, out_shape=out, params=node_params(n) if n else 0,
                         macs=int(node_macs(n, [s[1:] for s in ins], out[1:]) * batch) if n else 0, bytes=0,
                         time_ms=0.0, pct=0.0, gflops=0.0, gbs=0.0, bound="", roof_pct=0.0, first_ms=0.0,
                         fused_into=into, fused=[]))

    for name in sg.inputs:
        add_source_row(name, "input", "", -1)
    floor_s = launch_floor_us * 1e-6
    for i, step in enumerate(ex.steps):
        info = kernel_info(g, step.node, step.kernel, batch)
        t = float(med[i])
        flops = 2.0 * info["macs"]
        bound, roof = classify(flops, info["bytes"], t, ceil, floor_s)
        rows.append(dict(idx=i, layer=step.node.name, kind="kernel", device=model.device, **info,
                         time_ms=t * 1e3, pct=100.0 * t / total if total else 0.0,
                         gflops=flops / t / 1e9 if t else 0.0, gbs=info["bytes"] / t / 1e9 if t else 0.0,
                         bound=bound, roof_pct=roof, first_ms=first[i] * 1e3, fused_into="",
                         fused=list(step.node.fused)))
        for f in step.node.fused:
            add_source_row(f, "fused", step.node.name, i)
    seen = {r["layer"] for r in rows}
    for name in source:
        if name not in seen:                          # dropped by a pass without a record
            add_source_row(name, "fused", "(removed)", -1)

    e2e_med = float(np.median(e2e))
    macs = sum(r["macs"] for r in rows if r["kind"] == "kernel")
    device_name = peaks.get("name", "")
    footer = dict(
        model=model.name, batch=batch, device=model.device, device_name=device_name,
        threads=model.threads if model.device == "cpu" else None, repeat=repeat, warmup=warmup,
        e2e_median_ms=e2e_med * 1e3, e2e_min_ms=float(np.min(e2e)) * 1e3, sum_layers_ms=total * 1e3,
        instrumented_median_ms=float(np.median(instrumented)) * 1e3,
        unattributed_ms=(e2e_med - total) * 1e3, first_run_ms=first_total * 1e3, setup_ms=setup * 1e3,
        total_gflop=2 * macs / 1e9, e2e_gflops=2 * macs / e2e_med / 1e9, kernels=len(ex.steps),
        source_layers=len(source), ceilings=ceil, peaks=peaks, launch_floor_us=launch_floor_us,
        versions=versions(xp), load_average=round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        measured_at=time.strftime("%Y-%m-%d %H:%M:%S"))
    return Profile(rows, footer)
