"""tools/keras_coverage.py's page: what it says about each row, and that the committed page covers the tool's list."""

from helpers import ROOT, load_script


def load_tool():
    return load_script("tools/keras_coverage.py")


META = dict(command="python tools/keras_coverage.py --render", runs=["python tools/keras_coverage.py   # run"],
            keras="3", torch="2", threads=1, machine="cpu", date="today", commit="abc1234", render_only=True,
            remark="", load_before="", load_after="")


def test_page_counts_marks_and_explains_rows():
    tool = load_tool()
    rows = [
        dict(model="A", params=10**6, input="8x8x3", status="match", max_rel_err=1e-6, onnx_status="match",
             onnx_max_rel_err=2e-6, onnx_batch="dynamic", keras_ms=10.0, ours_ms=5.0, first_run_s=1.0,
             commit="abc1234"),
        dict(model="B", params=10**6, input="8x8x3", status="match", max_rel_err=1e-6, onnx_status="match",
             onnx_max_rel_err=2e-6, onnx_batch="fixed", onnx_note="Keras' dynamic-batch export failed (X)",
             commit="0ld0ne1"),
        dict(model="C", params=10**6, input="8x8x3", status="refused", error="UnsupportedError: layer Foo",
             onnx_status="export failed", onnx_error="Keras export: Y"),
    ]
    page = tool.render(rows, META)
    assert "**2 of 3 models load from .keras and match Keras; 2 of 3 from Keras' ONNX export.**" in page
    assert "| A | 1.0 M | 8x8x3 | match | 1.0e-06 | match | 2.0e-06 | 10.0 | 5.0 | 0.50 | 1.0 |" in page
    assert "match (commit 0ld0ne1)" in page and "match (fixed batch)" in page      # another commit; pinned batch
    assert "- **C** (.keras): UnsupportedError: layer Foo" in page and "- **C** (ONNX): Keras export: Y" in page
    assert "- **B**: Keras' dynamic-batch export failed (X)" in page
    assert page.index("# run") < page.index("--render")                           # the runs, then the render


def test_committed_page_covers_every_model_of_the_tool():
    tool = load_tool()
    page = (ROOT / "docs" / "keras_applications.md").read_text()
    for name in tool.MODELS:
        assert f"| {name} |" in page, name
