"""Static memory planning: every activation gets an offset in one float32 arena.

Shapes are static once the batch size is known, so liveness is exact: a value lives from the step
that writes it to the last step that reads it. Buffers are placed greedily, largest first, at the
lowest offset that overlaps no buffer alive at the same time (the "greedy by size" strategy of
TFLite's arena planner). Two kinds of values take no space of their own:
  - the output of a ``view`` op (reshape) is a view of its input's buffer;
  - an input of a channel concat whose producer is a ``slice_writer`` (conv, depthwise, pooling, or
    another concat: it can write at a channel offset) and which nothing else reads lives in a
    channel slice of the concat output: the concat itself then copies nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from nets.graph import ops
from nets.graph.ir import Graph

ALIGN = 16          # floats: 64-byte aligned buffers


@dataclass
class MemoryPlan:
    batch: int
    offsets: dict[str, int]                   # root value -> float offset in the arena
    sizes: dict[str, int]                     # root value -> floats
    slices: dict[str, tuple[str, int]]        # value -> (root value, channel offset)
    views: dict[str, str]                     # reshape output -> root value it views
    lifetimes: dict[str, tuple[int, int]]     # root value -> (first step, last step)
    arena_floats: int
    naive_floats: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def peak_bytes(self) -> int:
        return 4 * self.arena_floats

    @property
    def naive_bytes(self) -> int:
        return 4 * self.naive_floats

    def root(self, value: str) -> tuple[str, int]:
        """(value owning the memory, channel offset inside it)."""
        if value in self.views:
            return self.views[value], 0
        if value in self.slices:
            return self.slices[value]
        return value, 0


def find_concat_slices(g: Graph) -> dict[str, tuple[str, int]]:
    """value -> (concat output, channel offset) for concat inputs that can be written in place."""
    direct = {}
    for node in g.nodes:
        if node.op != "concat":
            continue
        c0 = 0
        for v in node.inputs:
            prod = g.producer(v)
            readers = g.consumers(v)
            if (prod is not None and ops.get(prod.op).slice_writer and v not in g.outputs and v not in direct
                    and readers == [node] and node.inputs.count(v) == 1):
                direct[v] = (node.output, c0)
            c0 += g.shapes[v][-1]
    resolved = {}
    for v in direct:                      # nested concats: follow to the outermost buffer
        root, c0 = direct[v]
        while root in direct:
            outer, oc0 = direct[root]
            root, c0 = outer, c0 + oc0
        resolved[v] = (root, c0)
    return resolved


def plan_memory(g: Graph, batch: int) -> MemoryPlan:
    slices = find_concat_slices(g)
    views = {}
    for node in g.nodes:
        if ops.get(node.op).view:      # (its input is never a concat slice: only the concat reads those)
            src = node.inputs[0]
            views[node.output] = views.get(src, src)
    step = {v: -1 for v in g.inputs}
    last = {}
    for i, node in enumerate(g.nodes):
        if node.op != "input":
            step[node.output] = i
        for v in node.inputs:
            last[v] = i
    end = len(g.nodes)
    for v in g.outputs:
        last[v] = end

    def owner(v):
        if v in views:
            return views[v]
        return slices[v][0] if v in slices else v

    lifetimes: dict[str, tuple[int, int]] = {}
    for v in step:
        r = owner(v)
        lo, hi = step[v], last.get(v, step[v])
        if r in lifetimes:
            lo, hi = min(lo, lifetimes[r][0]), max(hi, lifetimes[r][1])
        lifetimes[r] = (lo, hi)
    sizes = {r: batch * math.prod(g.shapes[r]) for r in lifetimes}

    offsets: dict[str, int] = {}
    placed: list[tuple[int, int, int, int]] = []          # (offset, end, lo, hi)
    for r in sorted(lifetimes, key=lambda r: (-sizes[r], lifetimes[r][0])):
        lo, hi = lifetimes[r]
        need = -(-sizes[r] // ALIGN) * ALIGN
        busy = sorted((o, e) for o, e, a, b in placed if a <= hi and lo <= b)
        off = 0
        for o, e in busy:
            if off + need <= o:
                break
            off = max(off, e)
        offsets[r] = off
        placed.append((off, off + need, lo, hi))
    arena = max((e for _, e, _, _ in placed), default=0)
    naive = sum(-(-s // ALIGN) * ALIGN for s in sizes.values())
    return MemoryPlan(batch, offsets, sizes, slices, views, lifetimes, arena, naive)
