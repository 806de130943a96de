"""Generated documentation stays in step with the code: README's supported-layers section is what
tools/supported_table.py writes from the importers' tables today."""

from helpers import ROOT, load_script


def _tool():
    return load_script("tools/supported_table.py")


def test_readme_supported_layers_match_the_importers():
    tool = _tool()
    _, body, _ = tool.split_readme((ROOT / "README.md").read_text())
    assert body == tool.render(), "README.md is out of date with the importers: run python tools/supported_table.py"


def test_the_table_is_read_from_the_code():
    """Every Keras converter and every ONNX op the importer supports appears in the section."""
    from nets.io.keras.activations import keras_names
    from nets.io.keras.layers import CONVERTERS
    from nets.io.onnx.reader import SUPPORTED

    text = _tool().render()
    for name in [c for c in CONVERTERS if c != "InputLayer"] + sorted(SUPPORTED) + keras_names():
        assert name in text, name


def test_check_mode_reports_a_stale_readme(tmp_path, capsys):
    tool = _tool()
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{tool.BEGIN}\n| stale |\n{tool.END}\nrest\n")
    assert tool.main(["--check", "--readme", str(readme)]) == 1
    assert "out of date" in capsys.readouterr().out
    assert tool.main(["--readme", str(readme)]) == 0
    assert tool.main(["--check", "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("\nrest\n")
