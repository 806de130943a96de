"""``nets classify`` on one machine: inputs, the decode pipeline, rows equal to direct model calls,
the three output formats, resume after a killed run, exit codes and one-line errors."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from classify_data import (
    BROKEN,
    MISSING,
    MODEL_OPTIONS,
    assert_row_matches,
    direct_top,
    kill,
    make_images,
    small_model,
    wait_for,
)

import nets
from nets.cli import main
from nets.io.images import read_image
from nets.tools.classify import ClassifyRun, columns, expand_inputs, read_rows
from nets.tools.classify.classifier import softmax
from nets.tools.progress import Progress

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ["--input-shape", "64,64,3", "--alpha", "0.25", "--threads", "1"]


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    return str(root), make_images(root)


@pytest.fixture(scope="module")
def model():
    return small_model()


@pytest.fixture(scope="module")
def expected(collection, model):
    return {p: direct_top(model, p) for p in collection[1]}


def cli(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


# ------------------------------------------------------------------------------------ inputs
def test_expand_inputs_files_folders_globs(collection, tmp_path):
    root, files = collection
    top = sorted(p for p in files if os.path.dirname(p) == root)
    assert expand_inputs([root]) == top
    assert expand_inputs([root], recursive=True) == files
    assert expand_inputs([os.path.join(root, "*.png")]) == sorted(p for p in top if p.endswith(".png"))
    assert expand_inputs([os.path.join(root, "**", "*.jpg")], recursive=True) == \
        sorted(p for p in files if p.endswith(".jpg"))
    # argument order kept, duplicates (also spelled differently) dropped, missing paths kept
    one, two = top[3], top[1]
    respelled = os.path.join(os.path.dirname(one), ".", os.path.basename(one))
    assert expand_inputs([one, two, respelled, MISSING, two]) == [one, two, MISSING]
    empty = tmp_path / "empty"
    empty.mkdir()
    nomatch = os.path.join(root, "*.nothing")
    assert expand_inputs([str(empty), nomatch]) == [str(empty), nomatch]


def test_read_image_is_load_image(collection):
    """The pipeline's decoder gives load_image's pixels (Keras' nearest resize) for every mode, and an
    InputError where load_image raises one."""
    for p in collection[1] + [MISSING]:
        try:
            want = nets.load_image(p, (64, 64))
        except nets.InputError:
            with pytest.raises(nets.InputError, match="image '.*' "):
                read_image(p, (64, 64))
            continue
        np.testing.assert_array_equal(read_image(p, (64, 64)), want, err_msg=p)


def test_draft_is_opt_in_and_changes_pixels(collection):
    big = os.path.join(collection[0], "big.jpg")          # 500x375: draft decodes at 1/4
    exact = read_image(big, (64, 64))
    draft = read_image(big, (64, 64), draft=True)
    assert draft.shape == exact.shape == (64, 64, 3)
    assert (draft != exact).any()
    np.testing.assert_array_equal(read_image(big, (64, 64), draft=False), nets.load_image(big, (64, 64)))


# ------------------------------------------------------------------------------------ rows
@pytest.mark.parametrize("batch", [1, 5])
def test_every_input_gets_one_row_equal_to_a_direct_call(collection, model, expected, batch):
    root, files = collection
    rows = nets.classify(model, [root, MISSING], recursive=True, batch=batch, topk=5)
    assert [r["path"] for r in rows] == files + [MISSING]
    for r in rows:
        want = expected.get(r["path"])
        if want is None:
            assert r["top"] == [] and r["error"], r
        else:
            assert_row_matches(r, want)
    errors = {os.path.basename(r["path"]): r["error"] for r in rows if r["error"]}
    assert set(errors) == set(BROKEN) | {MISSING}
    assert "does not exist" in errors[MISSING] and "truncated" in errors["truncated.jpg"]
    assert all(name in message for name, message in errors.items())


def test_logits_are_reported_as_softmax_probabilities(collection, model):
    files = [p for p in collection[1] if not p.endswith(BROKEN)][:6]
    logits_model = small_model(classifier_activation=None)
    assert logits_model.graph.nodes[-1].op != "softmax"
    rows = nets.classify(logits_model, files, batch=4, topk=3)
    for r in rows:
        x = nets.preprocess("mobilenet", nets.load_image(r["path"], (64, 64))[None])
        probs = softmax(logits_model(x))
        assert_row_matches(r, nets.top_k(probs, 3)[0])
        assert_row_matches(r, direct_top(model, r["path"], 3), rel=1e-4)     # = the softmax model's output


def test_streaming_run_counts(collection, model):
    root, files = collection
    run = nets.classify(model, [root], recursive=True, batch=4, stream=True)
    assert isinstance(run, ClassifyRun)
    sizes = [len(rows) for rows in run.batches()]
    assert sizes == [4] * (len(files) // 4) + ([len(files) % 4] if len(files) % 4 else [])
    assert run.images == len(files) and run.failed == len(BROKEN) and run.seconds > 0 and run.rate > 0


def test_labels_file_and_model_checks(collection, tmp_path, model):
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"thing {i}" for i in range(1000)))
    rows = nets.classify(model, collection[1][:2], labels=labels, topk=2)
    assert all(t["label"] == f"thing {t['index']}" for r in rows for t in r["top"])
    labels.write_text("a\nb\n")
    with pytest.raises(nets.InputError, match="2 labels for a model with 1000 classes"):
        nets.classify(model, collection[1][:2], labels=labels)
    with pytest.raises(nets.ModelError, match="include_top=False"):
        nets.classify(small_model(include_top=False), collection[1][:2])
    with pytest.raises(nets.InputError, match="no input images"):
        nets.classify(model, [])


def test_import_nets_does_not_load_the_tools_layer():
    code = ("import sys, nets; assert callable(nets.classify); "
            "assert not [m for m in sys.modules if m.startswith(('nets.tools', 'nets.cli'))], sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# ------------------------------------------------------------------------------------ files
def test_csv_jsonl_and_parquet_agree(capsys, collection, tmp_path, expected):
    pytest.importorskip("pyarrow")
    root, files = collection
    outs = [tmp_path / f"r.{ext}" for ext in ("csv", "jsonl", "parquet")]
    for out in outs:
        code, _, _ = cli(capsys, "classify", "mobilenet", root, MISSING, "--recursive", "--out", str(out),
                         "--topk", "3", "--batch", "4", "--quiet", *SMALL)
        assert code == 3
    rows = [read_rows(out) for out in outs]
    assert rows[0] == rows[1] == rows[2]
    assert [r["path"] for r in rows[0]] == files + [MISSING]
    for r in rows[0]:
        if expected.get(r["path"]):
            assert_row_matches(r, expected[r["path"]][:3])
    assert outs[0].read_text().splitlines()[0] == ",".join(columns(3))
    first = json.loads(outs[1].read_text().splitlines()[0])
    assert list(first) == ["path", "top", "error"] and list(first["top"][0]) == ["label", "index", "prob"]
    import pyarrow.parquet as pq

    assert pq.read_table(outs[2]).column_names == columns(3)
    assert not os.path.exists(str(outs[2]) + ".part.jsonl")


def test_parquet_without_pyarrow_is_one_clear_line(capsys, collection, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    code, _, err = cli(capsys, "classify", "mobilenet", collection[1][0], "--out", str(tmp_path / "r.parquet"), *SMALL)
    assert code == 1 and "pip install pyarrow" in err and len(err.strip().splitlines()) == 1


def test_resume_appends_only_missing_paths_and_drops_a_cut_line(capsys, collection, tmp_path):
    root, files = collection
    out = tmp_path / "r.csv"
    assert cli(capsys, "classify", "mobilenet", *files[:7], "--out", str(out), "--quiet", *SMALL)[0] == 3
    with open(out, "a") as f:                    # a kill in the middle of a write
        f.write(f"{files[7]},tabby,281,0.")
    code, text, err = cli(capsys, "classify", "mobilenet", root, "--recursive", "--out", str(out), "--resume",
                          *SMALL)
    assert code == 3 and "7 images already in" in text and "+7 from an earlier run" in text
    rows = read_rows(out)
    assert [r["path"] for r in rows] == files
    # without --resume an existing results file is refused, with --overwrite replaced
    code, _, err = cli(capsys, "classify", "mobilenet", files[0], "--out", str(out), *SMALL)
    assert code == 1 and "--resume" in err and len(err.strip().splitlines()) == 1
    assert cli(capsys, "classify", "mobilenet", files[0], "--out", str(out), "--overwrite", *SMALL)[0] == 0
    assert [r["path"] for r in read_rows(out)] == files[:1]
    code, _, err = cli(capsys, "classify", "mobilenet", files[0], "--out", str(out), "--resume", "--topk", "2", *SMALL)
    assert code == 1 and "--topk 5" in err


@pytest.mark.parametrize("argv,message", [
    (["classify", "resnet51", "x.jpg", "--out", "r.csv"], "unknown model 'resnet51'"),
    (["classify", "mobilenet", "x.jpg", "--out", "r.txt"], "name it *.csv, *.jsonl or *.parquet"),
    (["classify", "mobilenet", "x.jpg", "--out", "no/such/folder/r.csv"], "cannot write"),
    (["classify", "mobilenet", "x.jpg", "--out", "r.csv", "--threads", "64"], "threads=64"),
    (["classify", "mobilenet", "x.jpg", "--out", "r.csv", "--labels", "no/labels.txt"], "no/labels.txt"),
])
def test_usage_errors_are_one_line(capsys, tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    code, _, err = cli(capsys, *argv)
    assert code == 1 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not os.path.exists("r.csv")


def test_cli_exit_codes_and_report(capsys, collection, tmp_path):
    good = [p for p in collection[1] if not p.endswith(BROKEN)][:5]
    code, out, err = cli(capsys, "classify", "mobilenet", *good, "--out", str(tmp_path / "a.jsonl"), *SMALL)
    assert code == 0 and "done     5 images, 0 failed" in out and "images/s" in out and "untrained" in out
    code, out, err = cli(capsys, "classify", "mobilenet", good[0], MISSING, "--out", str(tmp_path / "b.jsonl"),
                         *SMALL)
    assert code == 3 and "1 failed" in out and MISSING in err
    code, out, _ = cli(capsys, "classify", "mobilenet", good[0], "--out", str(tmp_path / "c.csv"), "--quiet", *SMALL)
    assert code == 0 and out.count("\n") == 1 and out.startswith("done")


def test_help_says_draft_changes_pixels(capsys):
    with pytest.raises(SystemExit):
        main(["classify", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--draft" in text and "differ from keras.utils.load_img" in text and "--scheduler" in text


def test_progress_bar_rate_and_eta():
    class Tty:
        def __init__(self):
            self.text = ""

        def isatty(self):
            return True

        def write(self, s):
            self.text += s

        def flush(self):
            pass
    tty = Tty()
    bar = Progress(100, "classify", stream=tty, unit="images")
    bar.start_rate()
    bar.update(n=10)
    assert "10/100" in tty.text and "images" in tty.text and "/s" in tty.text and "ETA" in tty.text
    pipe = Tty()
    pipe.isatty = lambda: False
    quiet = Progress(100, "classify", stream=pipe, unit="images")
    quiet.update(n=10)
    quiet.close()
    assert pipe.text == ""


# ------------------------------------------------------------------------------------ a killed run
@pytest.mark.slow
def test_resume_after_a_killed_run_completes_the_file(collection, tmp_path):
    """A subprocess classifies a list in which one path is a FIFO: its decoder blocks there, the batches
    before it are written, and the test kills the process (SIGKILL) mid-run. --resume then finishes the
    file: every path once, in input order."""
    root, files = collection
    batch = 3
    stall = str(tmp_path / "stall.png")
    os.mkfifo(stall)
    at = 10                                              # the FIFO is the 11th path: batch 3 (0-based)
    paths = files[:at] + [stall] + files[at:]
    out = tmp_path / "r.jsonl"
    cmd = [sys.executable, "-m", "nets", "classify", "mobilenet", *paths, "--out", str(out), "--batch", str(batch),
           "--quiet", *SMALL]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        done = at // batch * batch                       # rows of the batches before the FIFO's
        wait_for(lambda: out.exists() and out.read_text().count("\n") >= done or proc.poll() is not None,
                 what="the batches before the FIFO")
        assert proc.poll() is None, proc.communicate()
        kill(proc.pid)
    finally:
        proc.kill()
        proc.wait()
    assert [r["path"] for r in read_rows(out)] == paths[:done]
    os.remove(stall)
    os.link(files[0], stall)                            # the stalled path is an image now
    res = subprocess.run(cmd + ["--resume"], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 3, res.stderr
    rows = read_rows(out)
    assert [r["path"] for r in rows] == paths
    model = small_model()
    for r in rows:
        want = direct_top(model, r["path"])
        assert (r["error"] is not None) if want is None else assert_row_matches(r, want) is None


def test_model_options_reach_the_model(collection):
    rows = nets.classify("mobilenet", collection[1][:2], model_options=MODEL_OPTIONS, threads=1, topk=1)
    assert len(rows) == 2 and len(rows[0]["top"]) == 1
    with pytest.raises(nets.ModelError, match="unknown model options"):
        nets.classify("mobilenet", collection[1][:2], model_options=dict(bogus=1))


def test_a_model_file_classifies_like_its_architecture(capsys, collection, tmp_path, model):
    """An ONNX file (nets export of the same seeded MobileNet) with --preprocess tf gives the zoo model's rows."""
    onnx = tmp_path / "m.onnx"
    assert main(["export", "mobilenet", str(onnx), "--input-shape", "64,64,3", "--alpha", "0.25"]) == 0
    files = [p for p in collection[1] if not p.endswith(BROKEN)][:6]
    out = tmp_path / "r.jsonl"
    code, text, _ = cli(capsys, "classify", str(onnx), *files, "--out", str(out), "--preprocess", "tf",
                        "--threads", "1")
    assert code == 0, text
    for r in read_rows(out):
        assert_row_matches(r, direct_top(model, r["path"]), rel=1e-4)
