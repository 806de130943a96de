"""Keras activation identifiers -> the runtime's activation names (``kernels.ACTIVATIONS``).

Keras spells an activation as a string (``"swish"``), a serialized function
(``{"module": "keras.activations", "class_name": "function", "config": "gelu"}``), or, in a functional
model, an op-layer of ``keras.ops`` (``Gelu`` with ``approximate``). Keras 3's ``hard_sigmoid`` is
relu6(x + 3) / 6 and ``gelu`` defaults to the exact (erf) form; ``approximate=True`` is the tanh form.
What is supported is read from ``kernels.ACTIVATIONS`` when asked, so an activation is importable as
soon as the kernels have it.
"""

from __future__ import annotations

import kernels

# Keras name -> runtime name. Names missing here pass through unchanged ("relu", "relu6", "tanh", ...).
KERAS_ALIASES = {"swish": "silu", "hard_swish": "hard_silu", "linear": "linear"}

# keras.ops op-layers (class name in a Keras 3 config) that are activations
OP_ACTIVATIONS = {"Relu": "relu", "Relu6": "relu6", "Sigmoid": "sigmoid", "Silu": "silu", "Swish": "silu",
                  "HardSigmoid": "hard_sigmoid", "HardSilu": "hard_silu", "HardSwish": "hard_silu",
                  "Gelu": "gelu", "Tanh": "tanh"}


def canonical(name: str, approximate: bool = False) -> str:
    name = KERAS_ALIASES.get(name, name)
    return "gelu_tanh" if name == "gelu" and approximate else name


def act_name(v) -> str:
    """The runtime name of a Keras activation identifier ("linear" for none); an unknown identifier is
    returned as a string for the error message."""
    if v is None:
        return "linear"
    if isinstance(v, dict):
        inner, cfg = v.get("config"), {}
        if isinstance(inner, dict):     # {"class_name": "gelu", "config": {"approximate": true}}
            cfg, inner = inner, v.get("class_name")
        if not isinstance(inner, str):
            inner = str(v.get("class_name", "")).lower()
        return canonical(inner, cfg.get("approximate") is True)
    return canonical(v) if isinstance(v, str) else repr(v)


def runtime_activations() -> tuple[str, ...]:
    """Activation names the kernels implement now (``kernels.ACTIVATIONS`` without None)."""
    return tuple(a for a in kernels.ACTIVATIONS if a)


def supported(name: str, softmax: bool = False) -> bool:
    return name == "linear" or name in runtime_activations() or (softmax and name == "softmax")


def keras_names() -> list[str]:
    """Every Keras activation name the importer accepts today (for the README table)."""
    runtime = set(runtime_activations()) | {"linear", "softmax"}
    names = {a for a in runtime} | {k for k, v in KERAS_ALIASES.items() if v in runtime}
    if "gelu_tanh" in runtime:
        names.discard("gelu_tanh")         # Keras has no such name: it is gelu(approximate=True)
    return sorted(names)
