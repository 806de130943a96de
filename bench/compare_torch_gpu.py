"""Ours (kernels.gpu) vs PyTorch (cuDNN, TF32 off) on one GPU, the same weights, batch 1 and 32.

PyTorch runs the same optimised graph (BatchNorm folded, the same weights) op by op through
torch.nn.functional in NCHW, eager and replayed as a CUDA graph; ours runs eager launches on one
stream and as a CUDA graph. Every time is the median of device-event timings of whole-network runs
after warm-up (input already on the device; no host copies). Prints ours/PyTorch per network.

    python bench/compare_torch_gpu.py                       # six networks, batch 1 and 32
    python bench/compare_torch_gpu.py --models resnet50 --batch 1 --repeat 100
    python bench/compare_torch_gpu.py --cpu-check mobilenet # check the torch translation on the CPU
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np

NETWORKS = ("vgg16", "vgg19", "resnet50", "inception_v3", "xception", "mobilenet")


def torch_forward(graph, device):
    """A function running ``graph`` (optimised, NHWC semantics) with torch ops in NCHW on ``device``."""
    import torch
    import torch.nn.functional as F

    params = {}
    for n in graph.nodes:
        w = n.weights
        if n.op == "conv2d":
            params[n.name] = (torch.tensor(w["kernel"]).permute(3, 2, 0, 1).contiguous().to(device),
                              None if w.get("bias") is None else torch.tensor(w["bias"]).to(device))
        elif n.op == "depthwise_conv2d":
            kh, kw, c, m = w["depthwise_kernel"].shape
            k = torch.tensor(w["depthwise_kernel"].reshape(kh, kw, c * m)).permute(2, 0, 1)[:, None]
            b = None if w.get("bias") is None else torch.tensor(w["bias"]).to(device)
            params[n.name] = (k.contiguous().to(device), b)
        elif n.op == "dense":
            params[n.name] = (torch.tensor(w["kernel"]).t().contiguous().to(device),
                              None if w.get("bias") is None else torch.tensor(w["bias"]).to(device))
        elif n.op == "channel_affine":
            params[n.name] = tuple(torch.tensor(w[k]).view(1, -1, 1, 1).to(device) for k in ("scale", "shift"))

    def act(y, a):
        return F.relu(y) if a == "relu" else F.relu6(y) if a == "relu6" else y

    def pad4(y, p, value=0.0):     # (top, bottom, left, right) -> F.pad's (left, right, top, bottom)
        return F.pad(y, (p[2], p[3], p[0], p[1]), value=value) if any(p) else y

    def run(x):
        vals = {graph.inputs[0]: x}
        for n in graph.nodes:
            if n.op == "input":
                continue
            a, ins = n.attrs, [vals[v] for v in n.inputs]
            y, op = ins[0], n.op
            if op in ("conv2d", "depthwise_conv2d"):
                k, b = params[n.name]
                groups = y.shape[1] if op == "depthwise_conv2d" else 1
                y = F.conv2d(pad4(y, a["pad"]), k, b, stride=a["strides"], groups=groups)
                if a.get("residual") is not None:
                    y = y + ins[1]
                y = act(y, a["act"])
            elif op == "max_pool2d":
                y = F.max_pool2d(pad4(y, a["pad"], float("-inf")), a["pool_size"], a["strides"])
            elif op == "avg_pool2d":
                p = a["pad"]
                if a["count_include_pad"] or not any(p):
                    y = F.avg_pool2d(pad4(y, p), a["pool_size"], a["strides"])
                else:                # divide by the real cells: sum over windows / count of ones
                    ones = torch.ones_like(y[:1, :1])
                    s = F.avg_pool2d(pad4(y, p), a["pool_size"], a["strides"])
                    y = s / F.avg_pool2d(pad4(ones, p), a["pool_size"], a["strides"])
            elif op in ("global_avg_pool", "global_max_pool"):
                y = y.mean((2, 3), keepdim=True) if op == "global_avg_pool" else y.amax((2, 3), keepdim=True)
                if not a.get("keepdims"):
                    y = y.flatten(1)
            elif op == "add":
                y = act(y + ins[1], a.get("act"))
            elif op == "activation":
                y = act(y, a["act"])
            elif op == "channel_affine":
                s, t = params[n.name]
                y = act(y * s + t, a.get("act"))
            elif op == "concat":
                y = torch.cat(ins, 1)
            elif op == "zero_pad":
                y = pad4(y, a["pad"])
            elif op == "reshape":          # NHWC order, as the dense weights expect
                shape = (y.shape[0],) + tuple(graph.shapes[n.output])
                y = (y.permute(0, 2, 3, 1) if y.dim() == 4 else y).reshape(shape)
                if y.dim() == 4:
                    y = y.permute(0, 3, 1, 2)
            elif op == "dense":
                k, b = params[n.name]
                y = act(F.linear(y.flatten(1) if y.dim() > 2 else y, k, b), a.get("act"))
            elif op == "softmax":
                y = torch.softmax(y, -1)
            else:
                raise NotImplementedError(f"{n.name}: op {op}")
            vals[n.output] = y
        out = vals[graph.outputs[0]]
        return out.permute(0, 2, 3, 1) if out.dim() == 4 else out
    return run


def time_torch(fn, x, repeat, graph):
    import torch

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream), torch.no_grad():
        for _ in range(3):
            fn(x)
    torch.cuda.current_stream().wait_stream(stream)
    call = lambda: fn(x)
    if graph:
        g = torch.cuda.CUDAGraph()
        with torch.no_grad(), torch.cuda.graph(g):
            fn(x)
        call = g.replay
    times = []
    with torch.no_grad():
        for _ in range(repeat):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            call()
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b) * 1e-3)
    return statistics.median(times)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=list(NETWORKS))
    p.add_argument("--batch", nargs="+", type=int, default=[1, 32])
    p.add_argument("--repeat", type=int, default=50)
    p.add_argument("--cpu-check", metavar="MODEL", help="only compare the torch translation with our CPU run")
    args = p.parse_args(argv)

    import torch

    import nets
    from nets.runtime.cuda_graph import GpuRunner

    if args.cpu_check:
        m = nets.load(args.cpu_check, classifier_activation=None)
        x = np.random.default_rng(0).normal(0, 1, (2,) + m.input_shape).astype(np.float32)
        want = m(x)
        with torch.no_grad():
            got = torch_forward(m.graph, "cpu")(torch.tensor(x).permute(0, 3, 1, 2)).numpy()
        err = np.abs(got - want).max() / np.abs(want).max()
        print(f"{args.cpu_check}: torch (CPU) vs ours (CPU) max rel err {err:.2e}")
        return 0

    import cupy

    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    name = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
    print(f"device {name} | torch {torch.__version__} cuDNN {torch.backends.cudnn.version()} TF32 off | "
          f"cupy {cupy.__version__} | fp32 | median of {args.repeat} device-event timings, input on device")
    print(f"{'network':<13} {'batch':>5} {'ours eager':>11} {'ours graph':>11} {'torch eager':>12} "
          f"{'torch graph':>12} {'ours/torch (graph)':>19} {'max rel err':>12}")
    for net in args.models:
        model = nets.load(net, classifier_activation=None, device="gpu")
        fwd = torch_forward(model.graph, "cuda")
        for batch in args.batch:
            x = np.random.default_rng(batch).normal(0, 1, (batch,) + model.input_shape).astype(np.float32)
            ours = {}
            for use_graph in (False, True):
                r = GpuRunner(model.new_executor(batch), graph=use_graph)
                got = r.run(cupy.asarray(x))[0].get()
                ours[use_graph] = statistics.median(r.timed_replays(args.repeat))
            xt = torch.tensor(x, device="cuda").permute(0, 3, 1, 2).contiguous()
            with torch.no_grad():
                want = fwd(xt).cpu().numpy()
            err = float(np.abs(got - want).max() / np.abs(want).max())
            te, tg = time_torch(fwd, xt, args.repeat, False), time_torch(fwd, xt, args.repeat, True)
            print(f"{net:<13} {batch:>5} {ours[False] * 1e3:>9.3f}ms {ours[True] * 1e3:>9.3f}ms "
                  f"{te * 1e3:>10.3f}ms {tg * 1e3:>10.3f}ms {ours[True] / tg:>19.2f} {err:>12.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
