"""Images/s of ``nets classify`` against the model alone, and one process against a Dask LocalCluster.

    python bench/classify.py                         # ResNet50 + MobileNet, batch 8, 2 threads, 500 JPEGs
    python bench/classify.py --models mobilenet --images 200 --rounds 1

1. Pipeline vs model: 500 generated 500x375 JPEGs (gradients + noise, quality 90). "model only" runs
   ``model(x)`` on an already preprocessed batch, as many batches as there are images; "classify" is
   ``nets.classify`` on the files with the same model (already warm), batch and threads: read, decode,
   resize, preprocess on the decode threads, model, top-5, rows to a CSV. The two alternate for
   ``--rounds`` rounds; medians are reported. Also: one decode thread's rate alone.
2. One process x 2 threads against a 2-worker LocalCluster x 1 thread (both warm), same files.
3. Scheduler overhead: round trip of no-op tasks on the same cluster; with the per-worker rate it
   projects N machines: min(N x machine rate, images per task / overhead per task).
Targets (issue 14): classify >= 90% of model-only for ResNet50, >= 75% for MobileNet.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import sys
import tempfile
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import nets  # noqa: E402
from nets.io.images import read_image  # noqa: E402
from nets.tools.classify import ClassifyRun  # noqa: E402


def make_jpegs(folder: str, n: int) -> list[str]:
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:375, 0:500]
    paths = []
    for i in range(n):
        p = os.path.join(folder, f"img_{i:04d}.jpg")
        paths.append(p)
        if os.path.exists(p):
            continue
        base = np.stack([(x * (i % 7 + 1) // 4) % 256, (y * (i % 5 + 1) // 3) % 256, (x + y) * (i % 3 + 1) % 256], -1)
        pix = np.clip(base + rng.normal(0, 18, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(pix).save(p, quality=90)
    return paths


def model_only(model, batch: int, n_images: int) -> float:
    size = model.input_shape[:2]
    x = nets.preprocess(model.preprocess_mode, np.random.default_rng(1).integers(0, 256, (batch, *size, 3)))
    calls = max(1, n_images // batch)
    t = time.perf_counter()
    for _ in range(calls):
        model(x)
    return calls * batch / (time.perf_counter() - t)


def pipeline(model, paths, batch: int, out: str, decode_threads=None) -> tuple[float, float]:
    run = ClassifyRun(model, paths, batch=batch, out=out, overwrite=True, decode_threads=decode_threads)
    for _ in run.batches():
        pass
    return run.rate, run.wait_s


def decode_rate(paths, size) -> float:
    t = time.perf_counter()
    for p in paths[:100]:
        nets.preprocess("tf", read_image(p, size))
    return min(100, len(paths)) / (time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["resnet50", "mobilenet"])
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--decode-threads", type=int)
    ap.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "kernelnets_bench_jpegs"))
    ap.add_argument("--no-dask", action="store_true")
    args = ap.parse_args()

    paths = make_jpegs(args.dir, args.images)
    out = os.path.join(tempfile.mkdtemp(), "bench.csv")
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; "
          f"{len(paths)} JPEGs 500x375, batch {args.batch}, {args.threads} threads, {args.rounds} rounds")
    print(f"decode+resize+preprocess, 1 thread: {decode_rate(paths, (224, 224)):.0f} images/s")
    print("| model | model only (img/s) | nets classify (img/s) | ratio | target | model waited for decoding |")
    print("|---|---|---|---|---|---|")
    target = dict(resnet50=0.90, mobilenet=0.75)
    for name in args.models:
        model = nets.load(name, threads=args.threads)
        model_only(model, args.batch, args.batch * 2)                  # compile, plan the arena
        pipeline(model, paths[: args.batch * 2], args.batch, out)
        alone, piped, waits = [], [], []
        for _ in range(args.rounds):
            alone.append(model_only(model, args.batch, len(paths)))
            rate, wait = pipeline(model, paths, args.batch, out, args.decode_threads)
            piped.append(rate)
            waits.append(wait)
        a, p = statistics.median(alone), statistics.median(piped)
        print(f"| {name} | {a:.1f} | {p:.1f} | {p / a:.2f} | {target.get(name, 0):.2f} | "
              f"{statistics.median(waits):.2f} s |", flush=True)
    if not args.no_dask:
        dask_table(args, paths, out)


def dask_table(args, paths, out):
    import distributed

    name = args.models[-1]
    model = nets.load(name, threads=2)
    pipeline(model, paths[:16], args.batch, out)
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                       silence_logs=logging.ERROR)
    client = distributed.Client(cluster)
    try:
        def on_cluster():
            run = ClassifyRun(name, paths, batch=args.batch, out=out, overwrite=True, cluster=client)
            for _ in run.batches():
                pass
            return run
        for _ in ClassifyRun(name, paths[:64], batch=args.batch, cluster=client):     # workers build the model
            pass
        one, two, steady = [], [], []
        for _ in range(args.rounds):
            one.append(pipeline(model, paths, args.batch, out)[0])
            run = on_cluster()
            two.append(run.rate)
            steady.append(run.steady_rate)
        per_worker = {}
        for s in run.worker_stats:
            per_worker.setdefault(s["worker"], []).append(s)
        n_task = len(paths) / max(1, len(run.worker_stats))
        t = time.perf_counter()
        client.gather(client.map(lambda i: i, range(400), pure=False))
        overhead = (time.perf_counter() - t) / 400
        print(f"\n{name}, {len(paths)} images, batch {args.batch}:")
        print("| setup | images/s |")
        print("|---|---|")
        print(f"| 1 process x 2 threads (local pipeline) | {statistics.median(one):.1f} |")
        print(f"| LocalCluster 2 workers x 1 thread | {statistics.median(two):.1f} "
              f"({statistics.median(steady):.1f} after the first chunk, which runs alone) |")
        rate = statistics.median(two)
        print(f"\nscheduler round trip of a no-op task: {overhead * 1e3:.2f} ms; {n_task:.0f} images per task; "
              f"tasks per worker: {', '.join(str(len(v)) for v in per_worker.values())}")
        print("| machines like this one | projected images/s |")
        print("|---|---|")
        for n in (1, 2, 4, 8, 16, 32, 64):
            print(f"| {n} | {min(n * rate, n_task / overhead):.0f} |")
    finally:
        client.close()
        cluster.close()


if __name__ == "__main__":
    main()
