"""What an int8 kernel computes, in integers only, for one Linear of a PT2E int8 program.

A converted program (``quantization.pt2e``) computes each quantized Linear in its reference
representation: dequantize the uint8 input codes and the int8 weight codes, a float ``linear``, a
ReLU, quantize the result to uint8. The int8 kernel that ``torch.compile`` lowers it to never
dequantizes: with input codes ``x_q`` (scale ``s_x``, zero-point ``z_x``) and weight codes ``w_q``
(one scale ``s_c`` per output channel, zero-point 0),

    acc[n, c] = Σ_k (x_q[n, k] - z_x) · w_q[c, k]                 int8 × int8 products, int32 sums
    y[n, c]   = s_x · s_c · acc[n, c] + bias[c]                     the real value of the output
    q[n, c]   = clamp(round(y[n, c] / s_out) + z_out, 0, 255)      requantized to uint8 (half to even)

``int8_linear`` is that computation (``requantization_value`` is ``y / s_out``, the value it rounds); ``linear_qparams`` reads a layer's codes and qparams from a converted program,
``layer_codes`` the codes the program computes at its input and output, ``code_agreement`` compares
them with ``int8_linear``'s (or another function's), and ``logits_with_linear`` runs the program with one layer's output
codes computed by another function (e.g. a learner's ``int8_linear``). The program's own float32
``linear`` can land on the other side of a rounding tie: a few codes in a million on the course's
``fc2``, each one step apart. A ReLU after the layer is the clamp at ``z_out = 0`` (the quantizer after a ReLU sees no
negative value), which ``linear_qparams`` checks.
"""
from __future__ import annotations

from dataclasses import astuple, dataclass
from typing import Callable

import torch
from torch import Tensor

UINT8_MAX = 255


def requantization_value(x_q: Tensor, x_scale: float, x_zero_point: int, w_q: Tensor, w_scales: Tensor,
                         bias: Tensor | None, out_scale: float, out_zero_point: int) -> Tensor:
    """``y / s_out`` (float64, N x out), the value that is rounded: integer accumulation of the codes
    (exact), then the accumulator scaled to the real output ``y`` and into the output's code units
    (``out_zero_point`` is added after the rounding, as PT2E's quantize does)."""
    acc = (x_q.to(torch.int64) - int(x_zero_point)) @ w_q.to(torch.int64).T  # exact; |acc| < 2^31 here
    if acc.numel() and acc.abs().max() >= 2 ** 31:
        raise OverflowError("the accumulator no longer fits 32 bits: an int8 kernel would overflow")
    y = acc.double() * (float(x_scale) * w_scales.double())
    if bias is not None:
        y = y + bias.double()
    return y / float(out_scale)


def int8_linear(x_q: Tensor, *qparams) -> Tensor:
    """uint8 output codes (N x out) of a Linear from uint8 input codes ``x_q`` (N x in) and
    ``qparams`` = ``(x_scale, x_zero_point, w_q, w_scales, bias, out_scale, out_zero_point)``:
    ``requantization_value`` rounded (half to even), plus the output zero-point, clamped to [0, 255]."""
    out_zero_point = int(qparams[-1])
    return torch.clamp(torch.round(requantization_value(x_q, *qparams)) + out_zero_point, 0, UINT8_MAX).to(torch.uint8)


def code_agreement(x_q: Tensor, params: "LinearQParams", codes: Tensor, fn: Callable | None = None,
                   tie: float = 1e-3) -> dict:
    """How ``codes`` (e.g. what the program computed) agree with ``fn(x_q, *params.args())`` (default
    ``int8_linear``): how many are equal, and of the others how many are one step apart at a rounding
    tie (the exact value within ``tie`` of a half, where a float32 sum may round the other way) and
    how many are not."""
    exact = requantization_value(x_q, *params.args())
    ours = torch.as_tensor((fn or int8_linear)(x_q, *params.args())).to(torch.int64)
    theirs = codes.to(torch.int64)
    differ = ours != theirs
    at_tie = differ & ((exact - exact.floor() - 0.5).abs() < tie) & ((ours - theirs).abs() == 1)
    return {"codes": codes.numel(), "equal": int((~differ).sum()), "one_step_at_a_tie": int(at_tie.sum()),
            "other": int((differ & ~at_tie).sum())}


@dataclass(frozen=True)
class LinearQParams:
    """A quantized Linear of a converted program: what ``int8_linear`` takes besides ``x_q`` (in its
    order: ``astuple``/``args``), and the names of the graph's quantize nodes at its input and output."""

    x_scale: float
    x_zero_point: int
    w_q: Tensor
    w_scales: Tensor
    bias: Tensor | None
    out_scale: float
    out_zero_point: int
    input_node: str
    output_node: str

    def args(self) -> tuple:
        """``(x_scale, x_zero_point, w_q, w_scales, bias, out_scale, out_zero_point)``."""
        return astuple(self)[:7]


def _target(node) -> str:
    return str(node.target).split(".")[-2] if str(node.target).count(".") > 1 else str(node.target)


def _attribute(module: torch.nn.Module, node) -> Tensor:
    """The tensor a ``get_attr`` node reads (``"classifier.fc2.bias"``, ``"_frozen_param4"``)."""
    parent, _, leaf = node.target.rpartition(".")
    return getattr(module.get_submodule(parent) if parent else module, leaf)


def linear_qparams(converted: torch.fx.GraphModule, layer: str = "classifier.fc2") -> LinearQParams:
    """The codes and qparams of ``layer`` (a Linear followed by a quantizer, e.g. ``classifier.fc2``)
    of a program from ``pt2e.convert_int8_pt2e``; a ValueError for a layer without them."""
    nodes = [n for n in converted.graph.nodes if _target(n) == "linear" and len(n.args) > 2
             and getattr(n.args[2], "target", None) == f"{layer}.bias"]
    if not nodes:
        raise ValueError(f"no quantized Linear {layer!r} in the program")
    linear = nodes[0]
    dq_input, dq_weight = linear.args[0], linear.args[1]
    if _target(dq_input) != "dequantize_per_tensor" or _target(dq_weight) != "dequantize_per_channel":
        raise ValueError(f"{layer!r} does not read quantized inputs and weights")
    out, relu = linear, False
    while _target(out) != "quantize_per_tensor":
        users = list(out.users)
        if len(users) != 1 or _target(users[0]) not in ("relu", "relu_", "dropout", "quantize_per_tensor"):
            raise ValueError(f"{layer!r}'s output is not requantized (the last layer's logits stay float)")
        out, relu = users[0], relu or _target(users[0]).startswith("relu")
    if relu and int(out.args[2]) != 0:
        raise ValueError(f"{layer!r}: a ReLU before a quantizer with zero-point {out.args[2]} is not the clamp at 0")
    weight = _attribute(converted, dq_weight.args[0]).detach()
    return LinearQParams(float(dq_input.args[1]), int(dq_input.args[2]), weight,
                         _attribute(converted, dq_weight.args[1]).detach().float(),
                         _attribute(converted, linear.args[2]).detach().float(), float(out.args[1]), int(out.args[2]),
                         dq_input.args[0].name, out.name)


class _Recorder(torch.fx.Interpreter):
    """Runs a graph, keeping the values of ``keep`` nodes; ``replace`` maps a node name to a
    function of the kept values that gives that node's value instead."""

    def __init__(self, module, keep=(), replace=None):
        super().__init__(module)
        self.keep, self.replace, self.values = set(keep), replace or {}, {}

    def run_node(self, node):
        value = self.replace[node.name](self.values) if node.name in self.replace else super().run_node(node)
        if node.name in self.keep:
            self.values[node.name] = value
        return value


@torch.no_grad()
def layer_codes(converted: torch.fx.GraphModule, images: Tensor, layer: str = "classifier.fc2",
                batch_size: int = 500) -> tuple[Tensor, Tensor]:
    """(input codes, output codes) of ``layer`` as the program computes them on ``images``."""
    params = linear_qparams(converted, layer)
    inputs, outputs = [], []
    for batch in images.split(batch_size):
        recorder = _Recorder(converted, keep=(params.input_node, params.output_node))
        recorder.run(batch)
        inputs.append(recorder.values[params.input_node])
        outputs.append(recorder.values[params.output_node])
    return torch.cat(inputs), torch.cat(outputs)


@torch.no_grad()
def logits_with_linear(converted: torch.fx.GraphModule, images: Tensor, fn: Callable = int8_linear,
                       layer: str = "classifier.fc2", batch_size: int = 500) -> Tensor:
    """The program's logits on ``images`` with ``layer``'s output codes computed by
    ``fn(x_q, *linear_qparams(...).args())`` (an ``int8_linear``) instead of its own graph."""
    params = linear_qparams(converted, layer)

    def codes(values):
        out = torch.as_tensor(fn(values[params.input_node], *params.args()))
        if out.dtype != torch.uint8:
            raise TypeError(f"{getattr(fn, '__name__', fn)} returned {out.dtype} codes, not torch.uint8")
        return out

    return torch.cat([_Recorder(converted, keep=(params.input_node,), replace={params.output_node: codes}).run(batch)
                      for batch in images.split(batch_size)])
