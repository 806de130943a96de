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
