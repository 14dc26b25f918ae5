import pytest
import torch
import torch.nn.utils.prune

from helpers import CheckpointError, load, save
from helpers.storage.rebuild import load_state_into
from helpers.models import CNNConfig, build_model


def test_saved_model_reloads_to_identical_outputs(tmp_path, random_model):
    path = save(random_model, tmp_path / "m.pt", meta={"epochs": 3})
    reloaded = load(path)
    x = torch.rand(16, 1, 28, 28)
    assert not reloaded.training
    assert torch.equal(reloaded(x), random_model(x))
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # the atomic write left no temporary file


def test_checkpoint_is_plain_tensors_loadable_with_weights_only(tmp_path, random_model):
    path = save(random_model, tmp_path / "m.pt")
    payload = torch.load(path, weights_only=True)
    assert set(payload) == {"format", "config", "state_dict", "meta", "sha256"}
    assert payload["config"]["conv_channels"] == [32, 64, 128]
    assert len(payload["sha256"]) == 64


def test_a_checkpoint_without_its_digest_or_of_the_old_format_is_refused(tmp_path, random_model):
    payload = torch.load(save(random_model, tmp_path / "m.pt"), weights_only=True)
    del payload["sha256"]
    torch.save({**payload, "format": "compression-course/cnn-v1"}, tmp_path / "old.pt")
    with pytest.raises(CheckpointError, match="is not a compression-course/cnn-v2 file"):
        load(tmp_path / "old.pt")
    torch.save(payload, tmp_path / "stripped.pt")  # the current format without its digest: refused
    with pytest.raises(CheckpointError, match="does not match its sha256"):
        load(tmp_path / "stripped.pt")


def test_pruned_shape_is_rebuilt_at_its_size(tmp_path):
    small = build_model(CNNConfig(conv_channels=(8, 16, 24), fc_features=(50, 20))).eval()
    path = save(small, tmp_path / "small.pt")
    reloaded = load(path)
    assert reloaded.config == small.config
    assert path.stat().st_size < 0.1 * save(build_model(), tmp_path / "big.pt").stat().st_size


def test_checkpoint_of_another_shape_is_a_clear_error(tmp_path):
    path = save(build_model(CNNConfig(conv_channels=(8, 16, 24))), tmp_path / "small.pt")
    state = torch.load(path, weights_only=True)["state_dict"]
    with pytest.raises(CheckpointError, match=r"shapes differ \(features.block1.conv.weight: \(8, 1, 3, 3\)"):
        load_state_into(build_model(), state, CheckpointError, "small.pt")


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_or_truncated_file_is_a_clear_error(tmp_path, random_model, damage):
    path = save(random_model, tmp_path / "m.pt")
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="is not a readable compression-course/cnn-v2 file"):
        load(path)


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model file at .*missing.pt"):
        load(tmp_path / "missing.pt")


def test_other_files_are_not_taken_for_checkpoints(tmp_path):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a compression-course"):
        load(tmp_path / "other.pt")


def test_masks_must_be_folded_before_saving(tmp_path, random_model):
    torch.nn.utils.prune.l1_unstructured(random_model.classifier.fc1, "weight", amount=0.5)
    with pytest.raises(ValueError, match="fold the pruning masks"):
        save(random_model, tmp_path / "m.pt")


def test_the_meta_saved_with_a_model_reads_back(tmp_path, random_model):
    from helpers import read_meta
    path = save(random_model, tmp_path / "m.pt", meta={"history": {"train_loss": [1.0, 0.5]}})
    assert read_meta(path) == {"history": {"train_loss": [1.0, 0.5]}}
