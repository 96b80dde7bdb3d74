"""Real datasets and bring-your-own folders → the standard two-class layout of ``datasets.py``.

Three sources give one labels table (``id``, ``source`` image path, ``label`` background / target,
optional ``split``): FFHQ from the ``ffhq-features-dataset`` JSON files, CelebA-HQ from
``CelebAMask-HQ-attribute-anno.txt``, and any two folders of images. ``balanced_split`` draws a
seeded split with equal counts per class (capped by what is available, the caps reported), and
``build_real_dataset`` resizes each chosen image once to the base model's resolution (shared cache
under ``<data_root>/resized/``) and links it into ``<data_root>/<name>/{train,test}/{class}/``.

Bad input never gives a silently wrong split: a missing or unparsable annotation, a row of the wrong
length or an unreadable image raises an error naming the file; an image with no face (FFHQ's empty
lists) or an annotated image that is not on disk is a counted skip, recorded with examples in the
dataset's ``dataset.json``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from .datasets import CLASSES, MANIFEST_COLUMNS, SPLITS, read_manifest, split_counts, square_resize
from .images import open_rgb
from .io import save_dataframe, save_image, write_text
from .parameters import SCALES
from .presets import repo_path

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
FFHQ_GLASSES = ("NoGlasses", "ReadingGlasses", "Sunglasses", "SwimmingGoggles")
FFHQ_DEFAULTS = dict(
    annotations="data/ffhq-features-dataset/json",  # ffhq-features-dataset's json/ folder (00000.json … 69999.json)
    images="data/ffhq-dataset/images1024x1024",  # <folder>/<idx>.png with folders 00000 … 69000, or flat
    glasses_target=["ReadingGlasses", "Sunglasses"],  # background is always NoGlasses
    # The paper gives no age thresholds; these keep a gap between the classes and leave children out.
    age_young=[18, 30],  # background: 18 ≤ age ≤ 30
    age_old=[50, 120],  # target: age ≥ 50
)
CELEBAHQ_DEFAULTS = dict(
    annotations="data/CelebAMask-HQ/CelebAMask-HQ-attribute-anno.txt",
    images="data/CelebAMask-HQ/CelebA-HQ-img",  # <i>.jpg
)
CELEBAHQ_ATTRIBUTES = {"gender": "Male", "smile": "Smiling"}  # preset attribute → annotation column
FOLDERS_DEFAULTS = dict(background_dir=None, target_dir=None, background_test_dir=None, target_test_dir=None,
                        test_fraction=0.2)
_SKIP_EXAMPLES = 5


class Counted:
    """Counts by reason (skips, and FFHQ's several-face files), each with a few example files, so a
    report names them."""

    def __init__(self) -> None:
        self.items: dict[str, dict] = {}

    def add(self, reason: str, example: str | Path) -> None:
        item = self.items.setdefault(reason, {"count": 0, "examples": []})
        item["count"] += 1
        if len(item["examples"]) < _SKIP_EXAMPLES:
            item["examples"].append(str(example))

    def __str__(self) -> str:
        return "; ".join(f"{v['count']} {k} (e.g. {', '.join(v['examples'])})" for k, v in self.items.items())


def _require(path: Path, what: str, fix: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{what} {path} not found: {fix}")
    return path


def image_index(images_dir: str | Path) -> dict[str, Path]:
    """Image stem → path, for a flat folder or one level of sub-folders (FFHQ's 00000/, 01000/, …)."""
    images_dir = _require(Path(images_dir), "image folder", "download the images and point `images` at them")
    index: dict[str, Path] = {}
    for d in [images_dir] + sorted(p for p in images_dir.iterdir() if p.is_dir()):
        for p in d.iterdir():
            if p.suffix.lower() in IMAGE_EXTENSIONS:
                index.setdefault(p.stem, p)
    return index


# --------------------------------------------------------------------------------------------- FFHQ

def ffhq_json_dir(path: str | Path) -> Path:
    """The folder of per-image JSON files: ``path`` itself or its ``json/`` sub-folder."""
    path = _require(Path(path), "FFHQ annotation folder",
                    "clone https://github.com/DCGM/ffhq-features-dataset and point `annotations` at its json/ folder")
    if not any(path.glob("*.json")) and (path / "json").is_dir():
        path = path / "json"
    if not any(path.glob("*.json")):
        raise FileNotFoundError(f"{path} holds no *.json files: point `annotations` at ffhq-features-dataset's "
                                f"json/ folder (00000.json … 69999.json)")
    return path


def read_ffhq_annotations(path: str | Path, progress: bool = True) -> tuple[pd.DataFrame, Counted]:
    """One row per annotated face image: ``id``, ``glasses``, ``age``, ``n_faces``.

    Each file is a JSON list of faces; ``[]`` (no face found) is a counted skip and of several faces
    the first is used (as ffhq-features-dataset's own scripts do), counted too. A file that does not
    parse or lacks ``faceAttributes.glasses`` / ``age`` raises an error naming it.
    """
    json_dir, counted, rows = ffhq_json_dir(path), Counted(), []
    for f in tqdm(sorted(json_dir.glob("*.json")), desc="read FFHQ annotations", disable=not progress, mininterval=5):
        try:
            faces = json.loads(f.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{f} is not valid JSON ({e}): the file is truncated or corrupt; "
                             f"restore it from ffhq-features-dataset") from None
        if not isinstance(faces, list):
            raise ValueError(f"{f}: expected a JSON list of faces, got {type(faces).__name__}")
        if not faces:
            counted.add("no face in annotation", f)
            continue
        if len(faces) > 1:
            counted.add("several faces, first used", f)  # not a skip of the image: counted for the report
        try:
            attrs = faces[0]["faceAttributes"]
            glasses, age = attrs["glasses"], float(attrs["age"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{f}: first face lacks a usable faceAttributes.glasses / faceAttributes.age "
                             f"({type(e).__name__}: {e})") from None
        if glasses not in FFHQ_GLASSES:
            raise ValueError(f"{f}: glasses value {glasses!r} is not one of {list(FFHQ_GLASSES)}")
        rows.append(dict(id=f.stem, glasses=glasses, age=age, n_faces=len(faces)))
    return pd.DataFrame(rows, columns=["id", "glasses", "age", "n_faces"]), counted


def ffhq_labels(annotations: pd.DataFrame, attribute: str, glasses_target=FFHQ_DEFAULTS["glasses_target"],
                age_young=FFHQ_DEFAULTS["age_young"], age_old=FFHQ_DEFAULTS["age_old"]) -> pd.Series:
    """background / target / None (in neither class) per annotation row."""
    if attribute == "glasses":
        unknown = sorted(set(glasses_target) - set(FFHQ_GLASSES[1:]))
        if unknown or not glasses_target:
            raise ValueError(f"glasses_target {list(glasses_target)} must be a non-empty subset of {list(FFHQ_GLASSES[1:])}")
        g = annotations["glasses"]
        return pd.Series(np.where(g == "NoGlasses", "background", np.where(g.isin(glasses_target), "target", None)),
                         index=annotations.index)
    if attribute == "age":
        (y0, y1), (o0, o1) = age_young, age_old
        if not (y0 <= y1 and o0 <= o1) or max(y0, o0) <= min(y1, o1):
            raise ValueError(f"age ranges young {list(age_young)} and old {list(age_old)} must be ordered and disjoint")
        a = annotations["age"]
        return pd.Series(np.where(a.between(y0, y1), "background", np.where(a.between(o0, o1), "target", None)),
                         index=annotations.index)
    raise ValueError(f"FFHQ attribute {attribute!r} unknown; known: glasses, age")


# ---------------------------------------------------------------------------------------- CelebA-HQ

def read_celebahq_annotations(path: str | Path) -> pd.DataFrame:
    """``CelebAMask-HQ-attribute-anno.txt`` as a table: ``id`` (the file name) and one ±1 column per attribute.

    Line 1 is the image count, line 2 the attribute names, then ``N.jpg  v1 … v40`` (split on any
    whitespace). A wrong count, a row of the wrong length or a value other than ±1 raises an error
    naming the file and line.
    """
    path = _require(Path(path), "CelebA-HQ annotation file",
                    "download CelebAMask-HQ and point `annotations` at CelebAMask-HQ-attribute-anno.txt")
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    if len(lines) < 2:
        raise ValueError(f"{path}: expected a count line and a header line, got {len(lines)} non-empty lines")
    try:
        count = int(lines[0].strip())
    except ValueError:
        raise ValueError(f"{path}:1: expected the image count, got {lines[0][:60]!r}") from None
    names = lines[1].split()
    rows = []
    for i, line in enumerate(lines[2:], start=3):
        fields = line.split()
        if len(fields) != len(names) + 1:
            raise ValueError(f"{path}:{i}: {len(fields)} fields, expected {len(names) + 1} (a file name and "
                             f"{len(names)} attribute values): the file is corrupt")
        values = fields[1:]
        if not set(values) <= {"1", "-1"}:
            raise ValueError(f"{path}:{i}: attribute values must be 1 or -1, got {sorted(set(values) - {'1', '-1'})}")
        rows.append([fields[0], *map(int, values)])
    if len(rows) != count:
        raise ValueError(f"{path}: line 1 announces {count} images but {len(rows)} rows follow: "
                         f"the file is truncated or has extra rows; re-download it")
    table = pd.DataFrame(rows, columns=["id", *names])
    dup = table["id"][table["id"].duplicated()]
    if len(dup):
        raise ValueError(f"{path}: image {dup.iloc[0]!r} is listed twice")
    return table


def celebahq_labels(table: pd.DataFrame, attribute: str, path: str | Path = "annotation file") -> pd.Series:
    """1 → target, −1 → background, for ``attribute`` (gender, smile, or any annotation column)."""
    column = CELEBAHQ_ATTRIBUTES.get(attribute, attribute)
    if column not in table.columns[1:]:
        raise ValueError(f"{path}: no attribute {column!r}; known: {', '.join(CELEBAHQ_ATTRIBUTES)} or one of "
                         f"{', '.join(table.columns[1:])}")
    return table[column].map({1: "target", -1: "background"})


# ------------------------------------------------------------------------------------------ folders

def folder_images(folder: str | Path, counted: Counted | None = None) -> list[Path]:
    """Every image under ``folder`` (recursively), sorted; an empty or missing folder is an error.
    Files of other types are left out, counted in ``counted`` when given."""
    folder = _require(Path(folder), "image folder", "check the path")
    found = sorted(p for p in folder.rglob("*") if p.is_file())
    files = [p for p in found if p.suffix.lower() in IMAGE_EXTENSIONS]
    if counted is not None:
        for p in found:
            if p.suffix.lower() not in IMAGE_EXTENSIONS:
                counted.add("not an image file, left out", p)
    if not files:
        raise ValueError(f"{folder} holds no images ({', '.join(IMAGE_EXTENSIONS)}): put the class's images "
                         f"there or point the preset at the right folder")
    return files


def folders_labels(background_dir, target_dir, background_test_dir=None, target_test_dir=None,
                   counted: Counted | None = None) -> pd.DataFrame:
    """Labels table of the bring-your-own layout; test folders, when given, fix the split."""
    if (background_test_dir is None) != (target_test_dir is None):
        raise ValueError("give both background_test_dir and target_test_dir, or neither (then test_fraction splits)")
    train = None if background_test_dir is None else "train"
    given = [(background_dir, "background", train), (target_dir, "target", train)]
    if train:
        given += [(background_test_dir, "background", "test"), (target_test_dir, "target", "test")]
    dirs = [Path(d).resolve() for d, _, _ in given]
    for i, a in enumerate(dirs):
        for b in dirs[i + 1:]:
            if a == b or a in b.parents or b in a.parents:
                raise ValueError(f"folders {a} and {b} overlap: each class and split needs its own folder")
    rows = []
    for (d, cls, split), root in zip(given, dirs):
        role = cls if split is None else f"{cls}_{split}"
        rows += [dict(id=f"{role}/{p.relative_to(root).as_posix()}", source=p, label=cls, split=split)
                 for p in folder_images(root, counted)]
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------- split & build

def balanced_split(labels: pd.DataFrame, n_train_per_class: int, n_test_per_class: int, seed: int,
                   test_fraction: float | None = None) -> tuple[pd.DataFrame, dict]:
    """A seeded split with equal counts per class; rows gain ``class`` and ``split``.

    When a class has fewer than ``n_train + n_test`` images, both are scaled down keeping the test
    fraction (``n_test / (n_train + n_test)`` unless ``test_fraction`` is given); rows that carry a
    ``split`` already (bring-your-own test folders) are drawn within it. Each class is drawn with
    its own generator seeded by (seed, class), so a class's draw does not depend on the other's.
    Returns (rows, report with available / requested / used counts).
    """
    labels = labels[labels["label"].isin(CLASSES)]
    presplit = "split" in labels and labels["split"].notna().any()
    groups = ([(s, labels[labels["split"] == s]) for s in SPLITS] if presplit else [(None, labels)])
    available = {(s or "all"): {c: int((g["label"] == c).sum()) for c in CLASSES} for s, g in groups}
    for where, counts in available.items():
        empty = [c for c, n in counts.items() if n == 0]
        if empty:
            raise ValueError(f"no {' or '.join(empty)} images ({where}): check the annotations, the images "
                             f"folder and the class options")
    if presplit:
        used = {s: min(n, *available[s].values()) for s, n in zip(SPLITS, (n_train_per_class, n_test_per_class))}
    else:
        a = min(available["all"].values())
        frac = test_fraction if test_fraction is not None else n_test_per_class / (n_train_per_class + n_test_per_class)
        n_test = min(n_test_per_class, round(a * frac))
        used = {"train": min(n_train_per_class, a - n_test), "test": n_test}
    if min(used.values()) < 1:
        raise ValueError(f"too few images for a train and a test split: available per class {available}")
    parts = []
    for ci, cls in enumerate(CLASSES):
        rng = np.random.default_rng([seed, ci])
        for s, g in groups:
            pool = g[g["label"] == cls].sort_values("id")
            pool = pool.iloc[rng.permutation(len(pool))]
            if presplit:
                parts.append(pool.head(used[s]).assign(split=s))
            else:  # test first, so growing n_train keeps the test set
                parts.append(pool.head(used["test"]).assign(split="test"))
                parts.append(pool.iloc[used["test"]:used["test"] + used["train"]].assign(split="train"))
    rows = pd.concat(parts, ignore_index=True).rename(columns={"label": "class"})
    report = dict(available=available, requested=dict(train=n_train_per_class, test=n_test_per_class),
                  used_per_class=used, capped=used != {"train": n_train_per_class, "test": n_test_per_class})
    return rows, report


def _slug(image_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(image_id))


def resize_image(src: Path, dst: Path, size: int) -> list[str]:
    """Convert to 8-bit RGB, centre-crop to a square and resize to ``size`` (Lanczos), once: an
    existing ``dst`` is kept. Returns what was done to the image (reasons for the one report)."""
    if dst.exists():
        return []
    im, converted = open_rgb(src, "replace it or remove it from the dataset")
    notes = [converted] if converted else []
    w, h = im.size
    if w != h:
        notes.append("not square, centre-cropped")
    if min(w, h) != size:
        notes.append(f"resized to {size}×{size} px")
    save_image(np.asarray(square_resize(im, size)), dst)
    return notes


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:  # another file system or no hard links: copy
        shutil.copyfile(src, dst)


def dataset_name(config: dict) -> str:
    """Folder name: the readable settings plus a hash of all of them, so different options coexist."""
    key = hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()[:8]
    return (f"{config['kind']}-{config['attribute']}-{config['size']}px-seed{config['seed']}-"
            f"{config['n_train_per_class']}x{config['n_test_per_class']}-{key}")


def build_real_dataset(rows: pd.DataFrame, report: dict, config: dict, root: Path, resized_dir: Path,
                       progress: bool = True, workers: int | None = None) -> tuple[pd.DataFrame, Path]:
    """Resize the chosen images into ``resized_dir`` (kept across datasets), link them into the
    standard layout in a temporary folder, write ``manifest.csv`` and ``dataset.json`` (config,
    counts, skips) and rename it to ``root``: an interrupted build leaves no half dataset."""
    rows = rows.assign(file=[f"{s}/{c}/{_slug(i)}.png" for s, c, i in zip(rows["split"], rows["class"], rows["id"])],
                       identity=rows["id"], cached=[resized_dir / f"{_slug(i)}.png" for i in rows["id"]])
    clash = rows["cached"][rows["cached"].duplicated()]
    if len(clash):
        raise ValueError(f"two images map to the same cached file {clash.iloc[0]}: rename one of them")
    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:
        notes = list(tqdm(pool.map(resize_image, rows["source"], rows["cached"], [config["size"]] * len(rows)),
                          total=len(rows), desc=f"resize to {config['size']} px", disable=not progress, mininterval=5))
    adapted = Counted()
    for src, done in zip(rows["source"], notes):
        for note in done:
            adapted.add(note, src)
    if adapted.items:  # said once, for every image it concerns
        warnings.warn(f"{config['kind']} {config['attribute']}: {adapted}", stacklevel=3)
    report = dict(report, adapted=adapted.items)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        for cached, rel in zip(rows["cached"], rows["file"]):
            _link(cached, tmp / rel)
        manifest = rows[list(MANIFEST_COLUMNS)].assign(source=rows["source"].map(str))
        save_dataframe(manifest, tmp / "manifest.csv")
        record = dict(config=config, **report, counts=split_counts(manifest).to_dict("records"))
        write_text(tmp / "dataset.json", json.dumps(record, indent=2, default=str))
        tmp.rename(root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return read_manifest(root), root


def split_config(params: dict) -> dict:
    """Everything that determines a real dataset's images, from a preset's parameters (paths made
    absolute); the dataset folder is named by it and reused while it matches."""
    kind = params["dataset_kind"]
    defaults = dict(ffhq=FFHQ_DEFAULTS, celebahq=CELEBAHQ_DEFAULTS, folders=FOLDERS_DEFAULTS).get(kind)
    if defaults is None:
        raise ValueError(f"dataset_kind {kind!r} unknown; known: toy, ffhq, celebahq, folders")
    options = {k: params.get(k) if params.get(k) is not None else v for k, v in defaults.items()}
    if kind == "ffhq" and params["attribute"] != "glasses":
        options.pop("glasses_target")
    if kind == "ffhq" and params["attribute"] != "age":
        options.pop("age_young"), options.pop("age_old")
    elif kind == "ffhq":  # floats, so the CLI's 18.0 and a preset's 18 name the same dataset
        options.update({k: [float(v) for v in options[k]] for k in ("age_young", "age_old")})
    if kind == "folders":
        for k in ("background_dir", "target_dir"):
            if options[k] is None:
                raise ValueError(f"dataset_kind folders needs {k} (a folder of images)")
        if options["background_test_dir"] is not None:
            options.pop("test_fraction")
    options = {k: str(repo_path(v)) if (k in ("annotations", "images") or k.endswith("_dir")) and v is not None else v
               for k, v in options.items()}
    return dict(kind=kind, attribute=params["attribute"], size=params["image_size"], seed=params["seed"],
                n_train_per_class=params["n_train_per_class"], n_test_per_class=params["n_test_per_class"], **options)


def read_labels(config: dict, progress: bool = True) -> tuple[pd.DataFrame, Counted]:
    """The labels table (``id``, ``source``, ``label``, ``split``) of a split config, with what was skipped or counted."""
    kind, counted = config["kind"], Counted()
    if kind == "folders":
        labels = folders_labels(config["background_dir"], config["target_dir"], config.get("background_test_dir"),
                                config.get("target_test_dir"), counted)
        return labels, counted
    if kind == "ffhq":
        table, counted = read_ffhq_annotations(config["annotations"], progress)
        label = ffhq_labels(table, config["attribute"], **{k: config[k] for k in
                                                          ("glasses_target", "age_young", "age_old") if k in config})
    else:
        table = read_celebahq_annotations(config["annotations"])
        label = celebahq_labels(table, config["attribute"], config["annotations"])
    if table.empty:
        raise ValueError(f"{config['annotations']} gives no usable annotation (every file empty or no rows)")
    index = image_index(config["images"])
    ids = ({f.stem for f in ffhq_json_dir(config["annotations"]).glob("*.json")} if kind == "ffhq"  # with []
           else {Path(i).stem for i in table["id"]})
    for stem in sorted(set(index) - ids):
        counted.add("image without annotation", index[stem])
    stems = table["id"] if kind == "ffhq" else table["id"].map(lambda i: Path(i).stem)
    source = stems.map(index)
    for i in table["id"][source.isna()]:
        counted.add("annotated but image missing", Path(config["images"]) / (f"{i}.png" if kind == "ffhq" else i))
    if source.isna().all():
        raise FileNotFoundError(f"none of the {len(table)} annotated images is in {config['images']} (e.g. "
                                f"{table['id'].iloc[0]}): point `images` at the folder that holds them")
    for f in source[source.notna() & label.isna()]:
        counted.add("in neither class with these options", f)
    labels = pd.DataFrame(dict(id=stems, source=source, label=label))[source.notna()]
    return labels, counted


def prepare_real_dataset(params: dict, progress: bool = True, workers: int | None = None) -> tuple[pd.DataFrame, Path]:
    """Build (or reuse, when its recorded config matches) the dataset of an ffhq / celebahq / folders preset."""
    config = split_config(params)
    data_root = repo_path(params["data_root"])
    root = data_root / dataset_name(config)
    if (root / "dataset.json").exists() and json.loads((root / "dataset.json").read_text())["config"] == config:
        return read_manifest(root), root
    labels, counted = read_labels(config, progress)
    if counted.items:
        warnings.warn(f"{config['kind']} {config['attribute']}: {counted}", stacklevel=2)
    try:
        rows, report = balanced_split(labels, config["n_train_per_class"], config["n_test_per_class"], config["seed"],
                                      config.get("test_fraction"))
    except ValueError as e:  # e.g. one class only: name where the labels came from
        source = (f"{config['background_dir']} and {config['target_dir']}" if config["kind"] == "folders"
                  else f"{config['annotations']} ({config['kind']} {config['attribute']})")
        raise ValueError(f"{source}: {e}") from None
    if report["capped"]:
        warnings.warn(f"{config['kind']} {config['attribute']}: {report['used_per_class']} per class instead of "
                      f"{report['requested']} (available: {report['available']})", stacklevel=2)
    source_key = hashlib.sha1(json.dumps({k: v for k, v in config.items() if k in ("annotations", "images")
                                          or k.endswith("_dir")}, sort_keys=True).encode()).hexdigest()[:8]
    resized = data_root / "resized" / f"{config['kind']}-{source_key}-{config['size']}px"
    return build_real_dataset(rows, dict(report, counted=counted.items), config, root, resized, progress, workers)


# ---------------------------------------------------------------------------------- CLI helpers

def add_split_options(ap: argparse.ArgumentParser) -> None:
    """The options every real-data splitter shares (defaults: the paper's sizes at 256 px)."""
    ap.add_argument("--n-train-per-class", type=int, default=SCALES["full"]["n_train_per_class"])
    ap.add_argument("--n-test-per-class", type=int, default=SCALES["full"]["n_test_per_class"])
    ap.add_argument("--size", type=int, default=256, help="the base model's resolution; images are resized once")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-root", default="data")
    ap.add_argument("--workers", type=int, help="resizing threads (default: min(8, CPU cores))")


def print_report(manifest: pd.DataFrame, root: Path) -> None:
    """Print the dataset folder, its counts, and what was skipped (from its dataset.json)."""
    record = json.loads((root / "dataset.json").read_text())
    print(root)
    print(split_counts(manifest).to_string(index=False))
    print("available per class:", record["available"], "| used per class:", record["used_per_class"])
    for reason, item in record["counted"].items():
        print(f"counted: {item['count']} {reason} (e.g. {', '.join(item['examples'][:3])})")
