"""Editing your own image (``python -m hsep_utils.edit_image``) on files from outside the dataset."""
import numpy as np
import pytest
import torch
from conftest import tiny_unet
from PIL import Image

from hsep_utils.base_ddpm import build_scheduler
from hsep_utils.edit_image import main, read_image
from hsep_utils.mapping import MappingNetwork
from hsep_utils.toy import render_batch


@pytest.fixture
def trained(tmp_path):
    """A toy-glasses preset 'trained' on a tiny base model: a random mapping network in best.pt's format
    (the CLI's plumbing is under test here, not the edit's quality)."""
    tiny_unet(32).save_pretrained(tmp_path / "model" / "unet")
    build_scheduler().save_pretrained(tmp_path / "model" / "scheduler")
    torch.manual_seed(0)
    net = MappingNetwork(32, "a", 2, 4)
    (tmp_path / "results" / "toy-glasses" / "mapping").mkdir(parents=True)
    torch.save(dict(net=net.state_dict(), net_config=net.config()), tmp_path / "results" / "toy-glasses" / "mapping" / "best.pt")
    overrides = dict(base_model=tmp_path / "model", results_root=tmp_path / "results", data_root=tmp_path / "data",
                     scale="smoke", device="cpu", ddim_steps=4, salient_strength=1.5, removal_strength=1.5,
                     donor_specificity=1,  # the paper's swap: a random network has no donor prior
                     removal_common_shift=0)  # and the paper's C on removal: nor a common shift
    return tmp_path, [a for k, v in overrides.items() for a in ("-p", k, str(v))]


def save_face(path, mode="RGB", size=None):
    img = Image.fromarray(render_batch(123, [0])[0]).convert(mode)
    if size:
        img = img.resize(size, Image.BICUBIC)
    img.save(path)
    return path


@pytest.mark.parametrize("mode, size, said", [
    ("RGB", None, []),
    ("RGBA", None, ["RGBA converted to RGB (alpha dropped)"]),
    ("L", None, ["grayscale converted to RGB"]),
    ("RGB", (45, 37), ["centre-cropped 45×37 to 37×37", "resized 37×37 to 32×32"]),
])
def test_edit_image_writes_an_edit_of_any_file(trained, mode, size, said, capsys, monkeypatch):
    import inspect

    import hsep_utils.edit

    root, overrides = trained
    reached, edit = [], hsep_utils.edit.edit

    def spy(*a, **k):  # records each call's arguments by name, however they were passed
        bound = inspect.signature(edit).bind(*a, **k)
        bound.apply_defaults()
        reached.append(tuple(bound.arguments[name] for name in ("mode", "alpha", "xT", "donor_xT")))
        return edit(*a, **k)

    monkeypatch.setattr(hsep_utils.edit, "edit", spy)
    face = save_face(root / f"face-{mode}.png", mode, size)
    assert read_image(face, 32)[1] == said
    main([str(face), "--preset", "toy-glasses", "--add", "--out", str(root / "added.png"), *overrides])
    printed = capsys.readouterr().out
    assert all(s in printed for s in said) and "α = 1.5, donor the first target test image" in printed
    added = np.asarray(Image.open(root / "added.png"))
    assert added.shape == (32, 32, 3)
    main([str(face), "--preset", "toy-glasses", "--add", "--alpha", "0", "--donor", str(face), "--out",
          str(root / "alpha0.png"), *overrides])
    # α and the donor reach the edit (asked of the call: a random network's two edits can round to the same bytes)
    (_, alpha, xT, donor_xT), (_, alpha0, xT0, donor0_xT) = reached
    assert (alpha, alpha0) == (1.5, 0.0) and torch.equal(donor0_xT, xT0) and not torch.equal(donor_xT, xT)
    assert np.asarray(Image.open(root / "alpha0.png")).shape == (32, 32, 3)
    main([str(face), "--preset", "toy-glasses", "--remove", "--out", str(root / "removed.png"), *overrides])
    assert np.asarray(Image.open(root / "removed.png")).shape == (32, 32, 3) and reached[-1][0] == "remove"


def test_edit_image_names_what_is_missing(trained, tmp_path):
    root, overrides = trained
    (tmp_path / "not-an-image.png").write_text("hello")
    with pytest.raises(ValueError, match=r"not-an-image\.png is not a readable image .*pass a PNG or JPEG"):
        main([str(tmp_path / "not-an-image.png"), "--preset", "toy-glasses", "--remove", "--out",
              str(tmp_path / "o.png"), *overrides])
    face = save_face(tmp_path / "face.png")
    with pytest.raises(FileNotFoundError, match=r"other/toy-glasses/mapping/best\.pt does not exist: train .*notebook 02"):
        main([str(face), "--preset", "toy-glasses", "--remove", "--out", str(tmp_path / "o.png"), *overrides,
              "-p", "results_root", str(tmp_path / "other")])
    with pytest.raises(FileNotFoundError, match=r"donor_specificity 0.5 needs .*mapping/donor_prior\.pt.*notebook 02"):
        main([str(face), "--preset", "toy-glasses", "--add", "--out", str(tmp_path / "o.png"), *overrides,
              "-p", "donor_specificity", "0.5"])
    with pytest.raises(FileNotFoundError, match=r"removal_common_shift 1.0 needs .*mapping/common_shift\.pt.*notebook 02"):
        main([str(face), "--preset", "toy-glasses", "--remove", "--out", str(tmp_path / "o.png"), *overrides,
              "-p", "removal_common_shift", "1"])
    with pytest.raises(SystemExit):  # --donor with --remove is a usage error
        main([str(face), "--preset", "toy-glasses", "--remove", "--donor", str(face), "--out", str(tmp_path / "o.png")])
    assert not (tmp_path / "o.png").exists()


def test_default_image_comes_from_the_split_the_tables_score(tmp_path):
    """Without ``image`` / ``--donor`` the first test image is used: the sealed population's when the
    preset sets ``test_seed`` (what notebooks 03–05 score), the test split's otherwise."""
    from hsep_utils.edit_image import first_test_image
    from hsep_utils.presets import resolve

    params = resolve("toy-glasses", {"data_root": str(tmp_path), "scale": "smoke", "n_train_per_class": 4,
                                     "n_test_per_class": 2, "n_val_per_class": 1, "test_seed": None})
    x, file = first_test_image(params, "target", 32)
    assert x.shape == (1, 3, 32, 32) and file.startswith("test/target/")
    x_sealed, sealed = first_test_image({**params, "test_seed": 7}, "background", 32)
    assert sealed.startswith("sealed7/background/") and not torch.equal(x_sealed, first_test_image(params, "background", 32)[0])
