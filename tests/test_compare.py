"""nets.tools.compare: per-layer times and agreement of two backends/variants, tested on CPU variants."""

import json

import numpy as np
import pytest
from helpers import fill_weights, toy_graph

from nets.runtime.model import Model
from nets.tools.compare import Comparison, agreement, compare, compare_models, gpu_problem


@pytest.fixture(scope="module")
def toy():
    g = fill_weights(toy_graph())
    x = np.random.default_rng(2).standard_normal((2,) + tuple(g.shapes[g.inputs[0]])).astype(np.float32)
    return g, x


def test_agreement_metrics():
    a = np.array([1.0, -2.0, 4.0])
    r = agreement(a, a + np.array([0.0, 0.01, -0.02]))
    assert r["max_abs"] == pytest.approx(0.02) and r["max_rel"] == pytest.approx(0.02 / 4)
    assert r["cosine"] == pytest.approx(a @ (a + [0, 0.01, -0.02]) / np.linalg.norm(a)
                                        / np.linalg.norm(a + [0, 0.01, -0.02]))
    assert agreement(a, -a)["cosine"] == pytest.approx(-1.0)
    assert agreement(a, np.array([1.0, np.nan, 4.0]))["max_rel"] == float("inf")


def test_cpu_against_the_reference_backend_agrees(toy):
    g, x = toy
    a, b = Model(g, threads=1), Model(g, device="reference")
    cmp = compare_models(a, b, x, repeat=3, warmup=1, progress=False)
    steps = a.new_executor(2).steps
    assert [r["layer"] for r in cmp.rows] == [s.node.name for s in steps]   # same graph: one row per kernel
    assert all(r["time_a_ms"] > 0 and r["time_b_ms"] > 0 for r in cmp.rows)
    assert all(r["speedup"] == pytest.approx(r["time_a_ms"] / r["time_b_ms"]) for r in cmp.rows)
    compared = [r for r in cmp.rows if r["max_rel"] is not None]
    assert len(compared) == len(cmp.rows) and not cmp.flagged
    assert all(r["max_rel"] < 1e-4 and r["cosine"] > 1 - 1e-6 for r in compared)
    assert cmp.footer["e2e_a_ms"] > 0 and cmp.footer["output"]["max_rel"] < 1e-4
    assert "speed-up" in cmp.to_text() and "0 of" in cmp.to_text()


def test_fused_against_unfused_matches_values_not_names(toy):
    g, x = toy
    cmp = compare_models(Model(g, threads=1), Model(g, threads=1, fuse=False), x, repeat=3, warmup=1,
                         labels=("fused", "unfused"), progress=False)
    rows = {r["layer"]: r for r in cmp.rows}
    # the unfused ReLU and add run as kernels of their own, listed after the fused kernel making the same value
    assert rows["add_relu"]["time_a_ms"] is None and "unfused only" in rows["add_relu"]["note"]
    order = [r["layer"] for r in cmp.rows]
    assert order.index("add_relu") == order.index("sep") + 2
    # the fused conv0 (conv+BN+ReLU6) is compared with the unfused relu0 output: the same value
    assert rows["conv0"]["value"] == rows["relu0"]["value"] and rows["conv0"]["max_rel"] < 1e-5
    assert not cmp.flagged


def test_a_wrong_layer_is_flagged_first(toy):
    g, x = toy
    bad = g.copy()
    node = bad.node("c71")
    node.weights = dict(node.weights, kernel=node.weights["kernel"] * np.float32(1.01))
    cmp = compare_models(Model(g, threads=1), Model(bad, threads=1), x, repeat=2, warmup=0, progress=False)
    assert cmp.flagged[0]["layer"] == "c71"
    rows = {r["layer"]: r for r in cmp.rows}
    assert not rows["c17"]["flag"] and rows["mixed"]["flag"]
    assert "OVER TOLERANCE" in cmp.to_text()


def test_exports_round_trip_and_plot(toy, tmp_path):
    g, x = toy
    cmp = compare_models(Model(g, threads=1), Model(g, device="reference"), x, repeat=2, warmup=0,
                         progress=False)
    cmp.to_json(tmp_path / "c.json")
    back = Comparison.from_json(tmp_path / "c.json")
    assert back.rows == json.loads(json.dumps(cmp.rows)) and back.labels == cmp.labels
    cmp.to_csv(tmp_path / "c.csv")
    assert (tmp_path / "c.csv").read_text().count("\n") == len(cmp.rows) + 1
    cmp.plot(tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_convenience_on_a_zoo_network():
    cmp = compare("mobilenet", devices=("cpu", "cpu"), unfused=True, repeat=2, warmup=0, threads=1,
                  alpha=0.25, input_shape=(64, 64, 3), progress=False)
    assert cmp.labels == ("cpu", "cpu unfused") and not cmp.flagged
    assert any(r["layer"] == "conv1_relu" and r["time_a_ms"] is None for r in cmp.rows)


def test_cli_without_gpu_says_so_in_one_line(monkeypatch, capsys):
    import nets.tools.compare
    from nets.cli import main

    monkeypatch.setattr(nets.tools.compare, "gpu_problem", lambda: "CuPy is not importable (test)")
    assert main(["compare", "mobilenet"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "nets: error: no usable GPU: CuPy is not importable (test)"


def test_cli_compare_default_devices_here(capsys):
    from nets.cli import main

    code = main(["compare", "mobilenet", "--alpha", "0.25", "--input-shape", "64,64,3", "--repeat", "1",
                 "--warmup", "0"])
    out = capsys.readouterr()
    if gpu_problem():
        assert code == 1 and len(out.err.strip().splitlines()) == 1 and "no usable GPU" in out.err
    else:
        assert code == 0 and "end-to-end" in out.out


def test_cli_compare_two_cpu_variants(capsys, tmp_path):
    from nets.cli import main

    code = main(["compare", "mobilenet", "--alpha", "0.25", "--input-shape", "64,64,3", "--repeat", "1",
                 "--warmup", "0", "--threads", "1", "--devices", "cpu", "cpu", "--unfused",
                 "--json", str(tmp_path / "c.json")])
    out = capsys.readouterr().out
    assert code == 0 and "cpu unfused ms" in out and "conv_pw_13" in out
    assert Comparison.from_json(tmp_path / "c.json").footer["devices"] == ["cpu", "cpu"]
