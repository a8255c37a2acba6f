"""Backbone + global average pooling + linear head (optionally BoostLU's boosted CAM), and weight loading.

Backbones come from torchvision's model zoo. Every model offers the same interface:
``features`` (pooled (B, C), the head's input and what LinearInit caches), ``head`` (Linear(C, K)),
``forward`` (logits), and where the backbone has a spatial map, ``feature_map`` ((B, C, h, w)) and
``class_activation_map`` ((B, K, h, w), boosted under BoostLU). ViT-B/16 has no convolutional map
(``has_feature_map`` is False): its pooled feature is the class token, as in torchvision's ViT.
"""
import os
from dataclasses import dataclass

import torch
import torch.nn as nn
import torchvision

from errors import UserError


@dataclass(frozen=True)
class Backbone:
    builder: object        # torchvision constructor
    weights: dict          # --weights name -> torchvision weights enum member
    head_prefix: str       # the keys of torchvision's classifier, which we replace
    spatial: bool          # has a (B, C, h, w) feature map
    patch_size: int = 0    # ViT: --image_size must be a multiple of it


_W = torchvision.models
BACKBONES = {
    "resnet18": Backbone(_W.resnet18, {"imagenet": _W.ResNet18_Weights.IMAGENET1K_V1}, "fc.", True),
    "resnet50": Backbone(_W.resnet50, {"imagenet": _W.ResNet50_Weights.IMAGENET1K_V1,
                                       "imagenet_v2": _W.ResNet50_Weights.IMAGENET1K_V2}, "fc.", True),
    "resnet101": Backbone(_W.resnet101, {"imagenet": _W.ResNet101_Weights.IMAGENET1K_V1,
                                         "imagenet_v2": _W.ResNet101_Weights.IMAGENET1K_V2}, "fc.", True),
    "convnext_tiny": Backbone(_W.convnext_tiny, {"imagenet": _W.ConvNeXt_Tiny_Weights.IMAGENET1K_V1},
                              "classifier.2.", True),
    # torchvision's other ViT weights (SWAG) are trained at 384 / 518 px; only the 224 px V1 is offered.
    "vit_b_16": Backbone(_W.vit_b_16, {"imagenet": _W.ViT_B_16_Weights.IMAGENET1K_V1}, "heads.", False,
                         patch_size=16),
}
ARCHS = tuple(BACKBONES)
WEIGHT_NAMES = ("imagenet", "imagenet_v2")
VIT_PRETRAINED_SIZE = 224      # the position embeddings of torchvision's ViT-B/16 IMAGENET1K_V1


class ViTFeatures(nn.Module):
    """torchvision's ViT up to the final LayerNorm; returns the class token (B, C)."""

    def __init__(self, vit):
        super().__init__()
        vit.heads = nn.Identity()
        self.vit = vit

    def forward(self, images):
        return self.vit(images)


def _backbone_module(arch, net):
    """The part of a torchvision network that our head reads."""
    if arch.startswith("resnet"):
        return nn.Sequential(*list(net.children())[:-2])     # up to layer4: (B, C, h, w)
    if arch == "convnext_tiny":
        # torchvision pools, then normalises (LayerNorm2d on 1x1), then classifies. We normalise each
        # position with the same pretrained LayerNorm, then pool: the head is then linear in the map,
        # which CAMs and BoostLU need.
        return nn.Sequential(net.features, net.classifier[0])
    return ViTFeatures(net)


def _feature_dim(arch, net):
    if arch.startswith("resnet"):
        return net.fc.in_features
    if arch == "convnext_tiny":
        return net.classifier[2].in_features
    return net.hidden_dim


class MultiLabelNet(nn.Module):
    """The paper's classifier: backbone, global average pooling, Linear(C, K).

    With ``boostlu_alpha`` (BoostLU, Kim et al., CVPR 2023, Eq. 3-4): the head acts as a 1x1
    convolution on the feature map, giving the class activation map CAM (B, K, h, w); positive CAM
    values are multiplied by alpha, CAM' = where(CAM > 0, alpha * CAM, CAM); the logits are the
    global average of CAM'. Since a 1x1 convolution then pooling equals pooling then the Linear,
    alpha = 1 is the plain model.
    """

    def __init__(self, arch, num_classes, image_size=224, boostlu_alpha=None):
        super().__init__()
        spec = BACKBONES[arch]
        options = {"image_size": image_size} if spec.patch_size else {}
        net = spec.builder(weights=None, **options)
        self.arch = arch
        self.has_feature_map = spec.spatial
        self.boostlu_alpha = boostlu_alpha
        if boostlu_alpha is not None and not spec.spatial:
            raise UserError(f"--boostlu needs a spatial feature map; {arch} has none (use a ResNet or convnext_tiny)")
        self.backbone = _backbone_module(arch, net)
        self.head = nn.Linear(_feature_dim(arch, net), num_classes)
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
        """Last spatial features (B, C, h, w), for class activation maps."""
        if not self.has_feature_map:
            raise UserError(f"{self.arch} has no spatial feature map: class activation maps (the pointing "
                            f"game) need a ResNet or convnext_tiny")
        return self.backbone(images)

    def features(self, images):
        """Pooled features (B, C), the input of the linear head (what LinearInit caches)."""
        out = self.backbone(images)
        return out.mean(dim=(2, 3)) if self.has_feature_map else out

    def class_activation_map(self, images):
        """(B, K, h, w): the head as a 1x1 convolution on the feature map, boosted under BoostLU."""
        return self._boosted_cam(self.feature_map(images))

    def _boosted_cam(self, feature_map):
        cam = torch.einsum("kc,bchw->bkhw", self.head.weight, feature_map)
        cam = cam + self.head.bias[None, :, None, None]
        if self.boostlu_alpha is None:
            return cam
        return torch.where(cam > 0, self.boostlu_alpha * cam, cam)

    def head_input(self, images):
        """What the head reads: the pooled features (B, C), or under BoostLU the feature map."""
        return self.features(images) if self.boostlu_alpha is None else self.feature_map(images)

    def logits(self, head_input):
        """(B, K) logits from ``head_input`` (split from it so that the head can run in fp32)."""
        if self.boostlu_alpha is None:
            return self.head(head_input)
        return self._boosted_cam(head_input).mean(dim=(2, 3))

    def forward(self, images):
        return self.logits(self.head_input(images))


# The name kept for code that imports it.
MultiLabelResNet = MultiLabelNet


def check_arch(arch, weights, image_size, boostlu=False):
    """Refuse an architecture, weights name or image size that cannot work (config.build_config)."""
    if arch not in BACKBONES:
        raise UserError(f"unknown --arch {arch!r}; expected one of {ARCHS}")
    if boostlu and not BACKBONES[arch].spatial:
        raise UserError(f"--boostlu needs a spatial feature map; {arch} has none (use a ResNet or convnext_tiny)")
    if weights in WEIGHT_NAMES and weights not in BACKBONES[arch].weights:
        raise UserError(f"--weights {weights}: torchvision has no such weights for {arch}; it offers "
                        f"{tuple(BACKBONES[arch].weights)} (imagenet_v2 exists for resnet50 and resnet101)")
    patch = BACKBONES[arch].patch_size
    if patch and image_size % patch:
        raise UserError(f"--image_size {image_size}: {arch} cuts images into {patch} px patches, so the size "
                        f"must be a multiple of {patch} (e.g. 224)")
    if patch and weights in WEIGHT_NAMES and image_size != VIT_PRETRAINED_SIZE:
        raise UserError(f"--image_size {image_size}: the ImageNet weights of {arch} are for {VIT_PRETRAINED_SIZE} px "
                        f"images (their position embeddings); pass --image_size {VIT_PRETRAINED_SIZE}")


def imagenet_weights_path(arch, version="imagenet"):
    """Where torchvision's weights API caches the file of ``arch``'s ``version`` ('imagenet' =
    IMAGENET1K_V1, 'imagenet_v2' = IMAGENET1K_V2)."""
    url = BACKBONES[arch].weights[version].url
    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(url))


def _imagenet_state_dict(arch, version):
    weights = BACKBONES[arch].weights[version]
    path = imagenet_weights_path(arch, version)
    if not os.path.exists(path):
        try:
            return weights.get_state_dict(progress=True)
        except OSError as err:   # URLError and socket errors: no network, blocked host
            raise UserError(
                f"ImageNet weights for {arch} ({weights.name}) are not on this machine and could not be "
                f"downloaded ({err}).\nDownload {weights.url}\nand put it at {path}\n(or pass --weights "
                f"/path/to/{os.path.basename(path)}, or --weights none to train from scratch).") from err
    return torch.load(path, map_location="cpu", weights_only=True)


def _load_backbone(model, state_dict, source):
    """Load a torchvision state_dict of ``model.arch`` (its classifier ignored), or one of our own
    checkpoints (keys 'backbone.*'), into the backbone."""
    if any(key.startswith("backbone.") for key in state_dict):        # one of our own checkpoints
        mapped = {k[len("backbone."):]: v for k, v in state_dict.items() if k.startswith("backbone.")}
    else:
        # Through a torchvision network of the arch: its module names are those of the file.
        spec = BACKBONES[model.arch]
        net = spec.builder(weights=None, **({"image_size": VIT_PRETRAINED_SIZE} if spec.patch_size else {}))
        kept = {k: v for k, v in state_dict.items() if not k.startswith(spec.head_prefix)}
        try:
            missing, unexpected = net.load_state_dict(kept, strict=False)
        except RuntimeError as err:
            raise UserError(f"the weights in {source} do not fit the {model.arch} backbone:\n{err}") from err
        missing = [k for k in missing if not k.startswith(spec.head_prefix)]
        if missing or unexpected:
            raise UserError(f"the weights in {source} do not fit the {model.arch} backbone: missing "
                            f"{missing[:5]}, unexpected {unexpected[:5]}")
        mapped = _backbone_module(model.arch, net).state_dict()
    try:
        model.backbone.load_state_dict(mapped, strict=True)
    except RuntimeError as err:
        raise UserError(f"the weights in {source} do not fit the {model.arch} backbone:\n{err}") from err


def build_model(arch, num_classes, weights="imagenet", image_size=224, boostlu_alpha=None):
    """The classifier with the backbone initialised from ``weights``: 'imagenet' (torchvision's
    IMAGENET1K_V1, the paper's), 'imagenet_v2' (IMAGENET1K_V2, ResNet-50/101), 'none' or a file.
    ``image_size`` matters for ViT only (its position embeddings); ``boostlu_alpha``: BoostLU."""
    check_arch(arch, weights, image_size)
    model = MultiLabelNet(arch, num_classes, image_size, boostlu_alpha)
    if weights in WEIGHT_NAMES:
        _load_backbone(model, _imagenet_state_dict(arch, weights),
                       f"torchvision {arch} {BACKBONES[arch].weights[weights].name}")
    elif weights != "none":
        if not os.path.isfile(weights):
            raise UserError(f"--weights {weights}: no such file (use 'imagenet', 'imagenet_v2', 'none' or a path)")
        state = torch.load(weights, map_location="cpu", weights_only=True)
        _load_backbone(model, state.get("model", state), weights)
    return model


# The fields of a run's config.json that decide the model's shape (config.Config has them all).
MODEL_FIELDS = ("arch", "image_size", "boostlu_alpha")


def build_from_config(config, num_classes, weights="none", source="config.json"):
    """The classifier a run describes, from its config (a ``config.Config`` or the dict of its
    config.json): the one place that turns a run's settings into a model, for training, for
    reloading (predict.py, evaluate.py, the analyses) and for anything else, so that a run never
    reloads as another model (BoostLU's boosted CAM, ViT's image size). A missing field is refused."""
    values = config if isinstance(config, dict) else {f: getattr(config, f) for f in MODEL_FIELDS}
    missing = [f for f in MODEL_FIELDS if f not in values]
    if missing:
        raise UserError(f"{source} has no {', '.join(missing)}: the model it describes is unknown (a run folder "
                        f"written by another version of this code? retrain, or add the field by hand)")
    return build_model(values["arch"], num_classes, weights, values["image_size"], values["boostlu_alpha"])


def load_weights(model, state_dict, source):
    """Load a whole checkpoint's weights; weights that do not fit the model its config describes are
    refused, naming the mismatched keys (never a partial load)."""
    expected, given = model.state_dict(), state_dict
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    shapes = sorted(k for k in set(expected) & set(given) if expected[k].shape != given[k].shape)
    if missing or unexpected or shapes:
        raise UserError(f"the weights in {source} do not fit the {model.arch} model its config.json describes: "
                        f"missing {missing[:5]}, unexpected {unexpected[:5]}, other shapes {shapes[:5]}")
    model.load_state_dict(given)
    return model
