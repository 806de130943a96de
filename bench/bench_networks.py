"""pytest-benchmark suite: whole networks on the CPU backend, one benchmark per network and batch size.

    python -m pytest bench/bench_networks.py [-k resnet50] [--benchmark-columns=median,min,max]
    KERNELNETS_BENCH_THREADS=1 python -m pytest bench/bench_networks.py

Seeded weights, logits, batch 1 and 8, threads from KERNELNETS_BENCH_THREADS (default: all cores).
Each benchmark records GFLOP/s (1 MAC = 2 FLOPs) and the share of the machine's measured FMA peak
(``nets peaks``) in its extra_info. Agreement with ONNX Runtime on the same graph is checked by
``bench/compare_ort.py``; here each output is only checked to be finite and of the right shape.
"""

import os

import numpy as np
import pytest

import nets
from nets.graph.ops import node_macs

NETWORKS = ["vgg16", "vgg19", "resnet50", "inception_v3", "xception", "mobilenet"]
THREADS = int(os.environ.get("KERNELNETS_BENCH_THREADS", "0")) or None


@pytest.fixture(scope="module", params=NETWORKS)
def network(request):
    return nets.load(request.param, classifier_activation=None, threads=THREADS)


@pytest.mark.parametrize("batch", [1, 8])
def test_network(benchmark, network, batch):
    from nets.tools.peaks import ceilings, peaks

    g = network.source_graph
    macs = sum(node_macs(n, [g.shapes[v] for v in n.inputs], g.shapes[n.output]) for n in g.nodes)
    x = np.random.default_rng(0).normal(size=(batch,) + network.input_shape).astype(np.float32)
    y = network(x)                                   # compile and plan outside the timing
    assert y.shape == (batch, 1000) and np.isfinite(y).all()
    benchmark.name = f"{network.name}-b{batch}-t{network.threads}"
    benchmark.pedantic(network, args=(x,), warmup_rounds=2, rounds=10 if batch == 1 else 4, iterations=1)
    median = benchmark.stats.stats.median
    gflops = 2 * macs * batch / median / 1e9
    peak = ceilings(peaks("cpu"), network.threads)["gflops"]
    benchmark.extra_info.update({"gflops": round(gflops, 1), "pct_of_fma_peak": round(100 * gflops / peak, 1),
                                 "threads": network.threads, "batch": batch})
