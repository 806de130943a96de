"""PNG plots of profiles and comparisons (matplotlib, the ``plot`` extra; imported only when plotting).

Figures are drawn on matplotlib's Agg canvas directly, so plotting never changes the caller's pyplot
backend or state.
"""

from __future__ import annotations

from nets.errors import KernelnetsError
from nets.graph import ops


def _figure(w, h):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise KernelnetsError("plots need matplotlib: pip install 'kernelnets[plot]' (or pip install matplotlib)") \
            from None
    fig = Figure(figsize=(w, h), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def op_color(op: str) -> str:
    """The op's colour from its definition (nets.graph.ops), grey for an unknown one."""
    d = ops.REGISTRY.get(op)
    return d.color if d is not None else "#7f7f7f"


def op_rank(op: str) -> int:
    """Legend order: the registry's."""
    names = list(ops.REGISTRY)
    return names.index(op) if op in names else len(names)


def _short(name: str, width: int = 32) -> str:
    return name if len(name) <= width else name[:width - 1] + "~"


def _legend_handles(ops, label=lambda op: op):
    from matplotlib.patches import Patch
    return [Patch(color=op_color(op), label=label(op)) for op in ops]


def plot_profile(profile, path, top: int = 40):
    """Three panels: time per kernel in execution order (coloured by op, slowest named), the ``top``
    slowest kernels by name, and a roofline (GFLOP/s against FLOP/byte, log-log) with the measured
    ceilings."""
    ks = profile.kernels
    f = profile.footer
    by_op = profile.by_op()
    fig = _figure(16, 13)
    gs = fig.add_gridspec(2, 2, height_ratios=[1, 1.6], width_ratios=[1, 1.15])
    title = (f"{f.get('model', '')}: batch {f.get('batch', '?')}, {f.get('device', '')} "
             f"({f.get('device_name', '')}), {f.get('threads', '-')} thread{'' if f.get('threads') == 1 else 's'} - "
             f"end-to-end "
             f"{f.get('e2e_median_ms', 0):.2f} ms, sum of layers {f.get('sum_layers_ms', 0):.2f} ms, "
             f"{len(ks)} kernels")
    fig.suptitle(title, fontsize=13)

    ax = fig.add_subplot(gs[0, :])
    ax.bar([r["idx"] for r in ks], [r["time_ms"] for r in ks], width=1.0, color=[op_color(r["op"]) for r in ks],
           linewidth=0)
    named: list[int] = []
    for r in sorted(ks, key=lambda r: -r["time_ms"])[:8]:
        i = r["idx"]
        if any(abs(i - j) < max(3, len(ks) // 40) for j in named):
            continue                                 # a taller neighbour is already named
        named.append(i)
        ax.annotate(_short(r["layer"], 24), (i, r["time_ms"]), xytext=(0, 3), textcoords="offset points",
                    ha="center", fontsize=8, rotation=0)
    ax.set_xlim(-0.5, len(ks) - 0.5)
    ax.set_xlabel("kernel index (execution order)")
    ax.set_ylabel("median time per kernel (ms)")
    ax.set_title("Time per kernel in execution order")
    ops = [g["op"] for g in by_op if g["kernels"]]
    pct = {g["op"]: g["pct"] for g in by_op}
    ax.legend(handles=_legend_handles(ops, lambda op: f"{op} {pct[op]:.1f}%"), ncol=min(len(ops), 6),
              fontsize=9, loc="upper right", title="op: share of time", title_fontsize=9)
    ax.margins(y=0.15)

    ax = fig.add_subplot(gs[1, 0])
    slow = sorted(ks, key=lambda r: -r["time_ms"])[:top]
    ys = range(len(slow))
    ax.barh(ys, [r["time_ms"] for r in slow], color=[op_color(r["op"]) for r in slow])
    ax.set_yticks(list(ys), [f"{_short(r['layer'])} [{r['idx']}]" for r in slow], fontsize=8)
    ax.invert_yaxis()
    for y, r in zip(ys, slow):
        ax.text(r["time_ms"], y, f" {r['time_ms']:.2f} ms  {r['gflops']:.0f} GF/s", va="center", fontsize=7)
    ax.set_xlabel("median time (ms)")
    ax.set_title(f"The {len(slow)} slowest kernels ({sum(r['pct'] for r in slow):.0f}% of the time)")
    ax.margins(x=0.3)

    ax = fig.add_subplot(gs[1, 1])
    _roofline(ax, ks, f.get("ceilings") or {})
    fig.savefig(path, dpi=80)


def _roofline(ax, ks, ceil):
    pts = [r for r in ks if r["macs"] and r["bytes"] and r["time_ms"] > 0]
    ai = [2 * r["macs"] / r["bytes"] for r in pts]
    lo, hi = (min(ai + [0.5]) / 2, max(ai + [1000]) * 2)
    total = sum(r["time_ms"] for r in ks) or 1.0
    for op in sorted({r["op"] for r in pts}):
        sel = [(a, r) for a, r in zip(ai, pts) if r["op"] == op]
        ax.scatter([a for a, _ in sel], [r["gflops"] for _, r in sel],
                   s=[15 + 1500 * r["time_ms"] / total for _, r in sel], color=op_color(op), alpha=0.65,
                   edgecolors="black", linewidths=0.4, label=op)
    if ceil:
        import numpy as np
        xs = np.geomspace(lo, hi, 200)
        peak, bw = ceil["gflops"], ceil["dram_gbs"]
        ax.plot(xs, np.minimum(peak, xs * bw), color="black", lw=1.8,
                label=f"roof: {peak:.0f} GFLOP/s FMA, {bw:.1f} GB/s DRAM")
        if ceil.get("l2_gbs"):
            ax.plot(xs, np.minimum(peak, xs * ceil["l2_gbs"]), color="gray", lw=1.2, ls="--",
                    label=f"L2: {ceil['l2_gbs']:.0f} GB/s")
        ax.axvline(peak / bw, color="black", lw=0.6, ls=":")
        ax.text(peak / bw, peak * 1.1, f" ridge {peak / bw:.0f} FLOP/B", fontsize=8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_xlabel("arithmetic intensity (FLOP/byte; bytes = inputs + output + weights)")
    ax.set_ylabel("achieved GFLOP/s")
    skipped = len(ks) - len(pts)
    ax.set_title(f"Roofline (marker area ~ share of time; {skipped} kernels without FLOPs not shown)\n"
                 "FLOPs are direct-convolution FLOPs: fast algorithms (Winograd) can sit above the roof")
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=8, loc="lower right", markerscale=0.6)


def plot_compare(comparison, path):
    """Per-layer times of both sides in execution order, the speed-up, and per-layer agreement."""
    rows = [r for r in comparison.rows if r["time_a_ms"] is not None and r["time_b_ms"] is not None]
    a, b = comparison.labels
    f = comparison.footer
    fig = _figure(16, 12)
    gs = fig.add_gridspec(3, 1, height_ratios=[1.3, 1, 1])
    fig.suptitle(f"{f.get('model', '')}, batch {f.get('batch', '?')}: {a} vs {b} - end-to-end "
                 f"{f.get('e2e_a_ms', 0):.2f} ms vs {f.get('e2e_b_ms', 0):.2f} ms "
                 f"(speed-up {f.get('e2e_speedup', 0):.2f}x)", fontsize=13)
    xs = [r["idx"] for r in rows]                   # the table's row numbers (kernels one side runs alone are gaps)
    ax = fig.add_subplot(gs[0])
    ax.plot(xs, [r["time_a_ms"] for r in rows], drawstyle="steps-mid", lw=1.2, label=a)
    ax.plot(xs, [r["time_b_ms"] for r in rows], drawstyle="steps-mid", lw=1.2, label=b)
    ax.set_yscale("log")
    ax.set_ylabel("median time per layer (ms, log)")
    ax.set_title("Time per layer in execution order")
    ax.legend()
    named: list[int] = []
    for r in sorted(rows, key=lambda r: -max(r["time_a_ms"], r["time_b_ms"]))[:8]:
        if any(abs(r["idx"] - j) < max(3, len(comparison.rows) // 40) for j in named):
            continue
        named.append(r["idx"])
        ax.annotate(_short(r["layer"], 24), (r["idx"], max(r["time_a_ms"], r["time_b_ms"])), xytext=(0, 3),
                    textcoords="offset points", ha="center", fontsize=8)
    ax.set_xlim(-0.5, len(comparison.rows) - 0.5)
    ax.margins(y=0.15)

    ax = fig.add_subplot(gs[1], sharex=ax)
    ax.bar(xs, [r["speedup"] for r in rows], width=1.0, color=[op_color(r["op"]) for r in rows], linewidth=0)
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_yscale("log")
    ax.set_ylabel(f"speed-up of {b} over {a}")
    ax.set_title(f"Speed-up per layer (> 1: {b} is faster)")
    ops = sorted({r["op"] for r in rows}, key=op_rank)
    ax.legend(handles=_legend_handles(ops), ncol=min(len(ops), 7), fontsize=8)

    ax = fig.add_subplot(gs[2], sharex=ax)
    cmp = [r for r in comparison.rows if r.get("max_rel") is not None]
    ax.scatter([r["idx"] for r in cmp], [min(max(r["max_rel"], 1e-12), 1e3) for r in cmp], s=10,
               c=["#d62728" if r["flag"] else "#1f77b4" for r in cmp])
    ax.axhline(comparison.tol, color="#d62728", lw=0.8, ls="--", label=f"tolerance {comparison.tol:g}")
    ax.set_yscale("log")
    ax.set_ylabel("max |a-b| / max |a|\n(exact: drawn at 1e-12)")
    ax.set_xlabel("row index (execution order, as in the table)")
    ax.set_title("Numerical agreement of each layer's output (red: over tolerance)")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=80)
