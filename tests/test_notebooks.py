"""pyhf-style notebook tests: papermill runs each notebook with tiny parameters into a temp dir and
the test checks what it wrote."""
import json
from pathlib import Path

import pandas as pd
import papermill as pm
import pytest
from conftest import tiny_unet

from hsep_utils.base_ddpm import build_scheduler
from hsep_utils.diffusion import ddim_timesteps
from hsep_utils.presets import resolve

NB = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    root = tmp_path_factory.mktemp("nb")
    tiny_unet(32).save_pretrained(root / "model" / "unet")
    build_scheduler().save_pretrained(root / "model" / "scheduler")
    params = dict(scale="smoke", data_root=str(root / "data"), results_root=str(root / "results"),
                  base_model=str(root / "model"), device="cpu", salient_strength="auto",
                  removal_common_shift=1.0,  # beyond the paper: the removals' C moved (toy-glasses' own is 0)
                  eval_batch_size=3)  # fewer than the smoke split's 4 test images per class: chunked paths split
    return root, params


def run(name, root, params):
    pm.execute_notebook(str(NB / name), str(root / name), parameters=params, cwd=str(NB), progress_bar=False,
                        kernel_name="python3", execution_timeout=600)  # a hung cell fails, not CI's 90 minutes
    return root / "results" / "toy-glasses"


def test_00_dataset_split(smoke):
    out = run("00_dataset_split.ipynb", *smoke)
    counts = pd.read_csv(out / "split_counts.csv")
    assert set(counts["images"]) == {8, 4}
    m = pd.read_csv(out / "split_manifest.csv")
    assert list(m.columns) == ["file", "class", "split", "identity"] and len(m) == 24
    assert (out / "examples.png").stat().st_size > 0


def test_01_hspace_reconstruction_steps(smoke):
    out = run("01_hspace_reconstruction_steps.ipynb", *smoke)
    t = pd.read_csv(out / "hspace_steps.csv")
    assert list(t["n_steps"]) == [5, 10]
    assert {"mse", "psnr"} <= set(t.columns) and t["mse"].gt(0).all()
    assert (out / "hspace_steps.png").exists() and (out / "hspace_reconstructions.png").exists()


def test_02_train_mapping_network(smoke):
    out = run("02_train_mapping_network.ipynb", *smoke)
    for f in ("classifier.pt", "mapping/best.pt", "mapping/last.pt", "mapping/loss_curves.png"):
        assert (out / f).exists(), f
    assert resolve("toy-glasses")["donor_specificity"] != 1  # so the prior its swaps pull toward is written
    assert (out / "mapping" / "donor_prior.pt").exists() and (out / "mapping" / "common_shift.pt").exists()
    log = pd.read_csv(out / "mapping" / "train_log.csv")
    assert {"silence", "consistency", "kl", "orthogonal", "classification", "pixel", "total"} <= set(log.columns)
    edited = [t for t in ddim_timesteps(5) if t < resolve("toy-glasses")["t_edit_max"]]  # the preset's edit window
    assert log["batch"].nunique() == 2 and sorted(set(log["t"])) == edited  # smoke: 2 batches × 5 DDIM steps
    assert {"sr", "sr_add", "sr_remove"} <= set(pd.read_csv(out / "mapping" / "val_log.csv").columns)
    # the notebook's reverse_process (toy default: symmetric) reaches training, whose library default differs
    assert json.loads((out / "mapping" / "train_config.json").read_text())["train"]["asymmetric"] is False
    strength = pd.read_csv(out / "mapping" / "salient_strength.csv")  # salient_strength auto: chosen on validation
    alphas = [1.0, 1.25, 1.5, 2.0, 2.5, 3.0][:len(strength)]  # edited up to the first α reaching the target
    assert list(strength["alpha"]) == alphas and strength["chosen"].sum() == 1
    executed = (smoke[0] / "02_train_mapping_network.ipynb").read_text()  # text progress bars, final state kept
    assert "widget-view" not in executed and "train mapping network: 100%" in executed


def test_03_qualitative_grids(smoke):
    out = run("03_qualitative_grids.ipynb", *smoke)
    from PIL import Image

    add = Image.open(out / "qualitative_add.png")
    assert add.height == 4 * (4 * 33 + 1)  # original, reconstruction, edit, counterfactual rows of 32 px, scale 4
    assert (out / "qualitative_remove.png").exists() and (out / "salient_strength.png").exists()


TABLE_COLUMNS = ["domain", "lpips", "mse", "psnr", "id", "fid", "kid", "sr", "oracle_sr", "cf_mse_ratio", "fd_toy",
                 "oracle_sr_donor", "donor_match", "psnr_outside", "identity_kept"]


def test_04_quantitative_tables(smoke):
    out = run("04_quantitative_tables.ipynb", *smoke)
    t = pd.read_csv(out / "tables" / "quantitative.csv")
    assert list(t.columns[:len(TABLE_COLUMNS)]) == TABLE_COLUMNS
    strength = pd.read_csv(out / "mapping" / "salient_strength.csv")
    alpha = strength.loc[strength["chosen"], "alpha"].item()
    removal = out / "mapping" / "removal_strength.csv"  # removal_strength auto: chosen on validation too
    beta = pd.read_csv(removal).query("chosen")["beta"].item() if removal.exists() else 1.0
    # the paper's swap and removal beside (the swap also when the donors' S is pulled toward the targets' mean,
    # both when an edit mask confines the edits, the removal when a common shift moves its C)
    preset = resolve("toy-glasses")
    paper_swap = alpha == 1 and preset["donor_specificity"] == 1 and not preset["edit_mask"]
    paper_removal = beta == 1 and not preset["edit_mask"] and not smoke[1]["removal_common_shift"]
    assert list(t["domain"]) == ["x", "y"] + ([] if paper_swap else ["x (α = 1)"]) + ([] if paper_removal else ["y (β = 1)"])
    assert f"salient strength α = {alpha}" in (out / "tables" / "quantitative.md").read_text()
    assert "the judge: SmallCNN (width 48, 4 blocks)" in (out / "tables" / "quantitative.md").read_text()
    assert t["mse"].astype(float).gt(0).all() and t["id"].astype(float).between(-1, 1).all()
    md = (out / "tables" / "quantitative.md").read_text()
    assert "unavailable" in md and "alexnet-owt-7be5be79.pth" in md  # LPIPS weights absent here: named, no number
    assert set(t["lpips"]) == {"unavailable"}
    assert "ID: the second toy identity encoder" in md and "LPIPS" in md  # who scored ID and LPIPS, said


def test_05_ablation_tables(smoke):
    root, params = smoke
    grid = {"t_edit": [400, 0], "arch": ["a", "d"], "depth": [8]}
    out = run("05_ablation_tables.ipynb", root, {**params, "ablation_grid": grid})
    t = pd.read_csv(out / "tables" / "ablation.csv")
    assert list(t.columns[:4]) == ["t_edit", "arch", "depth", "domain"] and set(TABLE_COLUMNS) <= set(t.columns)
    assert len(t) == 2 * 2 * 2  # t_edit × arch × domain
    assert (out / "tables" / "ablation_t400.md").exists() and (out / "tables" / "ablation_t0.md").exists()
    assert (out / "ablation" / "t0-d-d8" / "rows.json").exists()
    means = pd.read_csv(out / "tables" / "ablation_means.csv")
    assert list(means["factor"]) == ["arch"] * 2 + ["fusion"] * 4 + ["t_edit"] * 2 + ["depth"]  # fusion per t_edit


def test_06_edit_your_image(smoke, tmp_path):
    from PIL import Image

    from hsep_utils.toy import render_batch

    root, params = smoke
    out = run("06_edit_your_image.ipynb", root, params)  # a test image of the preset, adding
    strip = Image.open(out / "edit_your_image.png")
    assert strip.size == (4 * (9 * 33 + 1), 4 * 34)  # original, donor and 7 strengths of 32 px, scale 4
    face = tmp_path / "face.jpg"  # an image from outside the dataset, odd-sized, removing
    Image.fromarray(render_batch(7, [0], glasses=1)[0]).resize((50, 40)).save(face)
    run("06_edit_your_image.ipynb", root, {**params, "image": str(face), "add": False})
    assert Image.open(out / "edit_your_image.png").size == (4 * (2 * 33 + 1), 4 * 34)
    executed = (root / "06_edit_your_image.ipynb").read_text()
    assert "centre-cropped 50×40 to 40×40" in executed


def test_runner_writes_no_machine_paths(tmp_path):
    from hsep_utils.presets import REPO_ROOT
    from hsep_utils.reproduce import relative_paths

    nb = tmp_path / "x.ipynb"
    nb.write_text('{"path": "%s/notebooks/00.ipynb"}' % REPO_ROOT)
    relative_paths(nb)
    assert nb.read_text() == '{"path": "notebooks/00.ipynb"}'


def test_every_parameter_line_parses_for_papermill():
    """papermill drops a parameters-cell line it cannot parse (e.g. a comment holding " = ") from
    ``--help-notebook`` and from its type handling, with only a log line."""
    import nbformat
    from papermill.translators import PythonTranslator

    for path in sorted(NB.glob("0*.ipynb")):
        cell = next(c for c in nbformat.read(path, 4).cells if "parameters" in c.metadata.get("tags", []))
        names = [line.split("=")[0].strip() for line in cell.source.splitlines() if line and not line.startswith("#")]
        assert [p.name for p in PythonTranslator.inspect(cell)] == names, path.name


def test_every_cell_has_an_id():
    """nbformat 4.5 wants an id on every cell (papermill and the runner warn about each missing one)."""
    for path in sorted(NB.glob("0*.ipynb")):
        ids = [c.get("id") for c in json.loads(path.read_text())["cells"]]  # nbformat.read would add them
        assert all(ids) and len(set(ids)) == len(ids), path.name
