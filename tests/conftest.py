import os

import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")


@pytest.fixture(autouse=True)
def fresh_kernel_workspace():
    """Kernels called directly by a test keep their scratch and saved arguments in a workspace of the
    test's own (dropped after it), not in the process-wide default one."""
    import kernels

    with kernels.using_workspace(kernels.Workspace()) as ws:
        yield ws
