"""A Model called from many threads gives each call exactly what a lone call gives, and keeps its
memory bounded however many batch sizes it sees (nets.runtime.pool)."""

import gc
import threading
import weakref

import numpy as np
import pytest
from helpers import rel_err

import nets

SHAPE = (64, 64, 3)


def small_mobilenet(threads, **kw):
    """MobileNet at width 0.25 on 64x64 inputs: every kernel family of the full network (conv stem,
    fused depthwise + 1x1, stride-2 depthwise, pooling, dense), small enough for many calls."""
    return nets.load("mobilenet", input_shape=SHAPE, alpha=0.25, classifier_activation=None, threads=threads, **kw)


def samples(n, seed=0):
    return np.random.default_rng(seed).standard_normal((n,) + SHAPE).astype(np.float32)


def lone_rows(model, pool):
    """Each sample's output from a call of its own (batch 1): what every concurrent call must give."""
    return np.concatenate([model(pool[i:i + 1]) for i in range(len(pool))])


def hammer(model, pool, want, calls, workers, max_batch, seed=0):
    """``workers`` threads each make ``calls`` calls on random subsets; returns the number of wrong
    rows and any exception a thread raised."""
    wrong, errors = [0], []

    def work(k):
        rng = np.random.default_rng(seed + k)
        try:
            for _ in range(calls):
                idx = rng.integers(0, len(pool), rng.integers(1, max_batch + 1))
                got = model(pool[idx])
                wrong[0] += sum(rel_err(got[j], want[i]) > 1e-5 for j, i in enumerate(idx))
        except Exception as e:           # noqa: BLE001 - reported by the test
            errors.append(e)

    ts = [threading.Thread(target=work, args=(k,)) for k in range(workers)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return wrong[0], errors


@pytest.mark.parametrize("threads", [1, 2])
def test_concurrent_calls_equal_lone_calls(threads):
    model = small_mobilenet(threads, max_concurrency=2)      # two calls really run at once
    pool = samples(12)
    want = lone_rows(model, pool)
    wrong, errors = hammer(model, pool, want, calls=25, workers=4, max_batch=5)
    assert errors == [] and wrong == 0


def test_two_models_in_two_threads_at_two_threads_each():
    """Parallel kernels entered from two Python threads at once: no abort, no deadlock, right answers."""
    a, b = small_mobilenet(2), small_mobilenet(2, seed=1)
    pool = samples(6)
    wants = [lone_rows(m, pool) for m in (a, b)]
    results = [None, None]

    def work(i, m):
        results[i] = hammer(m, pool, wants[i], calls=15, workers=1, max_batch=4, seed=i)

    ts = [threading.Thread(target=work, args=(i, m)) for i, m in enumerate((a, b))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in ts)
    assert results == [(0, []), (0, [])]


def test_batches_run_in_larger_arenas_and_memory_stays_under_the_budget():
    model = small_mobilenet(1)
    pool = samples(64)
    model(pool[:1])
    one_arena = model.memory()["arenas"]
    model.memory_budget = 6 * one_arena          # room for a few small arenas, not one per batch size
    for n in range(1, 65):
        got = model(pool[:n])
        assert got.shape == (n, 1000)
    m = model.memory()
    largest = max(s["arena_bytes"] + s["scratch_bytes"] for s in m["slots"])
    assert m["arenas"] + m["scratch"] <= model.memory_budget + largest
    assert len(m["slots"]) < 8                      # 64 batch sizes, a handful of arenas
    assert {s["capacity"] for s in m["slots"]} <= {1, 2, 4, 8, 16, 32, 64}
    # a batch that ran in an arena planned for a larger one gives the same rows
    assert rel_err(model(pool[:3]), lone_rows(model, pool[:3])) <= 1e-5


def test_memory_reports_every_part():
    model = small_mobilenet(1)
    before = model.memory()
    assert before["arenas"] == before["scratch"] == 0 and before["weights"] > 0 and before["packed"] > 0
    model(samples(2))
    m = model.memory()
    assert m["arenas"] > 0 and m["scratch"] > 0       # the stem conv's padded input lives in scratch
    assert m["total"] == m["weights"] + m["packed"] + m["arenas"] + m["scratch"]
    assert [s["capacity"] for s in m["slots"]] == [2]


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.mark.slow
@pytest.mark.parametrize("threads", [1, 2])
def test_soak_10000_calls_in_4_threads(threads):
    """10,000 calls of batch 1..8 from 4 threads: every row right, resident memory flat after warm-up."""
    model = small_mobilenet(threads, max_concurrency=2)
    pool = samples(16)
    want = lone_rows(model, pool)
    hammer(model, pool, want, calls=50, workers=4, max_batch=8, seed=100)      # warm-up: arenas, scratch
    gc.collect()
    warm = rss_bytes()
    wrong, errors = hammer(model, pool, want, calls=2500, workers=4, max_batch=8, seed=200)
    gc.collect()
    grown = rss_bytes() - warm
    assert errors == [] and wrong == 0
    assert grown < 32 << 20, f"resident memory grew by {grown / 2**20:.1f} MiB over 10,000 calls"


@pytest.mark.slow
def test_load_and_drop_50_times_frees_the_model():
    """Every dropped model is collected, and resident memory stays flat once the allocator has
    settled (glibc keeps some freed heap: here it levels off after ~75 small models at +6 MiB; a
    model that stayed alive would add its ~5 MiB of weights and arena every time)."""
    x = samples(2)

    def load_run_drop(i):
        m = small_mobilenet(1, seed=i)
        m(x)
        ref = weakref.ref(m)
        del m
        return ref

    for i in range(80):                              # compiles once, then lets the heap settle
        load_run_drop(i)
    gc.collect()
    base = rss_bytes()
    refs = [load_run_drop(i) for i in range(50)]
    gc.collect()
    assert all(r() is None for r in refs)
    grown = rss_bytes() - base
    assert grown < 16 << 20, f"resident memory grew by {grown / 2**20:.1f} MiB over 50 loads"


def _gpu_reason():
    from kernels.gpu import unavailable_reason

    return unavailable_reason()


GPU_REASON = _gpu_reason()


@pytest.mark.gpu
@pytest.mark.skipif(GPU_REASON is not None, reason=f"no usable CUDA device: {GPU_REASON}")
def test_gpu_model_concurrent_calls_equal_lone_calls():
    """Each concurrent caller of a GPU model leases its own runner (stream, arena, CUDA graph): rows
    equal those of lone calls on the same model."""
    model = nets.load("mobilenet", input_shape=SHAPE, alpha=0.25, classifier_activation=None, device="gpu",
                      max_concurrency=4)
    pool = samples(12)
    want = lone_rows(model, pool)
    wrong, errors = hammer(model, pool, want, calls=25, workers=4, max_batch=5)
    assert errors == [] and wrong == 0
