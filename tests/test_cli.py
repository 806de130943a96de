"""The `nets` command line: help, summary, run, and one-line errors for bad input."""

import numpy as np
import pytest
from PIL import Image

from nets.cli import main


def run_cli(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_help_explains(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for word in ("run", "summary", "--weights", "seeded"):
        assert word in text


def test_summary_lists_layers_params_and_macs(capsys):
    code, out, _ = run_cli(capsys, "summary", "mobilenet")
    assert code == 0
    assert "conv_dw_1 (depthwise_conv2d)" in out
    assert "Total params: 4,253,864" in out
    assert "fused into conv1" in out and "Peak activation memory" in out


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "pic.png"
    pixels = np.random.default_rng(0).integers(0, 256, (150, 190, 3)).astype(np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def test_run_with_image_and_seeded_weights(capsys, image):
    code, out, _ = run_cli(capsys, "run", "mobilenet", "--image", str(image), "--repeat", "2", "--warmup", "0",
                           "--threads", "1")
    assert code == 0
    assert "untrained" in out and "top-5" in out and "steady state median" in out
    assert "first run" in out
    assert len([line for line in out.splitlines() if line.startswith("  ") and "prob" in line]) == 5


def test_run_with_weights_file(capsys, tmp_path):
    from nets import zoo
    from nets.io.keras import save_h5_weights
    from nets.zoo.seeded import seeded_weights

    path = tmp_path / "mobilenet.h5"
    save_h5_weights(seeded_weights(zoo.build("mobilenet"), seed=3), path)
    code, out, _ = run_cli(capsys, "run", "mobilenet", "--weights", str(path), "--batch", "2", "--repeat", "1")
    assert code == 0
    assert str(path) in out and "untrained" not in out


@pytest.mark.parametrize("argv,message", [
    (["run", "resnet51"], "unknown model 'resnet51'"),
    (["run", "mobilenet", "--image", "no/such/file.jpg"], "does not exist"),
    (["run", "mobilenet", "--weights", "no/such/weights.h5"], "no/such/weights.h5"),
    (["run", "mobilenet", "--threads", "64"], "threads=64"),
])
def test_bad_input_is_one_clear_line(capsys, argv, message):
    code, out, err = run_cli(capsys, *argv)
    assert code == 1
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_unreadable_image_and_weights(capsys, tmp_path):
    bad = tmp_path / "cat.jpg"
    bad.write_text("not an image")
    code, _, err = run_cli(capsys, "run", "mobilenet", "--image", str(bad))
    assert code == 1 and "cat.jpg" in err and "could not be read" in err
    code, _, err = run_cli(capsys, "run", "mobilenet", "--weights", str(bad))
    assert code == 1 and "cat.jpg" in err


def test_warmup_compiles_runs_and_says_where_the_cache_is(capsys):
    import kernels.cpu.cache as cache

    code, out, _ = run_cli(capsys, "warmup", "mobilenet", "--quiet", "--threads", "1")
    assert code == 0
    assert "mobilenet" in out and "ready in" in out
    assert cache.cache_dir() in out and "NUMBA_CACHE_DIR" in out
    n, size = cache.cache_files()
    assert n > 0 and size > 0 and f"{n} compiled kernels cached" in out
    assert not cache.is_cold()          # this process ran the 1x1 kernels: their index is on disk


def test_cache_folders_of_other_kernel_versions_are_listed_and_pruned(tmp_path, capsys, monkeypatch):
    import os

    import kernels.cpu.cache as cache

    current = tmp_path / "numba-aaaaaaaaaaaa"
    old = tmp_path / "numba-bbbbbbbbbbbb"
    for d, nbytes in ((current, 10), (old, 3000)):
        (d / "cpu_x").mkdir(parents=True)
        (d / "cpu_x" / "f.nbc").write_bytes(b"x" * nbytes)
    (tmp_path / "unrelated").mkdir()                        # not a kernels cache folder: left alone
    monkeypatch.setattr(cache, "cache_dir", lambda: str(current))
    assert cache.stale_dirs() == [(str(old), 3000)]
    monkeypatch.setattr(cache, "cache_files", lambda: (1, 10))
    import nets.tools.warmup as W
    monkeypatch.setattr(W, "warm", lambda names, threads=None, progress=True: [(n, 0.1) for n in names])
    code, out, _ = run_cli(capsys, "warmup", "mobilenet", "--quiet")
    assert code == 0 and "1 cache folder of other kernels versions" in out and "--prune" in out
    assert old.exists()
    code, out, _ = run_cli(capsys, "warmup", "mobilenet", "--quiet", "--prune")
    assert code == 0 and "pruned   1 cache folder" in out
    assert not old.exists() and current.exists() and (tmp_path / "unrelated").exists()
    assert cache.stale_dirs() == [] and cache.prune() == (0, 0)
    assert sorted(os.listdir(tmp_path)) == ["numba-aaaaaaaaaaaa", "unrelated"]


def test_an_empty_kernel_cache_is_detected_and_announced(tmp_path):
    import subprocess
    import sys

    # a fresh process with an empty NUMBA_CACHE_DIR: no kernel compiled yet
    code = "from kernels.cpu import cache; print(cache.is_cold(), cache.cache_dir())"
    env = dict(__import__("os").environ, NUMBA_CACHE_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    cold, where = out.split()
    assert cold == "True" and where.startswith(str(tmp_path))


def test_run_announces_compilation_on_a_cold_cache(capsys, monkeypatch):
    import kernels.cpu.cache as cache

    monkeypatch.setattr(cache, "is_cold", lambda: True)
    monkeypatch.setenv("NETS_COMPILE_HELPERS", "2")
    code, out, _ = run_cli(capsys, "run", "mobilenet", "--repeat", "1", "--warmup", "0", "--threads", "1")
    assert code == 0
    line = [ln for ln in out.splitlines() if "empty kernel cache" in ln]
    assert len(line) == 1 and cache.cache_dir() in line[0] and "nets warmup" in line[0]
    assert "with 2 helper processes" in line[0]
    monkeypatch.setenv("NETS_COMPILE_HELPERS", "0")
    code, out, _ = run_cli(capsys, "run", "mobilenet", "--repeat", "1", "--warmup", "0", "--threads", "1")
    assert "helper" not in [ln for ln in out.splitlines() if "empty kernel cache" in ln][0]
    monkeypatch.setattr(cache, "is_cold", lambda: False)
    code, out, _ = run_cli(capsys, "run", "mobilenet", "--repeat", "1", "--warmup", "0", "--threads", "1")
    assert "empty kernel cache" not in out


def interruptible():
    """In the child before exec: SIGINT back to its default. A test run started in the background of a
    shell (`pytest &`, nohup) inherits SIGINT ignored, and Python then never turns it into
    KeyboardInterrupt."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("delay", [6.0, 11.0])
def test_ctrl_c_while_kernels_compile_ends_with_one_line_and_status_130(tmp_path, delay):
    """With an empty kernel cache the first seconds of `nets run` are Numba compiling; an interrupt
    that lands in LLVM's callbacks used to leave a RuntimeError traceback (status 1) or a process that
    did not end."""
    import os
    import signal
    import subprocess
    import sys
    import time

    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    proc = subprocess.Popen([sys.executable, "-m", "nets", "run", "mobilenet", "--threads", "1"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=interruptible)
    try:
        time.sleep(delay)
        assert proc.poll() is None, "the command ended before it was interrupted"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "nets: interrupted"


@pytest.mark.parametrize("command", ["run", "profile"])
def test_ctrl_c_ends_a_run_with_one_line_and_status_130(command):
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-m", "nets.cli.main", command, "mobilenet", "--threads", "1",
                             "--repeat", "100000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=interruptible)
    try:
        time.sleep(8.0)         # inside the timed runs (or still compiling on a cold cache: the same path)
        assert proc.poll() is None, "the command ended before it was interrupted"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=600)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == "nets: interrupted"
