"""The oracle h-swap diagnostic: its h influence is 0 exactly when the decoder ignores h."""
import pytest
import torch

import hsep_utils.diffusion as diffusion_module
from hsep_utils.classifier import SmallCNN, edit_success
from hsep_utils.datasets import build_toy_dataset, load_images, toy_counterfactuals
from hsep_utils.diagnostics import oracle_hswap
from hsep_utils.evaluation import oracle_success, toy_regions
from hsep_utils.pipeline import Split


@pytest.fixture
def split(tmp_path):
    manifest, root = build_toy_dataset(tmp_path, "glasses", 2, 4, size=16, seed=0, progress=False)
    rows = manifest[(manifest["split"] == "test") & (manifest["class"] == "background")].reset_index(drop=True)
    return Split(rows, load_images(root, rows["file"]))


def test_oracle_hswap_reports_every_figure(tiny_diffusion, split):
    torch.manual_seed(0)
    found = oracle_hswap(tiny_diffusion, split, "glasses", SmallCNN().eval(), False, n=4, n_steps=4)
    assert found["n"] == 4 and 0 <= found["oracle_sr"] <= 1 and found["cf_mse_ratio"] > 0
    assert found["h_influence"] > 0  # a random U-Net's decoder does use h


def test_oracle_failures_are_listed_and_drawn(tiny_diffusion, split, tmp_path):
    torch.manual_seed(0)
    found = oracle_hswap(tiny_diffusion, split, "glasses", SmallCNN().eval(), False, n=4, n_steps=4,
                         failures=tmp_path / "fail.png")
    assert len(found["oracle_failures"]) == round(4 * (1 - found["oracle_sr"]))
    assert (tmp_path / "fail.png").exists() == bool(found["oracle_failures"])


def test_the_ceiling_scores_the_counterfactuals_own_reconstruction(tiny_diffusion, split):
    torch.manual_seed(0)
    classifier = SmallCNN().eval()
    found = oracle_hswap(tiny_diffusion, split, "glasses", classifier, False, n=4, n_steps=4)
    rows, x = split.rows.head(4), split.x[:4]
    cf = toy_counterfactuals(rows, "glasses", 16)
    rec_cf = tiny_diffusion.reconstruct(cf, 4)
    by_hand = oracle_success(rec_cf, x, cf, toy_regions(rows, "glasses", 16)).float().mean().item()
    assert found["ceiling_oracle_sr"] == pytest.approx(by_hand)
    # a perfect reconstruction is the counterfactual itself, which the oracle always accepts
    assert oracle_success(cf, x, cf, toy_regions(rows, "glasses", 16)).all()
    sr = edit_success(classifier, x, rec_cf, False)[0]
    assert found["ceiling_classifier_sr"] == pytest.approx(sr, nan_ok=True)  # nan: no original classified right


def test_a_decoder_that_ignores_h_has_no_h_influence(tiny_diffusion, split, monkeypatch):
    real_decode = diffusion_module.decode
    monkeypatch.setattr(diffusion_module, "decode", lambda unet, enc, h=None: real_decode(unet, enc))
    found = oracle_hswap(tiny_diffusion, split, "glasses", SmallCNN().eval(), False, n=4, n_steps=4)
    assert found["h_influence"] == 0.0
