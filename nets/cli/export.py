"""``nets export MODEL OUT.onnx``: write a zoo network (with its weights) as ONNX, so ONNX Runtime and
other tools can be handed exactly the graph this runtime executes (NHWC input and outputs, NCHW body,
BatchNormalization kept as its own node; see nets.io.onnx.export)."""

from __future__ import annotations

import os

from nets.cli.common import load_from_args, model_args
from nets.errors import KernelnetsError


def cmd_export(args) -> int:
    from nets.io.onnx.export import export_onnx

    model = load_from_args(args, device="reference")
    try:
        path = export_onnx(model.source_graph, args.out, opset=args.opset)
    except OSError as e:
        raise KernelnetsError(f"cannot write {args.out}: {e.strerror or e}") from None
    g = model.source_graph
    size = os.path.getsize(path)
    shapes = ", ".join(f"{v} (N, {', '.join(map(str, g.shapes[v]))})" for v in g.outputs)
    print(f"wrote    {path} ({size / 2**20:.1f} MiB, opset {args.opset})")
    print(f"model    {model.name}: {len(g.nodes) - 1} layers, {g.num_params():,} parameters")
    print(f"input    {g.inputs[0]} (N, {', '.join(map(str, g.shapes[g.inputs[0]]))}) NHWC float32")
    print(f"outputs  {shapes}")
    print(f"weights  {model.weights_source}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export", help="write a network with its weights as an ONNX file",
        description="Write a network (architecture + weights) as an ONNX model that ONNX Runtime runs with "
                    "the same outputs. The file keeps this runtime's NHWC input and output layout.")
    model_args(p)
    p.add_argument("out", metavar="OUT.onnx", help="file to write")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset version (default 17, at least 13)")
    p.set_defaults(fn=cmd_export)
