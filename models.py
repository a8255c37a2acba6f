"""ResNet backbone + global average pooling + linear head, and weight loading."""
import os

import torch
import torch.nn as nn
import torchvision

from config import UserError

_TORCHVISION = {
    "resnet18": (torchvision.models.resnet18, torchvision.models.ResNet18_Weights.IMAGENET1K_V1),
    "resnet50": (torchvision.models.resnet50, torchvision.models.ResNet50_Weights.IMAGENET1K_V1),
    "resnet101": (torchvision.models.resnet101, torchvision.models.ResNet101_Weights.IMAGENET1K_V1),
}


class MultiLabelResNet(nn.Module):
    """The paper's classifier: ResNet conv stages, global average pooling, Linear(C, K)."""

    def __init__(self, arch, num_classes):
        super().__init__()
        self.arch = arch
        resnet = _TORCHVISION[arch][0](weights=None)
        self.backbone = nn.Sequential(*list(resnet.children())[:-2])   # up to layer4: (B, C, h, w)
        self.head = nn.Linear(resnet.fc.in_features, num_classes)
        self.backbone_frozen = False

    def freeze_backbone(self, frozen):
        """LinearInit's first phase: no gradients and fixed BatchNorm statistics in the backbone,
        which then stays in eval mode whatever ``train()`` says."""
        self.backbone_frozen = frozen
        self.backbone.requires_grad_(not frozen)
        return self.train(self.training)

    def train(self, mode=True):
        super().train(mode)
        if self.backbone_frozen:
            self.backbone.eval()
        return self

    def feature_map(self, images):
        """Last convolutional features (B, C, h, w), for class activation maps."""
        return self.backbone(images)

    def features(self, images):
        """Pooled features (B, C), the input of the linear head."""
        return self.backbone(images).mean(dim=(2, 3))

    def forward(self, images):
        return self.head(self.features(images))                          # (B, K) logits


def imagenet_weights_path(arch):
    """Where torchvision's weights API caches the IMAGENET1K_V1 file of ``arch``."""
    url = _TORCHVISION[arch][1].url
    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(url))


def _imagenet_state_dict(arch):
    weights = _TORCHVISION[arch][1]
    path = imagenet_weights_path(arch)
    if not os.path.exists(path):
        try:
            return weights.get_state_dict(progress=True)
        except OSError as err:   # URLError and socket errors: no network, blocked host
            raise UserError(
                f"ImageNet weights for {arch} are not on this machine and could not be downloaded "
                f"({err}).\nDownload {weights.url}\nand put it at {path}\n(or pass --weights "
                f"/path/to/{os.path.basename(path)}, or --weights none to train from scratch).") from err
    return torch.load(path, map_location="cpu", weights_only=True)


def _load_backbone(model, state_dict, source):
    """Load a torchvision ResNet state_dict (with or without 'fc.*') into the backbone."""
    # torchvision's keys are 'conv1.weight', 'layer1.0...'; ours are prefixed by the child index.
    names = [name for name, _ in model.backbone.named_children()]
    stages = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
    rename = dict(zip(stages, names))
    if any(key.startswith("backbone.") for key in state_dict):        # one of our own checkpoints
        mapped = {k[len("backbone."):]: v for k, v in state_dict.items() if k.startswith("backbone.")}
    else:
        mapped = {}
        for key, value in state_dict.items():
            stage, _, rest = key.partition(".")
            if stage in rename:
                mapped[f"{rename[stage]}.{rest}"] = value
    try:
        model.backbone.load_state_dict(mapped, strict=True)
    except RuntimeError as err:
        raise UserError(f"the weights in {source} do not fit the {model.arch} backbone:\n{err}") from err


def build_model(arch, num_classes, weights="imagenet"):
    """The classifier with the backbone initialised from ``weights``: 'imagenet', 'none' or a file."""
    if arch not in _TORCHVISION:
        raise UserError(f"unknown arch {arch!r}; expected one of {tuple(_TORCHVISION)}")
    model = MultiLabelResNet(arch, num_classes)
    if weights == "imagenet":
        _load_backbone(model, _imagenet_state_dict(arch), f"torchvision {arch} IMAGENET1K_V1")
    elif weights != "none":
        if not os.path.isfile(weights):
            raise UserError(f"--weights {weights}: no such file (use 'imagenet', 'none' or a path)")
        state = torch.load(weights, map_location="cpu", weights_only=True)
        _load_backbone(model, state.get("model", state), weights)
    return model
