"""Exporter idioms recognised in the ONNX node list before conversion, each replaced by one node.

Activations written out as arithmetic. GELU as ``x * 0.5 * (1 + erf(x / sqrt 2))`` (in any of its exporters'
orders, with ``Div`` or ``Mul`` by the constant), the tanh approximation with ``Pow`` or ``x * x * x``, SiLU as
``x * Sigmoid(x)``, hard sigmoid as ``Clip(x + 3, 0, 6) / 6`` (Keras' MobileNetV3), hard swish as ``x`` times
that. Rather than one matcher per spelling, the nodes that compute an element-wise function of one tensor
``x`` with scalar constants are grouped by ``x``; a sub-DAG of such a group whose intermediate results are used
nowhere else is evaluated with numpy on a grid of x values and, if it equals one of ``ACTIVATION_FUNCTIONS``
there, becomes one ``Activation`` node (domain ``kernelnets``). Casts to float32, Identity and Dropout are
seen through (Keras wraps every layer in Casts).

PyTorch's ``LocalResponseNorm`` exported by dynamo: ``x / (k + alpha * avg_pool3d(pad(reshape(x * x))))^beta``
on a 5-D view; the chain becomes the ONNX ``LRN`` node it computes.
"""

from __future__ import annotations

import math

import numpy as np

DOMAIN = "kernelnets"
ALIASES = frozenset({"Identity", "Dropout", "Cast"})
UNARY = frozenset({"Erf", "Tanh", "Sigmoid", "HardSigmoid", "HardSwish", "Relu", "Clip", "Sqrt", "Neg", "Exp",
                   "Abs", "Reciprocal", "Softplus"})
BINARY = frozenset({"Add", "Sub", "Mul", "Div", "Pow"})
LINEAR = frozenset({"Add", "Sub", "Mul", "Div", "Neg"})

_erf = np.vectorize(math.erf, otypes=[np.float64])


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _hard_sigmoid(x):
    return np.clip(x / 6.0 + 0.5, 0.0, 1.0)


ACTIVATION_FUNCTIONS = {
    "relu": lambda x: np.maximum(x, 0.0),
    "relu6": lambda x: np.clip(x, 0.0, 6.0),
    "sigmoid": _sigmoid,
    "tanh": np.tanh,
    "silu": lambda x: x * _sigmoid(x),
    "hard_sigmoid": _hard_sigmoid,
    "hard_silu": lambda x: x * _hard_sigmoid(x),
    "gelu": lambda x: 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0))),
    "gelu_tanh": lambda x: 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3))),
}
GRID = np.concatenate([np.linspace(-12.0, 12.0, 601), [-1e4, -300.0, -50.0, 50.0, 300.0, 1e4, 1e-3, -1e-3, 0.0]])


class Patterns:
    """The rewriting of one node list. ``consts`` maps the names of known constant tensors to arrays;
    ``attrs(node)`` decodes a node's attributes; ``outputs`` are the graph's output names."""

    def __init__(self, nodes, consts: dict, attrs, outputs, opset: int):
        self.nodes, self.consts, self.attrs, self.opset = list(nodes), dict(consts), attrs, opset
        self.alias: dict[str, str] = {}
        self.producer: dict[str, int] = {}
        self.users: dict[str, list[int]] = {}
        for i, n in enumerate(self.nodes):
            if n.op_type == "Constant" and n.output:
                try:
                    self.consts[n.output[0]] = np.asarray(_constant(self.attrs(n)))
                except (KeyError, TypeError, ValueError):
                    pass
            elif self.is_alias(n):
                self.alias[n.output[0]] = self.resolve(n.input[0])
                if n.input[0] in self.consts:
                    self.consts[n.output[0]] = self.consts[n.input[0]]
                continue
            for o in n.output:
                self.producer[o] = i
            for name in dict.fromkeys(self.resolve(x) for x in n.input if x):
                self.users.setdefault(name, []).append(i)
        self.escapes = {self.resolve(o) for o in outputs}

    def is_alias(self, n) -> bool:
        if n.op_type not in ALIASES or not n.input or not n.output:
            return False
        return n.op_type != "Cast" or self.attrs(n).get("to") == 1

    def resolve(self, name: str) -> str:
        return self.alias.get(name, name)

    def scalar(self, name: str):
        v = self.consts.get(self.resolve(name)) if name else None
        return None if v is None or np.size(v) != 1 or v.dtype.kind not in "fiu" else float(np.reshape(v, -1)[0])

    # ------------------------------------------------------------------ element-wise functions of one tensor
    def computed_inputs(self, n) -> list[str] | None:
        """The non-constant inputs of an element-wise node whose constant inputs are all scalars, else None."""
        if n.op_type not in UNARY | BINARY or len(n.output) != 1:
            return None
        ins = list(n.input[:1]) if n.op_type in UNARY - {"Clip"} else list(n.input)
        computed = []
        for name in ins:
            if not name:
                continue
            if self.resolve(name) in self.consts:
                if self.scalar(name) is None:
                    return None
            else:
                computed.append(self.resolve(name))
        return computed or None

    def activations(self) -> dict[int, tuple]:
        """node index of a sink -> (activation, x, indices of the nodes it replaces)."""
        root: dict[str, str] = {}
        groups: dict[str, list[int]] = {}
        for i, n in enumerate(self.nodes):
            ins = self.computed_inputs(n)
            if ins is None:
                continue
            roots = {root.get(x, x) for x in ins}
            if len(roots) == 1:
                r = roots.pop()
                root[n.output[0]] = r
                groups.setdefault(r, []).append(i)
        found, used = {}, set()
        for r, members in groups.items():
            if all(self.nodes[i].op_type in LINEAR for i in members):
                continue
            for sink in reversed(members):
                if sink in used:
                    continue
                whole = self.ancestors(sink, r) or set()
                # the input of the activation: the group's root, or a result inside the group (relu(x) -> gelu)
                for x in [r] + [self.nodes[i].output[0] for i in sorted(whole - {sink})]:
                    part = self.ancestors(sink, x)
                    if part is None or used & part or len(part) < 2 or not self.closed(part, sink) or \
                            all(self.nodes[i].op_type in LINEAR for i in part):
                        continue
                    act = self.identify(part, x)
                    if act is not None:
                        found[sink] = (act, x, part)
                        used |= part
                        break
        return found

    def ancestors(self, sink: int, x: str) -> set | None:
        """The nodes between ``x`` and ``sink`` when ``sink`` is a function of ``x`` alone."""
        part, todo = set(), [sink]
        while todo:
            i = todo.pop()
            if i in part:
                continue
            part.add(i)
            for t in self.computed_inputs(self.nodes[i]):
                if t == x:
                    continue
                j = self.producer.get(t)
                if j is None or self.computed_inputs(self.nodes[j]) is None:
                    return None
                todo.append(j)
        return part

    def closed(self, part: set, sink: int) -> bool:
        """No result of ``part`` but the sink's is used outside it."""
        for i in part - {sink}:
            out = self.nodes[i].output[0]
            if out in self.escapes or any(u not in part for u in self.users.get(out, [])):
                return False
        return True

    def identify(self, part: set, r: str) -> str | None:
        values = {r: GRID}
        with np.errstate(all="ignore"):
            for i in sorted(part):
                n = self.nodes[i]
                y = self.evaluate(n, values)
                if y is None:
                    return None
                values[n.output[0]] = y
            y = values[self.nodes[max(part)].output[0]]
            for name, fn in ACTIVATION_FUNCTIONS.items():
                want = fn(GRID)
                if np.all(np.abs(y - want) <= 1e-5 * (1.0 + np.abs(want))):
                    return name
        return None

    def evaluate(self, n, values):
        def arg(k):
            name = n.input[k] if k < len(n.input) else ""
            if not name:
                return None
            s = self.scalar(name)
            return s if s is not None else values[self.resolve(name)]
        op, x = n.op_type, arg(0)
        a = self.attrs(n)
        if op in BINARY:
            y = arg(1)
            return {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide,
                    "Pow": np.power}[op](x, y)
        if op == "Clip":
            lo, hi = (a.get("min"), a.get("max")) if self.opset < 11 else (arg(1), arg(2))
            return np.clip(x, -np.inf if lo is None else lo, np.inf if hi is None else hi)
        if op == "HardSigmoid":
            return np.clip(a.get("alpha", 0.2) * x + a.get("beta", 0.5), 0.0, 1.0)
        fns = {"Erf": _erf, "Tanh": np.tanh, "Sigmoid": _sigmoid, "Relu": lambda v: np.maximum(v, 0.0),
               "Sqrt": np.sqrt, "Neg": np.negative, "Exp": np.exp, "Abs": np.abs, "Reciprocal": np.reciprocal,
               "Softplus": lambda v: np.logaddexp(0.0, v), "HardSwish": ACTIVATION_FUNCTIONS["hard_silu"]}
        return fns[op](np.broadcast_to(np.asarray(x, np.float64), GRID.shape))

    # ------------------------------------------------------------------ torch's LocalResponseNorm
    def lrn(self, d: int):
        """(attrs, x, node indices) when node ``d`` is the final Div of torch's decomposed LocalResponseNorm."""
        n = self.nodes[d]
        if n.op_type != "Div" or len(n.input) != 2:
            return None
        x = self.resolve(n.input[0])
        chain, name = [], self.resolve(n.input[1])
        beta = self.step(chain, name, "Pow")
        k = beta and self.step(chain, beta[0], "Add")
        if not k:
            return None
        alpha = self.step(chain, k[0], "Mul") or (k[0], 1.0)
        name = alpha[0]
        if self.take(chain, name, "Reshape"):
            name = self.resolve(self.nodes[chain[-1]].input[0])
        sq = self.take(chain, name, "Squeeze")
        pool = sq and self.take(chain, self.resolve(self.nodes[chain[-1]].input[0]), "AveragePool")
        pad = pool and self.take(chain, self.resolve(self.nodes[chain[-1]].input[0]), "Pad")
        view = pad and self.take(chain, self.resolve(self.nodes[chain[-1]].input[0]), "Reshape")
        square = view and self.take(chain, self.resolve(self.nodes[chain[-1]].input[0]), "Mul", "Pow")
        if not square:
            return None
        sqn = self.nodes[chain[-1]]
        if [self.resolve(v) for v in sqn.input] != [x, x] and not (
                sqn.op_type == "Pow" and self.resolve(sqn.input[0]) == x and self.scalar(sqn.input[1]) == 2.0):
            return None
        size = self.lrn_size(*(self.nodes[chain[i]] for i in (-5, -4, -3, -2)))
        if size is None:
            return None
        for i in chain:           # every intermediate result feeds the next step only
            if any(u not in chain + [d] for u in self.users.get(self.nodes[i].output[0], [])):
                return None
        attrs = dict(size=size, alpha=alpha[1], beta=beta[1], bias=k[1])
        return attrs, x, set(chain) | {d}

    def step(self, chain, name, op):
        """``name`` = op(t, scalar) (either order for Add/Mul): (t, scalar), recording the node."""
        i = self.producer.get(name)
        if i is None or self.nodes[i].op_type != op or len(self.nodes[i].input) != 2:
            return None
        a, b = self.nodes[i].input
        for t, c in ((a, b), (b, a)) if op in ("Add", "Mul") else ((a, b),):
            if self.scalar(c) is not None and self.resolve(t) not in self.consts:
                chain.append(i)
                return self.resolve(t), self.scalar(c)
        return None

    def take(self, chain, name, *ops) -> bool:
        i = self.producer.get(name)
        if i is None or self.nodes[i].op_type not in ops:
            return False
        chain.append(i)
        return True

    def lrn_size(self, sq, pool, pad, view) -> int | None:
        """The window of the squeeze / avg_pool3d / pad / 5-D view steps, if they are torch's LRN."""
        ints = lambda name: None if self.resolve(name) not in self.consts else \
            [int(v) for v in np.reshape(self.consts[self.resolve(name)], -1)]
        axes = self.attrs(sq).get("axes") if self.opset < 13 else (ints(sq.input[1]) if len(sq.input) > 1 else None)
        pa = self.attrs(pool)
        k = pa.get("kernel_shape", [])
        strides = pa.get("strides", [1, 1, 1])
        if axes not in ([1], [-4]) or len(k) != 3 or k[1:] != [1, 1] or any(v != 1 for v in strides) \
                or any(pa.get("pads", [0] * 6)) or pa.get("ceil_mode", 0) or pa.get("auto_pad", "NOTSET") != "NOTSET":
            return None
        pads = self.attrs(pad).get("pads") if self.opset < 11 else ints(pad.input[1])
        fill = self.scalar(pad.input[2]) if self.opset >= 11 and len(pad.input) > 2 and pad.input[2] else 0.0
        if len(pad.input) > 3 and pad.input[3]:
            return None
        if pads is None or len(pads) != 10 or self.attrs(pad).get("mode", "constant") != "constant" or fill != 0.0:
            return None
        before, after = pads[:5], pads[5:]
        if before[:2] + before[3:] + after[:2] + after[3:] != [0] * 8 or before[2] + after[2] + 1 != k[0]:
            return None
        shape = ints(view.input[1]) if len(view.input) > 1 else None
        if shape is None or len(shape) != 5 or shape[1] != 1:
            return None
        return k[0]

    # ------------------------------------------------------------------ the rewritten list
    def rewrite(self, make_node) -> list:
        replaced: dict[int, object] = {}
        gone: set[int] = set()
        for sink, (act, x, part) in self.activations().items():
            n = self.nodes[sink]
            replaced[sink] = make_node("Activation", [x], [n.output[0]], name=n.name or n.output[0], domain=DOMAIN,
                                       act=act)
            gone |= part
        for d, n in enumerate(self.nodes):
            if n.op_type == "Div" and d not in gone:
                found = self.lrn(d)
                if found and not (found[2] & gone):
                    attrs, x, part = found
                    replaced[d] = make_node("LRN", [x], [n.output[0]], name=n.name or n.output[0], **attrs)
                    gone |= part
        out, dead = [], set()
        for i, n in enumerate(self.nodes):
            if i in replaced:
                out.append(replaced[i])
            elif i in gone or (self.is_alias(n) and n.input[0] in dead):   # and the Casts of what is gone
                dead.update(n.output)
            else:
                out.append(n)
        return out


def _constant(a):
    for key in ("value_float", "value_int", "value_floats", "value_ints"):
        if key in a:
            return np.array(a[key], np.float32 if "float" in key else np.int64)
    return np.asarray(a["value"])


def rewrite(nodes, consts, attrs, outputs, opset: int):
    """The node list with the idioms above replaced (``consts``: initializers by name)."""
    from nets.io.onnx.proto import onnx_module

    return Patterns(nodes, consts, attrs, outputs, opset).rewrite(onnx_module().helper.make_node)
