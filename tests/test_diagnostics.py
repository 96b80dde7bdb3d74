"""The oracle h-swap diagnostic: its h influence is 0 exactly when the decoder ignores h."""
import pytest
import torch

import hsep_utils.diffusion as diffusion_module
from hsep_utils.classifier import SmallCNN, edit_success
from hsep_utils.datasets import build_toy_dataset, load_images, toy_counterfactual_set, toy_donor_counterfactuals
from hsep_utils.diagnostics import mapping_gap, oracle_hswap
from hsep_utils.edit import edit, swap_salient
from hsep_utils.evaluation import donor_transfer, oracle_success, psnr_outside, toy_regions
from hsep_utils.mapping import MappingNetwork
from hsep_utils.splits import Split


def _test_split(tmp_path, cls: str) -> Split:
    manifest, root = build_toy_dataset(tmp_path, "glasses", 2, 4, size=16, seed=0, progress=False)
    rows = manifest[(manifest["split"] == "test") & (manifest["class"] == cls)].reset_index(drop=True)
    return Split(rows, load_images(root, rows["file"]))


@pytest.fixture
def split(tmp_path):
    return _test_split(tmp_path, "background")


def test_oracle_hswap_reports_every_figure(tiny_diffusion, split):
    torch.manual_seed(0)
    found = oracle_hswap(tiny_diffusion, split, "glasses", SmallCNN().eval(), False, n=4, n_steps=4)
    assert found["n"] == 4 and 0 <= found["oracle_sr"] <= 1 and found["cf_mse_ratio"] > 0
    assert found["h_influence"] > 0  # a random U-Net's decoder does use h


def test_donor_hswap_gives_the_donors_counterfactual_h(tiny_diffusion, split, tmp_path):
    """Adding with donors: h replaced by that of the counterfactual with donor i's glasses style, scored
    by donor match; PSNR outside the box is the h-swap's. Removing has no donor figures."""
    torch.manual_seed(0)
    donors = _test_split(tmp_path / "donors", "target")
    found = oracle_hswap(tiny_diffusion, split, "glasses", SmallCNN().eval(), False, n=4, n_steps=3, donors=donors)
    rows, x = split.rows.head(4), split.x[:4].load()
    cf_set, regions = toy_counterfactual_set(rows, "glasses", 16), toy_regions(rows, "glasses", 16)
    donor_cf = toy_donor_counterfactuals(rows, donors.rows.head(4), "glasses", 16)
    _, traj = tiny_diffusion.generate(tiny_diffusion.invert(donor_cf, 3), 3, return_trajectory=True)
    h = dict(zip(traj.timesteps, traj.h))
    given = tiny_diffusion.generate(tiny_diffusion.invert(x, 3), 3, edit_fn=lambda _, t: h[t]).cpu()
    match, success = donor_transfer(given, x, cf_set, donor_cf, regions)
    assert found["donor_hswap_match"] == pytest.approx(match.float().mean().item())
    assert found["donor_hswap_oracle_sr"] == pytest.approx(success.float().mean().item())
    assert found["donor_hswap_failures"] == (~success).nonzero().flatten().tolist()
    assert found["psnr_outside"] > 0
    # the donor's change: the input's h plus the donor's h less that of the donor without glasses
    _, on = tiny_diffusion.generate(tiny_diffusion.invert(donors.x[:4].load(), 3), 3, return_trajectory=True)
    off_images = toy_counterfactual_set(donors.rows.head(4), "glasses", 16)[0]
    _, off = tiny_diffusion.generate(tiny_diffusion.invert(off_images, 3), 3, return_trajectory=True)
    change = {t: a - b for t, a, b in zip(on.timesteps, on.h, off.h)}
    added = tiny_diffusion.generate(tiny_diffusion.invert(x, 3), 3, edit_fn=lambda h, t: h + change[t]).cpu()
    match, success = donor_transfer(added, x, cf_set, donor_cf, regions)
    assert found["donor_change_match"] == pytest.approx(match.float().mean().item())
    assert found["donor_change_donor_oracle_sr"] == pytest.approx(success.float().mean().item())
    assert found["donor_change_oracle_sr"] == pytest.approx(oracle_success(added, x, cf_set, regions).float().mean().item())
    assert (added - given).abs().max() > 0  # another edit than the h-swap
    removing = oracle_hswap(tiny_diffusion, donors, "glasses", SmallCNN().eval(), True, n=4, n_steps=3, donors=split)
    assert "donor_hswap_match" not in removing


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
    rows, x = split.rows.head(4), split.x[:4].load()
    cf_set = toy_counterfactual_set(rows, "glasses", 16)  # scored against every glasses style
    cf = cf_set[0]
    rec_cf = tiny_diffusion.reconstruct(cf, 4)
    by_hand = oracle_success(rec_cf, x, cf_set, toy_regions(rows, "glasses", 16)).float().mean().item()
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


def test_mapping_gap_scores_the_presets_edit_and_the_counterfactuals(tiny_diffusion, split, tmp_path):
    """Wiring: ``edit`` is ``swap_salient``'s added image (donor i for image i) at the preset's α and
    edit form, and ``counterfactual_through_net`` is the counterfactual reconstructed through the
    network (f(C, S), whatever the form); glasses are local, so each edit has its PSNR outside the box."""
    torch.manual_seed(0)
    net = MappingNetwork(tiny_diffusion.unet.config.block_out_channels[-1], "a", depth=1).eval()
    classifier = SmallCNN().eval()
    donors = _test_split(tmp_path / "donors", "target")
    gap = mapping_gap(tiny_diffusion, net, split, donors, "glasses", classifier, False, n=4, n_steps=3, strength=2.0,
                      residual=True)
    assert set(gap) == {"edit", "counterfactual_salient", "counterfactual_through_net", "salient_rms_over_h_rms"}
    assert gap["salient_rms_over_h_rms"] > 0
    rows, x = split.rows.head(4), split.x[:4].load()
    cf_set = toy_counterfactual_set(rows, "glasses", 16)
    cf, regions = cf_set[0], toy_regions(rows, "glasses", 16)
    added, _ = swap_salient(tiny_diffusion, net, tiny_diffusion.invert(x, 3), tiny_diffusion.invert(donors.x[:4].load(), 3), 3,
                            alpha=2.0, residual=True, remove=False)
    through = edit(tiny_diffusion, net, tiny_diffusion.invert(cf, 3), torch.ones(4, dtype=torch.bool), 3, "reconstruct")
    for name, image in (("edit", added), ("counterfactual_through_net", through)):
        assert gap[name]["oracle_sr"] == pytest.approx(oracle_success(image, x, cf_set, regions).float().mean().item())
        assert gap[name]["psnr_outside"] == pytest.approx(psnr_outside(image, x, regions).mean().item())
        assert gap[name]["classifier_sr"] == pytest.approx(edit_success(classifier, x, image, False)[0], nan_ok=True)


def test_a_silent_salient_encoder_has_no_salient_rms(tiny_diffusion, split, tmp_path):
    torch.manual_seed(0)
    net = MappingNetwork(tiny_diffusion.unet.config.block_out_channels[-1], "a", depth=1).eval()
    with torch.no_grad():
        for encoder in net.specific:
            encoder.net[-1].weight.zero_()
            encoder.net[-1].bias.zero_()
    donors = _test_split(tmp_path / "donors", "target")
    gap = mapping_gap(tiny_diffusion, net, split, donors, "glasses", SmallCNN().eval(), False, n=2, n_steps=2)
    assert gap["salient_rms_over_h_rms"] == 0.0
