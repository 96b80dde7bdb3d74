import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from hsep_utils import base_ddpm
from hsep_utils.diffusion import load_diffusion

TINY = dict(n_images=24, size=16, block_out_channels=(16, 32), attention_levels=(1,), batch_size=4, steps=6,
            checkpoint_every=2, warmup_steps=2, n_samples=4)


def test_training_resumes_identically_after_interruption(tmp_path, monkeypatch):
    whole = base_ddpm.train(out=str(tmp_path / "whole"), **TINY)

    real_lr = base_ddpm._lr_at
    calls = {"n": 0}

    def crash_at_step_5(step, cfg):
        calls["n"] += 1
        if step == 5 and calls["n"] < 100:
            calls["n"] = 100
            raise KeyboardInterrupt("simulated kill")
        return real_lr(step, cfg)

    monkeypatch.setattr(base_ddpm, "_lr_at", crash_at_step_5)
    with pytest.raises(KeyboardInterrupt):
        base_ddpm.train(out=str(tmp_path / "cut"), **TINY)
    assert not (tmp_path / "cut" / "unet").exists()
    ck = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)
    assert ck["step"] == 4  # last checkpoint before the crash
    resumed = base_ddpm.train(out=str(tmp_path / "cut"), **TINY)

    a, b = load_file(whole / "diffusion_pytorch_model.safetensors"), load_file(resumed / "diffusion_pytorch_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    log_a, log_b = pd.read_csv(tmp_path / "whole" / "loss_log.csv"), pd.read_csv(tmp_path / "cut" / "loss_log.csv")
    assert list(log_b["step"]) == list(range(1, 7))
    pd.testing.assert_frame_equal(log_a, log_b)
    d = load_diffusion(tmp_path / "cut")  # the saved model loads through the foundation's loader
    assert d.sample_size == 16


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    base_ddpm.train(out=str(tmp_path / "m"), **{**TINY, "steps": 2})
    with pytest.raises(ValueError, match="architecture"):
        base_ddpm.train(out=str(tmp_path / "m"), **{**TINY, "steps": 4, "block_out_channels": (16, 16)})


def test_unknown_option_is_named():
    with pytest.raises(ValueError, match="learning_rate"):
        base_ddpm.train(learning_rate=1)


def test_fine_tuning_starts_from_the_exported_weights(tmp_path):
    source = base_ddpm.train(out=str(tmp_path / "src"), **{**TINY, "steps": 2})
    tuned = base_ddpm.train(out=str(tmp_path / "ft"), init_from=str(tmp_path / "src"),
                            **{**TINY, "steps": 1, "lr": 0.0})  # lr 0: the weights must stay the source's
    a, b = load_file(source / "diffusion_pytorch_model.safetensors"), load_file(tuned / "diffusion_pytorch_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    fresh = base_ddpm.train(out=str(tmp_path / "fresh"), **{**TINY, "steps": 1, "lr": 0.0})
    c = load_file(fresh / "diffusion_pytorch_model.safetensors")
    assert not all(torch.equal(a[k], c[k]) for k in a)  # without init_from the start is the seed's random weights


def test_fine_tuning_refuses_a_missing_or_other_model(tmp_path):
    with pytest.raises(FileNotFoundError, match="no exported model"):
        base_ddpm.train(out=str(tmp_path / "ft"), init_from=str(tmp_path / "nothing"), **TINY)
    base_ddpm.train(out=str(tmp_path / "src"), **{**TINY, "steps": 2})
    with pytest.raises(ValueError, match="another architecture"):
        base_ddpm.train(out=str(tmp_path / "ft2"), init_from=str(tmp_path / "src"),
                        **{**TINY, "block_out_channels": (16, 16)})


def test_cut_skips_stay_cut_through_training(tmp_path):
    from hsep_utils.hspace import encode, decode

    base_ddpm.train(out=str(tmp_path / "m"), **{**TINY, "block_out_channels": (16, 16)})  # default: -1, the deepest level
    unet = load_diffusion(tmp_path / "m").unet
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        enc = encode(unet, x, 500)
        ref = decode(unet, enc)
        for size, blind in ((8, True), (16, False)):  # level 1 (8 px) is cut, level 0 (16 px) is not
            enc.skips = tuple(torch.randn_like(s) if s.shape[-1] == size else s for s in encode(unet, x, 500).skips)
            assert torch.allclose(decode(unet, enc), ref) == blind
    with pytest.raises(ValueError, match="levels"):
        base_ddpm.train(out=str(tmp_path / "m2"), **{**TINY, "cut_skip_levels": (3,)})
