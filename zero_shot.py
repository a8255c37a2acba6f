"""Zero-shot class scores of the training images, computed once, before training, as the pseudo-label
source of VLPL (Xing et al., 2024; mvrl/VLPL) and AEVLP's "damp" crops (Tran et al., 2024;
Fsoft-AIC/AEVLP): python scripts/zero_shot_scores.py --help

For every row of ``formatted_train_images.npy`` (the official train set, which the training code
splits into train/val by row), a softmax over the classes of the image-text cosine similarities
divided by a temperature (the authors' ``temperature_scaled_softmax``):
  - vlpl: the whole image (``global``);
  - damp: the whole image and a grid_size x grid_size grid of tiles of it; per class the max, min
    and mean over the tiles (``crop_max``, ``crop_min``, ``crop_mean``), from which AEVLP's
    ``get_pseudo_labels`` builds its pseudo-labels.
Deviations from the authors, who score on the fly every epoch: no random flip (scores are computed
once per image); the GCN residual and the CLIP model run in fp32 (AEVLP runs them in fp16); VLPL
squashes the original image to 336 px in one resize (the authors resize to 448, then to 336).

Files: ``<data_dir>/zero_shot_<mode>.npz`` (uncompressed float32 arrays of shape (N, K), written from
the finished chunks one chunk at a time and read memory-mapped, so no process holds N x K) and beside
it a JSON record written last (what made the scores, the npz's sha256), so an interrupted or altered
file is never read as complete (``load_scores``).
"""
import datetime
import hashlib
import json
import os
import shutil
import time
import zipfile

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

import datasets
import run_files
from errors import UserError

FORMAT_VERSION = 1
MODES = ("vlpl", "damp")
DEFAULT_MODEL = {"damp": "ViT-B-16", "vlpl": "ViT-L-14-336"}     # the authors' CLIP of each mode
ARRAYS = {"vlpl": ("global",), "damp": ("global", "crop_max", "crop_min", "crop_mean")}
CHUNK_SIZE = 512        # images per resumable chunk of the partial folder
NORMALISATION = ("ImageNet mean/std (datasets.normalize); the authors feed CLIP ImageNet-normalised "
                 "tensors, not CLIP's own mean/std")
# AEVLP's label-relation settings (their config.py): (sparse_topk, reweight_p, T) per dataset.
AEVLP_RELATION = {"pascal": (20, 0.2, 0.3), "coco": (62, 0.2, 0.2), "nuswide": (50, 0.2, 0.2), "cub": (312, 0.2, 0.3)}
OPENAI_URLS = {
    "ViT-B-16": "https://openaipublic.azureedge.net/clip/models/"
                "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/ViT-B-16.pt",
    "ViT-L-14-336": "https://openaipublic.azureedge.net/clip/models/"
                    "3035c92b350959924f9f00213499208652fc7ea050643e8b385c2dac08641f02/ViT-L-14-336px.pt",
}
OPENAI_HF_HUB = {"ViT-B-16": "timm/vit_base_patch16_clip_224.openai",
                 "ViT-L-14-336": "timm/vit_large_patch14_clip_336.openai"}


def score_paths(data_dir, mode):
    """(npz path, json path) of the scores of ``mode`` in ``data_dir``."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    base = os.path.join(data_dir, f"zero_shot_{mode}")
    return base + ".npz", base + ".json"


def record_path(npz_path):
    """The JSON record beside a score file: the same name with .json."""
    return os.path.splitext(npz_path)[0] + ".json"


def crop_boxes(width, height, grid_size):
    """AEVLP's tiles of a width x height image: a grid_size x grid_size grid, row-major (y then x),
    as PIL boxes (left, upper, right, lower). Tiles are (width // g) x (height // g): the remainder
    pixels at the right and bottom edges are in no tile (their datasets.py, offsets zeroed)."""
    tile_w, tile_h = width // grid_size, height // grid_size
    if tile_w == 0 or tile_h == 0:
        raise ValueError(f"a {width}x{height} image has no {grid_size}x{grid_size} grid of non-empty tiles")
    return [(x * tile_w, y * tile_h, min((x + 1) * tile_w, width), min((y + 1) * tile_h, height))
            for y in range(grid_size) for x in range(grid_size)]


def crop_stats(crop_probs):
    """Per-class max, min and mean over the crops: (N, C, K) tensor -> dict of (N, K) tensors."""
    return {"crop_max": crop_probs.amax(1), "crop_min": crop_probs.amin(1), "crop_mean": crop_probs.mean(1)}


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def image_list_sha256(images):
    """sha256 of the image names in order (independent of the numpy string width they were saved with)."""
    return hashlib.sha256("\n".join(map(str, images)).encode()).hexdigest()


def _pixels(image):
    return torch.from_numpy(np.array(image))          # (H, W, 3) uint8, native size


def image_views(image, input_size, grid_size):
    """The whole image and its tiles (none for grid_size 0), each as (S, S, 3) uint8.

    Args:
        image: RGB PIL image.
        input_size: side the views are squash-resized to (the training code's resize,
            ``datasets.image_transform``), or None to keep the native size (the demo scorer).
        grid_size: AEVLP's grid; the tiles are cut from the original image, then resized.
    Returns:
        (whole (S, S, 3), tiles (grid_size ** 2, s, s, 3)); tiles is empty for grid_size 0.
    """
    resize = datasets.image_transform(input_size) if input_size else _pixels
    whole = resize(image)
    if not grid_size:
        return whole, torch.zeros((0,), dtype=torch.uint8)
    return whole, torch.stack([resize(image.crop(box)) for box in crop_boxes(*image.size, grid_size)])


class ScoreImages(Dataset):
    """The views (``image_views``) of each image and its index."""

    def __init__(self, paths, input_size, grid_size):
        self.paths, self.input_size, self.grid_size = paths, input_size, grid_size

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, idx):
        try:
            with Image.open(self.paths[idx]) as image:
                whole, tiles = image_views(image.convert("RGB"), self.input_size, self.grid_size)
        except (OSError, SyntaxError) as err:    # PIL raises these for truncated or corrupt files
            raise UserError(f"cannot read image {self.paths[idx]}: {err}") from err
        return whole, tiles, idx


# ---------------------------------------------------------------- AEVLP's label-relation GCN

def label_relation(relation, sparse_topk, reweight_p, temperature):
    """AEVLP's ``get_relation`` (their models.py), on a (K, K) co-occurrence matrix.

    Keeps each row's ``sparse_topk`` largest entries, zeroes the diagonal, rescales each row to sum
    to ``reweight_p`` and sets the diagonal to 1 - reweight_p: ``gcn_relation``, the GCN's adjacency.
    ``relation`` is a temperature softmax of it over the kept entries (their refinement's; not used
    for the scores). Returns (relation, gcn_relation), (K, K) float32 each.
    """
    relation = torch.as_tensor(relation, dtype=torch.float32).clone()
    num_classes = relation.shape[0]
    if relation.shape != (num_classes, num_classes):
        raise ValueError(f"the relation matrix must be K x K, got {tuple(relation.shape)}")
    _, top = torch.topk(relation, sparse_topk)
    dropped = torch.ones_like(relation, dtype=torch.bool).scatter_(1, top, False)
    relation[dropped] = 0
    diagonal = torch.eye(num_classes, dtype=torch.bool)
    relation[diagonal] = 0
    relation = relation / relation.sum(1, keepdim=True) * reweight_p
    relation[diagonal] = 1 - reweight_p
    gcn_relation = relation.clone()
    relation = torch.softmax(relation / temperature, dim=1)     # = their exp / row sum of exp
    relation[dropped] = 0
    return relation / relation.sum(1, keepdim=True), gcn_relation


def gcn_weights(dims, seed):
    """The GraphConvolution weights (in, out) of the layer sizes ``dims``, drawn as their
    ``reset_parameters`` does: uniform(-1/sqrt(out), 1/sqrt(out)), no bias."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.empty(d_in, d_out).uniform_(-d_out ** -0.5, d_out ** -0.5, generator=generator)
            for d_in, d_out in zip(dims[:-1], dims[1:])]


def gcn_residual(text_features, adjacency, weights):
    """AEVLP's ``gcn_forward``: three graph convolutions (adj @ x @ W) with LeakyReLU(0.2) between.

    Args:
        text_features: (K, D) unnormalised text embeddings.
        adjacency: (K, K) ``gcn_relation``.
        weights: ``gcn_weights((D, 2D, 2D, D), seed)``: their 512 -> 1024 -> 1024 -> 512 for D = 512.
    Returns:
        (K, D), added to the text features before normalising them.
    """
    x = text_features
    for i, weight in enumerate(weights):
        x = adjacency @ (x @ weight)
        if i < len(weights) - 1:
            x = F.leaky_relu(x, 0.2)
    return x


# ---------------------------------------------------------------- scorers

def _is_torchscript(path):
    # A TorchScript archive holds constants.pkl; torch.save's zip files do not.
    return zipfile.is_zipfile(path) and any(n.endswith("/constants.pkl") for n in zipfile.ZipFile(path).namelist())


def _side(image_size):
    """A square input's side from open_clip's int or (H, W) image_size."""
    return int(image_size) if isinstance(image_size, int) else int(image_size[0])


def missing_weights_message(model_name, weights_file):
    name = model_name.replace("-quickgelu", "")
    lines = [f"CLIP weights file {weights_file} not found (weights are never downloaded here)."]
    if name in OPENAI_URLS:
        lines += [f"Download OpenAI's {name} to data/clip/{os.path.basename(OPENAI_URLS[name])}, e.g.",
                  f"  mkdir -p data/clip && curl -L -o data/clip/{os.path.basename(OPENAI_URLS[name])} "
                  f"{OPENAI_URLS[name]}",
                  f"(the default --weights of {name}); or open_clip's copy, "
                  f"https://huggingface.co/{OPENAI_HF_HUB[name]}/resolve/main/open_clip_model.safetensors, "
                  f"with --model {name}-quickgelu (OpenAI's weights need QuickGELU)."]
    else:
        lines.append(f"Pass --weights FILE: a state_dict or safetensors file of open_clip's {model_name}.")
    return "\n".join(lines)


def _load_clip(open_clip, model_name, weights_file, device):
    """An open_clip model in fp32 from a local file; returns (model, how it was loaded)."""
    if _is_torchscript(weights_file):
        # OpenAI's own release (the openaipublic .pt) is a TorchScript archive, which
        # open_clip.create_model's torch.load(weights_only=True) refuses; open_clip.openai builds the
        # model from the archive's weights (architecture and QuickGELU as OpenAI trained it).
        model = open_clip.openai.load_openai_model(weights_file, precision="fp32", device=device)
        config = open_clip.get_model_config(model_name)
        built = (model.text_projection.shape[1], _side(model.visual.image_size))
        if config is None or built != (config["embed_dim"], _side(config["vision_cfg"]["image_size"])):
            raise UserError(f"{weights_file} holds a model of embed dim {built[0]} and input size {built[1]}, "
                            f"which is not open_clip's {model_name}: pass the matching --model")
        return model, "open_clip.openai.load_openai_model (OpenAI TorchScript archive)"
    try:
        model = open_clip.create_model(model_name, pretrained=weights_file, precision="fp32", device=device)
    except RuntimeError as err:      # a state_dict of another architecture: open_clip loads strictly
        raise UserError(f"cannot load {weights_file} into open_clip's {model_name}: {err}") from err
    return model, "open_clip.create_model(pretrained=file)"


class ClipScorer:
    """Zero-shot CLIP class probabilities: softmax over classes of cos(image, text) / temperature.

    The text features are those of ``prompt.format(name)`` per class; with ``relation_file`` (AEVLP's
    data/relation/relation+<dataset>.npy, K x K) they get AEVLP's GCN residual. Their three
    GraphConvolution layers are never trained nor seeded (frozen at a random init), so the residual
    is a random perturbation of the text embeddings; here it is drawn from ``gcn_seed``.
    """

    def __init__(self, model_name, weights_file, class_names, prompt, temperature, device,
                 relation_file=None, gcn_seed=0, model_config=None, sparse_topk=None, reweight_p=0.2):
        import open_clip        # imported here: only CLIP scoring needs it (it takes seconds)
        self.class_names, self.prompt, self.temperature, self.device = list(class_names), prompt, temperature, device
        self.model_name, self.weights_file, self.model_config = model_name, os.path.abspath(weights_file), model_config
        if model_config is not None:
            if not os.path.isfile(model_config):
                raise UserError(f"model config {model_config} not found")
            if os.path.splitext(os.path.basename(model_config))[0] != model_name:
                raise UserError(f"open_clip names a model config by its file name: --model_config {model_config} "
                                f"defines {os.path.splitext(os.path.basename(model_config))[0]!r}, not {model_name!r}")
            open_clip.add_model_config(model_config)
        if not os.path.isfile(weights_file):
            raise UserError(missing_weights_message(model_name, weights_file))
        self.model, self.loader = _load_clip(open_clip, model_name, weights_file, device)
        self.model.eval()
        self.input_size = _side(self.model.visual.image_size)
        self.prompts = [prompt.format(name) for name in self.class_names]
        tokens = open_clip.get_tokenizer(model_name)(self.prompts).to(device)
        with torch.no_grad():
            text = self.model.encode_text(tokens)                                      # (K, D)
        self.relation = None
        if relation_file is not None:
            text = text + self._gcn(text, relation_file, gcn_seed, sparse_topk, reweight_p)
        self.text_features = F.normalize(text, dim=-1)
        self.versions = {"open_clip": open_clip.__version__, "torch": torch.__version__}

    def _gcn(self, text, relation_file, seed, sparse_topk, reweight_p):
        if not os.path.isfile(relation_file):
            raise UserError(f"relation file {relation_file} not found (AEVLP's data/relation/relation+<dataset>.npy)")
        matrix = np.load(relation_file)
        if matrix.shape != (len(self.class_names),) * 2:
            raise UserError(f"{relation_file} has shape {matrix.shape}; expected "
                            f"({len(self.class_names)}, {len(self.class_names)}) for {len(self.class_names)} classes")
        sparse_topk = sparse_topk or len(self.class_names)
        _, adjacency = label_relation(matrix, sparse_topk, reweight_p, temperature=1.0)
        if not torch.isfinite(adjacency).all():
            raise UserError(f"{relation_file}: a row has no positive entry among its top {sparse_topk}")
        dim = text.shape[1]
        weights = gcn_weights((dim, 2 * dim, 2 * dim, dim), seed)
        self.relation = {"file": os.path.abspath(relation_file), "sha256": file_sha256(relation_file),
                         "gcn_seed": seed, "sparse_topk": sparse_topk, "reweight_p": reweight_p,
                         "gcn_dims": [dim, 2 * dim, 2 * dim, dim]}
        return gcn_residual(text, adjacency.to(text.device), [w.to(text.device) for w in weights])

    @torch.no_grad()
    def __call__(self, images):
        """(B, S, S, 3) uint8 -> (B, K) float32 probabilities (rows sum to 1)."""
        image_features = F.normalize(self.model.encode_image(datasets.normalize(images.to(self.device))), dim=-1)
        return torch.softmax(image_features @ self.text_features.T / self.temperature, dim=1)

    def describe(self):
        return {"kind": "clip", "model": self.model_name, "loader": self.loader,
                "model_config": None if self.model_config is None else
                {"file": os.path.abspath(self.model_config), "sha256": file_sha256(self.model_config)},
                "weights_file": self.weights_file, "weights_sha256": file_sha256(self.weights_file),
                "prompt": self.prompt, "prompts": self.prompts, "temperature": self.temperature,
                "input_size": self.input_size, "normalisation": NORMALISATION, "relation": self.relation,
                "open_clip_version": self.versions["open_clip"], "torch_version": self.versions["torch"],
                "precision": "fp32"}


def demo_head_columns(class_names):
    """Columns of the demo backbone's 36-way head (data/demo_backbone.COMBINATIONS) of each demo class."""
    from data import demo, demo_backbone
    columns = []
    for name in class_names:
        if name not in demo.CLASS_NAMES:
            raise UserError(f"the demo scorer knows the demo's classes only ({demo.CLASS_NAMES}), not {name!r}")
        colour, shape = name.split(" ")
        columns.append(demo_backbone.COMBINATIONS.index((shape, colour)))
    return columns


class DemoHeadScorer:
    """The demo's stand-in for CLIP: the demo backbone's 36-way pretraining head (shape x colour),
    restricted to the demo classes' columns, softmax over them (temperature 1). Images at their
    native size (the demo's 64 px; its 32 px tiles are the pretraining canvas size)."""

    input_size = None

    def __init__(self, device, class_names=None, model=None, weights_files=()):
        from data import demo, demo_backbone
        self.class_names = list(demo.CLASS_NAMES if class_names is None else class_names)
        self.columns = demo_head_columns(self.class_names)
        if model is None:
            model, weights_files = demo_backbone.load_demo_head_model()
        self.model, self.weights_files, self.device, self.temperature = model.to(device), weights_files, device, 1.0

    @torch.no_grad()
    def __call__(self, images):
        """(B, H, W, 3) uint8 -> (B, K) float32 probabilities."""
        logits = self.model(datasets.normalize(images.to(self.device)))[:, self.columns]
        return torch.softmax(logits / self.temperature, dim=1)

    def describe(self):
        return {"kind": "demo_head", "model": "stand-in for CLIP: the demo backbone's 36-way pretraining head",
                "weights_files": {os.path.abspath(p): file_sha256(p) for p in self.weights_files},
                "columns": self.columns, "temperature": self.temperature, "input_size": None,
                "normalisation": NORMALISATION, "torch_version": torch.__version__, "precision": "fp32"}


# ---------------------------------------------------------------- computing and reading score files

def _score_chunk(scorer, paths, mode, grid_size, batch_size, num_workers, progress):
    """Arrays of ``mode`` ((n, K) float32 each) for the images ``paths``."""
    loader = DataLoader(ScoreImages(paths, scorer.input_size, grid_size if mode == "damp" else 0),
                        batch_size=batch_size, num_workers=num_workers)
    parts = {name: [] for name in ARRAYS[mode]}
    for whole, tiles, _ in loader:
        parts["global"].append(scorer(whole).cpu())
        if mode == "damp":
            # The tiles in forward passes of batch_size too, so that memory does not grow with grid_size ** 2.
            probs = torch.cat([scorer(part).cpu() for part in tiles.flatten(0, 1).split(batch_size)])
            probs = probs.view(len(whole), tiles.shape[1], -1)                                 # (B, C, K)
            for name, value in crop_stats(probs).items():
                parts[name].append(value)
        progress.update(len(whole))
    return {name: torch.cat(values).numpy().astype(np.float32) for name, values in parts.items()}


def first_difference(record, settings, prefix=""):
    """(dotted key, recorded value, wanted value) of the first setting ``record`` differs in, or None."""
    for key, wanted in settings.items():
        recorded = record.get(key)
        if isinstance(wanted, dict) and isinstance(recorded, dict):
            inner = first_difference(recorded, wanted, f"{prefix}{key}.")
            if inner is not None:
                return inner
        elif recorded != wanted:
            return f"{prefix}{key}", recorded, wanted
    return None


def _save_npz(path, arrays):
    run_files.write_atomic(path, lambda f: np.savez(f, **arrays))


def _save_npz_from_chunks(path, names, chunk_files, shape):
    """An uncompressed .npz (as ``np.savez`` writes) of float32 arrays ``names`` of ``shape``, each the
    rows of the chunk files in order, streamed: one chunk's array in memory at a time, whatever the
    size (OpenImages' train set: 68 GB an array). Returns {name: sha256 of the array's bytes}."""
    digests = {}

    def write(f):
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
            for name in names:
                digest = hashlib.sha256()
                with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                    header = {"descr": np.lib.format.dtype_to_descr(np.dtype("<f4")), "fortran_order": False,
                              "shape": tuple(shape)}
                    np.lib.format.write_array_header_2_0(member, header)
                    for chunk_file in chunk_files:
                        with np.load(chunk_file) as chunk:
                            data = np.ascontiguousarray(chunk[name], dtype="<f4").tobytes()
                        member.write(data)
                        digest.update(data)
                digests[name] = digest.hexdigest()

    run_files.write_atomic(path, write)
    return digests


def open_npz_memmap(path):
    """{name: read-only memmap} of the arrays of an uncompressed .npz, read in place (no copy in
    memory: the file's pages are shared by the processes that read it)."""
    arrays = {}
    with zipfile.ZipFile(path) as archive, open(path, "rb") as f:
        for info in archive.infolist():
            if info.compress_type != zipfile.ZIP_STORED:
                raise UserError(f"{path}: {info.filename} is compressed; recompute the scores")
            f.seek(info.header_offset)
            local = f.read(30)                  # the local file header: its name and extra field follow
            f.seek(info.header_offset + 30 + int.from_bytes(local[26:28], "little")
                   + int.from_bytes(local[28:30], "little"))
            read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                           (2, 0): np.lib.format.read_array_header_2_0}[np.lib.format.read_magic(f)]
            shape, fortran, dtype = read_header(f)
            arrays[info.filename.removesuffix(".npy")] = np.memmap(
                path, dtype=dtype, mode="r", offset=f.tell(), shape=shape, order="F" if fortran else "C")
    return arrays


def _save_json(path, record):
    run_files.write_atomic(path, lambda f: f.write(json.dumps(record, indent=1).encode()))


def _chunk_path(partial_dir, index):
    return os.path.join(partial_dir, f"chunk_{index:05d}.npz")


def _resumed_chunks(partial_dir, settings, resume):
    """The files of the finished chunks of an interrupted run of the same ``settings`` (if ``resume``);
    anything else in ``partial_dir`` is removed."""
    settings_path = os.path.join(partial_dir, "settings.json")
    if resume and os.path.isfile(settings_path):
        with open(settings_path) as f:
            if json.load(f) == settings:
                chunks = []
                while os.path.isfile(_chunk_path(partial_dir, len(chunks))):
                    chunks.append(_chunk_path(partial_dir, len(chunks)))
                return chunks
    if os.path.isdir(partial_dir):
        shutil.rmtree(partial_dir)
    os.makedirs(partial_dir)
    _save_json(settings_path, settings)
    return []


def compute_scores(data_dir, dataset, scorer, mode, grid_size, batch_size, out=None,
                   chunk_size=CHUNK_SIZE, num_workers=0, resume=True):
    """Score every row of ``<data_dir>/formatted_train_images.npy`` and write the npz and its JSON.

    Args:
        dataset: the folder's dataset (``datasets.IMAGE_ROOTS``: where its images lie; recorded).
        scorer: a ``ClipScorer`` or ``DemoHeadScorer``.
        grid_size: damp's tiles per side (unused for vlpl).
        batch_size: images per forward pass.
        out: the npz path; default ``score_paths(data_dir, mode)[0]``.
        resume: finished chunks of ``chunk_size`` images are kept in ``<npz>.partial/``, and a rerun
            with the same settings continues after the last one (or, if the npz is complete, keeps it;
            a complete npz of other settings is refused); False starts afresh.
    Returns:
        (the JSON record, whether scores were computed now).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    npz_path = out or score_paths(data_dir, mode)[0]
    json_path = record_path(npz_path)
    images, labels_obs, _ = datasets.load_formatted(data_dir, "train")
    if labels_obs.shape[1] != len(scorer.class_names):
        raise UserError(f"{data_dir} has {labels_obs.shape[1]} classes but the scorer {len(scorer.class_names)}")
    image_root = os.path.join(data_dir, datasets.IMAGE_ROOTS[dataset])
    paths = datasets.ImagePaths(image_root, images, np.arange(len(images)))
    missing = datasets.find_missing_images(paths)
    if missing.any():
        raise UserError(f"{missing.sum()} of {len(paths)} train images are missing under {image_root}, "
                        f"e.g. {paths[int(np.argmax(missing))]}")
    settings = {"format_version": FORMAT_VERSION, "mode": mode, "dataset": dataset,
                "data_dir": os.path.abspath(data_dir), "class_names": scorer.class_names,
                "num_images": len(images), "image_list_sha256": image_list_sha256(images),
                "scorer": scorer.describe(), "grid_size": grid_size if mode == "damp" else None,
                "chunk_size": chunk_size}
    if resume and os.path.isfile(json_path) and os.path.isfile(npz_path):
        with open(json_path) as f:
            record = json.load(f)
        difference = first_difference(record, settings)
        if difference is None:
            return record, False
        key, theirs, ours = difference
        raise UserError(f"{json_path} was made with other settings ({key}: {theirs!r}, now {ours!r}); "
                        f"pass --force to recompute it, or --out for another file")
    for stale in (json_path, npz_path):     # the record first: the old npz is no longer "complete"
        if os.path.exists(stale):
            os.remove(stale)
    partial_dir = npz_path + ".partial"
    chunks = _resumed_chunks(partial_dir, settings, resume)
    start, begun = len(chunks) * chunk_size, time.time()
    with tqdm(total=len(paths), initial=min(start, len(paths)), unit="img", desc=f"zero-shot {mode}",
              dynamic_ncols=True, disable=None) as progress:
        for first in range(start, len(paths), chunk_size):
            chunk = [paths[i] for i in range(first, min(first + chunk_size, len(paths)))]
            _save_npz(_chunk_path(partial_dir, len(chunks)),
                      _score_chunk(scorer, chunk, mode, grid_size, batch_size, num_workers, progress))
            chunks.append(_chunk_path(partial_dir, len(chunks)))
    seconds = time.time() - begun
    digests = _save_npz_from_chunks(npz_path, ARRAYS[mode], chunks, (len(paths), len(scorer.class_names)))
    record = {**settings, "batch_size": batch_size,
              "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "npz_sha256": file_sha256(npz_path), "arrays_sha256": digests,
              "images_scored": len(paths) - min(start, len(paths)), "resumed_from": min(start, len(paths)),
              "seconds": round(seconds, 2),
              "images_per_second": round((len(paths) - min(start, len(paths))) / max(seconds, 1e-9), 3)}
    _save_json(json_path, record)           # last: marks the npz complete
    shutil.rmtree(partial_dir)
    return record, True


def make_command(dataset, data_dir, mode):
    return f"python scripts/zero_shot_scores.py --dataset {dataset} --data_dir {data_dir} --mode {mode}"


CHECK_CHUNK_VALUES = 16 << 20


def load_scores(data_dir, mode, dataset, class_names, num_images, path=None):
    """The zero-shot scores for training: dict of (num_images, K) float32 arrays, memory-mapped, one
    row per row of formatted_train_images.npy. Refuses (``UserError``) a missing, incomplete, altered
    or mismatched file."""
    npz_path = path or score_paths(data_dir, mode)[0]
    json_path = record_path(npz_path)
    command = make_command(dataset, data_dir, mode)
    if not os.path.isfile(npz_path):
        raise UserError(f"zero-shot scores {npz_path} not found; make them with\n  {command}")
    if not os.path.isfile(json_path):
        raise UserError(f"{npz_path} has no record {json_path} (written last): an incomplete or interrupted "
                        f"scoring; rerun\n  {command}")
    with open(json_path) as f:
        record = json.load(f)
    digest = file_sha256(npz_path)
    if digest != record.get("npz_sha256"):
        raise UserError(f"{npz_path} has sha256 {digest} but {json_path} records {record.get('npz_sha256')}: "
                        f"an incomplete or altered file; recompute with\n  {command} --force")
    class_names = list(class_names)
    for key, wanted in (("format_version", FORMAT_VERSION), ("mode", mode), ("dataset", dataset),
                        ("num_images", num_images)):
        if record.get(key) != wanted:
            raise UserError(f"{json_path}: {key} is {record.get(key)!r} but this run needs {wanted!r}")
    if record["class_names"] != class_names:
        first = next((i for i, (a, b) in enumerate(zip(record["class_names"], class_names)) if a != b),
                     min(len(record["class_names"]), len(class_names)))
        theirs, ours = (names[first] if first < len(names) else "(none)" for names in (record["class_names"], class_names))
        raise UserError(f"{json_path}: class {first} is {theirs!r} but this run's class {first} is {ours!r} "
                        f"({len(record['class_names'])} vs {len(class_names)} classes)")
    images_file = datasets.images_path(data_dir, "train")
    if os.path.isfile(images_file):
        current = image_list_sha256(np.load(images_file))
        if current != record["image_list_sha256"]:
            raise UserError(f"{json_path} scored an image list of sha256 {record['image_list_sha256']} but "
                            f"{images_file} has {current}: recompute with\n  {command} --force")
    stored = open_npz_memmap(npz_path)
    arrays = {}
    for name in ARRAYS[mode]:
        if name not in stored:
            raise UserError(f"{npz_path} has no array {name!r} (it has {sorted(stored)})")
        array = stored[name]
        if array.shape != (num_images, len(class_names)) or array.dtype != np.float32:
            raise UserError(f"{npz_path}: {name} is {array.dtype} of shape {array.shape} but this run needs float32 "
                            f"({num_images}, {len(class_names)})")
        step = max(1, CHECK_CHUNK_VALUES // max(len(class_names), 1))
        for start in range(0, num_images, step):         # in row chunks: memory stays at one chunk
            bad = ~np.isfinite(array[start:start + step])
            if bad.any():
                row, col = np.argwhere(bad)[0]
                raise UserError(f"{npz_path}: {name} has {int(bad.sum())} non-finite values in rows {start}.., "
                                f"e.g. {array[start + row, col]} at [{start + row}, {col}]; expected finite "
                                f"probabilities")
        arrays[name] = array
    return arrays
