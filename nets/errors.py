"""The project's error types. Every bad input ends in one of these, with a message that names the
file, layer and shapes involved."""


class KernelnetsError(Exception):
    """Base class of every error kernelnets raises on purpose."""


class ModelError(KernelnetsError, ValueError):
    """A graph that cannot be built or run: unknown op, bad attribute, shape mismatch."""


class WeightsError(KernelnetsError, ValueError):
    """A weights file that is unreadable, lacks layers or has wrongly shaped arrays."""


class InputError(KernelnetsError, ValueError):
    """An input array or image that does not fit the model."""


class UnsupportedError(ModelError):
    """Ops or layers the runtime does not implement; the message lists every one of them."""
