"""nets.tools.profile: rows cover every kernel once, numbers follow from shapes and times, exports round-trip."""

import json

import numpy as np
import pytest
from helpers import fill_weights, toy_graph

from nets.errors import KernelnetsError
from nets.runtime.model import Model
from nets.tools.profile import Profile, classify, kernel_info

PEAKS = dict(kind="cpu", name="test cpu", cores=1, threads_measured=1, fma_gflops_1=100.0, fma_gflops_all=100.0,
             dram_gbs_1=10.0, dram_gbs_all=10.0, l2_gbs_1=50.0)


@pytest.fixture(scope="module")
def toy():
    model = Model(fill_weights(toy_graph()), threads=1)
    x = np.random.default_rng(1).standard_normal((2,) + model.input_shape).astype(np.float32)
    return model, x


@pytest.fixture(scope="module")
def prof(toy):
    model, x = toy
    return model.profile(x, repeat=15, warmup=2, peaks=PEAKS, progress=False)


def test_rows_cover_every_kernel_once_and_every_source_layer(toy, prof):
    model, x = toy
    steps = model.new_executor(2).steps
    kernels = prof.kernels
    assert [r["layer"] for r in kernels] == [s.node.name for s in steps]
    assert [r["kernel"] for r in kernels] == [s.kernel for s in steps]
    assert [r["idx"] for r in kernels] == list(range(len(steps)))
    names = [r["layer"] for r in prof.rows]
    assert len(names) == len(set(names))
    assert {n.name for n in model.source_graph.nodes} <= set(names)
    by_name = {r["layer"]: r for r in kernels}
    fused = [r for r in prof.rows if r["kind"] == "fused"]
    assert {r["layer"] for r in fused} >= {"bn0", "relu0", "pad0", "add", "add_relu", "drop"}
    for r in fused:
        assert r["time_ms"] == 0 and r["layer"] in by_name[r["fused_into"]]["fused"]
        assert r["idx"] == by_name[r["fused_into"]]["idx"]


def test_sum_of_layers_matches_instrumented_runs(prof):
    # per-layer medians vs the median of whole instrumented runs: within 30% + 50 us (stated tolerance;
    # the two medians are taken over different sets and the machine is shared)
    f = prof.footer
    total = sum(r["time_ms"] for r in prof.kernels)
    assert f["sum_layers_ms"] == pytest.approx(total)
    assert abs(f["sum_layers_ms"] - f["instrumented_median_ms"]) <= 0.3 * f["instrumented_median_ms"] + 0.05
    assert f["unattributed_ms"] == pytest.approx(f["e2e_median_ms"] - f["sum_layers_ms"])
    assert f["first_run_ms"] > 0 and f["e2e_median_ms"] > 0
    assert sum(r["pct"] for r in prof.kernels) == pytest.approx(100.0)
    assert f["repeat"] == 15 and f["warmup"] == 2 and f["batch"] == 2 and f["threads"] == 1


def test_macs_bytes_and_rates_follow_from_shapes(toy, prof):
    model, _ = toy
    conv = next(r for r in prof.kernels if r["layer"] == "c17")          # 1x7 conv, 16 -> 5 channels
    n = model.graph.node("c17")
    oh, ow, co = model.graph.shapes[n.output]
    cin = model.graph.shapes[n.inputs[0]][-1]
    assert conv["macs"] == 2 * oh * ow * co * 1 * 7 * cin
    params = 7 * cin * co + co
    assert conv["params"] == params
    assert conv["bytes"] == 4 * (2 * (9 * 8 * 16 + oh * ow * co) + params)
    assert conv["in_shapes"] == [(2, 9, 8, 16)] and conv["out_shape"] == (2, oh, ow, co)
    for r in prof.kernels:
        assert r["gflops"] == pytest.approx(2 * r["macs"] / (r["time_ms"] * 1e6))
        assert r["gbs"] == pytest.approx(r["bytes"] / (r["time_ms"] * 1e6))
    view = next(r for r in prof.kernels if r["kernel"] == "view")
    assert view["bytes"] == 0


def test_bound_classification_against_the_ridge():
    ceil = {"gflops": 100.0, "dram_gbs": 10.0}                    # ridge at 10 FLOP/byte
    assert classify(1e9, 1e7, 0.1, ceil, 20e-6)[0] == "compute"   # 100 FLOP/byte
    assert classify(1e6, 1e7, 0.1, ceil, 20e-6)[0] == "memory"    # 0.1 FLOP/byte
    assert classify(0, 1e7, 0.1, ceil, 20e-6)[0] == "memory"
    assert classify(1e9, 1e7, 10e-6, ceil, 20e-6)[0] == "launch"
    bound, roof = classify(1e9, 1e7, 0.02, ceil, 20e-6)          # 50 GFLOP/s of a 100 roof
    assert roof == pytest.approx(50.0)
    assert classify(1e6, 1e6, 1e-3, ceil, 20e-6)[1] == pytest.approx(10.0)   # 1 GFLOP/s at 1 FLOP/B: roof 10


def test_unfused_model_runs_relu_and_add_as_kernels(toy):
    model, x = toy
    plain = Model(model.source_graph, threads=1, fuse=False)
    p = plain.profile(x, repeat=3, warmup=1, peaks=PEAKS, progress=False)
    ops = {r["layer"]: (r["kind"], r["op"]) for r in p.rows}
    assert ops["add"] == ("kernel", "add") and ops["add_relu"] == ("kernel", "activation")
    assert ops["bn0"][0] == "fused"                 # batch norm folding is not a fusion option


def test_text_has_table_footer_and_summary(prof):
    text = prof.to_text()
    for word in ("c17", "fused into conv0", "end-to-end", "sum of layers", "unattributed", "first run",
                 "By op type", "1 MAC = 2 FLOPs", "numba"):
        assert word in text
    top = prof.to_text(top=3)
    assert sum(1 for line in top.splitlines() if line[:4].strip().isdigit()) == 3
    assert "fused into" not in prof.to_text(fused=False)


def test_json_and_csv_round_trip(prof, tmp_path):
    prof.to_json(tmp_path / "p.json")
    back = Profile.from_json(tmp_path / "p.json")
    assert back.rows == prof.rows and back.footer == json.loads(json.dumps(prof.footer))
    assert back.by_op() == prof.by_op()
    prof.to_csv(tmp_path / "p.csv")
    assert Profile.from_csv(tmp_path / "p.csv").rows == prof.rows


def test_chrome_trace_has_ort_node_events(prof, tmp_path):
    prof.to_chrome_trace(tmp_path / "t.json")
    events = json.loads((tmp_path / "t.json").read_text())
    assert isinstance(events, list)
    nodes = [e for e in events if e.get("cat") == "Node"]
    assert len(nodes) == 2 * len(prof.kernels)      # first run and steady state
    for e in nodes:
        assert e["ph"] == "X" and e["pid"] == 1 and e["dur"] >= 0 and isinstance(e["ts"], float)
        assert {"op_name", "input_type_shape", "output_type_shape"} <= set(e["args"])
        assert all(list(d) == ["float"] for d in e["args"]["output_type_shape"])
    steady = [e for e in nodes if e["args"]["phase"] == "model_run"]
    assert [e["name"] for e in steady] == [r["layer"] for r in prof.kernels]
    assert sum(e["dur"] for e in steady) == pytest.approx(prof.footer["sum_layers_ms"] * 1e3, rel=1e-3)
    ts = [e["ts"] for e in steady]
    assert ts == sorted(ts)
    assert any(e["ph"] == "M" and e["name"] == "process_name" for e in events)


def test_plot_writes_png(prof, tmp_path):
    path = tmp_path / "p.png"
    prof.plot(path)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def test_plot_without_matplotlib_is_a_clear_error(prof, tmp_path, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(KernelnetsError, match="matplotlib"):
        prof.plot(tmp_path / "p.png")


def test_kernel_info_of_a_concat_slice_moves_nothing(toy):
    model, _ = toy
    n = model.graph.node("inner_cat")
    assert kernel_info(model.graph, n, "concat-inplace", 1)["bytes"] == 0
    assert kernel_info(model.graph, n, "concat-copy1", 1)["bytes"] == 4 * 9 * 8 * (6 + 7 + 13)


def test_bad_repeat_is_refused(toy):
    model, x = toy
    with pytest.raises(KernelnetsError, match="repeat"):
        model.profile(x, repeat=0, peaks=PEAKS)


def test_cli_profile_writes_every_export(tmp_path, monkeypatch, capsys):
    from nets.cli import main
    from nets.tools.peaks import cache_path

    monkeypatch.setenv("KERNELNETS_CACHE", str(tmp_path))
    cache_path("cpu").write_text(json.dumps(PEAKS))
    out = {k: tmp_path / f"p.{k}" for k in ("csv", "json", "png")}
    code = main(["profile", "mobilenet", "--alpha", "0.25", "--input-shape", "64,64,3", "--repeat", "2",
                 "--warmup", "0", "--threads", "1", "--csv", str(out["csv"]), "--json", str(out["json"]),
                 "--plot", str(out["png"]), "--trace", str(tmp_path / "t.json")])
    text = capsys.readouterr().out
    assert code == 0
    assert "conv_dw_1" in text and "fused into conv1" in text and "end-to-end" in text
    back = Profile.from_json(out["json"])
    assert back.footer["ceilings"]["gflops"] == 100.0           # the cached peaks were used
    assert Profile.from_csv(out["csv"]).rows == back.rows
    assert json.loads((tmp_path / "t.json").read_text())
