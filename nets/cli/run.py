"""``nets run`` (classify images, report first-run and steady-state latency) and ``nets summary``."""

from __future__ import annotations

import time

import numpy as np

from nets.cli.common import load_from_args, model_args
from nets.runtime.planner import plan_memory
from nets.runtime.threads import set_threads
from nets.tools.timing import first_run, synthetic_input, time_calls


def memory_lines(model) -> list[str]:
    """``Model.memory()`` as text (what ``nets summary`` and ``nets run`` print)."""
    m = model.memory()
    mib = lambda b: f"{b / 2**20:.1f} MiB"   # noqa: E731
    arenas = ", ".join(f"batch {s['capacity']}: {mib(s['arena_bytes'])} + scratch {mib(s['scratch_bytes'])}"
                       for s in m["slots"]) or "none yet (made on the first call)"
    return [f"Memory: weights {mib(m['weights'])}, packed weights {mib(m['packed'])}, arenas {mib(m['arenas'])}, "
            f"kernel scratch {mib(m['scratch'])}; total {mib(m['total'])} (arenas + scratch kept under "
            f"{mib(m['budget'])})", f"Arenas: {arenas}"]


def cold_cache_notice(name: str) -> None:
    """One line when the CPU kernel cache is empty: the first run compiles, and roughly for how long."""
    from kernels.cpu import cache
    from nets.tools.warmup import expected_compile_seconds

    if cache.is_cold():
        from nets.runtime.compile import helpers_wanted

        k = helpers_wanted()
        on = f" with {k} helper process{'es' if k > 1 else ''}" if k else ""
        print(f"note     empty kernel cache (first start here): compiling the CPU kernels {name} uses{on}, about "
              f"{expected_compile_seconds(name)}; they are cached in {cache.cache_dir()} for every later start "
              "(`nets warmup` compiles ahead)")


def cmd_summary(args) -> int:
    model = load_from_args(args, device=args.device)
    print(model.summary())
    plan = plan_memory(model.graph, 1)
    print(f"Peak activation memory at batch 1: {plan.peak_bytes / 2**20:.2f} MiB "
          f"(without buffer reuse: {plan.naive_bytes / 2**20:.2f} MiB)")
    if args.run:
        model(synthetic_input(model, 1))
    for line in memory_lines(model):
        print(line)
    print(f"Weights: {model.weights_source}")
    return 0


def cmd_run(args) -> int:
    import nets

    device = getattr(args, "device", "cpu") or "cpu"
    t_load = time.perf_counter()
    model = load_from_args(args, device=device, threads=args.threads if device == "cpu" else None,
                           precision=args.precision)
    t_load = time.perf_counter() - t_load
    h, w, _ = model.input_shape
    if args.image:
        images = np.stack([nets.load_image(p, (h, w)) for p in args.image])
        if args.batch and args.batch != len(images):
            images = np.resize(images, (args.batch,) + images.shape[1:])
        source = ", ".join(args.image)
    else:
        images = np.random.default_rng(0).integers(0, 256, (args.batch or 1, h, w, 3)).astype(np.uint8)
        source = "synthetic random image (no --image given)"
    x = nets.preprocess(model.preprocess_mode or "none", images)
    n = len(x)
    # an NCHW ONNX model takes NCHW arrays; the executor inside is NHWC either way
    x_user = np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if getattr(model, "layout", "") == "NCHW" else x
    where = f"threads {model.threads}  device cpu" if device == "cpu" else "device gpu"
    print(f"model    {model.name}  input {n}x{h}x{w}x3  {where}")
    print(f"weights  {model.weights_source}")
    print(f"input    {source}")
    if model.weights_source.startswith("seeded"):
        print("note     weights are untrained (seeded): the classes below are meaningless; "
              "pass --weights FILE for real predictions")

    if device == "cpu":
        cold_cache_notice(model.name)
    t0 = time.perf_counter()
    with model.lease(n) as runner:
        if device == "gpu":
            print(f"gpu      {'CUDA-graph replay' if runner.use_graph else 'eager launches'} on one stream; "
                  "first run compiles kernels (NVRTC, cached on disk by CuPy)")
            runner.run(x)
            runner.sync()
        else:
            set_threads(model.threads)
            first_run(runner.executor, x)
    first = time.perf_counter() - t0
    out = model(x_user)         # numpy in, numpy out: includes the copies to and from the GPU
    times = time_calls(lambda: model(x_user), args.repeat, args.warmup)
    med = float(np.median(times))
    print(f"latency  load {t_load:.2f} s | first run {first:.2f} s (includes kernel compilation) | "
          f"steady state median {med * 1e3:.2f} ms, min {min(times) * 1e3:.2f} ms over {args.repeat} runs "
          f"| {n / med:.1f} images/s")
    out = np.asarray(out).reshape(n, -1)
    if model.output_shape[-1] > 1 and model.graph.nodes[-1].op in ("softmax", "dense", "conv2d", "reshape"):
        label = "prob" if model.graph.nodes[-1].op == "softmax" else "logit"
        for i, best in enumerate(nets.top_k(out, 5)[: min(n, 8)]):
            tag = args.image[i % len(args.image)] if args.image else f"sample {i}"
            print(f"top-5    {tag}")
            for rank, (idx, name, score) in enumerate(best, 1):
                print(f"  {rank}. {name:<28} {label} {score:.4f}  (class {idx})")
    return 0


def register(sub):
    r = sub.add_parser("run", help="classify images (top-5) and report first-run and steady-state latency",
                       description="Load a network, run it on images and print the top-5 classes and the latency.")
    model_args(r)
    r.add_argument("--image", nargs="+", metavar="FILE", help="image files (any format Pillow reads)")
    r.add_argument("--batch", type=int, help="batch size (default: number of images, or 1)")
    r.add_argument("--threads", type=int, help="CPU threads (default: all cores)")
    r.add_argument("--device", choices=["cpu", "gpu"], default="cpu",
                   help="cpu (Numba kernels, default) or gpu (CUDA kernels through CuPy)")
    r.add_argument("--precision", choices=["fp32", "tf32"], default="fp32",
                   help="tf32: GPU convolutions on tensor cores (opt-in; ~1e-3 relative on logits instead of 1e-4)")
    r.add_argument("--repeat", type=int, default=20, help="timed runs (default 20)")
    r.add_argument("--warmup", type=int, default=3, help="untimed runs first (default 3)")
    r.set_defaults(fn=cmd_run)

    s = sub.add_parser("summary", help="layers, output shapes, params and MACs (like Keras' summary)",
                       description="Print every layer with its output shape, parameters and MACs, and what "
                                   "the fusion passes made of it.")
    model_args(s)
    s.add_argument("--device", choices=["cpu", "gpu", "reference"], default="cpu",
                   help="backend whose packed weights are counted (default cpu)")
    s.add_argument("--run", action="store_true",
                   help="run one batch-1 inference first, so the memory line includes its arena and kernel "
                        "scratch (compiles the kernels on a cold cache)")
    s.set_defaults(fn=cmd_summary)
