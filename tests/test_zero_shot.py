"""zero_shot.py and scripts/zero_shot_scores.py: AEVLP's tiles and crop statistics by hand, the CLIP
scorer end to end on a tiny random open_clip model (against a softmax computed here), resuming after
an interruption, the refusals of load_scores, and the demo scorer's head columns."""
import json
import os
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import zero_shot
from data import demo, demo_backbone
from errors import UserError

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts"))
import zero_shot_scores  # noqa: E402  (scripts/ is not a package)

MODEL = "tiny-clip-test"
CLASSES = ["cat", "dog", "bird"]
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
TINY_CONFIG = {"embed_dim": 32,
               "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
               "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


def test_crop_boxes_by_hand():
    # 10 x 7 in a 3 x 3 grid: tiles of 3 x 2 px; column 9 and row 6 are in no tile.
    assert zero_shot.crop_boxes(10, 7, 3) == [(0, 0, 3, 2), (3, 0, 6, 2), (6, 0, 9, 2),
                                              (0, 2, 3, 4), (3, 2, 6, 4), (6, 2, 9, 4),
                                              (0, 4, 3, 6), (3, 4, 6, 6), (6, 4, 9, 6)]
    with pytest.raises(ValueError):
        zero_shot.crop_boxes(2, 7, 3)


def test_crop_stats_by_hand():
    probs = torch.tensor([[[0.1, 0.9], [0.5, 0.5], [0.3, 0.7]]])         # (1 image, 3 crops, 2 classes)
    stats = zero_shot.crop_stats(probs)
    assert torch.allclose(stats["crop_max"], torch.tensor([[0.5, 0.9]]))
    assert torch.allclose(stats["crop_min"], torch.tensor([[0.1, 0.5]]))
    assert torch.allclose(stats["crop_mean"], torch.tensor([[0.3, 0.7]]))


def test_label_relation_by_hand():
    # Row 0 keeps its top 2 entries (itself and class 2), then the diagonal is zeroed and the row
    # rescaled to reweight_p, the diagonal set to 1 - reweight_p.
    relation = np.array([[5.0, 1.0, 3.0], [2.0, 5.0, 2.0], [1.0, 3.0, 5.0]])
    _, gcn = zero_shot.label_relation(relation, sparse_topk=2, reweight_p=0.2, temperature=0.3)
    expected = torch.tensor([[0.8, 0.0, 0.2], [0.2, 0.8, 0.0], [0.0, 0.2, 0.8]])
    # row 1's top 2 are 5 and one of the tied 2s: torch.topk picks one, either is their behaviour
    assert torch.allclose(gcn[[0, 2]], expected[[0, 2]])
    assert torch.allclose(gcn[1].sum(), torch.tensor(1.0)) and gcn[1, 1] == pytest.approx(0.8)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny random open_clip model (its config file and state_dict) and a formatted dataset of
    6 non-square generated images, 3 classes."""
    import open_clip
    root = tmp_path_factory.mktemp("zs")
    config = root / f"{MODEL}.json"
    config.write_text(json.dumps(TINY_CONFIG))
    open_clip.add_model_config(str(config))
    torch.manual_seed(0)
    model = open_clip.create_model(MODEL)
    weights = root / "tiny.pt"
    torch.save(model.state_dict(), weights)
    data = root / "data"
    data.mkdir()
    rng = np.random.RandomState(0)
    names = [f"img{i}.png" for i in range(6)]
    for name in names:
        Image.fromarray(rng.randint(0, 256, size=(40, 48, 3)).astype(np.uint8)).save(data / name)
    np.save(data / "formatted_train_images.npy", np.array(names))
    obs = np.zeros((6, 3), np.float32)
    obs[np.arange(6), np.arange(6) % 3] = 1
    np.save(data / "formatted_train_labels_obs.npy", obs)
    (data / "class_names.json").write_text(json.dumps(CLASSES))
    return {"config": str(config), "weights": str(weights), "data": str(data), "model": model.eval()}


def cli(tiny, *extra):
    return ["--dataset", "custom", "--data_dir", tiny["data"], "--model_config", tiny["config"],
            "--weights", tiny["weights"], "--batch_size", "4", "--chunk_size", "4", "--num_workers", "0",
            "--device", "cpu", *extra]


def by_hand(tiny, image_path, prompt, temperature):
    """softmax(cos(image, prompts) / T) from the model's encoders, with PIL's squash resize + ImageNet norm."""
    import open_clip
    with Image.open(image_path) as image:
        pixels = np.asarray(image.convert("RGB").resize((32, 32), Image.BILINEAR), np.float32) / 255
    x = (torch.from_numpy(pixels).permute(2, 0, 1) - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) \
        / torch.tensor(IMAGENET_STD).view(3, 1, 1)
    with torch.no_grad():
        image_features = tiny["model"].encode_image(x[None], normalize=True)
        text = tiny["model"].encode_text(open_clip.get_tokenizer(MODEL)([prompt.format(c) for c in CLASSES]),
                                         normalize=True)
    return torch.softmax(image_features @ text.T / temperature, dim=1)[0]


def test_clip_scores_end_to_end(tiny):
    for mode in zero_shot.MODES:
        assert zero_shot_scores.main(cli(tiny, "--mode", mode, "--temperature", "0.5", "--grid_size", "2")) == 0
        scores = zero_shot.load_scores(tiny["data"], mode, "custom", CLASSES, 6)
        assert set(scores) == set(zero_shot.ARRAYS[mode])
        assert all(a.shape == (6, 3) and a.dtype == np.float32 for a in scores.values())
        assert np.allclose(scores["global"].sum(1), 1, atol=1e-5)
        prompt = zero_shot_scores.DEFAULT_PROMPT[mode]
        # PIL's resize and the training code's uint8 resize round differently (by a level of 255): 1.3e-5
        # here; CLIP's own mean/std instead of ImageNet's would be 5e-4 off
        assert np.allclose(scores["global"][1], by_hand(tiny, os.path.join(tiny["data"], "img1.png"), prompt, 0.5),
                           rtol=0, atol=1e-4)
    assert (scores["crop_max"] >= scores["crop_mean"] - 1e-7).all()
    assert (scores["crop_mean"] >= scores["crop_min"] - 1e-7).all()
    assert not np.allclose(scores["crop_max"], scores["crop_min"])
    record = json.load(open(zero_shot.score_paths(tiny["data"], "damp")[1]))
    assert record["grid_size"] == 2 and record["scorer"]["prompts"] == [f"a photo of a {c}." for c in CLASSES]
    assert record["scorer"]["input_size"] == 32 and not os.path.exists(zero_shot.score_paths(tiny["data"], "damp")[0]
                                                                        + ".partial")


def test_the_gcn_residual_perturbs_the_scores(tiny, tmp_path):
    relation = tmp_path / "relation.npy"
    np.save(relation, np.array([[9.0, 3.0, 1.0], [2.0, 9.0, 4.0], [1.0, 1.0, 9.0]]))
    out = [str(tmp_path / f"{name}.npz") for name in ("plain", "gcn", "gcn_again")]
    for path, extra in zip(out, ([], ["--relation", str(relation)], ["--relation", str(relation)])):
        assert zero_shot_scores.main(cli(tiny, "--mode", "vlpl", "--out", path, *extra)) == 0
    plain, gcn, again = (np.load(p)["global"] for p in out)
    assert not np.allclose(plain, gcn) and np.array_equal(gcn, again)      # seeded: reproducible
    assert json.load(open(out[1].replace(".npz", ".json")))["scorer"]["relation"]["gcn_seed"] == 0


def save_torchscript_weights(state_dict, path):
    """A TorchScript archive whose state_dict is ``state_dict`` (the parameters of a scripted module tree)."""
    root = torch.nn.Module()
    for key, value in state_dict.items():
        *parents, leaf = key.split(".")
        node = root
        for name in parents:
            if not hasattr(node, name):
                node.add_module(name, torch.nn.Module())
            node = getattr(node, name)
        node.register_parameter(leaf, torch.nn.Parameter(value.clone(), requires_grad=False))
    torch.jit.save(torch.jit.script(root), path)


def test_an_openai_torchscript_file_is_loaded(tiny, tmp_path):
    """OpenAI's .pt files are TorchScript archives, which open_clip.create_model's torch.load refuses:
    the scorer builds the model from the archive's weights (open_clip.openai) instead. A tiny model in
    OpenAI's layout (64 wide: OpenAI's files imply 64-wide attention heads), traced as open_clip does."""
    import open_clip
    config = {**TINY_CONFIG, "quick_gelu": True,
              "vision_cfg": {**TINY_CONFIG["vision_cfg"], "width": 64, "head_width": 64},
              "text_cfg": {**TINY_CONFIG["text_cfg"], "width": 64, "heads": 1}}
    config_file = tmp_path / "tiny-clip-jit.json"
    config_file.write_text(json.dumps(config))
    open_clip.add_model_config(str(config_file))
    torch.manual_seed(1)
    model = open_clip.create_model("tiny-clip-jit").eval()
    jit_file = str(tmp_path / "tiny-jit.pt")
    save_torchscript_weights(model.state_dict(), jit_file)
    scorer = zero_shot.ClipScorer("tiny-clip-jit", jit_file, CLASSES, "{}", 1.0, "cpu", model_config=str(config_file))
    assert scorer.loader.startswith("open_clip.openai") and scorer.input_size == 32
    image = torch.randint(0, 256, (1, 32, 32, 3), dtype=torch.uint8)
    with torch.no_grad():
        x = ((image.permute(0, 3, 1, 2) / 255 - torch.tensor(IMAGENET_MEAN).view(3, 1, 1))
             / torch.tensor(IMAGENET_STD).view(3, 1, 1))
        expected = torch.softmax(model.encode_image(x, normalize=True) @ model.encode_text(
            open_clip.get_tokenizer("tiny-clip-jit")(CLASSES), normalize=True).T, dim=1)
    # open_clip.openai rounds the weights through fp16, as OpenAI's files are stored
    assert torch.allclose(scorer(image), expected, atol=1e-2)


def test_missing_weights_file_exits_2_and_says_what_to_download(tiny, tmp_path, capsys):
    missing = str(tmp_path / "ViT-B-16.pt")
    assert zero_shot_scores.main(["--dataset", "custom", "--data_dir", tiny["data"], "--mode", "damp",
                                  "--weights", missing, "--out", str(tmp_path / "s.npz")]) == 2
    err = capsys.readouterr().err
    assert missing in err and zero_shot.OPENAI_URLS["ViT-B-16"] in err and "data/clip/ViT-B-16.pt" in err


def test_a_complete_file_of_other_settings_is_refused_without_force(tiny, tmp_path, capsys):
    out = str(tmp_path / "s.npz")
    assert zero_shot_scores.main(cli(tiny, "--mode", "vlpl", "--out", out)) == 0
    assert zero_shot_scores.main(cli(tiny, "--mode", "vlpl", "--out", out)) == 0
    assert "is complete" in capsys.readouterr().out
    assert zero_shot_scores.main(cli(tiny, "--mode", "vlpl", "--out", out, "--temperature", "0.2")) == 2
    assert "scorer.temperature: 0.01, now 0.2" in capsys.readouterr().err
    assert zero_shot_scores.main(cli(tiny, "--mode", "vlpl", "--out", out, "--temperature", "0.2", "--force")) == 0


def test_an_interrupted_run_leaves_nothing_readable_and_resumes(tiny, tmp_path, monkeypatch):
    out = str(tmp_path / "scores.npz")
    real_call, calls = zero_shot.ClipScorer.__call__, []

    def failing(self, images):
        calls.append(len(images))
        if len(calls) == 2:                    # the second chunk (4 images per chunk, one batch each)
            raise RuntimeError("interrupted")
        return real_call(self, images)

    monkeypatch.setattr(zero_shot.ClipScorer, "__call__", failing)
    with pytest.raises(RuntimeError, match="interrupted"):
        zero_shot_scores.main(cli(tiny, "--mode", "vlpl", "--out", out))
    assert os.path.isfile(os.path.join(out + ".partial", "chunk_00000.npz"))
    with pytest.raises(UserError, match="not found"):
        zero_shot.load_scores(tiny["data"], "vlpl", "custom", CLASSES, 6, path=out)
    calls.clear()
    assert zero_shot_scores.main(cli(tiny, "--mode", "vlpl", "--out", out)) == 0
    assert calls == [2]                        # only the last 2 images were scored again
    assert json.load(open(out.replace(".npz", ".json")))["resumed_from"] == 4
    monkeypatch.setattr(zero_shot.ClipScorer, "__call__", real_call)
    clean = str(tmp_path / "clean.npz")
    assert zero_shot_scores.main(cli(tiny, "--mode", "vlpl", "--out", clean)) == 0
    resumed = zero_shot.load_scores(tiny["data"], "vlpl", "custom", CLASSES, 6, path=out)
    np.testing.assert_allclose(resumed["global"], np.load(clean)["global"], rtol=0, atol=1e-6)


def _rewrite(npz, arrays, fix_hash):
    with open(npz, "wb") as f:
        np.savez(f, **arrays)
    if fix_hash:
        record_file = zero_shot.record_path(npz)
        record = json.load(open(record_file))
        record["npz_sha256"] = zero_shot.file_sha256(npz)
        json.dump(record, open(record_file, "w"))


def test_bad_score_files_are_refused_naming_both_values(tiny, tmp_path):
    npz = str(tmp_path / "s.npz")
    assert zero_shot_scores.main(cli(tiny, "--mode", "vlpl", "--out", npz)) == 0
    good = np.load(npz)["global"]

    def refused(*match, mode="vlpl", dataset="custom", classes=CLASSES, num_images=6):
        with pytest.raises(UserError) as err:
            zero_shot.load_scores(tiny["data"], mode, dataset, classes, num_images, path=npz)
        for text in match:
            assert text in str(err.value), (text, str(err.value))

    refused("'custom'", "'coco'", dataset="coco")
    refused("'dog'", "'wolf'", classes=["cat", "wolf", "bird"])
    refused("6", "5", "num_images", num_images=5)
    refused("'vlpl'", "'damp'", mode="damp")
    _rewrite(npz, {"global": good[:, :2]}, fix_hash=True)
    refused("(6, 2)", "(6, 3)")
    nan = good.copy()
    nan[3, 1] = np.nan
    _rewrite(npz, {"global": nan}, fix_hash=True)
    refused("non-finite", "[3, 1]")
    _rewrite(npz, {"global": good * 0.5}, fix_hash=False)
    recorded = json.load(open(zero_shot.record_path(npz)))["npz_sha256"]
    refused(recorded, zero_shot.file_sha256(npz), "altered")
    os.remove(zero_shot.record_path(npz))
    refused("incomplete")


def test_demo_head_columns_by_hand():
    # COMBINATIONS is colour-major (colour i, shape j at 3 i + j); demo class i is colour i with shape i % 3.
    assert zero_shot.demo_head_columns(demo.CLASS_NAMES) == [3 * i + i % 3 for i in range(12)]
    assert [demo_backbone.COMBINATIONS[c] for c in zero_shot.demo_head_columns(["green square", "pink triangle"])] \
        == [("square", "green"), ("triangle", "pink")]
    with pytest.raises(UserError, match="red square"):
        zero_shot.demo_head_columns(["red circle", "red square"])      # a combination, not a demo class


class KnownLogits(torch.nn.Module):
    """A stand-in head: logits 0.1 * column for every image, whatever its pixels."""

    def forward(self, x):
        return 0.1 * torch.arange(36.0).expand(len(x), 36)


def test_demo_scorer_on_the_demo_dataset(demo_dir, tmp_path):
    scorer = zero_shot.DemoHeadScorer("cpu", model=KnownLogits())
    expected = torch.softmax(0.1 * torch.tensor([3.0 * i + i % 3 for i in range(12)]), dim=0)
    out = str(tmp_path / "demo.npz")
    zero_shot.compute_scores(demo_dir, "demo", scorer, "damp", grid_size=2, batch_size=32, out=out, chunk_size=64)
    assert not zero_shot.compute_scores(demo_dir, "demo", scorer, "damp", 2, 32, out=out, chunk_size=64)[1]   # kept
    scores = zero_shot.load_scores(demo_dir, "damp", "demo", demo.CLASS_NAMES, 96, path=out)
    for name in zero_shot.ARRAYS["damp"]:
        np.testing.assert_allclose(scores[name], expected.expand(96, 12).numpy(), rtol=1e-6)


def fake_pretrain(spec):
    """demo_backbone.pretrain's output without the training (seconds saved): a seeded ResNet-18's init."""
    import torchvision
    torch.manual_seed(spec["train_seed"])
    state = torchvision.models.resnet18(num_classes=36).state_dict()
    return ({k: v for k, v in state.items() if not k.startswith("fc.")},
            {k: v for k, v in state.items() if k.startswith("fc.")}, 0.5)


def test_the_demo_backbone_keeps_its_head_and_a_cache_without_it_is_rebuilt(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(demo_backbone, "pretrain", fake_pretrain)
    spec = demo_backbone.SPEC
    path = demo_backbone.ensure_demo_backbone(str(tmp_path), spec)
    model, files = demo_backbone.load_demo_head_model(str(tmp_path), spec)
    assert files == (path, os.path.join(str(tmp_path), demo_backbone.HEAD_FILE))
    assert torch.equal(model.fc.weight, fake_pretrain(spec)[1]["fc.weight"])
    assert not any(k.startswith("fc.") for k in torch.load(path, weights_only=True))   # the backbone file as before
    capsys.readouterr()
    os.remove(files[1])                                   # a cache from before the head was kept
    demo_backbone.ensure_demo_backbone(str(tmp_path), spec)
    assert "Pretraining" in capsys.readouterr().out and os.path.isfile(files[1])
