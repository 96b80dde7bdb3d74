"""The standard two-class dataset layout every preset uses, and the toy world's builder.

Layout: ``<data_root>/<dataset>/{train,test}/{background,target}/<name>.png`` plus
``<data_root>/<dataset>/manifest.csv`` with at least the columns ``file`` (relative to the
dataset folder), ``class`` (background / target), ``split`` (train / test) and ``identity``.
Toy datasets add every generating factor, so each test image's counterfactual can be re-rendered.
"""
from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from tqdm import tqdm

from .io import save_dataframe, write_text
from .images import read_rgb
from .plotting import from_uint8
from .toy import ATTRIBUTES, RENDERER_VERSION, ToyFactors, render, sample_factors

CLASSES = ("background", "target")
SPLITS = ("train", "test")
MANIFEST_COLUMNS = ("file", "class", "split", "identity")


def toy_dataset_name(attribute: str, size: int, seed: int, n_train_per_class: int, n_test_per_class: int) -> str:
    """Folder name of a toy dataset: every setting that changes its images is in it, so scales coexist."""
    return f"toy-{attribute}-{size}px-seed{seed}-{n_train_per_class}x{n_test_per_class}"


def build_toy_dataset(data_root: str | Path, attribute: str, n_train_per_class: int, n_test_per_class: int,
                      size: int = 32, seed: int = 0, progress: bool = True) -> tuple[pd.DataFrame, Path]:
    """Write (or reuse, when its recorded config matches) a balanced toy dataset for ``attribute``.

    Identity i is background (attribute 0) for even i and target (attribute 1) for odd i; the
    other attributes are independent fair coins. Train identities are 0 … 2·n_train − 1 and test
    identities follow them, so the two splits never share an identity. The folder is built in a
    temporary directory and renamed into place: an interrupted build leaves nothing behind.
    Returns (manifest, dataset folder).
    """
    config = dict(kind="toy", attribute=attribute, n_train_per_class=n_train_per_class,
                  n_test_per_class=n_test_per_class, size=size, seed=seed, renderer=RENDERER_VERSION)
    root = Path(data_root) / toy_dataset_name(attribute, size, seed, n_train_per_class, n_test_per_class)
    n_train = 2 * n_train_per_class
    plan = [("train", seed, i) for i in range(n_train)] + [("test", seed, n_train + i) for i in range(2 * n_test_per_class)]
    return _toy_dataset(root, config, plan, attribute, size, progress)


def build_toy_sealed(data_root: str | Path, attribute: str, n_train_per_class: int, n_test_per_class: int,
                     size: int, seed: int, test_seed: int, progress: bool = True) -> tuple[pd.DataFrame, Path]:
    """A sealed test population of ``n_test_per_class`` images per class, beside the dataset of
    ``build_toy_dataset``: identities numbered after its training and test ones and drawn from
    ``test_seed``, so they share no identity (and no factor draw) with its splits, and no choice
    made on those splits has seen them. Split ``test``, files ``sealed<test_seed>/<class>/<i>.png``
    (the seed in the name keeps inversion-cache keys apart)."""
    config = dict(kind="toy-sealed", attribute=attribute, n_test_per_class=n_test_per_class, size=size,
                  test_seed=test_seed, first_identity=2 * (n_train_per_class + n_test_per_class),
                  renderer=RENDERER_VERSION)
    root = Path(data_root) / (toy_dataset_name(attribute, size, seed, n_train_per_class, n_test_per_class)
                              + f"-sealed{test_seed}")
    first = config["first_identity"]
    plan = [("test", test_seed, first + i) for i in range(2 * n_test_per_class)]
    return _toy_dataset(root, config, plan, attribute, size, progress, folder=f"sealed{test_seed}")


def _toy_dataset(root: Path, config: dict, plan: list[tuple[str, int, int]], attribute: str, size: int,
                 progress: bool, folder: str | None = None) -> tuple[pd.DataFrame, Path]:
    """Render ``plan`` — (split, seed, identity): identity i is background for even i, target for
    odd — into ``root`` (under ``folder`` instead of the split's name), or reuse it when its recorded
    config matches."""
    if attribute not in ATTRIBUTES:
        raise ValueError(f"unknown toy attribute {attribute!r}; known: {', '.join(ATTRIBUTES)}")
    if (root / "dataset.json").exists():
        recorded = json.loads((root / "dataset.json").read_text())
        if recorded == config:
            return read_manifest(root), root
        if {**recorded, "renderer": RENDERER_VERSION} == config:
            raise FileExistsError(f"{root} was rendered by toy renderer {recorded.get('renderer', 1)}, this code draws "
                                  f"version {RENDERER_VERSION} (hsep_utils.toy.RENDERER_VERSION): delete {root} and "
                                  f"run again to rebuild it")
        raise FileExistsError(f"{root} holds a toy dataset built with {recorded}, not {config}: "
                              f"delete {root} or choose another data_root")

    rows = []
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        for split, seed, i in tqdm(plan, desc=f"render {root.name}", disable=not progress, mininterval=5):
            cls = CLASSES[i % 2]
            f = sample_factors(seed, i, **{attribute: i % 2})
            rel = f"{folder or split}/{cls}/{i:06d}.png"
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(render(f, size)).save(tmp / rel)
            rows.append({"file": rel, "class": cls, "split": split, **f.as_dict()})
        manifest = pd.DataFrame(rows)
        save_dataframe(manifest, tmp / "manifest.csv")
        write_text(tmp / "dataset.json", json.dumps(config, indent=2))
        try:
            tmp.rename(root)
        except OSError:  # another process finished the same dataset first: use theirs if it matches
            if not (root / "dataset.json").exists() or json.loads((root / "dataset.json").read_text()) != config:
                raise
            return read_manifest(root), root
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return manifest, root


def read_manifest(dataset_dir: str | Path) -> pd.DataFrame:
    """Read and check ``manifest.csv``: required columns, known classes and splits, files present."""
    dataset_dir = Path(dataset_dir)
    path = dataset_dir / "manifest.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: build the dataset first (notebook 00 or data_prep/)")
    m = pd.read_csv(path)
    missing = [c for c in MANIFEST_COLUMNS if c not in m.columns]
    if missing:
        raise ValueError(f"{path} lacks columns {missing}; it needs {list(MANIFEST_COLUMNS)}")
    for col, allowed in (("class", CLASSES), ("split", SPLITS)):
        bad = sorted(set(m[col]) - set(allowed))
        if bad:
            raise ValueError(f"{path}: column {col!r} has values {bad}; allowed: {list(allowed)}")
    absent = [f for f in m["file"] if not (dataset_dir / f).exists()]
    if absent:
        raise FileNotFoundError(f"{path} lists {len(absent)} files that do not exist, e.g. {dataset_dir / absent[0]}: "
                                f"rebuild the dataset")
    return m


def split_counts(manifest: pd.DataFrame) -> pd.DataFrame:
    """Images per (split, class), plus the number of distinct identities."""
    g = manifest.groupby(["split", "class"])
    return g.size().rename("images").to_frame().join(g["identity"].nunique().rename("identities")).reset_index()


def square_resize(img: Image.Image, size: int) -> Image.Image:
    """The centred square crop of ``img``, resized to ``size`` × ``size`` (Lanczos)."""
    w, h = img.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    return img.crop((left, top, left + s, top + s)).resize((size, size), Image.LANCZOS)


def load_images(dataset_dir: str | Path, files, size: int | None = None) -> torch.Tensor:
    """Images as one float tensor (N, 3, H, W) in [-1, 1], read now (``splits`` reads them lazily,
    ``images.Images``); resized to ``size`` when given (said once, in one warning, with the number
    of images concerned)."""
    fix = f"rebuild the dataset (delete {Path(dataset_dir)} and run notebook 00 again)"
    out, resized = [], []
    for f in files:
        arr, note = read_rgb(Path(dataset_dir) / f, size, fix)
        out.append(arr)
        resized += [note] if note else []
    if resized:
        warnings.warn(f"{len(resized)} of {len(out)} images in {dataset_dir} are not {size}×{size} px (e.g. "
                      f"{resized[0]}): resized (bicubic)", stacklevel=2)
    return from_uint8(np.stack(out))


def save_split(manifest: pd.DataFrame, out_dir: str | Path) -> pd.DataFrame:
    """Write ``split_manifest.csv`` (file, class, split, identity) and ``split_counts.csv``; return the counts."""
    counts = split_counts(manifest)
    save_dataframe(manifest[list(MANIFEST_COLUMNS)], Path(out_dir) / "split_manifest.csv")
    save_dataframe(counts, Path(out_dir) / "split_counts.csv")
    return counts


def toy_counterfactuals(rows: pd.DataFrame, attribute: str, size: int) -> torch.Tensor:
    """The exact counterfactual of each toy manifest row (same identity, ``attribute`` flipped, its
    other factors kept), in [-1, 1]."""
    return toy_counterfactual_set(rows, attribute, size)[0]


def toy_donor_counterfactuals(rows: pd.DataFrame, donor_rows: pd.DataFrame, attribute: str, size: int) -> torch.Tensor:
    """(N, 3, H, W) in [-1, 1]: row i's counterfactual with donor row i's own salient sub-factors
    (``ToyFactors.with_salient_of``): what adding by swap should give, if S carries them."""
    if len(rows) != len(donor_rows):
        raise ValueError(f"{len(rows)} images and {len(donor_rows)} donors: one donor per image")
    return from_uint8(np.stack([render(ToyFactors.from_mapping(r).with_salient_of(ToyFactors.from_mapping(d), attribute),
                                       size) for (_, r), (_, d) in zip(rows.iterrows(), donor_rows.iterrows())]))


def toy_counterfactual_set(rows: pd.DataFrame, attribute: str, size: int) -> torch.Tensor:
    """(K, N, 3, H, W) in [-1, 1]: every counterfactual each toy manifest row allows
    (``ToyFactors.counterfactuals``: adding glasses, one per glasses style), ``toy_counterfactuals``'
    first; a row with fewer repeats its first. What edits are scored against
    (``evaluation.nearest_counterfactual``)."""
    found = [ToyFactors.from_mapping(r).counterfactuals(attribute) for _, r in rows.iterrows()]
    k = max(map(len, found))
    return torch.stack([from_uint8(np.stack([render(fs[i] if i < len(fs) else fs[0], size) for fs in found]))
                        for i in range(k)])
