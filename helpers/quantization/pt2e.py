"""Real int8 through torchao's PT2E flow, the maintained successor of ``torch.ao``'s FX mode.

1. **export**: ``torch.export.export`` turns the float ``FashionCNN`` into an ATen graph, with the
   batch dimension dynamic (1..1024), so one program serves every batch size;
2. **annotate**: ``X86InductorQuantizer`` (default config: per-channel symmetric int8 weights,
   per-tensor uint8 activations) marks which tensors of which ops are quantized;
3. **prepare** (``prepare_pt2e``) inserts observers there; **calibrate**: training images (never
   test) flow through and the observers record ranges;
4. **convert** (``convert_pt2e``) replaces observers by quantize/dequantize pairs with the scales
   and zero-points found, weights stored as int8;
5. **lower**: ``torch.compile`` (inductor, ``TORCHINDUCTOR_FREEZING=1``) fuses each dequantize →
   conv/linear → quantize pattern into an int8 kernel: int8 × int8 products accumulated in int32,
   then requantized with the input, weight and output scales and zero-points.

``convert_int8_pt2e`` returns the converted program (runs eagerly in the reference representation;
``speed.compiled_model`` lowers it). The float weights the int8 graph no longer reads are dropped,
so a saved file holds the int8 weights only. Saved as ``.int8`` (``storage.int8``, format tag
``int8-pt2e``) through ``torch.export.save``.
"""
from __future__ import annotations

import warnings

import torch
from torch import nn

from ..inputs import check_finite, image_batches
from ..models import FashionCNN

MAX_BATCH = 1024  # the exported program takes any batch size from 1 to this


def _export(model: nn.Module, config) -> torch.export.ExportedProgram:
    """``model`` exported with a dynamic batch dimension (a static one fails at other batch sizes)."""
    example = torch.zeros(2, config.in_channels, config.image_size, config.image_size)  # saved with the program
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    return torch.export.export(model, (example,), dynamic_shapes=({0: batch},))


def drop_unread_attributes(graph_module: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """Remove the parameters and buffers no node of the graph reads (after ``convert_pt2e`` the float
    weights stay as attributes beside their int8 copies: 5.5 MB of the 6.9 MB); returns the module."""
    read = {node.target for node in graph_module.graph.nodes if node.op == "get_attr"}
    for name, _ in [*graph_module.named_parameters(), *graph_module.named_buffers()]:
        if name not in read:
            parent, _, leaf = name.rpartition(".")
            delattr(graph_module.get_submodule(parent) if parent else graph_module, leaf)
    return graph_module


@torch.no_grad()
def convert_int8_pt2e(model: FashionCNN, calibration_data) -> torch.fx.GraphModule:
    """The int8 program of ``model`` (PT2E, x86 inductor quantizer) calibrated on ``calibration_data``
    (a tensor or batches of training images); ``.config`` holds the model's config."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        X86InductorQuantizer, get_default_x86_inductor_quantization_config)

    if not isinstance(model, FashionCNN):
        raise TypeError(f"convert_int8_pt2e expects a float FashionCNN, got {type(model).__name__}")
    check_finite(model.state_dict())
    quantizer = X86InductorQuantizer().set_global(get_default_x86_inductor_quantization_config())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare_pt2e(_export(model.cpu().eval(), model.config).module(), quantizer)
        for images in image_batches(calibration_data):
            prepared(images.cpu())
        converted = _in_eval_mode(drop_unread_attributes(convert_pt2e(prepared)))
    converted.config = model.config
    return converted


def qat_int8_pt2e(model: FashionCNN, train_batches, calibration_data, epochs: int = 1, lr: float = 1e-4,
                  **fit_kwargs) -> torch.fx.GraphModule:
    """Quantization-aware int8 (``prepare_qat_pt2e``, the quantizer's ``is_qat`` config): the exported
    program is trained ``epochs`` by ``training.fit`` with fake-quantized weights and activations
    (observers started on ``calibration_data``), then converted like ``convert_int8_pt2e``'s."""
    from torchao.quantization.pt2e import allow_exported_model_train_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_qat_pt2e
    from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
        X86InductorQuantizer, get_default_x86_inductor_quantization_config)

    from ..training import fit

    if not isinstance(model, FashionCNN):
        raise TypeError(f"qat_int8_pt2e expects a float FashionCNN, got {type(model).__name__}")
    check_finite(model.state_dict())
    quantizer = X86InductorQuantizer().set_global(get_default_x86_inductor_quantization_config(is_qat=True))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare_qat_pt2e(_export(model.cpu().train(), model.config).module(), quantizer)
        allow_exported_model_train_eval(prepared)
        with torch.no_grad():
            for images in image_batches(calibration_data):
                prepared(images.cpu())
        fit(prepared, train_batches, epochs=epochs, lr=lr, device="cpu", desc=fit_kwargs.pop("desc", "int8 QAT (PT2E)"),
            **fit_kwargs)
        prepared.eval()
        converted = _in_eval_mode(drop_unread_attributes(convert_pt2e(prepared)))
    model.eval()
    converted.config = model.config
    return converted


def program_bytes(converted: torch.fx.GraphModule) -> bytes:
    """``torch.export.save`` of the converted program, re-exported with its dynamic batch."""
    import io

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.export.save(_export(converted, converted.config), buffer)
    return buffer.getvalue()


def program_from_bytes(data: bytes) -> torch.fx.GraphModule:
    """The runnable module of a ``program_bytes`` archive (``torch.export.load``)."""
    import io

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = torch.export.load(io.BytesIO(data)).module()
    return _in_eval_mode(module)


def _in_eval_mode(module: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """``module`` marked as in eval mode (an exported program's graph is fixed at export: it was
    exported in eval mode; ``allow_exported_model_train_eval`` lets ``eval()`` calls pass)."""
    from torchao.quantization.pt2e import allow_exported_model_train_eval

    allow_exported_model_train_eval(module)
    for submodule in module.modules():
        submodule.training = False
    return module
