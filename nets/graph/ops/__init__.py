"""The op registry: every op of the IR is one ``OpDef``, and everything that depends on the op looks it
up here instead of switching on its name.

An ``OpDef`` holds, for one op:
    infer_shape(node, in_shapes) -> out_shape      per-sample shapes; ModelError on a mismatch
    reference(node, xs, out_shape) -> y             the NumPy oracle on batched inputs (interpreter)
    macs(node, in_shapes, out_shape) -> int         multiply-accumulates per sample (1 MAC = 2 FLOPs)
    pack(backend, node) -> packed                   weights packed once per model for a backend
    kernel(call) -> Kernel                          the executor's step: a closure over bound buffers
    lower(graph, node)                              rewrite into ops the executor runs (passes.lower)
    export(exporter, node, ins, out)                ONNX nodes (nets.io.onnx.export)
    moments(node, ins, weights, in_shapes) -> Moments   seeded weights' moment propagation
and flags: ``epilogue`` (can absorb a following ReLU/ReLU6), ``slice_writer`` (can write into a
channel slice of a concat buffer), ``keeps_sign`` (a non-negative input stays non-negative), ``view``
(the output is its input's memory, reshaped), ``color`` (plots). Ops that only exist before the
passes (``separable_conv2d``, ``batch_norm``, ``flatten``, ``dropout``) have no kernel; the executor
refuses them with a clear error.

Adding an op: one ``OpDef`` in the module of its family below, its kernels in ``kernels/`` (reference,
cpu, gpu), and its converters in ``nets/io/``. See docs/architecture.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

from nets.errors import ModelError


class Call(NamedTuple):
    """What the executor binds for one step: the backend module, the node, its input buffers, the
    buffer it writes (the whole concat buffer for a slice writer, with ``c0`` its first channel),
    its packed weights, the batch size and the backend's array module. ``in_place[i]`` is true for a
    concat input already written into its slice of ``out``."""
    backend: Any
    node: Any
    ins: list
    out: Any
    c0: int
    packed: Any
    batch: int
    xp: Any
    in_place: tuple = ()


class Kernel(NamedTuple):
    """A bound step: ``run()`` executes it; ``variant`` names the code (``packed.variant`` wins once set,
    so a kernel that picks its variant per call reports the one that ran)."""
    run: Callable[[], None]
    variant: str
    packed: Any = None


class Moments(NamedTuple):
    """Channel-averaged mean and second moment of a value, and (weighted ops) the factor that makes
    the layer's input unit-RMS for seeded kernels."""
    mean: float
    second: float
    scale: float | None = None


def _no_macs(node, in_shapes, out_shape) -> int:
    return 0


@dataclass(frozen=True)
class OpDef:
    name: str
    infer_shape: Callable
    reference: Callable | None = None
    macs: Callable = _no_macs
    pack: Callable | None = None
    kernel: Callable | None = None
    lower: Callable | None = None
    export: Callable | None = None
    moments: Callable | None = None
    epilogue: bool = False
    slice_writer: bool = False
    keeps_sign: bool = False
    view: bool = False
    color: str = "#7f7f7f"


REGISTRY: dict[str, OpDef] = {}


def register(opdef: OpDef) -> OpDef:
    if opdef.name in REGISTRY:
        raise ValueError(f"op {opdef.name!r} is registered twice")
    REGISTRY[opdef.name] = opdef
    return opdef


def get(op: str, layer: str | None = None) -> OpDef:
    """The definition of ``op``; ModelError naming the layer for an unknown op."""
    try:
        return REGISTRY[op]
    except KeyError:
        where = f"layer {layer!r}: " if layer else ""
        raise ModelError(f"{where}unknown op {op!r}") from None


def need_rank(node, shape, rank):
    if len(shape) != rank:
        raise ModelError(f"layer {node.name!r} ({node.op}) expects a rank-{rank} input per sample, got shape {shape}")


def infer_shape(node, in_shapes: list[tuple]) -> tuple:
    """Per-sample output shape of ``node`` given its inputs' shapes; raises ModelError on mismatch."""
    return tuple(get(node.op, node.name).infer_shape(node, in_shapes))


def node_macs(node, in_shapes, out_shape) -> int:
    """Multiply-accumulates of one sample (1 MAC = 2 FLOPs)."""
    return int(get(node.op, node.name).macs(node, in_shapes, out_shape))


# the families register their ops on import
from nets.graph.ops import conv, dense, elementwise, layout, pool, scaled_conv  # noqa: E402,F401

__all__ = ["OpDef", "Call", "Kernel", "Moments", "REGISTRY", "register", "get", "infer_shape", "node_macs"]
