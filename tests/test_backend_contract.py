"""Every backend exports the op contract of ``kernels.Backend`` with the same signatures."""

import importlib
import inspect

import pytest

import kernels


def contract_signature(proto, op) -> inspect.Signature:
    sig = inspect.signature(getattr(proto, op))
    return sig.replace(parameters=list(sig.parameters.values())[1:], return_annotation=inspect.Signature.empty)


def plain(sig: inspect.Signature) -> list[tuple]:
    """Names, kinds and defaults: what a caller relies on (annotations are documentation)."""
    return [(p.name, p.kind, p.default) for p in sig.parameters.values()]


BACKEND_MODULES = {"cpu": "kernels.cpu", "gpu": "kernels.gpu", "gpu-tf32": "kernels.gpu.tf32",
                   "reference": "kernels.reference_backend"}


@pytest.mark.parametrize("device", sorted(BACKEND_MODULES))
def test_backend_exports_every_op_with_the_contract_signature(device):
    module = importlib.import_module(BACKEND_MODULES[device])     # kernels.gpu imports without cupy
    assert kernels.missing_ops(module) == []
    for op in kernels.OPS:
        assert plain(inspect.signature(getattr(module, op))) == plain(contract_signature(kernels.Backend, op)), \
            f"{device}.{op}"
    for op in kernels.OPTIONAL_OPS:
        if hasattr(module, op):
            assert plain(inspect.signature(getattr(module, op))) == plain(
                contract_signature(kernels.FusedBackend, op)), f"{device}.{op}"


def test_get_backend_names_the_modules():
    assert kernels.get_backend("reference") is importlib.import_module("kernels.reference_backend")
    assert kernels.get_backend("gpu", "tf32") is importlib.import_module("kernels.gpu.tf32")
    with pytest.raises(ValueError, match="unknown device"):
        kernels.get_backend("tpu")
    with pytest.raises(ValueError, match="GPU only"):
        kernels.get_backend("cpu", "tf32")


def test_tf32_is_refused_off_the_gpu_with_a_clear_error():
    import nets

    with pytest.raises(nets.ModelError, match="GPU only"):
        nets.load("mobilenet", input_shape=(32, 32, 3), alpha=0.25, precision="tf32")


def test_activation_codes_are_defined_once():
    assert kernels.ACTIVATIONS == tuple(kernels.ACT_CODES)
    assert [kernels.act_code(a) for a in kernels.ACTIVATIONS] == list(range(len(kernels.ACTIVATIONS)))
    with pytest.raises(ValueError, match="unknown activation"):
        kernels.act_code("gelu6")


def test_missing_ops_names_what_a_module_lacks():
    import types

    partial = types.SimpleNamespace(**{op: (lambda *a, **k: None) for op in kernels.OPS if op != "softmax"})
    assert kernels.missing_ops(partial) == ["softmax"]
