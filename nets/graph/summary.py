"""A Keras-style model summary with MACs, and what the passes made of each layer."""

from __future__ import annotations

from nets.graph.ir import Graph
from nets.graph.ops import node_macs


def layer_rows(g: Graph) -> list[dict]:
    rows = []
    for n in g.nodes:
        ins = [g.shapes[v] for v in n.inputs]
        out = g.shapes[n.output]
        rows.append(dict(layer=n.name, op=n.op, inputs=list(n.inputs), out_shape=out, params=n.params,
                         macs=node_macs(n, ins, out)))
    return rows


def fused_into(optimized: Graph) -> dict[str, str]:
    return {f: n.name for n in optimized.nodes for f in n.fused}


def _fmt_shape(shape) -> str:
    return "(None, " + ", ".join(str(d) for d in shape) + ")"


def _human(n: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= div:
            return f"{n / div:.2f}{unit}"
    return str(int(n))


def summary_text(source: Graph, optimized: Graph | None = None) -> str:
    rows = layer_rows(source)
    into = fused_into(optimized) if optimized is not None else {}
    w_name = max(24, max(len(r["layer"]) for r in rows) + 2)
    head = f"{'Layer (type)':<{w_name + 20}}{'Output Shape':<22}{'Param #':>12}{'MACs':>12}  Runs as"
    lines = [f'Model: "{source.name}"', "=" * len(head), head, "=" * len(head)]
    for r in rows:
        runs = f"fused into {into[r['layer']]}" if r["layer"] in into else ""
        label = f"{r['layer']} ({r['op']})"
        lines.append(f"{label:<{w_name + 20}}{_fmt_shape(r['out_shape']):<22}{r['params']:>12,}"
                     f"{_human(r['macs']):>12}  {runs}")
    total_p = sum(r["params"] for r in rows)
    total_m = sum(r["macs"] for r in rows)
    lines += ["=" * len(head),
              f"Total params: {total_p:,} ({total_p * 4 / 2**20:.2f} MB float32)",
              f"Total MACs per sample: {total_m:,} ({2 * total_m / 1e9:.2f} GFLOP, 1 MAC = 2 FLOPs)"]
    if optimized is not None:
        lines.append(f"Layers: {len(source.nodes)} in the model, {len(optimized.nodes)} kernels after fusion")
    return "\n".join(lines)
