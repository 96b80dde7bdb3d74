"""Bring your own that explains itself: DDIM steps chosen from notebook 01's curve, and a verdict
when the separation fails."""
import pandas as pd
import pytest
import torch

from hsep_utils.classifier import SmallCNN, save_classifier
from hsep_utils.mapping import MappingNetwork
from hsep_utils.presets import resolve, steps_for_psnr
from hsep_utils.splits import Split
from hsep_utils.train import InversionCache
from hsep_utils.verdict import separation_verdict

CURVE = pd.DataFrame(dict(n_steps=[10, 20, 50, 100], mse=[0.01, 0.005, 0.001, 0.0008], psnr=[18.7, 24.0, 30.4, 33.6]))


def test_steps_for_psnr_takes_the_fewest_reaching_the_floor_else_the_best():
    assert steps_for_psnr(CURVE, 30.0) == (50, True)
    assert steps_for_psnr(CURVE, 18.0) == (10, True)
    assert steps_for_psnr(CURVE.iloc[::-1], 30.0) == (50, True)  # row order does not matter
    assert steps_for_psnr(CURVE, 40.0) == (100, False)


def _folders_preset(tmp_path, **extra):
    import yaml

    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(dict(preset="mine", dataset_kind="folders", attribute="hats", ddim_steps="auto",
                                        results_root=str(tmp_path / "results"), **extra)))
    return path


def test_ddim_steps_auto_comes_from_notebook_01(tmp_path):
    path = _folders_preset(tmp_path)
    assert resolve(path, needs_ddim_steps=False)["ddim_steps"] == "auto"  # notebooks 00–01 run before the choice
    with pytest.raises(FileNotFoundError, match="hspace_steps.csv is missing.*run notebook 01 first"):
        resolve(path)
    (tmp_path / "results" / "mine").mkdir(parents=True)
    CURVE.to_csv(tmp_path / "results" / "mine" / "hspace_steps.csv", index=False)
    assert resolve(path)["ddim_steps"] == 50
    assert resolve(path, {"ddim_steps_min_psnr": 20.0})["ddim_steps"] == 20
    assert resolve(path, {"ddim_steps": 10})["ddim_steps"] == 10  # set by the user: taken as it is
    with pytest.raises(ValueError, match="ddim_steps must be an integer or auto"):
        resolve(path, {"ddim_steps": "many"})


def test_steps_report_warns_below_the_floor():
    from hsep_utils.reconstruction import steps_report

    auto = steps_report(CURVE, dict(ddim_steps="auto", ddim_steps_min_psnr=30.0))
    assert "run 50 DDIM steps" in auto and "30.4 dB" in auto and "WARNING" not in auto
    set_low = steps_report(CURVE, dict(ddim_steps=10, ddim_steps_min_psnr=30.0))
    assert "18.7 dB" in set_low and "WARNING: below 30 dB" in set_low
    assert "none reaches 40 dB" in steps_report(CURVE, dict(ddim_steps="auto", ddim_steps_min_psnr=40.0))


def test_a_failed_separation_names_what_was_measured(tiny_diffusion, tmp_path):
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    bg = Split(pd.DataFrame({"file": [f"b{i}" for i in range(2)]}), x[:2])
    tg = Split(pd.DataFrame({"file": [f"t{i}" for i in range(2)]}), x[2:])
    net = MappingNetwork(32, "a", depth=1)
    cache = InversionCache(tiny_diffusion, 3)
    params = dict(ddim_steps=3, ddim_steps_min_psnr=30.0)
    pd.DataFrame(dict(n_steps=[3], mse=[0.05], psnr=[13.0])).to_csv(tmp_path / "hspace_steps.csv", index=False)
    save_classifier(SmallCNN(), 0.55, tmp_path / "classifier.pt")

    failed = separation_verdict(0.0, 0.05, "validation", params, tmp_path, tiny_diffusion, net, bg, tg, cache)
    assert failed.startswith("verdict: the separation FAILED (validation swap success: adding 0.00, removing 0.05")
    assert "reconstruction at 3 DDIM steps: 13.0 dB (notebook 01) — below 30 dB" in failed
    assert "attribute classifier test accuracy: 0.550 — below 0.8" in failed
    assert "S strength (RMS of S over h, 2 images per class): targets" in failed

    (tmp_path / "hspace_steps.csv").unlink()
    assert "not measured" in separation_verdict(0.0, 0.0, "test", params, tmp_path, tiny_diffusion, net, bg, tg, cache)
    shows = separation_verdict(0.6, float("nan"), "test", params, tmp_path, tiny_diffusion, net, bg, tg, cache)
    assert shows == "verdict: the separation shows (test swap success: adding 0.60, removing nan)"
