import pytest
import torch
import torch.nn.utils.prune

from helpers import CheckpointError, load_model, save_model
from helpers.checkpoints import LEGACY_FORMAT, load_state_into
from helpers.models import CNNConfig, build_model


def test_saved_model_reloads_to_identical_outputs(tmp_path, random_model):
    path = save_model(random_model, tmp_path / "m.pt", meta={"epochs": 3})
    reloaded = load_model(path)
    x = torch.rand(16, 1, 28, 28)
    assert not reloaded.training
    assert torch.equal(reloaded(x), random_model(x))
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # the atomic write left no temporary file


def test_checkpoint_is_plain_tensors_loadable_with_weights_only(tmp_path, random_model):
    path = save_model(random_model, tmp_path / "m.pt")
    payload = torch.load(path, weights_only=True)
    assert set(payload) == {"format", "config", "state_dict", "meta", "sha256"}
    assert payload["config"]["conv_channels"] == [32, 64, 128]
    assert len(payload["sha256"]) == 64


def test_a_checkpoint_of_before_the_digest_still_loads(tmp_path, random_model):
    payload = torch.load(save_model(random_model, tmp_path / "m.pt"), weights_only=True)
    del payload["sha256"]
    torch.save({**payload, "format": LEGACY_FORMAT}, tmp_path / "old.pt")
    assert torch.equal(load_model(tmp_path / "old.pt").classifier.fc1.weight, random_model.classifier.fc1.weight)
    torch.save(payload, tmp_path / "stripped.pt")  # the current format without its digest: refused
    with pytest.raises(CheckpointError, match="does not match its sha256"):
        load_model(tmp_path / "stripped.pt")


def test_pruned_shape_is_rebuilt_at_its_size(tmp_path):
    small = build_model(CNNConfig(conv_channels=(8, 16, 24), fc_features=(50, 20))).eval()
    path = save_model(small, tmp_path / "small.pt")
    reloaded = load_model(path)
    assert reloaded.config == small.config
    assert path.stat().st_size < 0.1 * save_model(build_model(), tmp_path / "big.pt").stat().st_size


def test_checkpoint_of_another_shape_is_a_clear_error(tmp_path):
    path = save_model(build_model(CNNConfig(conv_channels=(8, 16, 24))), tmp_path / "small.pt")
    state = torch.load(path, weights_only=True)["state_dict"]
    with pytest.raises(CheckpointError, match=r"shapes differ \(features.block1.conv.weight: \(8, 1, 3, 3\)"):
        load_state_into(build_model(), state, source="small.pt")


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_or_truncated_file_is_a_clear_error(tmp_path, random_model, damage):
    path = save_model(random_model, tmp_path / "m.pt")
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="is not a readable compression-course/cnn-v2 file"):
        load_model(path)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at .*missing.pt"):
        load_model(tmp_path / "missing.pt")


def test_other_files_are_not_taken_for_checkpoints(tmp_path):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a compression-course"):
        load_model(tmp_path / "other.pt")


def test_masks_must_be_folded_before_saving(tmp_path, random_model):
    torch.nn.utils.prune.l1_unstructured(random_model.classifier.fc1, "weight", amount=0.5)
    with pytest.raises(ValueError, match="fold the pruning masks"):
        save_model(random_model, tmp_path / "m.pt")


def test_the_meta_saved_with_a_model_reads_back(tmp_path, random_model):
    from helpers.checkpoints import load_meta
    path = save_model(random_model, tmp_path / "m.pt", meta={"history": {"train_loss": [1.0, 0.5]}})
    assert load_meta(path) == {"history": {"train_loss": [1.0, 0.5]}}
