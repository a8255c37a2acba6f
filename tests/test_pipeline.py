"""The input pipeline: uint8 images from the workers, normalised on the device, equal to upstream's
torchvision transform up to the rounding of the resize."""
import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from torch.utils.data import DataLoader
from torchvision import transforms

import datasets
from train import to_device

SIZE = 48
# Our resize (torch's uint8 kernel) and PIL's compute the same antialiased bilinear filter but may
# round a pixel differently, by one of 255 levels: 1 / (255 * 0.224), the smallest ImageNet std,
# in normalised units (plus float slack).
TOLERANCE = 1 / (255 * 0.224) + 1e-5


def upstream_transform(image, flip):
    """Upstream's pipeline, restated: Resize, RandomHorizontalFlip (here forced), ToTensor, Normalize."""
    steps = [transforms.Resize((SIZE, SIZE))] + [transforms.RandomHorizontalFlip(p=1.0)] * flip
    steps += [transforms.ToTensor(), transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])]
    return transforms.Compose(steps)(image)


def natural_image(rng, width, height):
    """Smooth gradients, noise and a few shapes: JPEG-compressible like a photo, not like noise."""
    y, x = np.mgrid[:height, :width] / max(width, height)
    pixels = np.stack([128 + 90 * np.sin(6 * x * rng.rand() + 6 * y * rng.rand() + c) for c in range(3)], -1)
    image = Image.fromarray((pixels + rng.normal(0, 12, pixels.shape)).clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(3):
        x0, y0 = rng.randint(0, width), rng.randint(0, height)
        draw.ellipse([x0, y0, x0 + width // 3, y0 + height // 4], fill=tuple(rng.randint(0, 256, 3).tolist()))
    return image


# (width, height, file suffix): larger, smaller and as large as SIZE; landscape and portrait; RGB,
# grey and palette images, which ImageDataset converts to RGB first.
IMAGES = [(160, 120, "jpg"), (90, 130, "jpg"), (30, 20, "png"), (SIZE, SIZE, "png"), (200, 150, "grey.jpg"),
          (70, 50, "palette.png")]
FLIPS = [False, True, True, False, True, False]


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.RandomState(0)
    paths = []
    for i, (width, height, suffix) in enumerate(IMAGES):
        image = natural_image(rng, width, height)
        image = {"grey.jpg": image.convert("L"), "palette.png": image.quantize(64)}.get(suffix, image)
        paths.append(str(folder / f"{i}.{suffix}"))
        image.save(paths[-1], quality=90)        # quality: JPEG only
    return paths


def test_device_normalised_batch_equals_upstream_transform(image_files):
    loader = DataLoader(datasets.ImageDataset(image_files, datasets.image_transform(SIZE)),
                        batch_size=len(IMAGES), sampler=list(zip(range(len(IMAGES)), FLIPS)))
    pixels, idx = next(iter(loader))
    assert pixels.shape == (len(IMAGES), SIZE, SIZE, 3) and pixels.dtype == torch.uint8
    assert idx.tolist() == list(range(len(IMAGES)))
    ours = to_device(pixels, "cpu")

    expected = []
    for path, flip in zip(image_files, FLIPS):
        with Image.open(path) as image:
            expected.append(upstream_transform(image.convert("RGB"), flip))
    expected = torch.stack(expected)
    assert ours.shape == expected.shape and ours.dtype == torch.float32
    torch.testing.assert_close(ours, expected, rtol=0, atol=TOLERANCE)
    # A rounding difference, not a different filter: nearly all values agree exactly; and where
    # there is nothing to resize, what remains (ToTensor, Normalize) is the same arithmetic.
    assert (ours == expected).float().mean() > 0.9
    assert torch.equal(ours[IMAGES.index((SIZE, SIZE, "png"))], expected[IMAGES.index((SIZE, SIZE, "png"))])


def test_normalize_layouts_agree_and_reject_floats():
    pixels = torch.randint(0, 256, (2, 5, 7, 3), dtype=torch.uint8)
    channels_last = datasets.normalize(pixels, torch.channels_last)
    assert channels_last.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(channels_last, datasets.normalize(pixels))
    with pytest.raises(ValueError, match="uint8"):
        datasets.normalize(pixels.float())


def test_to_device_leaves_cached_features_alone():
    features = torch.randn(4, 8)                   # LinearInit's cached pooled features
    assert torch.equal(to_device(features, "cpu"), features)
