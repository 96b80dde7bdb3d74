#!/usr/bin/env python
"""Cost of hsep's per-image work relative to a bare U-Net forward (issue 9, part 1).

For each shape — the committed toy base model ``models/toy-ddpm-32``, a celebahq-256-shaped
``UNet2DModel(**CELEBAHQ_256_CONFIG)`` (google/ddpm-ema-celebahq-256's layout) and ``p2-256``, the paper's
P2-weighting layout as ``hsep_utils.adm`` converts it (6 output channels), both with random weights — it
times, per image:

* ``forward``   : the no-grad U-Net forward ``unet(x, t)`` (the floor every ratio is taken against);
* ``train step``: one mapping-network update at one timestep exactly as ``train_mapping`` makes it —
  ``hsep_utils.train.step_losses`` (arch (a), depth 8, all eight λ = 1), ``zero_grad``, ``backward``,
  ``Adam.step``, the DDIM move to the next x_t, the ``isfinite`` check and ``total.item()``; with the
  paper's asymmetric DDIM step (one more no-grad decoder half for the direction term) and with the
  symmetric one the toy presets use;
* ``inversion`` : ``Diffusion.invert`` per U-Net step (n_steps − 1 of them);
* ``swap edit`` : ``hsep_utils.edit.edit(mode="swap")`` per edited image per step; each edited
  image is generated beside its donor (half the batch edited, half donors), as the library does;
  asymmetric and symmetric, as the train step;
* peak memory of each phase (CPU: peak RSS, reset per phase through ``/proc/self/clear_refs`` after
  ``malloc_trim``; CUDA: ``torch.cuda.max_memory_allocated``).

Image-loss networks are TIMING STAND-INS with random weights (their cost, not their values,
matters here): LPIPS = ``lpips.LPIPS(net="alex", pretrained=False, pnet_rand=True)`` or, where the
``lpips`` package is absent, an AlexNet-shaped conv net with LPIPS's 1×1 heads; ID = the toy
``identity.IdentityEncoder`` (untrained) for the toy model and facenet's ``InceptionResnetV1
(pretrained=None)`` at 160 px for the 256 shape (an IdentityEncoder-shaped net where facenet-pytorch
is absent). Both are frozen, as the library's own are.

It also times pieces of the training step that were or look avoidable (see RESULTS.md): the ID
embedding and the LPIPS backbone features of the *real* image (``train_mapping`` now computes both
once per batch and passes them to ``step_losses``, as the train step here does), and the second
class-specific encoder that arch (a) used to run over the whole batch (each encoder now runs on its
own class's images only).
The U-Net floor of a train step is timed too: the encoder half without graph plus the decoder half
with graph and its backward to h, once as ``decode`` runs it (constant skips) and once through
diffusers' own up blocks (``constant_skips=False``), the reference for that optimisation.

Phases are interleaved (forward, train step, pieces, inversion, edit, forward, …) and medians
taken, because a shared CPU is noisy. The library is used as is; nothing is patched.

    nice -n 5 .venv/bin/python benchmarks/bench.py --device cpu --threads 1 --shapes toy celebahq256 \
        --reps toy=15,celebahq256=2 --warmup toy=2,celebahq256=0 --batch toy=16,celebahq256=2 \
        --steps toy=10,celebahq256=2 --pipeline-reps toy=3,celebahq256=1      # (the CPU defaults, plus --threads 1)
    python benchmarks/bench.py --device cuda        # bf16 autocast; --no-autocast for fp32
"""
from __future__ import annotations

import argparse
import ctypes
import datetime
import gc
import json
import math
import platform
import statistics
import sys
import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _stub_missing() -> list[str]:
    """The device image may lack packages that hsep_utils imports at module level but that no code
    timed here uses (pandas: train logs; yaml: presets; PIL: toy rendering; tqdm: progress bars).
    Stub those that are missing so the benchmark still runs; the header lists them."""
    import importlib
    import types

    stubbed = []
    for name in ("pandas", "yaml", "PIL"):
        try:
            importlib.import_module(name)
        except ImportError:
            mod = types.ModuleType(name)
            mod.__getattr__ = lambda attr, _n=name: types.ModuleType(f"{_n}.{attr}")  # noqa: B023
            sys.modules[name] = mod
            stubbed.append(name)
    try:
        importlib.import_module("tqdm")
    except ImportError:
        class _Tqdm:
            def __init__(self, iterable=None, *a, **k):
                self.iterable = iterable

            def __iter__(self):
                return iter(self.iterable)

            def __getattr__(self, attr):
                return lambda *a, **k: None

        tq, auto = types.ModuleType("tqdm"), types.ModuleType("tqdm.auto")
        tq.tqdm = auto.tqdm = _Tqdm
        tq.auto = auto
        sys.modules.update({"tqdm": tq, "tqdm.auto": auto})
        stubbed.append("tqdm")
    return stubbed


STUBBED = _stub_missing()

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from hsep_utils.base_ddpm import build_scheduler  # noqa: E402
from hsep_utils.diffusion import Diffusion, ddim_update, load_diffusion  # noqa: E402
from hsep_utils.edit import edit  # noqa: E402
from hsep_utils.hspace import CELEBAHQ_256_CONFIG, decode, encode, h_shape  # noqa: E402
from hsep_utils.identity import IdentityEncoder  # noqa: E402
from hsep_utils.mapping import MappingNetwork  # noqa: E402
from hsep_utils.losses import lpips_features  # noqa: E402
from hsep_utils.train import TrainConfig, step_losses  # noqa: E402

SHAPES = ("toy", "celebahq256", "p2-256")
_BIG = ("celebahq256", "p2-256")
DEFAULTS = {  # per shape; CPU defaults keep one run of toy and celebahq256 under ~8 minutes on 2 cores
    "cpu": dict(reps=dict(toy=15, **dict.fromkeys(_BIG, 2)), batch=dict(toy=16, **dict.fromkeys(_BIG, 2)),
                steps=dict(toy=10, **dict.fromkeys(_BIG, 2)), pipeline_reps=dict(toy=3, **dict.fromkeys(_BIG, 1)),
                warmup=dict(toy=2, **dict.fromkeys(_BIG, 0))),
    "cuda": dict(reps=dict(toy=20, **dict.fromkeys(_BIG, 10)), batch=dict(toy=16, **dict.fromkeys(_BIG, 16)),
                 steps=dict(toy=10, **dict.fromkeys(_BIG, 10)), pipeline_reps=dict(toy=5, **dict.fromkeys(_BIG, 3)),
                 warmup=dict(toy=3, **dict.fromkeys(_BIG, 2))),
}


# ----------------------------------------------------------------------------- timing stand-ins
class AlexLPIPS(nn.Module):
    """LPIPS-alex-shaped stand-in (used only where the ``lpips`` package is absent): AlexNet's five
    conv stages, unit-normalised features, 1×1 heads, spatial mean — the same work as LPIPS."""

    def __init__(self) -> None:
        super().__init__()
        self.stages = nn.ModuleList([
            nn.Sequential(nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU()),
            nn.Sequential(nn.MaxPool2d(3, 2), nn.Conv2d(64, 192, 5, padding=2), nn.ReLU()),
            nn.Sequential(nn.MaxPool2d(3, 2), nn.Conv2d(192, 384, 3, padding=1), nn.ReLU()),
            nn.Sequential(nn.Conv2d(384, 256, 3, padding=1), nn.ReLU()),
            nn.Sequential(nn.Conv2d(256, 256, 3, padding=1), nn.ReLU()),
        ])
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in (64, 192, 384, 256, 256))

    def features(self, x):
        out = []
        for s in self.stages:
            x = s(x)
            out.append(x)
        return out

    def forward(self, a, b):
        fa, fb = self.features(a), self.features(b)
        return sum(lin((F.normalize(x, dim=1, eps=1e-10) - F.normalize(y, dim=1, eps=1e-10)) ** 2).mean((2, 3), keepdim=True)
                   for lin, x, y in zip(self.lins, fa, fb))


def lpips_standin(device):
    try:
        import warnings

        import lpips

        with warnings.catch_warnings():  # torchvision's "pretrained is deprecated" from inside lpips
            warnings.simplefilter("ignore", UserWarning)
            m = lpips.LPIPS(net="alex", pretrained=False, pnet_rand=True, verbose=False)
        label, real_half = "lpips.LPIPS(net='alex', pretrained=False, pnet_rand=True)", lambda x: m.net(m.scaling_layer(x))
    except Exception as e:  # noqa: BLE001 - any import problem: fall back to the conv-net stand-in
        m = AlexLPIPS()
        label, real_half = f"AlexNet-shaped conv net with LPIPS heads (lpips unavailable: {type(e).__name__})", m.features
    return m.eval().requires_grad_(False).to(device), label, real_half


def id_standin(shape, device):
    """``(embed, label)``: images in [-1, 1] → embeddings, frozen, gradients reach the input."""
    if shape == "toy":
        net, size, label = IdentityEncoder(), 32, "identity.IdentityEncoder() untrained (toy ID encoder's architecture)"
    else:
        try:
            from facenet_pytorch import InceptionResnetV1

            net, label = InceptionResnetV1(pretrained=None), "facenet InceptionResnetV1(pretrained=None) at 160 px"
        except Exception as e:  # noqa: BLE001
            net = IdentityEncoder(width=64, dim=512)
            label = (f"IdentityEncoder(width=64, dim=512) at 160 px (facenet-pytorch unavailable: {type(e).__name__}; "
                     f"cheaper than facenet)")
        size = 160
    net = net.eval().requires_grad_(False).to(device)

    def embed(x):
        if x.shape[-2:] != (size, size):  # as toy_identity_embedder / facenet_embedder do
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        return net(x)

    return embed, label


# ----------------------------------------------------------------------------- memory
_LIBC = None


def _trim():
    global _LIBC
    try:
        _LIBC = _LIBC or ctypes.CDLL("libc.so.6")
        _LIBC.malloc_trim(0)
    except OSError:
        pass


def _status_kb(key):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return None


class PeakMemory:
    """Peak memory of one phase: (peak in bytes, peak above the memory in use before it)."""

    def __init__(self, device):
        self.cuda = device.type == "cuda"
        self.can_reset = True

    def __enter__(self):
        gc.collect()
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            _trim()
            self.base = _status_kb("VmRSS") * 1024
            try:
                Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
            except OSError:
                self.can_reset = False
        return self

    def __exit__(self, *exc):
        if self.cuda:
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated()
        else:
            self.peak = _status_kb("VmHWM") * 1024
        self.above = self.peak - self.base if self.can_reset or self.cuda else float("nan")


# ----------------------------------------------------------------------------- one shape
def parse_per_shape(value, default: dict, cast=int) -> dict:
    """``"7"`` → every shape 7; ``"toy=15,celebahq256=3"`` → per shape (others keep the default)."""
    if value is None:
        return dict(default)
    if "=" not in value:
        return {s: cast(value) for s in SHAPES}
    out = dict(default)
    for part in value.split(","):
        k, v = part.split("=")
        if k not in SHAPES:
            raise SystemExit(f"unknown shape {k!r} in {value!r}; known: {', '.join(SHAPES)}")
        out[k] = cast(v)
    return out


def fmt_time(s):
    if s != s:
        return "–"
    return f"{s * 1e3:9.2f} ms" if s < 1 else f"{s:9.2f} s "


def fmt_mb(b):
    return "        —" if b is None or b != b else f"{b / 2**20:9.0f}"


def bench_shape(shape, device, batch, reps, warmup, pipeline_reps, n_steps, use_autocast, seed=0):
    if batch < 2 or batch % 2:
        raise SystemExit(f"--batch for {shape} must be even and ≥ 2 (half background, half target), got {batch}")
    torch.manual_seed(seed)
    if shape == "toy":
        diffusion = load_diffusion(REPO / "models" / "toy-ddpm-32", device)
        model_label = "models/toy-ddpm-32 (committed weights)"
    elif shape == "celebahq256":
        from diffusers import UNet2DModel

        diffusion = Diffusion(UNet2DModel(**CELEBAHQ_256_CONFIG).to(device), build_scheduler().alphas_cumprod)
        model_label = "UNet2DModel(**CELEBAHQ_256_CONFIG), random weights"
    else:
        from diffusers import UNet2DModel

        from hsep_utils.adm import CONFIGS, unet_config

        diffusion = Diffusion(UNet2DModel(**unet_config(CONFIGS["p2-256"])).to(device), build_scheduler().alphas_cumprod)
        model_label = "UNet2DModel(**adm.unet_config(adm.CONFIGS['p2-256'])), random weights"
    unet = diffusion.unet
    size = diffusion.sample_size
    n_params = sum(p.numel() for p in unet.parameters())
    ac = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if use_autocast else nullcontext
    g = torch.Generator().manual_seed(seed)
    x_real = (torch.rand(batch, 3, size, size, generator=g) * 2 - 1).to(device)
    xT = torch.randn(batch, 3, size, size, generator=g).to(device)
    is_target = torch.arange(batch, device=device) >= batch // 2

    cfg = TrainConfig(arch="a", depth=8, n_steps=n_steps)  # all eight λ = 1 (the default)
    assert all(v == 1.0 for v in cfg.lambdas.values())
    with torch.no_grad(), ac():
        h_scale = encode(unet, xT, 500).h.float().pow(2).mean().sqrt().item()
    net = MappingNetwork(unet.config.block_out_channels[-1], cfg.arch, cfg.depth, cfg.kl_bins, cfg.time_input,
                         h_scale).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    lpips_model, lpips_label, lpips_real_half = lpips_standin(device)
    id_embed, id_label = id_standin(shape, device)

    seq = diffusion.timesteps(n_steps)
    pairs = [(t, tn) for t, tn in zip(reversed(seq), reversed([-1] + seq[:-1])) if t >= cfg.t_edit]
    state = dict(x=xT.clone(), i=0)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def current_t():
        return pairs[state["i"] % len(pairs)]

    def forward():
        t, _ = current_t()
        with torch.no_grad(), ac():
            unet(state["x"], t).sample

    with torch.no_grad(), ac():  # train_mapping computes them once per batch: amortised over the trajectory
        id_real_embedding = id_embed(x_real)
        lpips_real_features = lpips_features(lpips_model, x_real) if hasattr(lpips_model, "scaling_layer") else None

    def train_step(image_weight=1.0, cfg=cfg):  # the body of train_mapping's per-timestep loop
        t, t_next = current_t()
        net.train()
        with ac():
            total, terms, eps, eps_dir = step_losses(net, diffusion, state["x"], t, x_real, is_target, cfg, id_embed,
                                                     lpips_model, id_real_embedding, lpips_real_features,
                                                     image_weight=image_weight)
        values = torch.stack([total.detach(), *terms.values()]).tolist()  # train_mapping's one sync per step
        if not all(map(math.isfinite, values)):
            raise FloatingPointError(f"non-finite loss at t={t}: {dict(zip(['total', *terms], values))}")
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        x = state["x"]
        state["x"] = ddim_update(x, eps, diffusion.alpha(t, x), diffusion.alpha(t_next, x), eps_direction=eps_dir)[0].detach()
        state["i"] += 1
        if state["i"] % len(pairs) == 0:
            state["x"] = xT.clone()

    def train_step_symmetric():  # the reverse process the toy presets use: no decoder pass for D_t
        train_step(cfg=replace(cfg, asymmetric=False))

    def latent_step():  # a step without image terms (TrainConfig.image_loss_every > 1): decoder without graph
        train_step(image_weight=0.0)

    def encoder_half():  # the U-Net's floor inside a train step: encoder half (no grad) ...
        t, _ = current_t()
        with torch.no_grad(), ac():
            state["enc"] = encode(unet, state["x"], t)

    def decoder_half_graph_backward(constant_skips=True):  # ... + decoder half with graph + its backward to h
        enc = state["enc"] if constant_skips else state.pop("enc")
        h = enc.h.detach().requires_grad_(True)
        with ac():
            out = decode(unet, enc, h, constant_skips=constant_skips)
        out.float().mul(g_probe).sum().backward()

    def decoder_half_diffusers_blocks():  # the same through diffusers' own up blocks (the skips in the backward)
        decoder_half_graph_backward(constant_skips=False)

    def id_real():  # what step_losses once recomputed every timestep for the constant x_real
        with torch.no_grad(), ac():
            id_embed(x_real)

    def lpips_real():
        with torch.no_grad(), ac():
            lpips_real_half(x_real)

    h_probe = torch.randn(h_shape(unet, batch), device=device)
    g_probe = torch.randn(x_real.shape, generator=g).to(device)  # an arbitrary output gradient

    def extra_encoder():  # arch (a): the encoder whose output each image then discards, fwd + bwd
        t, _ = current_t()
        tt = torch.full((batch,), t, device=device)
        with ac():
            out = net.specific[1](h_probe / net.h_scale, tt)
        (out.float().pow(2).mean()).backward()
        net.zero_grad(set_to_none=True)

    def inversion():
        with ac():
            diffusion.invert(x_real, n_steps)

    n_edit = batch // 2

    def swap_edit(asymmetric=True):
        net.eval()
        with ac():
            edit(diffusion, net, xT[:n_edit], is_target[:n_edit], n_steps, mode="swap", t_edit=0,
                 donor_xT=xT[n_edit:], donor_is_target=is_target[n_edit:], asymmetric=asymmetric)

    def swap_edit_symmetric():
        swap_edit(asymmetric=False)

    # name: (fn, divisor to per-image(-per-step), runs in every rep?)
    phases = {
        "forward": (forward, batch, True),
        "train_step": (train_step, batch, True),
        "train_step_symmetric": (train_step_symmetric, batch, True),
        "latent_step": (latent_step, batch, True),
        "encoder_half": (encoder_half, batch, True),
        "decoder_half_graph_backward": (decoder_half_graph_backward, batch, True),
        "decoder_half_diffusers_blocks": (decoder_half_diffusers_blocks, batch, True),
        "id_x_real": (id_real, batch, True),
        "lpips_x_real": (lpips_real, batch, True),
        "extra_specific_encoder": (extra_encoder, batch, True),
        "inversion_step": (inversion, batch * (n_steps - 1), False),
        "swap_edit_step": (swap_edit, n_edit * n_steps, False),
        "swap_edit_step_symmetric": (swap_edit_symmetric, n_edit * n_steps, False),
    }
    times = {k: [] for k in phases}
    mem = {}
    t_start = time.time()
    for rep in range(warmup + reps):
        timed = rep >= warmup
        for name, (fn, div, every) in phases.items():
            if not every and rep >= warmup + pipeline_reps:
                continue
            # memory on the first pass (its own trim/page faults; excluded from medians when warmup ≥ 1)
            ctx = PeakMemory(device) if rep == 0 else nullcontext()
            with ctx:
                sync()
                t0 = time.perf_counter()
                fn()
                sync()
                dt = time.perf_counter() - t0
            if rep == 0:
                mem[name] = dict(peak=ctx.peak, above=ctx.above)
            if timed:
                times[name].append(dt / div)
        print(f"  [{shape}] rep {rep + 1}/{warmup + reps} done ({time.time() - t_start:.0f} s)", file=sys.stderr, flush=True)

    med = {k: statistics.median(v) for k, v in times.items() if v}
    med["unet_floor"] = med["encoder_half"] + med["decoder_half_graph_backward"]
    # the asymmetric step adds one no-grad decoder half (the direction term's ε): forward − encoder half
    med["unet_floor_asymmetric"] = med["unet_floor"] + med["forward"] - med["encoder_half"]
    floor = med["forward"]
    return dict(
        shape=shape, model=model_label, params_M=round(n_params / 1e6, 2), image=[3, size, size],
        h=list(h_shape(unet, batch)), batch=batch, n_steps=n_steps, reps=reps, warmup=warmup,
        pipeline_reps=pipeline_reps, dtype="bf16 autocast" if use_autocast else "fp32",
        stand_ins=dict(lpips=lpips_label, id=id_label),
        per_image_s=med, ratio={k: v / floor for k, v in med.items()},
        samples={k: len(v) for k, v in times.items()}, spread={k: [min(v), max(v)] for k, v in times.items() if v},
        memory_bytes=mem, wall_s=round(time.time() - t_start, 1),
    )


LABELS = {
    "forward": "U-Net forward, no grad (floor)",
    "train_step": "train step (1 timestep, 8 losses)",
    "train_step_symmetric": "  the same, symmetric DDIM step",
    "latent_step": "train step without image terms",
    "encoder_half": "  floor: encoder half, no grad",
    "decoder_half_graph_backward": "  floor: decoder half, graph + backward",
    "decoder_half_diffusers_blocks": "  piece: the same, diffusers' up blocks",
    "unet_floor": "  floor: U-Net part of a train step",
    "unet_floor_asymmetric": "  floor: the same + a no-grad decoder half",
    "inversion_step": "DDIM inversion, per step",
    "swap_edit_step": "swap edit, per edited image per step",
    "swap_edit_step_symmetric": "  the same, symmetric DDIM step",
    "id_x_real": "  piece: ID embed of x_real (now once/batch)",
    "lpips_x_real": "  piece: LPIPS on x_real (now once/batch)",
    "extra_specific_encoder": "  piece: 2nd specific enc. (now avoided)",
}


def report(r):
    print(f"\n== {r['shape']}: {r['model']}, {r['params_M']} M params, image {r['image']}, h {r['h']}")
    print(f"   batch {r['batch']} ({r['batch'] // 2} background + {r['batch'] // 2} target; swap edits "
          f"{r['batch'] // 2} images beside {r['batch'] // 2} donors), {r['dtype']}, n_steps {r['n_steps']}, "
          f"medians of {r['reps']} interleaved reps after {r['warmup']} warm-up (inversion/edit: "
          f"{r['samples'].get('inversion_step', 0)}), {r['wall_s']} s")
    print(f"   TIMING STAND-INS, random weights: LPIPS = {r['stand_ins']['lpips']}; ID = {r['stand_ins']['id']}")
    mem_kind = "CUDA max_memory_allocated" if "cuda" in DEVICE_STR else "peak RSS"
    print(f"   {'figure':40s} {'per image':>12s} {'x forward':>10s} {'min..max per image':>23s}   "
          f"{mem_kind + ' MiB':>24s} {'above start MiB':>16s}")
    for k in ("forward", "train_step", "train_step_symmetric", "unet_floor", "unet_floor_asymmetric", "encoder_half", "decoder_half_graph_backward",
              "decoder_half_diffusers_blocks", "latent_step",
              "inversion_step", "swap_edit_step", "swap_edit_step_symmetric", "id_x_real", "lpips_x_real",
              "extra_specific_encoder"):
        if k not in r["per_image_s"]:
            continue
        lo, hi = r["spread"].get(k, (math.nan, math.nan))
        m = r["memory_bytes"].get(k, {})
        print(f"   {LABELS[k]:40s} {fmt_time(r['per_image_s'][k]):>12s} {r['ratio'][k]:10.2f} "
              f"{fmt_time(lo).strip():>11s}..{fmt_time(hi).strip():<11s}   {fmt_mb(m.get('peak')):>24s} "
              f"{fmt_mb(m.get('above')):>16s}")


DEVICE_STR = ""


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv=None):
    global DEVICE_STR
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--shapes", nargs="+", choices=SHAPES, default=["toy", "celebahq256"])
    ap.add_argument("--reps", help="timed repetitions: N, or per shape 'toy=15,celebahq256=3'")
    ap.add_argument("--warmup", help="untimed first repetitions (the first one also measures memory): N or per shape")
    ap.add_argument("--batch", help="images per batch, even (half background, half target): N or per shape")
    ap.add_argument("--steps", help="DDIM n_steps for inversion / edit / the training trajectory: N or per shape")
    ap.add_argument("--pipeline-reps", help="timed reps of inversion and edit (each is n_steps U-Net calls): N or per shape")
    ap.add_argument("--no-autocast", action="store_true", help="on cuda: fp32 instead of bf16 autocast")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--json", help="also write the results to this JSON file")
    a = ap.parse_args(argv)
    if a.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device")
    device = torch.device(a.device)
    if a.threads:
        torch.set_num_threads(a.threads)
    d = DEFAULTS[a.device]
    reps, warmup = parse_per_shape(a.reps, d["reps"]), parse_per_shape(a.warmup, d["warmup"])
    batch, steps = parse_per_shape(a.batch, d["batch"]), parse_per_shape(a.steps, d["steps"])
    pipe = parse_per_shape(a.pipeline_reps, d["pipeline_reps"])
    use_autocast = a.device == "cuda" and not a.no_autocast
    if a.device == "cuda":
        DEVICE_STR = f"cuda: {torch.cuda.get_device_name()}"
    else:
        from hsep_utils.cpu_memory import keep_freed_memory

        DEVICE_STR = (f"cpu: {cpu_model()}, {torch.get_num_threads()} torch threads, freed memory "
                      + ("kept (hsep_utils.cpu_memory)" if keep_freed_memory() else "returned (glibc defaults)"))
    print(f"hsep benchmark  {datetime.datetime.now().isoformat(timespec='seconds')}  torch {torch.__version__}  "
          f"python {platform.python_version()}  device {DEVICE_STR}"
          + (f"  (stubbed, unused here: {', '.join(STUBBED)})" if STUBBED else ""))
    print("command: " + " ".join([Path(sys.argv[0]).as_posix()] + (argv if argv is not None else sys.argv[1:])))
    results = []
    for shape in a.shapes:
        r = bench_shape(shape, device, batch[shape], reps[shape], warmup[shape], pipe[shape], steps[shape], use_autocast)
        results.append(r)
        report(r)
    if a.json:
        Path(a.json).write_text(json.dumps(dict(device=DEVICE_STR, torch=torch.__version__, results=results), indent=2))
    by = {r["shape"]: r["ratio"]["train_step"] for r in results}
    print()
    for r in results:  # image_loss_every = k (beyond the paper): one step with image terms per k steps
        q = r["ratio"]
        print(f"{r['shape']}: asymmetric step / its floor = {q['train_step'] / q['unet_floor_asymmetric']:.3f}, "
              f"symmetric step / its floor = {q['train_step_symmetric'] / q['unet_floor']:.3f}")
        print(f"{r['shape']}: unet_floor_ratio={q['unet_floor']:.2f}  " + "  ".join(
            f"image_loss_every={k}: ratio={(q['train_step'] + (k - 1) * q['latent_step']) / k:.2f}" for k in (2, 4)))
    if "toy" in by and len(by) > 1:
        print(f"toy_train_step_ratio={by['toy']:.2f}")
    last = "celebahq256" if "celebahq256" in by else results[-1]["shape"]
    print(f"train_step_ratio={by[last]:.2f}")


if __name__ == "__main__":
    main()
