"""Real datasets, weights and bring-your-own folders, on fixtures written here in the official formats."""
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image
from test_notebooks import run

from data_prep.celebahq import split_celebahq
from data_prep.ffhq import split_ffhq
from hsep_utils import weights
from hsep_utils.metrics import Unavailable
from hsep_utils.presets import load_preset
from hsep_utils.real_data import balanced_split, folders_labels, read_labels

CELEBA_NAMES = ("5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair "
                "Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair "
                "Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face "
                "Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair "
                "Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young").split()
FFHQ_IDS = [f"{500 * k:05d}" for k in range(44)]  # 00000, 00500, …: FFHQ's sub-folders 00000, 01000, …
EMPTY, TWO_FACES, GOGGLES = FFHQ_IDS[40:42], FFHQ_IDS[42], FFHQ_IDS[43]


def write_image(path: Path, seed: int, size=(16, 16)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path)


def face(glasses: str, age: float) -> dict:
    return {"faceRectangle": {"top": 1, "left": 2, "width": 3, "height": 4},
            "faceAttributes": {"glasses": glasses, "age": age, "gender": "female", "smile": 0.5}}


def make_ffhq(root: Path, flat: bool = False) -> tuple[Path, Path]:
    """ffhq-features-dataset json/ + images1024x1024/ (sub-folders, or flat). Of ids 0…39: even ones
    NoGlasses, odd ones Reading/Sunglasses; age 60, 25, 40 (neither class) in turn. Then two files
    with ``[]``, one with two faces (Sunglasses, 70 first), one SwimmingGoggles; and one image
    without annotation."""
    jdir, idir = root / "ffhq-features-dataset" / "json", root / "images1024x1024"
    jdir.mkdir(parents=True)
    for k, i in enumerate(FFHQ_IDS):
        if i in EMPTY:
            faces = []
        elif i == TWO_FACES:
            faces = [face("Sunglasses", 70.0), face("NoGlasses", 20.0)]
        elif i == GOGGLES:
            faces = [face("SwimmingGoggles", 25.0)]
        else:
            faces = [face("NoGlasses" if k % 2 == 0 else ("ReadingGlasses", "Sunglasses")[k // 2 % 2], (60, 25, 40)[k % 3])]
        (jdir / f"{i}.json").write_text(json.dumps(faces))
    for k, i in enumerate(FFHQ_IDS + ["69999"]):
        write_image(idir / ("" if flat else f"{int(i) // 1000 * 1000:05d}") / f"{i}.png", k)
    return jdir, idir


def make_celebahq(root: Path, n: int = 30) -> tuple[Path, Path]:
    """CelebAMask-HQ-attribute-anno.txt (count, 40 names, ``i.jpg  ±1 …`` rows) + CelebA-HQ-img/i.jpg.
    Male = i odd; Smiling = i % 4 < 2."""
    lines = [str(n), " ".join(CELEBA_NAMES)]
    for i in range(n):
        values = {name: -1 for name in CELEBA_NAMES} | {"Male": 1 if i % 2 else -1, "Smiling": 1 if i % 4 < 2 else -1}
        lines.append(f"{i}.jpg  " + " ".join(str(values[name]) for name in CELEBA_NAMES))
        write_image(root / "CelebA-HQ-img" / f"{i}.jpg", i)
    (root / "CelebAMask-HQ-attribute-anno.txt").write_text("\n".join(lines) + "\n")
    return root / "CelebAMask-HQ-attribute-anno.txt", root / "CelebA-HQ-img"


def check_split(m: pd.DataFrame, n_train: int, n_test: int) -> None:
    counts = m.groupby(["split", "class"]).size().to_dict()
    assert counts == {("test", "background"): n_test, ("test", "target"): n_test,
                      ("train", "background"): n_train, ("train", "target"): n_train}
    assert m["identity"].is_unique  # disjoint: no image in two splits or two classes
    assert all(f == f"{s}/{c}/{Path(f).name}" for f, s, c in zip(m["file"], m["split"], m["class"]))


def test_ffhq_glasses_split(tmp_path):
    jdir, idir = make_ffhq(tmp_path)
    kw = dict(annotations=str(jdir), images=str(idir), n_train_per_class=8, n_test_per_class=4, size=16,
              data_root=str(tmp_path / "data"), progress=False, workers=1)
    with pytest.warns(UserWarning, match="2 no face in annotation"):
        m, root = split_ffhq("glasses", **kw)
    check_split(m, 8, 4)
    glasses = {i: json.loads((jdir / f"{i}.json").read_text()) for i in FFHQ_IDS}
    for ident, cls in zip(m["identity"], m["class"]):
        kind = glasses[f"{ident:05d}"][0]["faceAttributes"]["glasses"]
        assert (kind == "NoGlasses") == (cls == "background") and kind != "SwimmingGoggles"
    assert not {int(i) for i in EMPTY + [GOGGLES]} & set(m["identity"])
    assert Image.open(root / m["file"][0]).size == (16, 16)
    record = json.loads((root / "dataset.json").read_text())
    counted = record["counted"]
    assert counted["no face in annotation"]["count"] == 2 and EMPTY[0] in counted["no face in annotation"]["examples"][0]
    assert counted["several faces, first used"]["count"] == 1
    assert counted["image without annotation"]["examples"][0].endswith("69999.png")
    assert record["available"] == {"all": {"background": 20, "target": 21}}
    labels, _ = read_labels(dict(kind="ffhq", attribute="glasses", annotations=str(jdir), images=str(idir)), False)
    assert labels.set_index("id")["label"][TWO_FACES] == "target"  # the first of two faces counts

    again, root2 = split_ffhq("glasses", **kw)  # same options: the cached folder, same split
    assert root2 == root and again.equals(m)
    other, root3 = split_ffhq("glasses", **{**kw, "seed": 1})
    assert root3 != root and set(other["identity"]) != set(m["identity"])

    flat = tmp_path / "flat"
    make_ffhq(flat, flat=True)
    with pytest.warns(UserWarning):
        m_flat, _ = split_ffhq("glasses", **{**kw, "images": str(flat / "images1024x1024"),
                                             "data_root": str(tmp_path / "data_flat")})
    assert m_flat[["identity", "class", "split"]].equals(m[["identity", "class", "split"]])


def test_ffhq_age_split_is_capped_and_reported(tmp_path):
    jdir, idir = make_ffhq(tmp_path)
    with pytest.warns(UserWarning, match="instead of"):  # 14 young (18–30, the goggles one too), 15 old (≥ 50)
        m, root = split_ffhq("age", str(jdir), str(idir), n_train_per_class=20, n_test_per_class=10, size=16,
                             data_root=str(tmp_path / "data"), progress=False, workers=1)
    check_split(m, 9, 5)  # 14 per class, test share 10/30 → 5
    ages = {int(i): json.loads((jdir / f"{i}.json").read_text())[0]["faceAttributes"]["age"]
            for i in FFHQ_IDS if i not in EMPTY}
    assert all((ages[i] >= 50) == (c == "target") and not 30 < ages[i] < 50 for i, c in zip(m["identity"], m["class"]))
    record = json.loads((root / "dataset.json").read_text())
    assert record["capped"] and record["used_per_class"] == {"train": 9, "test": 5}


@pytest.mark.parametrize("attribute,column", [("gender", "Male"), ("smile", "Smiling")])
def test_celebahq_split(tmp_path, attribute, column):
    anno, imgs = make_celebahq(tmp_path)
    assert "0.jpg  -1 " in anno.read_text()  # the official double space after the file name
    m, root = split_celebahq(attribute, str(anno), str(imgs), n_train_per_class=5, n_test_per_class=2, size=16,
                             data_root=str(tmp_path / "data"), progress=False, workers=1)
    check_split(m, 5, 2)
    truth = (lambda i: i % 2 == 1) if column == "Male" else (lambda i: i % 4 < 2)
    assert all(truth(i) == (c == "target") for i, c in zip(m["identity"], m["class"]))
    assert json.loads((root / "dataset.json").read_text())["counted"] == {}


def test_balanced_split_presplit_and_fraction():
    labels = pd.DataFrame(dict(id=[f"{i:03d}" for i in range(30)], source="x",
                               label=["background"] * 12 + ["target"] * 18))
    rows, report = balanced_split(labels, 100, 100, seed=0, test_fraction=0.25)
    assert report["used_per_class"] == {"train": 9, "test": 3} and rows["id"].is_unique
    again, _ = balanced_split(labels.sample(frac=1, random_state=1), 100, 100, seed=0, test_fraction=0.25)
    assert again.sort_values("id")["split"].tolist() == rows.sort_values("id")["split"].tolist()  # order-free
    pre = labels.assign(split=["train", "test"] * 15)
    rows, report = balanced_split(pre, 100, 2, seed=0)
    assert report["used_per_class"] == {"train": 6, "test": 2}
    assert (rows.merge(pre, on="id")["split_x"] == rows.merge(pre, on="id")["split_y"]).all()


# ------------------------------------------------------------------------------- bad input

def _ffhq_params(jdir, idir, tmp_path):
    return dict(annotations=str(jdir), images=str(idir), n_train_per_class=2, n_test_per_class=1, size=16,
                data_root=str(tmp_path / "data"), progress=False, workers=1)


@pytest.mark.parametrize("case,error,match", [
    ("missing json folder", FileNotFoundError, r"FFHQ annotation folder .*nowhere not found"),
    ("truncated json", ValueError, r"00500\.json is not valid JSON .*truncated or corrupt"),
    ("not a list", ValueError, r"00500\.json: expected a JSON list of faces, got dict"),
    ("no glasses key", ValueError, r"00500\.json: first face lacks a usable faceAttributes\.glasses"),
    ("unknown glasses", ValueError, r"00500\.json: glasses value 'Monocle'"),
    ("all images missing", FileNotFoundError, r"none of the 42 annotated images is in .*images1024x1024"),
    ("corrupt image", ValueError, r"00000\.png is not a readable image"),
])
def test_ffhq_bad_input_is_named(tmp_path, case, error, match):
    jdir, idir = make_ffhq(tmp_path)
    bad = jdir / "00500.json"
    if case == "missing json folder":
        jdir = tmp_path / "nowhere"
    elif case == "truncated json":
        bad.write_text(bad.read_text()[:40])
    elif case == "not a list":
        bad.write_text(json.dumps(face("NoGlasses", 20)))
    elif case == "no glasses key":
        bad.write_text('[{"faceAttributes": {"age": 20}}]')
    elif case == "unknown glasses":
        bad.write_text(json.dumps([face("Monocle", 20)]))
    elif case == "all images missing":
        shutil.rmtree(idir)
        idir.mkdir()
    elif case == "corrupt image":
        (idir / "00000" / "00000.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    kw = _ffhq_params(jdir, idir, tmp_path) | dict(n_train_per_class=15, n_test_per_class=5)  # every image
    with pytest.raises(error, match=match):
        split_ffhq("glasses", **kw)


def test_ffhq_missing_image_is_a_named_skip(tmp_path):
    jdir, idir = make_ffhq(tmp_path)
    (idir / "01000" / "01500.png").unlink()
    with pytest.warns(UserWarning, match=r"1 annotated but image missing \(e\.g\. .*01500\.png"):
        m, root = split_ffhq("glasses", **_ffhq_params(jdir, idir, tmp_path))
    assert 1500 not in set(m["identity"])
    assert json.loads((root / "dataset.json").read_text())["counted"]["annotated but image missing"]["count"] == 1


@pytest.mark.parametrize("case,error,match", [
    ("missing file", FileNotFoundError, r"CelebA-HQ annotation file .*nowhere\.txt not found"),
    ("wrong column count", ValueError, r"anno\.txt:5: 40 fields, expected 41"),
    ("truncated", ValueError, r"line 1 announces 30 images but 29 rows follow"),
    ("bad count line", ValueError, r"anno\.txt:1: expected the image count"),
    ("bad value", ValueError, r"anno\.txt:4: attribute values must be 1 or -1, got \['0'\]"),
    ("unknown attribute", ValueError, r"no attribute 'Hat'; known: gender, smile or one of 5_o_Clock_Shadow"),
    ("image missing", None, None),
])
def test_celebahq_bad_input_is_named(tmp_path, case, error, match):
    anno, imgs = make_celebahq(tmp_path)
    lines = anno.read_text().splitlines()
    attribute = "smile"
    if case == "missing file":
        anno = tmp_path / "nowhere.txt"
    elif case == "wrong column count":
        lines[4] = lines[4].rsplit(" ", 1)[0]
    elif case == "truncated":
        lines = lines[:-1]
    elif case == "bad count line":
        lines[0] = "CelebA-HQ"
    elif case == "bad value":
        lines[3] = lines[3].replace(" -1", " 0", 1)
    elif case == "unknown attribute":
        attribute = "Hat"
    elif case == "image missing":
        (imgs / "7.jpg").unlink()
    if anno.exists():
        anno.write_text("\n".join(lines) + "\n")
    kw = dict(n_train_per_class=3, n_test_per_class=1, size=16, data_root=str(tmp_path / "data"), progress=False,
              workers=1)
    if error is None:
        with pytest.warns(UserWarning, match=r"1 annotated but image missing \(e\.g\. .*7\.jpg"):
            m, _ = split_celebahq(attribute, str(anno), str(imgs), **kw)
        assert 7 not in set(m["identity"])
        return
    with pytest.raises(error, match=match):
        split_celebahq(attribute, str(anno), str(imgs), **kw)


def test_folder_errors(tmp_path):
    write_image(tmp_path / "a" / "1.png", 0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty holds no images"):
        folders_labels(tmp_path / "a", tmp_path / "empty")
    with pytest.raises(ValueError, match=r"overlap"):
        folders_labels(tmp_path / "a", tmp_path / "a")
    with pytest.raises(FileNotFoundError, match=r"image folder .*nothing not found"):
        folders_labels(tmp_path / "a", tmp_path / "nothing")


# ------------------------------------------------------------------------------- weights

def test_weights_are_found_or_named(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    for found, name, where in ((weights.alexnet_file(), weights.ALEXNET_FILE, "torch/hub/checkpoints"),
                               (weights.facenet_file(), weights.FACENET_FILE, "torch/checkpoints"),
                               (weights.inception_file(tmp_path / "w"), weights.INCEPTION_FILE, "w")):
        assert isinstance(found, Unavailable) and f"place it at {tmp_path / where / name}" in found.reason
    assert isinstance(weights.facenet_embedder("cpu"), Unavailable)
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / weights.FACENET_FILE).write_bytes(b"")
    assert weights.facenet_file(tmp_path / "w") == tmp_path / "w" / weights.FACENET_FILE
    assert weights.facenet_file(tmp_path / "w" / weights.FACENET_FILE) == tmp_path / "w" / weights.FACENET_FILE


# ------------------------------------------------------------------------------- notebooks

@pytest.fixture
def tiny_model(tmp_path):
    """A tiny guided-diffusion checkpoint of the P2 layout (random weights), converted by the CLI."""
    from adm_reference import TinyAdm, save_tiny_checkpoint

    from hsep_utils.adm import main as convert_main

    cfg = TinyAdm(image_size=32)
    (tmp_path / "tiny_adm.json").write_text(json.dumps(cfg.as_flags()))
    ck = save_tiny_checkpoint(tmp_path / "tiny_adm.pt", cfg)
    convert_main(["--checkpoint", str(ck), "--config", str(tmp_path / "tiny_adm.json"), "--out", str(tmp_path / "model")])
    return tmp_path / "model"


def test_real_preset_notebooks_run_on_fixture(tmp_path, tiny_model, monkeypatch):
    """ffhq-glasses 00–04 as shipped, with the fixture's files, a tiny random U-Net of the paper's base
    model layout (a converted guided-diffusion checkpoint) and the smoke sizes, through the streamed
    splits and chunked passes (3 images a chunk of 4 per class)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no-weights"))
    jdir, idir = make_ffhq(tmp_path / "ffhq")
    params = {**load_preset("ffhq-glasses"), "scale": "smoke", "image_size": 32, "ddim_steps": None,
              "batch_per_class": None, "annotations": str(jdir), "images": str(idir), "base_model": str(tiny_model),
              "data_root": str(tmp_path / "data"), "results_root": str(tmp_path / "results"), "device": "cpu",
              "eval_batch_size": 3}  # fewer than the smoke split's 4 test images per class: every chunked path splits
    for nb in ("00_dataset_split.ipynb", "01_hspace_reconstruction_steps.ipynb", "02_train_mapping_network.ipynb",
               "03_qualitative_grids.ipynb", "04_quantitative_tables.ipynb"):
        run(nb, tmp_path, params)
    out = tmp_path / "results" / "ffhq-glasses"
    assert set(pd.read_csv(out / "split_counts.csv")["images"]) == {8, 4}
    assert list(pd.read_csv(out / "hspace_steps.csv")["n_steps"]) == [5, 10]
    executed = (tmp_path / "01_hspace_reconstruction_steps.ipynb").read_text()
    assert "unavailable: LPIPS" in executed and weights.ALEXNET_FILE in executed
    lambdas = json.loads((out / "mapping" / "train_config.json").read_text())["train"]["lambdas"]
    assert lambdas["lpips"] == 0 and lambdas["id"] == 0
    assert Image.open(out / "qualitative_add.png").height == 4 * (3 * 33 + 1)  # no counterfactual row
    table = pd.read_csv(out / "tables" / "quantitative.csv").set_index("domain")
    assert list(table.index) == ["x", "y"] and set(table["n"]) == {4} and set(table["n_reference"]) == {4}
    assert set(table["lpips"]) == {"unavailable"} and table["mse"].notna().all()  # no weights here, said per cell


def test_bring_your_own_end_to_end(tmp_path):
    """Two folders of odd-sized images → dataset, a base DDPM trained for two steps, preset YAML,
    and every notebook through the batch runner."""
    from data_prep.folders import main as folders_main
    from hsep_utils import base_ddpm
    from hsep_utils.reproduce import run_preset

    for k in range(14):
        write_image(tmp_path / "plain" / f"{k}.png", k, size=(20, 24))
        write_image(tmp_path / "hats" / "sub" / f"{k}.jpg", 100 + k, size=(24, 20))
    yaml_path = tmp_path / "mine.yaml"
    tiny = ["steps 2", "block_out_channels [16, 32]", "attention_levels [1]", "n_samples 2", "warmup_steps 1",
            "batch_size 4", "checkpoint_every 1"]
    folders_main(["--name", "mine", "--background", str(tmp_path / "plain"), "--target", str(tmp_path / "hats"),
                  "--train-base-model", "--size", "32", "--base-out", str(tmp_path / "model"), "--scale", "smoke",
                  "--test-fraction", "0.3", "--data-root", str(tmp_path / "data"), "--results-root",
                  str(tmp_path / "results"), "--params-out", str(yaml_path)]
                 + [a for opt in tiny for a in ["--base-option", *opt.split(" ", 1)]])
    preset = load_preset(yaml_path)
    assert preset["dataset_kind"] == "folders" and preset["attribute"] == "hats"
    assert preset["t_edit_max"] == base_ddpm.CUT_SKIPS_T_EDIT_MAX  # its base model is blind to the deepest skips
    assert (tmp_path / "model" / "unet" / "diffusion_pytorch_model.safetensors").exists()
    out = run_preset(str(yaml_path), {"device": "cpu"}, log=lambda *_: None)
    counts = pd.read_csv(out / "split_counts.csv")
    assert set(counts["images"]) == {8, 4}  # smoke caps train at 8; 30 % of 14 → 4 test per class
    assert (out / "mapping" / "best.pt").exists() and (out / "qualitative_remove.png").exists()
    # no ddim_steps given: notebook 01's curve chose them, and notebooks 02–04 ran them
    from hsep_utils.presets import steps_for_psnr

    assert preset["ddim_steps"] == "auto" and yaml.safe_load((out / "params.yaml").read_text())["ddim_steps"] == "auto"
    chosen, _ = steps_for_psnr(pd.read_csv(out / "hspace_steps.csv"), 30.0)
    assert json.loads((out / "mapping" / "train_config.json").read_text())["train"]["n_steps"] == chosen
    assert "ddim_steps auto: notebooks 02–06 run" in (out / "01_hspace_reconstruction_steps.ipynb").read_text()
    for nb in ("02_train_mapping_network.ipynb", "04_quantitative_tables.ipynb"):
        assert "verdict: the separation" in (out / nb).read_text(), nb
