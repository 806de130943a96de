"""Compare two backends (or two variants) of one network: per-layer times and per-layer agreement.

``compare_models(a, b, x)`` runs the same input through both models' optimised graphs, step by step,
copying each step's output buffer right after the step, and times each step (median of ``repeat``
instrumented runs, with a device synchronise around each step on a GPU) and the whole network
(uninstrumented runs). Rows follow ``a``'s execution order and are matched to ``b``'s kernels by layer
name; a kernel only ``b`` runs (e.g. an unfused ReLU) follows the row that produces the same value
(or, failing that, precedes the next row both sides run).

Agreement is measured on the value a layer writes, wherever both sides compute that value (a fused
conv+ReLU on one side is compared with the separate ReLU on the other):
    max_abs = max |a - b|        max_rel = max_abs / max |a|        cosine = <a, b> / (|a| |b|)
``max_rel`` is scaled by the layer's largest magnitude so near-zero elements do not dominate; a row is
flagged when it exceeds ``tol`` (default 1e-4, the fp32 tolerance on whole-network logits) or when
either output is not finite.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import numpy as np

from nets.errors import KernelnetsError, ModelError
from nets.runtime.model import Model, backend_for
from nets.runtime.threads import set_threads
from nets.tools.profile import versions
from nets.tools.progress import Progress
from nets.tools.timing import device_sync, synthetic_input, time_runs

TOL = 1e-4


class DeviceUnavailableError(KernelnetsError):
    """A device asked for (the GPU) is not usable here."""


def gpu_problem() -> str:
    """Why the GPU backend cannot run here ("" when it can): the runtime's own check."""
    try:
        backend_for("gpu")
    except ModelError as e:
        return str(e)
    except Exception as e:                        # noqa: BLE001 - a CUDA library that fails to load
        return f"the GPU backend kernels.gpu cannot be loaded ({type(e).__name__}: {e})"
    return ""


def require_device(device: str):
    if device == "gpu":
        why = gpu_problem()
        if why:
            raise DeviceUnavailableError(f"no usable GPU: {why}")


def agreement(a: np.ndarray, b: np.ndarray) -> dict:
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return dict(max_abs=float("inf"), max_rel=float("inf"), cosine=float("nan"))
    diff = float(np.max(np.abs(a - b))) if a.size else 0.0
    scale = float(np.max(np.abs(a))) if a.size else 0.0
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    cos = float(a @ b / (na * nb)) if na and nb else (1.0 if na == nb else 0.0)
    return dict(max_abs=diff, max_rel=diff / scale if scale else (0.0 if diff == 0 else float("inf")), cosine=cos)


def _to_numpy(xp, arr):
    return np.array(arr) if xp is np else xp.asnumpy(arr)


def measure_side(model, x, repeat: int, warmup: int, bar=None) -> dict:
    """One side: per-step outputs (by value), per-step median times, end-to-end times."""
    x = model.check_input(x)
    if model.device == "cpu":
        set_threads(model.threads)
    ex = model.new_executor(x.shape[0])
    xp, sync = ex.xp, device_sync(ex.xp)
    t0 = time.perf_counter()
    ex.run(x)                                         # compiles the kernels
    if sync is not None:
        sync()
    first = time.perf_counter() - t0
    ex.buffer(model.graph.inputs[0])[...] = xp.asarray(x)
    values = {}
    with ex.workspace_scope():
        for step in ex.steps:
            step.run()
            values[step.node.output] = _to_numpy(xp, ex.buffer(step.node.output)).copy()
    tick = None if bar is None else (lambda _note: bar.update(model.device))
    e2e, med, _ = time_runs(ex, x, repeat, warmup, sync, tick)
    steps = [dict(layer=s.node.name, op=s.node.op, kernel=s.kernel, value=s.node.output, time_ms=float(t) * 1e3,
                  fused=list(s.node.fused)) for s, t in zip(ex.steps, med)]
    outputs = [values[v] for v in model.graph.outputs]
    return dict(steps=steps, values=values, outputs=outputs, e2e_ms=float(np.median(e2e)) * 1e3,
                first_ms=first * 1e3, xp=xp)


@dataclass
class Comparison:
    rows: list[dict]
    footer: dict
    labels: tuple = ("a", "b")
    tol: float = TOL
    extra: dict = field(default_factory=dict)

    @property
    def flagged(self) -> list[dict]:
        return [r for r in self.rows if r["flag"]]

    def to_text(self) -> str:
        a, b = self.labels
        wl = min(34, max([len(r["layer"]) for r in self.rows] + [5]))
        wt = max(9, len(a) + 3, len(b) + 3)
        head = (f"{'idx':>4} {'layer':<{wl}} {'op':<16} {a + ' kernel':<18} {a + ' ms':>{wt}} {b + ' ms':>{wt}} "
                f"{'speed-up':>8} {'max abs':>9} {'max rel':>9} {'cosine':>10}  note")
        lines = [f"Compare {self.footer.get('model', '')}, batch {self.footer.get('batch', '')}: {a} vs {b} "
                 f"(per-layer median of {self.footer.get('repeat', '?')} runs; max rel = max|a-b| / max|a|)",
                 head, "-" * len(head)]

        def num(v, width, fmt, unit=""):
            return f"{format(v, fmt) + unit:>{width}}" if v is not None else f"{'-':>{width}}"

        for r in self.rows:
            name = r["layer"] if len(r["layer"]) <= wl else r["layer"][:wl - 1] + "~"
            note = ("OVER TOLERANCE " if r["flag"] else "") + r["note"]
            lines.append(f"{r['idx']:>4} {name:<{wl}} {r['op']:<16} {(r['kernel_a'] or '-')[:18]:<18} "
                         f"{num(r['time_a_ms'], wt, '.3f')} {num(r['time_b_ms'], wt, '.3f')} "
                         f"{num(r['speedup'], 8, '.2f', 'x')} {num(r['max_abs'], 9, '.2e')} "
                         f"{num(r['max_rel'], 9, '.2e')} {num(r['cosine'], 10, '.7f')}  {note}")
        f = self.footer
        lines += ["-" * len(head),
                  f"end-to-end   {a} {f['e2e_a_ms']:.3f} ms, {b} {f['e2e_b_ms']:.3f} ms median (uninstrumented): "
                  f"{b} is {f['e2e_speedup']:.2f}x {a}'s speed",
                  f"first run    {a} {f['first_a_ms'] / 1e3:.2f} s, {b} {f['first_b_ms'] / 1e3:.2f} s (compilation)",
                  f"final output max abs {f['output']['max_abs']:.2e}, max rel {f['output']['max_rel']:.2e}, "
                  f"cosine {f['output']['cosine']:.7f}",
                  f"agreement    {len(self.flagged)} of {sum(r['max_rel'] is not None for r in self.rows)} compared "
                  f"layers over tolerance {self.tol:g}"
                  + (": first " + self.flagged[0]["layer"] if self.flagged else ""),
                  "versions     " + ", ".join(f"{k} {v}" for k, v in f.get("versions", {}).items())]
        return "\n".join(lines)

    def to_json(self, path):
        with open(path, "w") as fh:
            json.dump({"format": "kernelnets-compare/1", "labels": list(self.labels), "tol": self.tol,
                       "rows": self.rows, "footer": self.footer}, fh, indent=1)

    @classmethod
    def from_json(cls, path) -> Comparison:
        with open(path) as fh:
            d = json.load(fh)
        return cls(d["rows"], d["footer"], tuple(d["labels"]), d["tol"])

    def to_csv(self, path):
        import csv
        keys = list(self.rows[0]) if self.rows else []
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(keys)
            for r in self.rows:
                w.writerow(["" if r[k] is None else (";".join(r[k]) if isinstance(r[k], list) else r[k])
                            for k in keys])

    def plot(self, path):
        from nets.tools.plots import plot_compare
        plot_compare(self, path)


def _row(idx, a_step, b_step, b_fused_into, labels):
    ta = a_step["time_ms"] if a_step else None
    tb = b_step["time_ms"] if b_step else None
    s = a_step or b_step
    note = ""
    if b_step is None and s["layer"] in b_fused_into:
        note = f"fused into {b_fused_into[s['layer']]} on {labels[1]}"
    elif a_step is None:
        note = f"runs on {labels[1]} only"
    return dict(idx=idx, layer=s["layer"], op=s["op"], kernel_a=a_step["kernel"] if a_step else None,
                kernel_b=b_step["kernel"] if b_step else None, time_a_ms=ta, time_b_ms=tb,
                speedup=ta / tb if ta and tb else None, value=s["value"], max_abs=None, max_rel=None, cosine=None,
                flag=False, note=note)


def compare_models(a, b, x, repeat: int = 10, warmup: int = 2, labels=None, tol: float = TOL,
                   progress: bool = True) -> Comparison:
    """Per-layer comparison of models ``a`` (the baseline) and ``b`` on input ``x``."""
    labels = tuple(labels or (a.device, b.device))
    bar = Progress(2 * repeat, f"comparing {labels[0]} and {labels[1]}", enabled=progress)
    sa = measure_side(a, x, repeat, warmup, bar)
    sb = measure_side(b, x, repeat, warmup, bar)
    bar.close()
    b_by_name = {s["layer"]: s for s in sb["steps"]}
    a_names = {s["layer"] for s in sa["steps"]}
    b_fused = {f: s["layer"] for s in sb["steps"] for f in s["fused"]}
    a_values = {s["value"] for s in sa["steps"]}
    # kernels only b runs: after the a row making the same value, or else before the next b kernel
    # that has a place, keeping b's order
    after_value: dict[str, list] = {}
    before_name: dict[str, list] = {}
    pending: list = []
    for s in sb["steps"]:
        if s["layer"] in a_names:
            if pending:
                before_name[s["layer"]], pending = pending, []
        elif s["value"] in a_values:
            after_value.setdefault(s["value"], []).extend(pending + [s])
            pending = []
        else:
            pending.append(s)
    rows = []
    for s in sa["steps"]:
        for t in before_name.get(s["layer"], []):
            rows.append(_row(len(rows), None, t, b_fused, labels))
        rows.append(_row(len(rows), s, b_by_name.get(s["layer"]), b_fused, labels))
        for t in after_value.get(s["value"], []):
            rows.append(_row(len(rows), None, t, b_fused, labels))
    for t in pending:
        rows.append(_row(len(rows), None, t, b_fused, labels))
    for r in rows:
        va, vb = sa["values"].get(r["value"]), sb["values"].get(r["value"])
        if va is not None and vb is not None and va.shape == vb.shape:
            r.update(agreement(va, vb))
            r["flag"] = not (r["max_rel"] <= tol)
    out = agreement(sa["outputs"][0], sb["outputs"][0])
    footer = dict(model=a.name, batch=int(x.shape[0]), devices=[a.device, b.device], repeat=repeat, warmup=warmup,
                  e2e_a_ms=sa["e2e_ms"], e2e_b_ms=sb["e2e_ms"], e2e_speedup=sa["e2e_ms"] / sb["e2e_ms"],
                  first_a_ms=sa["first_ms"], first_b_ms=sb["first_ms"], output=out,
                  threads=[a.threads, b.threads], versions=versions(sb["xp"] if sb["xp"] is not np else sa["xp"]),
                  measured_at=time.strftime("%Y-%m-%d %H:%M:%S"))
    return Comparison(rows, footer, labels, tol)


def compare(name: str, devices=("cpu", "gpu"), batch: int = 1, unfused: bool = False, x=None,
            repeat: int = 10, warmup: int = 2, tol: float = TOL, threads: int | None = None,
            progress: bool = True, **load_kw) -> Comparison:
    """Load zoo network ``name`` once and compare it on ``devices[0]`` against ``devices[1]`` (with
    ``unfused=True`` the second side runs without the fusion passes)."""
    import nets

    for d in devices:
        require_device(d)
    a = nets.load(name, device=devices[0], threads=threads if devices[0] == "cpu" else None, **load_kw)
    b = Model(a.source_graph, device=devices[1], threads=threads if devices[1] == "cpu" else None,
              weights_source=a.weights_source, preprocess=a.preprocess_mode, fuse=not unfused)
    if x is None:
        x = synthetic_input(a, batch)
    labels = (devices[0], devices[1] + (" unfused" if unfused else ""))
    if labels[0] == labels[1]:
        labels = (labels[0] + " (a)", labels[1] + " (b)")
    return compare_models(a, b, x, repeat=repeat, warmup=warmup, labels=labels, tol=tol, progress=progress)
