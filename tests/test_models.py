"""Backbones of torchvision's zoo behind one interface, the ImageNet weights versions, and BoostLU."""
import os
import urllib.error

import pytest
import torch

import config
import models
from config import build_config, get_args_parser
from errors import UserError


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """An empty torch hub cache and no network: every weights download fails."""
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))

    def no_network(self, *args, **kwargs):
        raise urllib.error.URLError("no network")
    monkeypatch.setattr(torchvision_weights_enum(), "get_state_dict", no_network)
    return tmp_path / "hub" / "checkpoints"


def torchvision_weights_enum():
    return type(models.BACKBONES["resnet50"].weights["imagenet"]).__mro__[1]     # torchvision's WeightsEnum


@pytest.mark.parametrize("arch, version, file", [
    ("resnet50", "imagenet", "resnet50-0676ba61.pth"),          # IMAGENET1K_V1, the paper's
    ("resnet50", "imagenet_v2", "resnet50-11ad3fa6.pth"),       # IMAGENET1K_V2
    ("resnet101", "imagenet_v2", "resnet101-cd907fc2.pth"),
    ("convnext_tiny", "imagenet", "convnext_tiny-983f1562.pth"),
])
def test_missing_weights_name_the_file_and_url_of_the_version(offline, arch, version, file):
    with pytest.raises(UserError) as err:
        models.build_model(arch, 3, version)
    message = str(err.value)
    assert f"https://download.pytorch.org/models/{file}" in message
    assert os.path.join(str(offline), file) in message


def test_missing_vit_weights_name_the_file(offline):
    with pytest.raises(UserError, match="vit_b_16-c867db91.pth"):
        models.build_model("vit_b_16", 3, "imagenet", image_size=224)


@pytest.mark.parametrize("argv, words", [
    (["--arch", "resnet18", "--weights", "imagenet_v2"], ["resnet18", "imagenet_v2", "resnet50"]),
    (["--arch", "convnext_tiny", "--weights", "imagenet_v2"], ["convnext_tiny", "imagenet_v2"]),
    (["--arch", "vit_b_16", "--image_size", "100", "--weights", "none"], ["--image_size", "multiple of 16"]),
    (["--arch", "vit_b_16", "--image_size", "448"], ["--image_size", "224"]),
])
def test_impossible_arch_settings_are_refused_by_the_config(argv, words):
    with pytest.raises(UserError) as err:
        build_config(get_args_parser().parse_args(["--dataset", "demo", *argv]))
    for word in words:
        assert word in str(err.value)


def test_config_lists_every_backbone():
    assert config.ARCHS == models.ARCHS


@pytest.mark.parametrize("arch, size, dim", [("resnet18", 64, 512), ("convnext_tiny", 64, 768)])
def test_spatial_backbones_give_map_pooled_features_and_logits(arch, size, dim):
    torch.manual_seed(0)
    model = models.build_model(arch, 5, "none").eval()
    images = torch.randn(2, 3, size, size)
    with torch.no_grad():
        fmap, pooled, logits = model.feature_map(images), model.features(images), model(images)
    assert fmap.shape[:2] == (2, dim) and fmap.dim() == 4
    assert pooled.shape == (2, dim)
    torch.testing.assert_close(pooled, fmap.mean(dim=(2, 3)))                  # GAP of the map
    torch.testing.assert_close(logits, pooled @ model.head.weight.T + model.head.bias)
    # The CAM averages to the logit: the head is linear in the map.
    torch.testing.assert_close(model.class_activation_map(images).mean(dim=(2, 3)), logits, rtol=1e-4, atol=1e-5)


def test_vit_gives_class_token_features_and_no_map():
    torch.manual_seed(0)
    model = models.build_model("vit_b_16", 4, "none", image_size=32).eval()   # 2x2 patches: small and fast
    images = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        pooled, logits = model.features(images), model(images)
    assert pooled.shape == (1, 768) and logits.shape == (1, 4)
    torch.testing.assert_close(logits, pooled @ model.head.weight.T + model.head.bias)
    assert not model.has_feature_map
    with pytest.raises(UserError, match="no spatial feature map"):
        model.feature_map(images)


def test_torchvision_state_dict_loads_into_the_backbone(tmp_path):
    """A torchvision-format file (classifier included) initialises the backbone with its values."""
    torch.manual_seed(0)
    net = models.BACKBONES["convnext_tiny"].builder(weights=None)
    path = tmp_path / "convnext.pth"
    torch.save(net.state_dict(), path)
    model = models.build_model("convnext_tiny", 3, str(path))
    torch.testing.assert_close(model.backbone[0][0][0].weight, net.features[0][0].weight)
    torch.testing.assert_close(model.backbone[1].weight, net.classifier[0].weight)     # the LayerNorm


def test_boostlu_alpha_one_is_the_plain_model():
    torch.manual_seed(0)
    plain = models.build_model("resnet18", 6, "none").eval()
    boosted = models.build_model("resnet18", 6, "none", boostlu_alpha=1.0).eval()
    boosted.load_state_dict(plain.state_dict())
    images = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(boosted(images), plain(images), rtol=1e-5, atol=1e-5)


def test_boostlu_multiplies_positive_cam_values_before_pooling():
    """A 1x1 map per class worked by hand: feature map F (1, 2, 1, 2), head W, b = 0, alpha 5."""
    model = models.build_model("resnet18", 2, "none", boostlu_alpha=5.0).eval()
    fmap = torch.tensor([[[[1.0, -2.0]], [[0.5, 1.0]]]])               # channels c0 = (1, -2), c1 = (0.5, 1)
    model.head.weight.data.zero_()
    model.head.weight.data[:, :2] = torch.tensor([[1.0, 0.0], [1.0, -2.0]])
    model.head.bias.data.zero_()
    model.backbone = torch.nn.Identity()                                 # the map is the input
    padded = torch.cat([fmap, torch.zeros(1, 510, 1, 2)], dim=1)
    # class 0: CAM = (1, -2) -> (5, -2), mean 1.5; class 1: CAM = (1 - 1, -2 - 2) = (0, -4) -> mean -2.
    torch.testing.assert_close(model(padded), torch.tensor([[1.5, -2.0]]))


def test_boostlu_needs_a_spatial_map():
    with pytest.raises(UserError, match="spatial feature map"):
        models.build_model("vit_b_16", 3, "none", image_size=32, boostlu_alpha=5.0)


def test_linear_init_caches_convnext_features(demo_dir):
    """LinearInit's cache holds each backbone's pooled features: (2 flips, N, C), the unflipped row
    equal to ``features`` of the same image."""
    import datasets
    import train
    cfg = build_config(get_args_parser().parse_args(
        ["--dataset", "demo", "--data_dir", demo_dir, "--arch", "convnext_tiny", "--weights", "none",
         "--image_size", "32", "--num_workers", "0", "--bsize", "16", "--train_mode", "linear_init"]))
    split = datasets.load_splits(cfg)["train"]
    torch.manual_seed(0)
    model = models.build_model(cfg.arch, 12, "none").eval()
    cached = train.cache_backbone_features(model, split, cfg, torch.device("cpu"))
    assert cached.shape == (2, len(split), 768)
    first, _ = datasets.ImageDataset(split.images[:1], datasets.image_transform(32))[(0, False)]   # unflipped
    image = train.to_device(torch.as_tensor(first)[None], "cpu")
    with torch.no_grad():
        torch.testing.assert_close(cached[0, 0], model.features(image)[0], rtol=1e-4, atol=1e-5)
