"""Real int8 through torchao's PT2E flow, the maintained successor of ``torch.ao``'s FX mode.

Each step is a function here, so that notebook 06 can show what it does:

1. **export** (``export_program``, ``input_spec``): ``torch.export.export`` turns the float ``FashionCNN`` into an
   ATen graph, with the batch dimension dynamic (1..1024), so one program serves every batch size;
2. **annotate** (``x86_quantizer``, ``annotation_table``): ``X86InductorQuantizer`` (default config:
   per-channel symmetric int8 weights, per-tensor affine uint8 activations) marks which tensors of
   which ops are quantized;
3. **prepare** (``prepare``: ``prepare_pt2e``) inserts observers there; **calibrate**
   (``calibrate``): training images (never test) flow through and the observers record ranges
   (``observer_table``);
4. **convert** (``convert``: ``convert_pt2e``) replaces observers by quantize/dequantize pairs with
   the scales and zero-points found, weights stored as int8 (``op_counts``);
5. **lower**: ``torch.compile`` (inductor, weights frozen: ``speed.compiled_model``) fuses each
   dequantize → conv/linear → quantize pattern into an int8 kernel: int8 × int8 products accumulated
   in int32, then requantized with the input, weight and output scales and zero-points
   (``quantization.integer`` computes one such layer in integers only).

``convert_int8_pt2e`` (PTQ) and ``qat_int8_pt2e`` (QAT, ``prepare_qat_pt2e``) chain the steps and
return the converted program (runs eagerly in the reference representation; ``speed.compiled_model``
lowers it). The float weights the int8 graph no longer reads are dropped, so a saved file holds the
int8 weights only. Saved as ``.int8`` (``storage.int8``, format tag ``int8-pt2e``) through
``torch.export.save``.
"""
from __future__ import annotations

import copy
import logging
import warnings
from collections import Counter
from contextlib import contextmanager

import torch
from torch import nn

from ..inputs import check_finite, image_batches
from ..models import FashionCNN

MAX_BATCH = 1024  # the exported program takes any batch size from 1 to this


@contextmanager
def quiet():
    """Silence torchao's import-time log line and the export/quantizer warnings (e.g. "the input of
    maxpool2d is not quantized, skip annotate"): the flow's outcome is checked, not its chatter."""
    logger = logging.getLogger("torch.utils._pytree")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def export_program(model: nn.Module, config=None) -> torch.export.ExportedProgram:
    """``model`` exported with a dynamic batch dimension (a static one fails at other batch sizes);
    ``config``: the model's ``CNNConfig`` (default ``model.config``)."""
    config = config or model.config
    example = torch.zeros(2, config.in_channels, config.image_size, config.image_size)  # saved with the program
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    with quiet():
        return torch.export.export(model, (example,), dynamic_shapes=({0: batch},))


def input_spec(exported: torch.export.ExportedProgram) -> str:
    """The program's image input in words: ``"x: (s0, 1, 28, 28), s0 in [1, 1024]"``."""
    node = next(n for n in exported.graph.nodes if n.op == "placeholder" and n.name in exported.graph_signature.user_inputs)
    ranges = ", ".join(f"{symbol} in [{r.lower}, {r.upper}]" for symbol, r in exported.range_constraints.items())
    return f"{node.name}: {tuple(node.meta['val'].shape)}" + (f", {ranges}" if ranges else "")


def x86_quantizer(is_qat: bool = False):
    """``X86InductorQuantizer`` with its default config (``is_qat``: the QAT variant, fake-quantized)."""
    with quiet():
        from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
            X86InductorQuantizer, get_default_x86_inductor_quantization_config)

        return X86InductorQuantizer().set_global(get_default_x86_inductor_quantization_config(is_qat=is_qat))


def _spec(spec) -> str:
    """A quantization spec in words: ``"uint8, per_tensor_affine"``, ``"float"`` when there is none."""
    if spec is None:
        return "float"
    if hasattr(spec, "dtype"):
        return f"{str(spec.dtype).removeprefix('torch.')}, {str(spec.qscheme).removeprefix('torch.')}"
    return type(spec).__name__  # e.g. SharedQuantizationSpec: the same qparams as another tensor


def annotation_table(exported: torch.export.ExportedProgram, quantizer=None) -> list[dict]:
    """What the quantizer marks on each conv and linear of ``exported`` (annotated on a copy): the
    spec of its input activation, weight, bias and output."""
    module = copy.deepcopy(exported.module())
    with quiet():
        (quantizer or x86_quantizer()).annotate(module)
    rows = []
    for node in module.graph.nodes:
        note = node.meta.get("quantization_annotation")
        if note is None or node.target not in (torch.ops.aten.conv2d.default, torch.ops.aten.linear.default):
            continue
        specs = {node.args.index(arg): spec for arg, spec in note.input_qspec_map.items() if arg in node.args}
        rows.append({"op": f"{node.name} ({node.target.__name__.split('.')[0]})", "input": _spec(specs.get(0)),
                     "weight": _spec(specs.get(1)), "bias": _spec(specs.get(2)), "output": _spec(note.output_qspec)})
    return rows


def prepare(exported: torch.export.ExportedProgram, quantizer=None, qat: bool = False) -> torch.fx.GraphModule:
    """The exported graph annotated by ``quantizer`` and with observers inserted (``prepare_pt2e``;
    ``qat``: ``prepare_qat_pt2e``, fake-quantizers that train)."""
    with quiet():
        from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e, prepare_qat_pt2e

        return (prepare_qat_pt2e if qat else prepare_pt2e)(exported.module(), quantizer or x86_quantizer(qat))


@torch.no_grad()
def calibrate(prepared: torch.fx.GraphModule, calibration_data) -> torch.fx.GraphModule:
    """Run ``calibration_data`` (a tensor or batches of training images) through the observers."""
    for images in image_batches(calibration_data):
        prepared(images.cpu())
    return prepared


def observer_table(prepared: torch.fx.GraphModule) -> list[dict]:
    """Each activation observer of a calibrated graph: the range it saw and the uint8 scale and
    zero-point it gives (weights are observed per channel at convert time)."""
    rows = []
    for name, observer in prepared.named_modules():
        if not hasattr(observer, "calculate_qparams") or getattr(observer, "ch_axis", None) is not None:
            continue
        low, high = float(observer.min_val), float(observer.max_val)
        scale, zero_point = observer.calculate_qparams()
        rows.append({"observer": name, "min": low, "max": high, "scale": float(scale), "zero_point": int(zero_point)})
    return rows


def convert(prepared: torch.fx.GraphModule, config) -> torch.fx.GraphModule:
    """``convert_pt2e``: observers replaced by quantize/dequantize pairs, weights stored as int8
    (the float copies dropped); in eval mode, ``.config`` set to ``config``."""
    with quiet():
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

        converted = _in_eval_mode(drop_unread_attributes(convert_pt2e(prepared)))
    converted.config = config
    return converted


def op_counts(graph_module: torch.fx.GraphModule) -> Counter:
    """How often each operator is called in the graph (``quantize_per_tensor``, ``linear``, ...)."""
    return Counter(str(node.target).split(".")[-2] if str(node.target).count(".") > 1 else str(node.target)
                   for node in graph_module.graph.nodes if node.op == "call_function")


def drop_unread_attributes(graph_module: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Remove the parameters and buffers no node of the graph reads (after ``convert_pt2e`` the float
    weights stay as attributes beside their int8 copies: 5.5 MB of the 6.9 MB); returns the module."""
    read = {node.target for node in graph_module.graph.nodes if node.op == "get_attr"}
    for name, _ in [*graph_module.named_parameters(), *graph_module.named_buffers()]:
        if name not in read:
            parent, _, leaf = name.rpartition(".")
            delattr(graph_module.get_submodule(parent) if parent else graph_module, leaf)
    return graph_module


def _checked_float(model, caller: str) -> None:
    if not isinstance(model, FashionCNN):
        raise TypeError(f"{caller} expects a float FashionCNN, got {type(model).__name__}")
    check_finite(model.state_dict())


def convert_int8_pt2e(model: FashionCNN, calibration_data) -> torch.fx.GraphModule:
    """The int8 program of ``model`` (PT2E, x86 inductor quantizer) calibrated on ``calibration_data``
    (a tensor or batches of training images): export, prepare, calibrate, convert. ``.config`` holds
    the model's config; ``model`` is not changed."""
    _checked_float(model, "convert_int8_pt2e")
    prepared = prepare(export_program(copy.deepcopy(model).cpu().eval()))
    return convert(calibrate(prepared, calibration_data), model.config)


def qat_int8_pt2e(model: FashionCNN, train_batches, calibration_data, epochs: int = 1, lr: float = 1e-4,
                  **fit_kwargs) -> torch.fx.GraphModule:
    """Quantization-aware int8 (``prepare_qat_pt2e``, the quantizer's ``is_qat`` config): a copy of
    ``model`` is exported and trained ``epochs`` by ``training.fit`` with fake-quantized weights and
    activations (observers started on ``calibration_data``), then converted like
    ``convert_int8_pt2e``'s. ``model`` is not changed (the exported graph would share its weights)."""
    from ..training import fit

    _checked_float(model, "qat_int8_pt2e")
    prepared = _allow_train_eval(prepare(export_program(copy.deepcopy(model).cpu().train()), qat=True))
    with quiet():
        calibrate(prepared, calibration_data)
        fit(prepared, train_batches, epochs=epochs, lr=lr, device="cpu", desc=fit_kwargs.pop("desc", "int8 QAT (PT2E)"),
            **fit_kwargs)
    prepared.eval()
    return convert(prepared, model.config)


def program_bytes(converted: torch.fx.GraphModule) -> bytes:
    """``torch.export.save`` of the converted program, re-exported with its dynamic batch."""
    import io

    buffer = io.BytesIO()
    program = export_program(converted, converted.config)
    with quiet():
        torch.export.save(program, buffer)
    return buffer.getvalue()


def program_from_bytes(data: bytes) -> torch.fx.GraphModule:
    """The runnable module of a ``program_bytes`` archive (``torch.export.load``). Imports torchao's
    x86 quantizer first, as the flow that made the program did: it registers the
    ``quantized_decomposed`` operators the program calls and inductor's int8 fusion passes, which a
    fresh process (e.g. ``python -m helpers.benchmark``) has not loaded otherwise. Without the
    passes ``torch.compile`` still runs, but dequantize → float conv instead of int8 kernels: measured
    here at batch 256, one thread, 1.7x the eager float model instead of 5.6x."""
    import io

    with quiet():
        # registers torch.ops.quantized_decomposed.* and inductor's x86 int8 lowering passes
        import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer  # noqa: F401

        module = torch.export.load(io.BytesIO(data)).module()
    return _in_eval_mode(module)


def _allow_train_eval(module: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """``module`` whose ``train()``/``eval()`` calls pass (an exported program refuses them otherwise)."""
    with quiet():
        from torchao.quantization.pt2e import allow_exported_model_train_eval

        allow_exported_model_train_eval(module)
    return module


def _in_eval_mode(module: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """``module`` marked as in eval mode (an exported program's graph is fixed at export: it was
    exported in eval mode; ``train()``/``eval()`` calls are let through)."""
    _allow_train_eval(module)
    for submodule in module.modules():
        submodule.training = False
    return module
