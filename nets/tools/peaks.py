"""This machine's measured peaks: fp32 FMA throughput and memory bandwidth, cached per machine.

The profiler divides each layer's achieved GFLOP/s and GB/s by these numbers, so "% of peak" is a
measurement, not a datasheet figure.

- FMA peak: every thread runs ``a = a * m + c`` on 24 independent 16-float vectors (24 zmm
  registers; two FMA pipes with a 4-cycle latency need at least 8 in flight). The accumulators live
  in a stack buffer so LLVM keeps them in registers. 1 FMA = 2 FLOPs.
- Bandwidth: a STREAM triad ``a = b + s * c`` over three arrays far larger than the caches (DRAM),
  and over three arrays that fit in L2 (the cache ceiling of the roofline). STREAM's convention:
  12 bytes per element (no write-allocate traffic counted); and a streaming read ``s += a[i]``
  (4 bytes per element), the bound of a batch-1 dense layer reading its weights.

Results are cached as JSON under ``~/.cache/kernelnets/`` (``$KERNELNETS_CACHE`` overrides), one
file per CPU model and core count (or per GPU name); ``peaks(force=True)`` / ``nets peaks --force``
measures again. ``bandwidth_table`` / ``nets peaks --table`` prints read, copy and triad on one and
all cores from larger arrays (STREAM's table; what bench/ quotes), not cached.
"""

from __future__ import annotations

import json
import os
import platform
import re
import time
from pathlib import Path

import numpy as np
from numba import njit

from kernels.cpu.stack import stack_tile

LANES = 16                 # floats per zmm register
CHAINS = 24                # independent accumulator vectors per thread
FMA_ITERS = 1_000_000      # ~3 ms per thread at 2 FMA/cycle and 4 GHz: short, so some runs get a core alone
DRAM_FLOATS = 24 * 2**20   # 96 MiB per array: far past any L3 slice
L2_FLOATS = 16 * 2**10     # 64 KiB per array: three of them fit a 1 MiB L2


_chain_tile = stack_tile(1, CHAINS * LANES)   # the accumulators: a stack buffer LLVM keeps in zmm registers


@njit(fastmath=True, cache=True, nogil=True)
def _fma_chains(iters, seed):
    acc = _chain_tile()[0]         # one flat row: LLVM keeps a (CHAINS, LANES) 2-D loop nest in memory
    for j in range(CHAINS * LANES):
        acc[j] = seed + np.float32(j) * np.float32(1e-6)
    m = np.float32(0.999999)
    c = np.float32(1e-7)
    for _ in range(iters):
        for j in range(CHAINS * LANES):
            acc[j] = acc[j] * m + c
    total = np.float32(0.0)
    for j in range(CHAINS * LANES):
        total += acc[j]
    return total


@njit(fastmath=True, cache=True, nogil=True)
def _triad(a, b, c, s, reps):
    for _ in range(reps):
        for i in range(a.shape[0]):
            a[i] = b[i] + s * c[i]


@njit(fastmath=True, cache=True, nogil=True)
def _read(a):
    s = np.float32(0.0)
    for i in range(a.shape[0]):
        s += a[i]
    return s


@njit(fastmath=True, cache=True, nogil=True)
def _copy(a, c):
    for i in range(a.shape[0]):
        c[i] = a[i]


def _on_threads(pool, n, fn):
    """Run ``fn(i)`` for i < n on n OS threads at once (the kernels release the GIL); seconds taken."""
    t = time.perf_counter()
    list(pool.map(fn, range(n)))
    return time.perf_counter() - t


def _best(fn, repeat):
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def cpu_name() -> str:
    """The CPU model (with family/model numbers where the brand string is vague, as under a VM)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    def field(key):
        m = re.search(rf"^{key}\s*:\s*(.+)$", text, re.M)
        return m.group(1).strip() if m else ""
    name = field("model name") or platform.machine()
    fam, mod = field("cpu family"), field("model")
    return f"{name} (family {fam}, model {mod})" if fam else name


def cpu_cores() -> int:
    import numba
    return int(numba.config.NUMBA_NUM_THREADS)


def measure_cpu(threads: int | None = None, repeat: int = 30) -> dict:
    """Measure FMA GFLOP/s and triad GB/s on one core and on ``threads`` (default: all) cores at once.
    Parallel runs use OS threads calling the same GIL-free kernels, so both figures time one code.
    Best of ``repeat`` short runs (a third as many for the slower DRAM triad): on a shared machine
    some of them still get the cores alone."""
    from concurrent.futures import ThreadPoolExecutor

    cores = cpu_cores()
    threads = cores if threads is None else threads
    seed = np.float32(0)
    flop = 2.0 * FMA_ITERS * CHAINS * LANES
    _fma_chains(10, seed)
    s = np.float32(0.5)
    a, b, c = (np.full(DRAM_FLOATS, v, np.float32) for v in (0.0, 1.0, 2.0))
    span = -(-DRAM_FLOATS // threads)
    parts = [(a[i:i + span], b[i:i + span], c[i:i + span]) for i in range(0, DRAM_FLOATS, span)]
    la, lb, lc = (np.full(L2_FLOATS, v, np.float32) for v in (0.0, 1.0, 2.0))
    reps = 2000
    _triad(la, lb, lc, s, 1)
    with ThreadPoolExecutor(threads) as pool:
        fma1 = flop / _best(lambda: _fma_chains(FMA_ITERS, seed), repeat) / 1e9
        fma_all = threads * flop / min(_on_threads(pool, threads, lambda i: _fma_chains(FMA_ITERS, seed))
                                       for _ in range(repeat)) / 1e9
        slow = max(3, repeat // 3)
        dram1 = 12.0 * DRAM_FLOATS / _best(lambda: _triad(a, b, c, s, 1), slow) / 1e9
        dram_all = 12.0 * DRAM_FLOATS / min(_on_threads(pool, len(parts), lambda i: _triad(*parts[i], s, 1))
                                            for _ in range(slow)) / 1e9
        read1 = 4.0 * DRAM_FLOATS / _best(lambda: _read(b), slow) / 1e9
        read_all = 4.0 * DRAM_FLOATS / min(_on_threads(pool, len(parts), lambda i: _read(parts[i][1]))
                                           for _ in range(slow)) / 1e9
        l2 = 12.0 * L2_FLOATS * reps / _best(lambda: _triad(la, lb, lc, s, reps), slow) / 1e9
    return {
        "kind": "cpu", "name": cpu_name(), "cores": cores, "threads_measured": threads,
        "fma_gflops_1": round(fma1, 1), "fma_gflops_all": round(fma_all, 1),
        "dram_gbs_1": round(dram1, 1), "dram_gbs_all": round(dram_all, 1), "l2_gbs_1": round(l2, 1),
        "read_gbs_1": round(read1, 1), "read_gbs_all": round(read_all, 1),
        "method": f"FMA: {CHAINS} chains x {LANES} lanes x {FMA_ITERS} iterations per thread, best of {repeat}; "
                  f"triad a=b+s*c, {DRAM_FLOATS * 4 >> 20} MiB arrays (DRAM) and {L2_FLOATS * 4 >> 10} KiB "
                  "arrays (L2), 12 bytes/element; read s+=a[i] (DRAM), 4 bytes/element",
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"), "load_average": _loadavg(),
    }


def bandwidth_table(threads: int | None = None, mib: int = 256, passes: int = 5, repeat: int = 10) -> list[dict]:
    """FMA GFLOP/s and STREAM-style DRAM bandwidth on one thread and on ``threads`` (default: all cores),
    one dict per thread count: ``read`` (s += a[i], 4 bytes/element: what a batch-1 dense layer does
    with its weights), ``copy`` (c[i] = a[i], 8) and ``triad`` (a[i] = b[i] + s*c[i], 12; STREAM does
    not count write-allocate traffic). Arrays of ``mib`` MiB each; the best of ``passes`` passes
    (STREAM reports the best). Not cached: ``nets peaks --table`` prints it."""
    threads = cpu_cores() if threads is None else threads
    n = mib * 2**20 // 4
    a, b, c = (np.full(n, v, np.float32) for v in (0.0, 1.0, 2.0))
    _fma_chains(10, np.float32(0))                  # compile (or load) the probes before timing them
    _read(a[:64]), _copy(a[:64], c[:64]), _triad(a[:64], b[:64], c[:64], np.float32(0.5), 1)
    return [_stream_row(k, a, b, c, passes, repeat) for k in sorted({1, threads})]


def _stream_row(k, a, b, c, passes, repeat) -> dict:
    """One row of ``bandwidth_table``: ``k`` OS threads, each on its own part of the arrays."""
    from concurrent.futures import ThreadPoolExecutor

    n, s, seed = a.shape[0], np.float32(0.5), np.float32(0)
    cuts = np.linspace(0, n, k + 1).astype(int)
    parts = [(a[lo:hi], b[lo:hi], c[lo:hi]) for lo, hi in zip(cuts[:-1], cuts[1:])]
    flop = 2.0 * FMA_ITERS * CHAINS * LANES
    with ThreadPoolExecutor(k) as pool:
        def best(fn, times=passes):
            return min(_on_threads(pool, k, fn) for _ in range(times))

        g = k * flop / best(lambda i: _fma_chains(FMA_ITERS, seed), repeat)
        read = 4.0 * n / best(lambda i: _read(parts[i][1]))
        copy = 8.0 * n / best(lambda i: _copy(parts[i][1], parts[i][2]))
        triad = 12.0 * n / best(lambda i: _triad(*parts[i], s, 1))
    return {"threads": k, "fma_gflops": round(g / 1e9, 1), "read_gbs": round(read / 1e9, 1),
            "copy_gbs": round(copy / 1e9, 1), "triad_gbs": round(triad / 1e9, 1)}


def bandwidth_text(rows: list[dict]) -> str:
    lines = [f"# {cpu_name()}, {cpu_cores()} cores, load average {_loadavg()}",
             f"{'threads':>7s} {'FMA GFLOP/s':>12s} {'read GB/s':>10s} {'copy GB/s':>10s} {'triad GB/s':>11s}"]
    lines += [f"{r['threads']:7d} {r['fma_gflops']:12.1f} {r['read_gbs']:10.1f} {r['copy_gbs']:10.1f} "
              f"{r['triad_gbs']:11.1f}" for r in rows]
    return "\n".join(lines)


def measure_gpu(repeat: int = 5) -> dict:
    """Measure a CUDA device's fp32 FMA peak and device-memory bandwidth through CuPy."""
    import cupy as cp

    dev = cp.cuda.Device()
    props = cp.cuda.runtime.getDeviceProperties(dev.id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    src = r"""
    extern "C" __global__ void fma_chains(float* out, int iters) {
        float a0 = threadIdx.x, a1 = a0 + 1, a2 = a0 + 2, a3 = a0 + 3, a4 = a0 + 4, a5 = a0 + 5, a6 = a0 + 6,
              a7 = a0 + 7;
        const float m = 0.999999f, c = 1e-7f;
        for (int i = 0; i < iters; ++i) {
            a0 = fmaf(a0, m, c); a1 = fmaf(a1, m, c); a2 = fmaf(a2, m, c); a3 = fmaf(a3, m, c);
            a4 = fmaf(a4, m, c); a5 = fmaf(a5, m, c); a6 = fmaf(a6, m, c); a7 = fmaf(a7, m, c);
        }
        out[blockIdx.x * blockDim.x + threadIdx.x] = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7;
    }"""
    kern = cp.RawKernel(src, "fma_chains")
    blocks, tpb, iters = props["multiProcessorCount"] * 8, 256, 4096
    out = cp.empty(blocks * tpb, cp.float32)

    def fma():
        kern((blocks,), (tpb,), (out, np.int32(iters)))
        dev.synchronize()

    fma()
    gflops = 2.0 * 8 * iters * blocks * tpb / _best(fma, repeat) / 1e9
    n = 256 * 2**20
    a, b = cp.empty(n, cp.float32), cp.ones(n, cp.float32)

    def copy():
        a[...] = b
        dev.synchronize()

    copy()
    gbs = 8.0 * n / _best(copy, repeat) / 1e9
    return {"kind": "gpu", "name": name, "fma_gflops_all": round(gflops, 1), "dram_gbs_all": round(gbs, 1),
            "method": f"FMA: 8 chains per thread, {blocks}x{tpb} threads; copy of {4 * n >> 20} MiB (read + write)",
            "measured_at": time.strftime("%Y-%m-%d %H:%M:%S")}


def _loadavg():
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def cache_dir() -> Path:
    return Path(os.environ.get("KERNELNETS_CACHE") or Path.home() / ".cache" / "kernelnets")


def _gpu_key() -> str:
    import cupy as cp

    props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    return f"gpu-{name}"


def cache_path(device: str = "cpu", directory: Path | None = None) -> Path:
    key = f"cpu-{cpu_name()}-{cpu_cores()}cores" if device == "cpu" else _gpu_key()
    slug = re.sub(r"[^A-Za-z0-9]+", "_", key).strip("_")
    return Path(directory or cache_dir()) / f"peaks-{slug}.json"


def peaks(device: str = "cpu", force: bool = False, directory: Path | None = None) -> dict:
    """Cached peaks of ``device`` ("cpu" or "gpu"), measured (a few seconds) when absent or ``force``."""
    path = cache_path(device, directory)
    if not force and path.exists():
        try:
            data = json.loads(path.read_text())
            if data.get("kind") == device:
                data["cached"] = str(path)
                return data
        except (OSError, ValueError):
            pass                                   # unreadable cache: measure again
    data = measure_cpu() if device == "cpu" else measure_gpu()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=1))
    except OSError:
        pass                                       # read-only home: still return the measurement
    data["cached"] = f"{path} (measured now)"
    return data


def ceilings(p: dict, threads: int | None = None) -> dict:
    """The roofline ceilings for a run on ``threads`` cores: GFLOP/s and GB/s (DRAM, and L2 if known)."""
    if p.get("kind") != "cpu":
        return {"gflops": p["fma_gflops_all"], "dram_gbs": p["dram_gbs_all"]}
    cores = max(1, p["threads_measured"])
    t = cores if threads is None else max(1, min(threads, cores))
    # cores do not share FMA units: the one-core figure times t is the ceiling, unless the all-core
    # run (which also catches lower all-core clocks) measured less on a machine that was quiet
    gflops = p["fma_gflops_1"] * t
    if t == cores and not all_core_disturbed(p):
        gflops = min(gflops, p["fma_gflops_all"])
    gbs = p["dram_gbs_1"] if t == 1 else max(p["dram_gbs_1"], p["dram_gbs_all"])
    out = {"gflops": gflops, "dram_gbs": gbs}
    if p.get("l2_gbs_1"):
        out["l2_gbs"] = p["l2_gbs_1"] * t
    return out


def all_core_disturbed(p: dict) -> bool:
    """True when the all-core FMA run got far less than cores x one core: another process held a core."""
    return p.get("kind") == "cpu" and p["fma_gflops_all"] < 0.8 * p["fma_gflops_1"] * p["threads_measured"]


def peaks_text(p: dict) -> str:
    lines = [f"device     {p['kind']}: {p['name']}"]
    if p["kind"] == "cpu":
        lines += [f"cores      {p['cores']} (measured on {p['threads_measured']} threads)",
                  f"FMA peak   {p['fma_gflops_1']:.1f} GFLOP/s on one core, {p['fma_gflops_all']:.1f} on all",
                  f"DRAM       {p['dram_gbs_1']:.1f} GB/s on one core, {p['dram_gbs_all']:.1f} on all (triad)",
                  f"L2         {p['l2_gbs_1']:.1f} GB/s on one core (triad)",
                  *([f"read       {p['read_gbs_1']:.1f} GB/s on one core, {p['read_gbs_all']:.1f} on all (DRAM)"]
                    if "read_gbs_1" in p else []),
                  f"ridge      {p['fma_gflops_all'] / p['dram_gbs_all']:.1f} FLOP/byte (all cores, DRAM)"]
    else:
        lines += [f"FMA peak   {p['fma_gflops_all']:.1f} GFLOP/s", f"memory     {p['dram_gbs_all']:.1f} GB/s"]
    if all_core_disturbed(p):
        lines.append("warning    the all-core run got less than 80% of cores x one core: another process was "
                     "using a core; ceilings use the one-core figures x threads (re-measure on a quiet "
                     "machine: nets peaks --force)")
    lines += [f"method     {p['method']}",
              f"measured   {p['measured_at']}" + (f", load average {p['load_average']}" if p.get("load_average")
                                                  is not None else ""),
              f"cache      {p.get('cached') or 'not cached'}"]
    return "\n".join(lines)
