"""Model zoo: shapes for every model and dataset, Normalize first, IBP init statistics, checkpoints."""

import math

import pytest
import torch
from torch import nn

from actbench.data import DATASETS
from actbench.errors import CheckpointError, UnknownName
from actbench.models import Normalize, create_model, ibp_init, list_models, load_model, save_model

SMALL = ["mlp", "cnn3", "cnn5"]


@pytest.mark.parametrize("dataset", sorted(DATASETS))
@pytest.mark.parametrize("name", ["mlp", "cnn3", "cnn5", "cnn7", "cnn7-tin"])
def test_output_shape_for_every_model_and_dataset(name, dataset):
    info = DATASETS[dataset]
    if name == "cnn7-tin" and info.in_shape[1] < 64:
        pytest.skip("cnn7-tin is the 64x64 variant")
    model = create_model(name, info.in_shape, info.num_classes, info.mean, info.std).eval()
    with torch.no_grad():
        out = model(torch.rand(2, *info.in_shape))
    assert out.shape == (2, info.num_classes)
    assert isinstance(model[0], Normalize)


def test_cnn7_matches_shi_et_al_architecture():
    model = create_model("cnn7", (3, 32, 32), 10)
    convs = [m for m in model if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 128]
    assert [c.stride[0] for c in convs] == [1, 1, 2, 1, 1]
    linears = [m for m in model if isinstance(m, nn.Linear)]
    assert linears[0].in_features == 128 * 16 * 16 and linears[0].out_features == 512
    assert sum(isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d) for m in model) == 6
    tin = create_model("cnn7-tin", (3, 64, 64), 200)
    assert [m for m in tin if isinstance(m, nn.Linear)][0].in_features == 128 * 16 * 16


def test_normalize_is_per_channel_affine():
    norm = Normalize([0.5, 0.25, 0.0], [0.5, 0.25, 2.0])
    x = torch.rand(4, 3, 5, 5)
    expected = (x - torch.tensor([0.5, 0.25, 0.0]).view(1, 3, 1, 1)) / torch.tensor([0.5, 0.25, 2.0]).view(1, 3, 1, 1)
    assert torch.allclose(norm(x), expected)


def test_ibp_init_statistics():
    torch.manual_seed(0)
    model = ibp_init(create_model("cnn5", (1, 28, 28), 10))
    layers = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    for layer in layers[:-1]:
        fan_in = layer.weight[0].numel()
        std = math.sqrt(2 * math.pi) / fan_in
        assert abs(layer.weight.mean().item()) < 4 * std / math.sqrt(layer.weight.numel()) + 1e-12
        assert layer.weight.std().item() == pytest.approx(std, rel=0.1)
    last = layers[-1]
    bound = 1 / math.sqrt(last.in_features)  # PyTorch default init keeps weights within this bound
    assert last.weight.abs().max().item() <= bound + 1e-6
    assert last.weight.std().item() > 2 * math.sqrt(2 * math.pi) / last.in_features


def test_unknown_model_lists_choices():
    with pytest.raises(UnknownName, match="cnn7"):
        create_model("resnet", (1, 28, 28), 10)
    assert set(SMALL) <= set(list_models())


def test_checkpoint_round_trip_and_errors(tmp_path):
    model = create_model("cnn3", (1, 28, 28), 10).eval()
    path = tmp_path / "model.pt"
    save_model(path, model, "cnn3", (1, 28, 28), 10, [0.0], [1.0])
    loaded, meta = load_model(path)
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(model(x), loaded(x)) and meta["model_name"] == "cnn3"
    with pytest.raises(CheckpointError, match="no model checkpoint"):
        load_model(tmp_path / "missing.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_model(tmp_path / "bad.pt")
