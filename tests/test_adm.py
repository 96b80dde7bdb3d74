"""guided-diffusion (ADM) checkpoints → UNet2DModel: judged against an independent reference forward
(tests/adm_reference.py) on tiny configs with random weights in the original key layout."""
import json
import os

import pytest
import torch
from adm_reference import TinyAdm, Weights, forward, random_state, save_tiny_checkpoint
from diffusers import UNet2DModel

from hsep_utils import adm
from hsep_utils.diffusion import Diffusion, load_diffusion, model_fingerprint
from hsep_utils.hspace import decode, encode, h_shape
from hsep_utils.metrics import psnr_per_image
from hsep_utils.weights import base_model_status

LAYOUTS = {
    # P2-weighting's layout: ResBlock up/down, scale-shift norm, legacy QKV order, 6 output channels, 2 heads of 32
    "p2-like": TinyAdm(),
    # the other branches: strided-conv / conv upsampling, additive time embedding, the new QKV order,
    # a fixed head count, two ResBlocks per level, ε only
    "other-flags": TinyAdm(num_res_blocks=2, num_head_channels=-1, num_heads=2, use_scale_shift_norm=False,
                           resblock_updown=False, use_new_attention_order=True, learn_sigma=False),
}


def converted(cfg: TinyAdm, state=None):
    state = random_state(cfg) if state is None else state
    unet, sched = adm.convert(state, adm.flags_from_dict(cfg.as_flags()))
    return unet, sched, state


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_converted_unet_equals_reference_forward(layout):
    cfg = LAYOUTS[layout]
    unet, _, state = converted(cfg)
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    t = torch.tensor([0, 420, 999])
    ref, ref_h = forward(Weights({k: v.double() for k, v in state.items()}), cfg, x, t)
    with torch.no_grad():
        out32 = unet(x.float(), t).sample
        unet = unet.double()
        out = unet(x, t).sample
        enc = encode(unet, x, t)
        eps = decode(unet, enc)
    assert out.shape[1] == (6 if cfg.learn_sigma else 3)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-10)
    torch.testing.assert_close(enc.h, ref_h, rtol=0, atol=1e-10)  # h-space: the middle block's output
    torch.testing.assert_close(eps, ref[:, :3], rtol=0, atol=1e-10)  # DDIM's ε: the first 3 channels
    torch.testing.assert_close(out32.double(), ref, rtol=0, atol=1e-4)


def test_p2_256_config_has_the_papers_size_and_h():
    unet = UNet2DModel(**adm.unet_config(adm.CONFIGS["p2-256"]))
    n = sum(p.numel() for p in unet.parameters())
    assert 92e6 <= n <= 94e6, n
    assert h_shape(unet, 2) == (2, 512, 8, 8)
    with torch.no_grad():
        assert encode(unet, torch.randn(2, 3, 256, 256), torch.tensor([0, 999])).h.shape == (2, 512, 8, 8)
    assert unet.config.out_channels == 6 and adm.KNOWN_CHECKPOINTS == {"ffhq_p2.pt": "p2-256", "celebahq_p2.pt": "p2-256"}


def test_ddim_round_trip_through_a_trained_converted_model():
    """A random network's ε is not consistent along a trajectory, so no DDIM inversion of one
    reconstructs (5 dB at any step count, the diffusers tiny model too): the converted tiny model is
    first trained as a denoiser for 100 steps. Its 3 variance channels stay random; were they read as
    ε, nothing would reconstruct."""
    cfg = LAYOUTS["p2-like"]
    torch.manual_seed(0)
    unet, sched, _ = converted(cfg)
    ac = sched.alphas_cumprod
    g = torch.Generator().manual_seed(1)

    def images(n):
        return torch.nn.functional.interpolate(torch.rand(n, 3, 4, 4, generator=g) * 2 - 1, size=16, mode="bilinear")

    opt = torch.optim.Adam(unet.parameters(), 1e-3)
    for _ in range(100):
        x0, t, e = images(16), torch.randint(0, 1000, (16,), generator=g), torch.randn(16, 3, 16, 16, generator=g)
        a = ac[t].view(-1, 1, 1, 1)
        loss = (unet(a.sqrt() * x0 + (1 - a).sqrt() * e, t).sample[:, :3] - e).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    d = Diffusion(unet, ac)
    x0 = images(4)
    psnr = {n: psnr_per_image(d.reconstruct(x0, n), x0) for n in (10, 50)}
    assert psnr[50].min() > 20 and psnr[50].mean() > psnr[10].mean() + 5, psnr


def test_schedule_is_the_checkpoints():
    sched = adm.scheduler_config(adm.CONFIGS["p2-256"])
    assert (sched["beta_start"], sched["beta_end"], sched["num_train_timesteps"]) == (1e-4, 0.02, 1000)
    assert adm.scheduler_config(adm.flags_from_dict(dict(image_size=64, num_channels=32, num_res_blocks=1,
                                                         noise_schedule="cosine")))["beta_schedule"] == "squaredcos_cap_v2"


def test_flags_read_as_on_the_command_line():
    f = adm.flags_from_dict(dict(image_size=256, num_channels=128, num_res_blocks=1, attention_resolutions="32,16",
                                 channel_mult="", use_fp16=False, dropout=0.1))
    assert f.attention_resolutions == (32, 16) and f.channel_mult is None and f.mult == (1, 1, 2, 2, 4, 4)
    assert f.attention_levels == {3, 4}
    with pytest.raises(ValueError, match=r"unknown guided-diffusion flags \['num_chanels'\]"):
        adm.flags_from_dict(dict(image_size=64, num_chanels=32, num_res_blocks=1))
    with pytest.raises(ValueError, match="different sizes"):  # fixed head count over 32- and 64-wide attention
        adm.unet_config(adm.flags_from_dict(dict(image_size=16, num_channels=32, num_res_blocks=1, channel_mult="1,2",
                                                 attention_resolutions="16,8", num_heads=2)))


@pytest.fixture
def tiny_json(tmp_path):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(TinyAdm().as_flags()))
    return path


@pytest.mark.parametrize("case, match", [
    ("missing", r"'tiny': missing keys \(1\): input_blocks\.1\.0\.in_layers\.0\.weight"),
    ("unexpected", r"'tiny': unexpected keys \(1\): extra\.weight"),
    ("wider", r"'tiny': shapes \(\d+\): time_embed\.0\.weight \(256, 64\) \(the config wants \(128, 32\)"),
    ("deeper", r"'tiny': missing keys .*; unexpected keys \(\d+\): input_blocks\.[5-9]"),
])
def test_checkpoint_that_does_not_fit_the_config_is_named(tmp_path, tiny_json, case, match):
    state = random_state(TinyAdm())
    if case == "missing":
        del state["input_blocks.1.0.in_layers.0.weight"]
    elif case == "unexpected":
        state["extra.weight"] = torch.zeros(1)
    elif case == "wider":
        state = random_state(TinyAdm(num_channels=64, num_head_channels=64))
    else:
        state = random_state(TinyAdm(channel_mult=(1, 2, 2, 2), attention_resolutions=(4,)))
    torch.save(state, tmp_path / "ck.pt")
    with pytest.raises(ValueError, match=match):
        adm.convert_checkpoint(tmp_path / "ck.pt", tiny_json, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.tmp*"))


def test_truncated_or_foreign_checkpoint_is_named(tmp_path, tiny_json):
    whole = save_tiny_checkpoint(tmp_path / "ck.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ValueError, match=rf"cut\.pt \({len(whole) // 2} bytes\) does not read as a PyTorch "
                                         r"checkpoint .*truncated or corrupt"):
        adm.convert_checkpoint(tmp_path / "cut.pt", tiny_json, tmp_path / "out")
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="holds a list, not a state dict"):
        adm.load_checkpoint(tmp_path / "list.pt")
    with pytest.raises(FileNotFoundError, match=r"ffhq_p2\.pt does not exist: download ffhq_p2\.pt from .*P2-weighting"):
        adm.load_checkpoint(tmp_path / "ffhq_p2.pt")
    assert not (tmp_path / "out").exists()


def test_cli_writes_a_model_that_loads_offline_whole_or_not_at_all(tmp_path, tiny_json, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ck = save_tiny_checkpoint(tmp_path / "tiny.pt")
    out = tmp_path / "models" / "tiny"
    adm.main(["--checkpoint", str(ck), "--config", str(tiny_json), "--out", str(out)])
    assert "M parameters" in capsys.readouterr().out
    d = load_diffusion(out)
    ref, _ = forward(Weights({k: v.double() for k, v in torch.load(ck).items()}), TinyAdm(),
                     torch.ones(1, 3, 16, 16, dtype=torch.float64), torch.tensor([500]))
    with torch.no_grad():
        torch.testing.assert_close(d.eps(torch.ones(1, 3, 16, 16), 500)[0].double(), ref[:, :3], rtol=0, atol=1e-4)
    torch.testing.assert_close(d.alphas_cumprod, adm.convert(torch.load(ck), tiny_json)[1].alphas_cumprod.double())
    assert json.loads((out / "adm_source.json").read_text())["flags"]["num_channels"] == 32
    with pytest.raises(FileExistsError, match="--overwrite"):
        adm.convert_checkpoint(ck, tiny_json, out)

    from diffusers import DDPMScheduler

    def fail(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(DDPMScheduler, "save_pretrained", fail)  # dies after the U-Net was written
    with pytest.raises(OSError, match="disk full"):
        adm.convert_checkpoint(ck, tiny_json, tmp_path / "models" / "second")
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["tiny"]  # no half folder, no temp left


def test_known_checkpoint_named_directly_is_converted_once(tmp_path, monkeypatch):
    monkeypatch.setenv("HSEP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(adm.CONFIGS, "tiny", adm.flags_from_dict(TinyAdm().as_flags()))
    monkeypatch.setitem(adm.KNOWN_CHECKPOINTS, "tiny_p2.pt", "tiny")
    ck = save_tiny_checkpoint(tmp_path / "models" / "tiny_p2.pt")
    first = load_diffusion(ck)
    assert first.sample_size == 16 and len(list((tmp_path / "cache" / "adm").iterdir())) == 1
    fingerprint = model_fingerprint(ck)

    def no_second(*a, **k):
        raise AssertionError("converted again")

    with monkeypatch.context() as m:
        m.setattr(adm, "convert_checkpoint", no_second)
        assert model_fingerprint(ck) == fingerprint
        load_diffusion(ck)
    save_tiny_checkpoint(ck, seed=1)  # a replaced file is converted again
    os.utime(ck, ns=(1, 1))
    assert model_fingerprint(ck) != fingerprint

    with pytest.raises(ValueError, match=r"knows the flags of .*python -m hsep_utils\.adm --checkpoint"):
        load_diffusion(save_tiny_checkpoint(tmp_path / "models" / "mine.pt"))
    with pytest.raises(FileNotFoundError, match=r"celebahq_p2\.pt does not exist: download .*P2-weighting"):
        load_diffusion(tmp_path / "models" / "celebahq_p2.pt")


def test_weights_report_names_the_missing_base_model(tmp_path):
    status = base_model_status(tmp_path / "models" / "ffhq_p2.pt")
    assert status.startswith("unavailable: the base model needs ffhq_p2.pt: place it at") and "P2-weighting" in status
    save_tiny_checkpoint(tmp_path / "models" / "ffhq_p2.pt")
    assert "converted on first load" in base_model_status(tmp_path / "models" / "ffhq_p2.pt")
    assert base_model_status(tmp_path / "nowhere").startswith("unavailable: base model directory")
