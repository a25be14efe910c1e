"""Encoders initialised from a ResNet state dict saved elsewhere (e.g. SSL4EO-S12 weights)."""
import pytest
import torch
from safetensors.torch import save_file

from core.io.model_file import init_encoder_from_state_dict
from core.models.mosaic import ModelConfig, MosaicModel
from core.models.resnet import ResNetEncoder


def _foreign_resnet18(path, in_channels=12):
    """A ResNet-18 as another project would save it: prefixed keys and a classifier head."""
    torch.manual_seed(5)
    enc = ResNetEncoder(in_channels, depth=18, width=64, stem_stride=4)
    state = {f"backbone.{k}": v.clone() for k, v in enc.state_dict().items()}
    state["backbone.fc.weight"] = torch.randn(1000, 512)
    save_file(state, str(path))
    return enc


def test_loads_by_name_and_ignores_prefix_and_fc(tmp_path):
    ref = _foreign_resnet18(tmp_path / "r18.safetensors")
    model = MosaicModel(ModelConfig.preset("resnet18"))
    init_encoder_from_state_dict(model, "s2", tmp_path / "r18.safetensors")
    got = model.encoders["s2"].state_dict()
    assert all(torch.equal(got[k], v) for k, v in ref.state_dict().items())


def test_torch_weights_file_is_read_without_pickle_code(tmp_path):
    ref = _foreign_resnet18(tmp_path / "r18.safetensors")
    torch.save({"state_dict": ref.state_dict()}, tmp_path / "r18.pth")
    model = MosaicModel(ModelConfig.preset("resnet18"))
    init_encoder_from_state_dict(model, "s2", tmp_path / "r18.pth")
    assert torch.equal(model.encoders["s2"].conv1.weight, ref.conv1.weight)


def test_shapes_that_do_not_fit_are_a_clear_error(tmp_path):
    _foreign_resnet18(tmp_path / "r18.safetensors")
    small = MosaicModel(ModelConfig.preset("small"))  # width 16
    with pytest.raises(ValueError, match=r"has shape .*width=64"):
        init_encoder_from_state_dict(small, "s2", tmp_path / "r18.safetensors")
    model = MosaicModel(ModelConfig.preset("resnet18"))
    with pytest.raises(ValueError, match="input bands"):  # 12-band weights into the 2-band SAR encoder
        init_encoder_from_state_dict(model, "s1", tmp_path / "r18.safetensors")


def test_a_mosaic_model_file_gives_each_encoder_its_own_weights(tmp_path):
    """Two-stage training: the self-supervised stage's model file initialises the next stage."""
    from core.io.model_file import save_model

    torch.manual_seed(7)
    first = MosaicModel(ModelConfig.preset("small"))
    w, _ = save_model(first, tmp_path / "stage1")
    torch.manual_seed(8)
    second = MosaicModel(ModelConfig.preset("small"))
    for m in ("s2", "s1"):
        init_encoder_from_state_dict(second, m, w)
        want = first.encoders[m].state_dict()
        assert all(torch.equal(v, want[k]) for k, v in second.encoders[m].state_dict().items())
