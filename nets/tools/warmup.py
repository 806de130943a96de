"""``nets warmup``: compile the CPU kernels that networks need, ahead of their first real use.

Each network is built with seeded weights and run once at batch 1 (and, with ``threads > 1``, its
small layers take the serial kernels, so both kinds compile). Compiled kernels land in Numba's on-disk
cache (``kernels.cpu.cache``); later processes load them in milliseconds.
"""

from __future__ import annotations

import time

from nets.tools.timing import first_run, synthetic_input

DEFAULT_MODELS = ("vgg16", "vgg19", "resnet50", "inception_v3", "xception", "mobilenet")

# First-ever ``nets run`` of each network alone, empty cache, 2 threads, one helper process (bench/coldstart.py,
# bench/RESULTS.md "Cold and warm start", rounded up); ResNet101/152 use ResNet50's kernels.
COLD_SECONDS = {"vgg16": 19, "vgg19": 21, "resnet50": 18, "resnet101": 18, "resnet152": 18, "inception_v3": 15,
                "xception": 21, "mobilenet": 20}


def expected_compile_seconds(name: str) -> str:
    """What ``nets run`` announces on an empty cache: the measured figure for zoo networks."""
    s = COLD_SECONDS.get(str(name).lower())
    return f"{s:.0f} s on a 2-core AMD EPYC (Zen 4)" if s else "a minute or two"


def warm(names, threads=None, progress: bool = True, log=print) -> list[tuple[str, float]]:
    """Load and run each model once (batch 1); (name, seconds) per model."""
    import nets
    from nets.runtime.threads import set_threads

    done = []
    for i, name in enumerate(names, 1):
        t0 = time.perf_counter()
        model = nets.load(name, threads=threads)
        x = synthetic_input(model, 1)
        with model.lease(1) as runner:
            set_threads(model.threads)
            first_run(runner.executor, x, progress=progress, label=f"[{i}/{len(names)}] {name}")
        dt = time.perf_counter() - t0
        done.append((name, dt))
        log(f"{name:<14} ready in {dt:6.1f} s")
    return done


def sharing_advice(root: str) -> list[str]:
    return [
        f"cache    {root}",
        "share    set NUMBA_CACHE_DIR to one folder on every machine of the same CPU model (same numba and",
        "         kernelnets versions), e.g. in a container image build or the environment of Dask workers,",
        "         and run `nets warmup` there once; each machine then loads the compiled kernels instead of",
        "         compiling them (entries are keyed by CPU, so a different CPU compiles its own); processes",
        "         compiling into one folder at once share the work (a kernel one of them is compiling, the",
        "         others wait for or skip) and never interleave their writes",
        "helpers  NETS_COMPILE_HELPERS=N processes compile alongside a first run (default: one per further",
        "         core, at most 3; 0 for none)",
    ]


__all__ = ["COLD_SECONDS", "DEFAULT_MODELS", "expected_compile_seconds", "sharing_advice", "warm"]
