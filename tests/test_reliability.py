"""Reliability (issue 10): bad input, interrupted runs, determinism and safe loading, on tiny fixtures.

Cases tested elsewhere are not repeated here: bad FFHQ / CelebA-HQ annotation files and a corrupt FFHQ
image (test_real_data), an empty or missing image folder (test_real_data.test_folder_errors), an
unknown preset and unknown / malformed YAML keys (test_presets), a base-DDPM checkpoint of another
architecture and its resume after a crash (test_base_ddpm), a mapping checkpoint trained with another
config and its resume (test_method), a missing base model / weights file (test_diffusion) and
byte-identical toy datasets (test_toy).
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import tiny_unet
from PIL import Image
from test_real_data import make_celebahq, write_image

from data_prep.celebahq import split_celebahq
from hsep_utils import base_ddpm
from hsep_utils import losses as L
from hsep_utils.base_ddpm import build_scheduler
from hsep_utils.datasets import load_images
from hsep_utils.diffusion import Diffusion, load_diffusion
from hsep_utils.edit import edit, swap_salient
from hsep_utils.io import atomic_path, save_torch
from hsep_utils.mapping import MappingNetwork
from hsep_utils.presets import known_presets, load_preset
from hsep_utils.real_data import prepare_real_dataset
from hsep_utils.train import TrainConfig, load_mapping, train_mapping

REPO = Path(__file__).resolve().parents[1]
LIBRARY = sorted((REPO / "hsep_utils").glob("*.py")) + sorted((REPO / "data_prep").glob("*.py"))


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: on a shared 2-core machine two threads made these tiny runs ~40× slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ------------------------------------------------------------------------------------ bad input: images

def _folders(tmp_path: Path, n: int = 4, size=(16, 16)) -> dict:
    """Two folders of ``n`` RGB images each, and the params of a bring-your-own preset on them (16 px):
    3 train + 1 test per class, so every image is used."""
    for k in range(n):
        write_image(tmp_path / "plain" / f"{k}.png", k, size)
        write_image(tmp_path / "hats" / f"{k}.png", 100 + k, size)
    return dict(preset="mine", dataset_kind="folders", attribute="hats", image_size=16, seed=0,
                data_root=str(tmp_path / "data"), n_train_per_class=3, n_test_per_class=1, test_fraction=0.25,
                background_dir=str(tmp_path / "plain"), target_dir=str(tmp_path / "hats"))


def _no_dataset_written(tmp_path: Path) -> None:
    """Only the shared resize cache may exist: no dataset folder, no half-built temporary one."""
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["resized"]


def test_corrupt_image_in_a_folder_is_named_and_nothing_is_written(tmp_path):
    params = _folders(tmp_path)
    (tmp_path / "plain" / "3.png").write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    with pytest.raises(ValueError, match=r"plain/3\.png is not a readable image \(UnidentifiedImageError: .*\): "
                                         r"replace it or remove it from the dataset"):
        prepare_real_dataset(params, progress=False, workers=1)
    _no_dataset_written(tmp_path)


def test_non_image_files_are_a_counted_skip(tmp_path):
    params = _folders(tmp_path)
    (tmp_path / "plain" / "notes.txt").write_text("not an image")
    (tmp_path / "hats" / ".DS_Store").write_bytes(b"\0\0")
    with pytest.warns(UserWarning, match=r"folders hats: 2 not an image file, left out \(e\.g\. .*plain/notes\.txt, "
                                         r".*hats/\.DS_Store\)"):
        m, root = prepare_real_dataset(params, progress=False, workers=1)
    assert len(m) == 8 and not m["file"].str.contains("notes|DS_Store").any()
    assert json.loads((root / "dataset.json").read_text())["counted"]["not an image file, left out"]["count"] == 2


def test_class_folder_without_images_is_an_error(tmp_path):
    params = _folders(tmp_path)
    for p in (tmp_path / "hats").iterdir():
        p.unlink()
    (tmp_path / "hats" / "readme.txt").write_text("the images are elsewhere")
    with pytest.raises(ValueError, match=r"hats holds no images \(\.png, .*\): put the class's images there or "
                                         r"point the preset at the right folder"):
        prepare_real_dataset(params, progress=False, workers=1)
    assert not (tmp_path / "data").exists()


def test_image_modes_and_sizes_are_converted_and_said_once(tmp_path):
    params = _folders(tmp_path)
    Image.fromarray(np.full((16, 16), 77, np.uint8)).save(tmp_path / "plain" / "1.png")  # grayscale (L)
    Image.fromarray(np.full((16, 16, 4), (10, 200, 30, 0), np.uint8)).save(tmp_path / "plain" / "2.png")  # RGBA
    Image.fromarray(np.full((16, 16), 0x8000, np.uint16)).save(tmp_path / "plain" / "3.png")  # 16-bit
    assert Image.open(tmp_path / "plain" / "3.png").mode.startswith("I")
    write_image(tmp_path / "hats" / "1.png", 7, size=(24, 24))  # wrong size
    write_image(tmp_path / "hats" / "2.png", 8, size=(16, 20))  # not square
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m, root = prepare_real_dataset(params, progress=False, workers=1)
    said = [str(w.message) for w in caught if "converted to RGB" in str(w.message)]
    assert len(said) == 1, said  # one warning for every adapted image
    for part in (r"1 grayscale converted to RGB \(e\.g\. .*plain/1\.png\)",
                 r"1 RGBA converted to RGB \(alpha dropped\) \(e\.g\. .*plain/2\.png\)",
                 r"1 I;16 \(16-bit\) scaled to 8-bit RGB \(e\.g\. .*plain/3\.png\)",
                 r"1 not square, centre-cropped \(e\.g\. .*hats/2\.png\)",
                 r"1 resized to 16×16 px \(e\.g\. .*hats/1\.png\)"):  # 16×20 is only cropped
        assert re.search(part, said[0]), (part, said[0])
    assert json.loads((root / "dataset.json").read_text())["adapted"]["resized to 16×16 px"]["count"] == 1
    pixel = {Path(s).stem: np.asarray(Image.open(root / f))[8, 8] for f, s, c in zip(m["file"], m["source"], m["class"])
             if c == "background"}
    assert list(pixel["3"]) == [128, 128, 128]  # 16-bit mid-grey stays mid-grey (PIL's own conversion: white)
    assert list(pixel["2"]) == [10, 200, 30]
    with warnings.catch_warnings(record=True) as caught:  # the second run reuses the dataset: nothing said again
        warnings.simplefilter("always")
        prepare_real_dataset(params, progress=False, workers=1)
    assert not caught

    # a standard-layout dataset read at another size: resized, said once with the count
    with pytest.warns(UserWarning, match=r"2 of 3 images in .* are not 16×16 px \(e\.g\. .*hats/1\.png "
                                         r"\(24×24\)\): resized \(bicubic\)") as record:
        x = load_images(tmp_path, ["plain/0.png", "hats/1.png", "hats/2.png"], size=16)
    assert x.shape == (3, 3, 16, 16) and len([w for w in record if "resized" in str(w.message)]) == 1


def test_unreadable_image_in_a_built_dataset_is_named(tmp_path):
    write_image(tmp_path / "train" / "a.png", 0)
    (tmp_path / "train" / "b.png").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"train/b\.png is not a readable image .*rebuild the dataset"):
        load_images(tmp_path, ["train/a.png", "train/b.png"], 16)


def test_dataset_with_one_class_names_its_source(tmp_path):
    anno, imgs = make_celebahq(tmp_path, n=12)  # every attribute but Male and Smiling is -1 for all
    with pytest.raises(ValueError, match=r"CelebAMask-HQ-attribute-anno\.txt \(celebahq Bald\): no target images "
                                         r"\(all\): check the annotations"):
        split_celebahq("Bald", str(anno), str(imgs), n_train_per_class=3, n_test_per_class=1, size=16,
                       data_root=str(tmp_path / "data"), progress=False, workers=1)
    assert not (tmp_path / "data").exists()


# ----------------------------------------------------------------------------------- bad input: presets

@pytest.mark.parametrize("text,match", [
    ("dataset_kind: toy\n", r"lacks the key 'preset' \(name, used for results/<preset>/\): add e\.g\. `preset: p`"),
    ("preset: p\ndataset_kind: imagenet\n", r"dataset_kind 'imagenet' is not one of \['toy', 'ffhq', 'celebahq', "
                                            r"'folders'\]"),
    ("preset: p\narch: e\n", r"arch 'e' is not one of \['a', 'b', 'c', 'd'\]"),
    ("preset: p\nattribute: hats\n", r"toy attribute 'hats' is not one of \['glasses', 'smile', 'age', 'gender'\]"),
    ("preset: p\nseed: zero\n", r"seed must be an integer, got 'zero' \(seed: every random choice derives from it\)"),
    ("preset: p\nlr: fast\n", r"lr must be a number, got 'fast' \(lr: Adam learning rate of the mapping network\)"),
    ("preset: p\nbatch_per_class: 2.5\n", r"batch_per_class must be an integer, got 2\.5 \(batch_per_class: training images per class"),
])
def test_malformed_preset_values_are_named_with_allowed_values(tmp_path, text, match):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=r"p\.yaml.*" + match):
        load_preset(path)


def test_every_shipped_preset_passes_the_checks():
    for name in known_presets():
        assert load_preset(name)["preset"] == name


def test_unknown_preset_on_the_command_line(capsys):
    from hsep_utils.reproduce import main

    assert main(["--preset", "toy-hats"]) == 1
    err = capsys.readouterr().err
    assert "unknown preset 'toy-hats': known presets are " in err and "toy-glasses" in err and "ffhq-age" in err


# -------------------------------------------------------------------------------- bad input: base model

@pytest.fixture
def model_dir(tmp_path) -> Path:
    tiny_unet(16).save_pretrained(tmp_path / "model" / "unet")
    build_scheduler().save_pretrained(tmp_path / "model" / "scheduler")
    return tmp_path / "model"


def test_base_model_weights_of_another_architecture(model_dir, tmp_path):
    other = base_ddpm.build_unet(size=16, block_out_channels=(16, 16), layers_per_block=1, attention_levels=(1,),
                                 norm_num_groups=8)
    other.save_pretrained(tmp_path / "other")
    weights = model_dir / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes((tmp_path / "other" / "diffusion_pytorch_model.safetensors").read_bytes())
    with pytest.raises(ValueError, match=r"unet/diffusion_pytorch_model\.safetensors does not load with "
                                         r".*unet/config\.json \(ValueError: .*expected shape torch\.Size\(\[\d.*\]\), "
                                         r"but got torch\.Size\(\[\d.*\]\)\): the file is truncated or corrupt, or "
                                         r"the weights and the config come from different models"):
        load_diffusion(model_dir)


def test_truncated_base_model_weights(model_dir):
    weights = model_dir / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ValueError, match=r"diffusion_pytorch_model\.safetensors does not load with .*config\.json "
                                         r"\(OSError: Unable to load weights .*\): the file is truncated or corrupt"):
        load_diffusion(model_dir)


@pytest.mark.parametrize("remove,match", [
    ("unet/config.json", r"model has no config\.json \(looked in .*model and .*model/unet\)\. Place a diffusers"),
    ("scheduler/scheduler_config.json", r"model has no scheduler_config\.json \(looked in .*model and "
                                        r".*model/scheduler\)\. Place a diffusers"),
])
def test_base_model_directory_missing_files(model_dir, remove, match):
    (model_dir / remove).unlink()
    with pytest.raises(FileNotFoundError, match=match):
        load_diffusion(model_dir)


def test_mapping_checkpoint_of_another_h_shape_says_which_shapes(tmp_path, tiny_diffusion):
    net = MappingNetwork(16, "a", depth=1)  # trained on a base model whose h has 16 channels
    save_torch(dict(net=net.state_dict(), net_config=net.config()), tmp_path / "best.pt")
    loaded = load_mapping(tmp_path / "best.pt")
    xT = torch.randn(2, 3, 16, 16)
    with pytest.raises(ValueError, match=r"mapping network \(\{'channels': 16, 'arch': 'a', .*\) was trained on h "
                                         r"with 16 channels, but base model .* gives h of shape \[B, 32, 8, 8\]: use "
                                         r"the mapping checkpoint trained with this base model"):
        swap_salient(tiny_diffusion, loaded, xT[:1], xT[1:], 3)


# ------------------------------------------------------------------------------ shared tiny training run

CFG = dict(depth=2, n_steps=3, lr=1e-3, epochs=2, batch_per_class=2, validate_every=1)
"""4 images per class, 2 batches per epoch, 2 epochs, 3 DDIM steps: 4 batches × 3 optimiser steps."""

_DATA = """
import torch
def run_data():
    g = [torch.Generator().manual_seed(s) for s in (11, 12)]
    x_bg, x_tg = (torch.rand(4, 3, 16, 16, generator=gi) * 2 - 1 for gi in g)
    return x_bg, x_tg, [f"b{i}" for i in range(4)], [f"t{i}" for i in range(4)]
"""
exec(_DATA)  # defines run_data(), shared verbatim with the SIGKILL subprocess


def _diffusion() -> Diffusion:
    return Diffusion(tiny_unet(16, seed=0), build_scheduler().alphas_cumprod)


def _constant_sr(net):
    return {"sr": 0.0}


def _train(out: Path, validate=_constant_sr):
    """As the pipeline trains: inversions cached on disk (recomputed in other batch groupings after a resume,
    they would differ in the last float bits)."""
    return train_mapping(_diffusion(), *run_data(), TrainConfig(**CFG), out, validate=validate, checkpoint_every=1,
                         inversion_dir=out / "inversions", progress=False)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """One uninterrupted run: the runs below (killed, NaN-stopped, repeated) must match it."""
    out = tmp_path_factory.mktemp("reference")
    _train(out)
    return out


def _same_run(a: Path, b: Path) -> None:
    """Identical loss log, weights and optimiser state."""
    pd.testing.assert_frame_equal(pd.read_csv(a / "train_log.csv"), pd.read_csv(b / "train_log.csv"), check_exact=True)
    ca, cb = (torch.load(d / "last.pt", weights_only=True) for d in (a, b))
    assert ca["net"].keys() == cb["net"].keys() and all(torch.equal(ca["net"][k], cb["net"][k]) for k in ca["net"])
    for sa, sb in zip(ca["opt"]["state"].values(), cb["opt"]["state"].values()):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert (ca["epoch"], ca["batch"], len(ca["rows"])) == (cb["epoch"], cb["batch"], len(cb["rows"]))


# -------------------------------------------------------------------------------- NaN / inf in a loss

def test_nan_loss_stops_with_step_and_term_and_keeps_the_last_good_checkpoint(tmp_path, reference, monkeypatch):
    real, calls = L.silence, {"n": 0}

    def nan_on_batch_3(s_bg):
        calls["n"] += 1
        return real(s_bg) * float("nan") if calls["n"] == 7 else real(s_bg)  # 3 steps per batch: batch 3, first step

    monkeypatch.setattr(L, "silence", nan_on_batch_3)
    with pytest.raises(FloatingPointError, match=r"non-finite loss term\(s\) \['silence'\] at epoch 1, batch 0, "
                                                 r"t=999 \(all terms: .*\); the last good checkpoint is .*last\.pt"):
        _train(tmp_path / "run")
    ck = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert (ck["epoch"], ck["batch"]) == (1, 0) and all(np.isfinite(r["total"]) for r in ck["rows"])
    assert len(pd.read_csv(tmp_path / "run" / "train_log.csv")) == 6  # the two good batches, nothing of the third
    monkeypatch.setattr(L, "silence", real)
    _train(tmp_path / "run")  # fixed: run again, it resumes
    _same_run(reference, tmp_path / "run")


def test_nan_loss_in_base_ddpm_training_stops_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    real, calls = base_ddpm.predict_noise, {"n": 0}

    def nan_at_step_3(*args):
        calls["n"] += 1
        out = real(*args)
        return out * float("nan") if calls["n"] == 3 else out

    monkeypatch.setattr(base_ddpm, "predict_noise", nan_at_step_3)
    data = torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    tiny = dict(size=16, block_out_channels=(16, 32), attention_levels=(1,), batch_size=4, steps=6, checkpoint_every=2,
                warmup_steps=2, n_samples=2)
    with pytest.raises(FloatingPointError, match=r"non-finite loss nan \(noise MSE\) at step 3: stopped before the "
                                                 r"optimiser step; .*checkpoint\.pt \(step 2\) is kept\. Lower lr"):
        base_ddpm.train(data=data, out=str(tmp_path / "m"), **tiny)
    assert torch.load(tmp_path / "m" / "checkpoint.pt", weights_only=True)["step"] == 2
    assert len(pd.read_csv(tmp_path / "m" / "loss_log.csv")) == 2 and not (tmp_path / "m" / "unet").exists()


# ------------------------------------------------------------------------------------ interrupted runs

def test_atomic_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "table.csv"
    target.write_text("old\n")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half a ta")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["table.csv"]


def test_every_library_write_goes_through_a_temporary_file():
    """Checkpoints, tables, figures, images and models: each write targets a ``tmp`` path (hsep_utils.io's
    atomic_path or a temporary folder renamed into place); only io.py itself writes elsewhere."""
    write = re.compile(r"\.to_csv\(|torch\.save\(|\.savefig\(|np\.save\(|\.write_text\(|\.write_bytes\(|save_file\("
                       r"|\.save\(|save_pretrained\(|open\([^)]*[\"'][wa]")
    offenders = [f"{f.relative_to(REPO)}:{i}: {line.strip()}" for f in LIBRARY if f.name != "io.py"
                 for i, line in enumerate(f.read_text().splitlines(), 1)
                 if write.search(line) and "tmp" not in line and not line.lstrip().startswith(("#", '"'))]
    assert not offenders, offenders


def test_a_finished_training_read_back_writes_nothing(tmp_path, reference):
    """Rerunning notebook 02 on a finished run must leave its files byte for byte as they were."""
    out = tmp_path / "finished"
    shutil.copytree(reference, out)
    before = {f.name: f.read_bytes() for f in out.iterdir() if f.is_file()}
    time.sleep(0.05)  # a rewritten train_config.json would record other minutes
    _train(out)
    assert {f.name: f.read_bytes() for f in out.iterdir() if f.is_file()} == before


def test_training_killed_with_sigkill_resumes_identically(tmp_path, reference):
    """A real subprocess trains with a checkpoint after every batch and is SIGKILLed once the first
    checkpoint exists; the resumed run has the uninterrupted run's loss log, weights and optimiser state."""
    out = tmp_path / "killed"
    script = _DATA + f"""
import sys, time
from pathlib import Path
sys.path[:0] = [{str(REPO)!r}, {str(REPO / 'tests')!r}]
torch.set_num_threads({torch.get_num_threads()})
from conftest import tiny_unet
from hsep_utils.base_ddpm import build_scheduler
from hsep_utils.diffusion import Diffusion
from hsep_utils.train import TrainConfig, train_mapping

def slow(net):  # room for the kill between checkpoints
    time.sleep(0.4)
    return {{"sr": 0.0}}

d = Diffusion(tiny_unet(16, seed=0), build_scheduler().alphas_cumprod)
train_mapping(d, *run_data(), TrainConfig(**{CFG!r}), {str(out)!r}, validate=slow, checkpoint_every=1,
              inversion_dir=Path({str(out / 'inversions')!r}), progress=False)
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while not (out / "last.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    if proc.poll() is not None:
        pytest.fail(f"the training subprocess ended before the kill:\n{proc.communicate()[0].decode()}")
    os.kill(proc.pid, signal.SIGKILL)
    log = proc.communicate()[0].decode()
    assert proc.returncode == -signal.SIGKILL, log
    assert not (out / "train_config.json").exists(), "finished before the kill"
    ck = torch.load(out / "last.pt", weights_only=True)
    done = ck["epoch"] * 2 + ck["batch"]
    assert 1 <= done < 4 and len(ck["rows"]) == 3 * done  # at most one checkpoint interval (one batch) lost
    rows = pd.read_csv(reference / "train_log.csv").head(3 * done)  # the subprocess's steps match this process's
    pd.testing.assert_frame_equal(pd.DataFrame(ck["rows"]), rows, check_exact=True)
    _train(out)
    _same_run(reference, out)


# ---------------------------------------------------------------------------------------- determinism

def test_same_seed_same_training_numbers_on_cpu(tmp_path, reference):
    _train(tmp_path / "again")
    assert (tmp_path / "again" / "train_log.csv").read_bytes() == (reference / "train_log.csv").read_bytes()
    _same_run(reference, tmp_path / "again")
    net_a, net_b = load_mapping(reference / "last.pt"), load_mapping(tmp_path / "again" / "last.pt")
    xT = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    is_t = torch.tensor([False, True])
    assert torch.equal(edit(_diffusion(), net_a, xT, is_t, 3, "remove"), edit(_diffusion(), net_b, xT, is_t, 3, "remove"))


# --------------------------------------------------------------------------------------- safe loading

def _sources() -> list[tuple[str, str]]:
    """(name, code) of the library, the data_prep scripts and every notebook's code cells."""
    out = [(str(f.relative_to(REPO)), f.read_text()) for f in LIBRARY]
    for nb in sorted((REPO / "notebooks").glob("*.ipynb")):
        cells = json.loads(nb.read_text())["cells"]
        out.append((nb.name, "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")))
    return out


def test_every_checkpoint_load_is_safe():
    unsafe = []
    for name, code in _sources():
        for call in re.findall(r"torch\.load\([^\n]*", code):
            if "weights_only=True" not in call:
                unsafe.append(f"{name}: {call}")
        for call in re.findall(r"from_pretrained\([^\n]*", code):
            if "local_files_only=True" not in call:
                unsafe.append(f"{name}: {call}")
        unsafe += [f"{name}: {m}" for m in re.findall(r"import pickle|pickle\.load|allow_pickle=True|"
                                                      r"hf_hub_download|urlretrieve|requests\.get", code)]
    assert not unsafe, unsafe


def test_smoke_path_runs_with_the_network_unavailable(tmp_path, model_dir, monkeypatch):
    """Dataset build, model loading, the image-term models, training and an edit, with every socket refused."""
    from hsep_utils.parameters import complete
    from hsep_utils.preset_training import image_term_models, train_config
    from hsep_utils.splits import load_preset_data

    class NoNetwork(socket.socket):
        def __init__(self, *args, **kwargs):
            raise OSError("network access attempted: hsep must not download at run time")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no LPIPS weights: unavailable, not downloaded
    monkeypatch.setattr(socket, "socket", NoNetwork)
    with pytest.raises(OSError, match="network access attempted"):
        socket.create_connection(("127.0.0.1", 9))  # the patch is in force
    params = complete({**load_preset("toy-glasses"), "scale": "smoke", "n_train_per_class": 3, "n_test_per_class": 1,
                         "image_size": 16, "data_root": str(tmp_path / "data"), "base_model": str(model_dir),
                         "ddim_steps": 3, "batch_per_class": 2, "train_batches": 1, "arch": "a", "depth": 1,
                         "t_edit": 0, "lr": 1e-4, "epochs": 1, "kl_temperature": 1.0, "common_adversary": 0.0,
                         "lambdas": None})
    diffusion = load_diffusion(params["base_model"])
    data = load_preset_data(params, 16, n_val_per_class=1)
    with pytest.warns(UserWarning, match="LPIPS loss term off"):
        cfg, lpips, id_embed = image_term_models(train_config(params), "cpu", params)
    net = train_mapping(diffusion, data["train_bg"].x, data["train_tg"].x, data["train_bg"].keys, data["train_tg"].keys,
                        cfg, tmp_path / "run", id_embed=id_embed, lpips=lpips, progress=False)
    added, removed = swap_salient(diffusion, net.eval(), torch.randn(1, 3, 16, 16), torch.randn(1, 3, 16, 16), 3)
    assert torch.isfinite(added).all() and torch.isfinite(removed).all()
