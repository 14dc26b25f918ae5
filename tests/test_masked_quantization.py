"""Quantizing a pruned model keeps its zeros (quantization.masked); saved_model_of finds a stage's model
(artifacts); k-means sharing and the code sensitivity scan (quantization.sharing)."""
import json

import torch

from helpers import save
from helpers.artifacts import saved_model_of
from helpers.pruning.unstructured import masks_from_zeros
from helpers.quantization.masked import quantize_keeping_masks
from helpers.models import CNNConfig, build_model, prunable_layers
from helpers.paths import OutputDirs
from helpers.quantization.fake import quant_layers


def _pruned():
    torch.manual_seed(0)
    model = build_model(CNNConfig(conv_channels=(4, 8, 8), fc_features=(16,))).eval()
    with torch.no_grad():
        for layer in prunable_layers(model).values():
            layer.weight.mul_(torch.rand_like(layer.weight) < 0.3)
    return model


def test_masks_from_zeros_mark_the_non_zero_weights():
    model = _pruned()
    masks = masks_from_zeros(model)
    assert set(masks) == set(prunable_layers(model))
    assert all(torch.equal(m, prunable_layers(model)[n].weight != 0) for n, m in masks.items())


def test_quantize_keeping_masks_keeps_pruned_weights_at_zero_through_qat():
    model, images = _pruned(), torch.rand(32, 1, 28, 28)
    batches = [(images, torch.randint(0, 10, (32,)))]
    qmodel, history = quantize_keeping_masks(model, 4, images, train_batches=batches, qat_epochs=1,
                                             device="cpu")
    assert history is not None and not qmodel.training
    masks = masks_from_zeros(model)
    for name, layer in quant_layers(qmodel).items():
        assert bool((layer.weight_codes()[~masks[name]] == 0).all())


def test_saved_model_of_picks_the_record_with_the_highest_value(tmp_path):
    outputs = OutputDirs(tmp_path, "quick")
    records = []
    for name, sparsity in (("low", 0.5), ("high", 0.9)):
        save(_pruned(), outputs.weights / f"05_{name}.pt")
        records.append({"name": name, "method": "m", "test_accuracy": 90.0, "sparsity": sparsity,
                        "params_nonzero": 1, "weight_bits": 32, "activation_bits": None, "size_bytes": 1,
                        "latency_ms": None, "weights_file": f"weights/05_{name}.pt", "quick": True})
    outputs.results.mkdir(parents=True, exist_ok=True)
    (outputs.results / "05_schedules.json").write_text(json.dumps(records))
    record, model = saved_model_of("05", outputs)
    assert record["name"] == "high" and model.config.conv_channels == (4, 8, 8)
    assert saved_model_of("05", outputs, name="low")[0]["name"] == "low"
    assert saved_model_of("09", outputs) is None  # no such stage here nor in the committed results


def test_kmeans_sharing_keeps_zeros_uses_few_values_and_fits_better_than_its_start():
    from helpers.quantization.sharing import kmeans_shared_weight

    g = torch.Generator().manual_seed(0)
    w = torch.randn(64, 200, generator=g) ** 3  # heavy-tailed, like trained weights
    w[w.abs() < 0.3] = 0
    shared = kmeans_shared_weight(w, 3)
    assert torch.equal(shared == 0, w == 0)
    assert len(torch.unique(shared[shared != 0])) <= 7
    start = kmeans_shared_weight(w, 3, iterations=0)  # the linear grid it starts from
    assert ((shared - w) ** 2).mean() < 0.9 * ((start - w) ** 2).mean()


def test_layer_code_sensitivity_changes_only_the_named_layer():
    from helpers.quantization.sharing import layer_code_sensitivity
    from helpers.models import build_model

    torch.manual_seed(0)
    model = build_model().eval()
    images, labels = torch.rand(64, 1, 28, 28), torch.randint(0, 10, (64,))
    calls = []

    def coder(weight, bits):
        calls.append((tuple(weight.shape), bits))
        return weight * 0  # wipes the layer: accuracy must change only through that layer
    table = layer_code_sensitivity(model, [2, 8], [(images, labels)], coder=coder)
    assert list(table.columns) == [2, 8] and len(table) == len(calls) // 2 == 6
    assert (table.values <= 100).all() and (table.values >= 0).all()
