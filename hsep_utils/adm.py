"""guided-diffusion (ADM) checkpoints as diffusers ``UNet2DModel``s: the paper's P2-weighting base models.

The paper's code edits the P2-weighting models of Choi et al. (``ffhq_p2.pt``, ``celebahq_p2.pt``), which
are guided-diffusion U-Nets saved as plain state dicts. Every part of that layout has a diffusers twin,
so a key map and one reshuffle (the fused QKV convolution) turn a checkpoint into a ``UNet2DModel`` that
hsep's h-space split (``hspace.encode`` / ``decode``) runs unchanged:

    ADM                                         UNet2DModel
    time_embed.{0,2}                            time_embedding.linear_{1,2}   (cos-first sinusoid: flip_sin_to_cos)
    ResBlock in_layers / emb_layers / out_layers   ResnetBlock2D norm1, conv1 / time_emb_proj / norm2, conv2
      use_scale_shift_norm                        resnet_time_scale_shift="scale_shift"
      ResBlock(down=True / up=True)               ResnetDownsampleBlock2D / ResnetUpsampleBlock2D, or an
                                                  Attn*Block2D with downsample_type / upsample_type "resnet"
    AttentionBlock norm / qkv / proj_out        Attention group_norm / to_q, to_k, to_v / to_out.0
    middle_block (ResBlock, attention, ResBlock)  mid_block: h-space
    out.{0,2}                                   conv_norm_out, conv_out

A ``learn_sigma`` model outputs 6 channels: ε and the variance interpolation; DDIM uses ε only
(``hspace.decode`` returns the first ``in_channels``).

    python -m hsep_utils.adm --checkpoint models/ffhq_p2.pt --config p2-256 --out models/ffhq-p2

A preset may also name ``ffhq_p2.pt`` / ``celebahq_p2.pt`` directly: ``cached_conversion`` converts it
once into ``$HSEP_CACHE/adm/`` (default ``~/.cache/hsep``).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch

P2_README = ("the 'Pre-trained models' section of the P2-weighting README (github.com/jychoi118/P2-weighting), "
             "which links ffhq_p2.pt and celebahq_p2.pt")

# guided-diffusion's create_model: the channel multipliers it picks for an image size when none is given
DEFAULT_CHANNEL_MULT = {512: (0.5, 1, 1, 2, 2, 4, 4), 256: (1, 1, 2, 2, 4, 4), 128: (1, 1, 2, 3, 4), 64: (1, 2, 3, 4)}


@dataclass(frozen=True)
class AdmFlags:
    """A guided-diffusion model's command-line flags (``script_util.model_and_diffusion_defaults``
    gives the defaults of the optional ones). ``attention_resolutions`` are feature-map sizes in
    pixels, as the flag (``--attention_resolutions 16``)."""

    image_size: int
    num_channels: int
    num_res_blocks: int
    attention_resolutions: tuple[int, ...] = (16, 8)
    channel_mult: tuple[float, ...] | None = None  # None: guided-diffusion's default for image_size
    num_heads: int = 4
    num_heads_upsample: int = -1
    num_head_channels: int = -1
    use_scale_shift_norm: bool = True
    resblock_updown: bool = False
    use_new_attention_order: bool = False
    learn_sigma: bool = False
    class_cond: bool = False
    noise_schedule: str = "linear"
    diffusion_steps: int = 1000
    in_channels: int = 3

    @property
    def mult(self) -> tuple[float, ...]:
        if self.channel_mult is not None:
            return tuple(self.channel_mult)
        if self.image_size not in DEFAULT_CHANNEL_MULT:
            raise ValueError(f"image_size {self.image_size} has no default channel_mult in guided-diffusion "
                             f"(known: {sorted(DEFAULT_CHANNEL_MULT)}): give channel_mult")
        return DEFAULT_CHANNEL_MULT[self.image_size]

    @property
    def attention_levels(self) -> set[int]:
        """Levels (0 = full resolution) whose blocks hold attention."""
        ds = {self.image_size // r for r in self.attention_resolutions}
        return {level for level in range(len(self.mult)) if 2**level in ds}


CONFIGS: dict[str, AdmFlags] = {
    # P2-weighting's FFHQ and CelebA-HQ 256 px models (its README's MODEL_FLAGS; 93 M parameters)
    "p2-256": AdmFlags(image_size=256, num_channels=128, num_res_blocks=1, attention_resolutions=(16,),
                       num_head_channels=64, use_scale_shift_norm=True, resblock_updown=True, learn_sigma=True,
                       noise_schedule="linear", diffusion_steps=1000),
}
KNOWN_CHECKPOINTS: dict[str, str] = {"ffhq_p2.pt": "p2-256", "celebahq_p2.pt": "p2-256"}
"""Checkpoint file names a preset may name directly, and their config."""
CONVERTER_VERSION = 1  # part of the cache key: a change to the key map converts cached checkpoints again


def flags_from_dict(d: dict, where: str = "config") -> AdmFlags:
    """Flags as written on guided-diffusion's command line (``"16,8"`` strings or lists)."""
    names = {f.name for f in fields(AdmFlags)}
    ignored = {"dropout", "use_fp16", "use_checkpoint", "timestep_respacing", "use_kl", "predict_xstart",
               "rescale_timesteps", "rescale_learned_sigmas", "p2_gamma", "p2_k"}  # no effect on the weights' layout
    unknown = sorted(set(d) - names - ignored)
    if unknown:
        raise ValueError(f"{where}: unknown guided-diffusion flags {unknown} (known: {sorted(names)})")
    kw = {k: v for k, v in d.items() if k in names}
    for key in ("attention_resolutions", "channel_mult"):
        v = kw.get(key)
        if isinstance(v, str):
            kw[key] = tuple(float(x) if "." in x else int(x) for x in v.split(",") if x.strip()) or None
        elif isinstance(v, (list, tuple)):
            kw[key] = tuple(v)
        elif isinstance(v, int) and key == "attention_resolutions":
            kw[key] = (v,)
    missing = sorted({"image_size", "num_channels", "num_res_blocks"} - set(kw))
    if missing:
        raise ValueError(f"{where}: needs the flags {missing}")
    return AdmFlags(**kw)


def resolve_config(config: str | Path | AdmFlags) -> tuple[str, AdmFlags]:
    """(name, flags) of a named config, a JSON file of flags, or flags themselves."""
    if isinstance(config, AdmFlags):
        return "custom", config
    if str(config) in CONFIGS:
        return str(config), CONFIGS[str(config)]
    p = Path(config)
    if p.suffix == ".json" and p.is_file():
        try:
            return p.stem, flags_from_dict(json.loads(p.read_text()), str(p))
        except json.JSONDecodeError as e:
            raise ValueError(f"{p} is not valid JSON: {e}") from None
    raise ValueError(f"unknown ADM config {str(config)!r}: use one of {sorted(CONFIGS)} or a JSON file of "
                     f"guided-diffusion flags (e.g. {{\"image_size\": 256, \"num_channels\": 128, ...}})")


def _head_dim(f: AdmFlags, channels: list[int]) -> int:
    """diffusers' Attention has one head size for the whole U-Net; ADM's ``num_heads`` fixes the head
    count instead, which maps only when every attention layer has the same width."""
    if f.num_head_channels > 0:
        return f.num_head_channels
    widths = {channels[level] for level in f.attention_levels} | {channels[-1]}
    up_heads = f.num_heads if f.num_heads_upsample == -1 else f.num_heads_upsample
    if len(widths) != 1 or up_heads != f.num_heads:
        raise ValueError(f"num_heads {f.num_heads} (upsample {up_heads}) over attention widths {sorted(widths)} "
                         f"gives heads of different sizes, which UNet2DModel cannot hold (one attention_head_dim)")
    return widths.pop() // f.num_heads


def unet_config(f: AdmFlags) -> dict:
    """The ``UNet2DModel`` configuration with the same layers as the ADM U-Net of ``f``."""
    if f.class_cond:
        raise ValueError("class-conditional ADM models are not supported: hsep needs an unconditional U-Net")
    if f.mult[0] != 1 or any(float(m) != int(m) for m in f.mult):
        raise ValueError(f"channel_mult {f.mult}: UNet2DModel needs whole multipliers starting at 1 (its time "
                         f"embedding width is its first block's)")
    channels = [int(f.num_channels * m) for m in f.mult]
    attn = f.attention_levels
    if f.resblock_updown:
        down = ["AttnDownBlock2D" if level in attn else "ResnetDownsampleBlock2D" for level in range(len(channels))]
        up = ["AttnUpBlock2D" if level in attn else "ResnetUpsampleBlock2D" for level in reversed(range(len(channels)))]
    else:
        down = ["AttnDownBlock2D" if level in attn else "DownBlock2D" for level in range(len(channels))]
        up = ["AttnUpBlock2D" if level in attn else "UpBlock2D" for level in reversed(range(len(channels)))]
    sample = "resnet" if f.resblock_updown else "conv"
    return dict(
        sample_size=f.image_size, in_channels=f.in_channels, out_channels=f.in_channels * (2 if f.learn_sigma else 1),
        layers_per_block=f.num_res_blocks, block_out_channels=tuple(channels), down_block_types=tuple(down),
        up_block_types=tuple(up), mid_block_type="UNetMidBlock2D", downsample_type=sample, upsample_type=sample,
        downsample_padding=1, act_fn="silu", attention_head_dim=_head_dim(f, channels), norm_num_groups=32,
        attn_norm_num_groups=32, norm_eps=1e-5, dropout=0.0,
        resnet_time_scale_shift="scale_shift" if f.use_scale_shift_norm else "default",
        flip_sin_to_cos=True, freq_shift=0, time_embedding_type="positional", center_input_sample=False,
        mid_block_scale_factor=1,
    )


def scheduler_config(f: AdmFlags) -> dict:
    """``DDPMScheduler`` arguments of the model's noise schedule (linear: β from 1e-4 to 0.02 scaled by
    1000 / T; cosine: improved-DDPM's, which diffusers calls squaredcos_cap_v2)."""
    if f.noise_schedule == "linear":
        scale = 1000 / f.diffusion_steps
        sched = dict(beta_schedule="linear", beta_start=scale * 1e-4, beta_end=scale * 0.02)
    elif f.noise_schedule == "cosine":
        sched = dict(beta_schedule="squaredcos_cap_v2")
    else:
        raise ValueError(f"noise_schedule {f.noise_schedule!r} is not linear or cosine")
    return dict(num_train_timesteps=f.diffusion_steps, clip_sample=False,
                variance_type="learned_range" if f.learn_sigma else "fixed_small", **sched)


# --------------------------------------------------------------------------- the key map

_RESNET = {"in_layers.0": "norm1", "in_layers.2": "conv1", "emb_layers.1": "time_emb_proj", "out_layers.0": "norm2",
           "out_layers.3": "conv2", "skip_connection": "conv_shortcut"}
_PARTS = {"resnet": _RESNET, "attention": {"norm": "group_norm", "qkv": "qkv", "proj_out": "to_out.0"},
          "op": {"op": "conv"}, "upconv": {"conv": "conv"}, "plain": {"": ""}}


def _modules(f: AdmFlags) -> list[tuple[str, str, str]]:
    """(ADM module, UNet2DModel module, kind), walking the U-Net the way guided-diffusion builds it."""
    levels, nrb, attn = len(f.mult), f.num_res_blocks, f.attention_levels
    sampler = "resnet" if f.resblock_updown else None
    out = [("time_embed.0", "time_embedding.linear_1", "plain"), ("time_embed.2", "time_embedding.linear_2", "plain"),
           ("input_blocks.0.0", "conv_in", "plain")]
    k = 1
    for level in range(levels):
        for j in range(nrb):
            out.append((f"input_blocks.{k}.0", f"down_blocks.{level}.resnets.{j}", "resnet"))
            if level in attn:
                out.append((f"input_blocks.{k}.1", f"down_blocks.{level}.attentions.{j}", "attention"))
            k += 1
        if level != levels - 1:
            out.append((f"input_blocks.{k}.0", f"down_blocks.{level}.downsamplers.0", sampler or "op"))
            k += 1
    out += [("middle_block.0", "mid_block.resnets.0", "resnet"),
            ("middle_block.1", "mid_block.attentions.0", "attention"),
            ("middle_block.2", "mid_block.resnets.1", "resnet")]
    k = 0
    for u, level in enumerate(reversed(range(levels))):
        for i in range(nrb + 1):
            out.append((f"output_blocks.{k}.0", f"up_blocks.{u}.resnets.{i}", "resnet"))
            n = 1
            if level in attn:
                out.append((f"output_blocks.{k}.1", f"up_blocks.{u}.attentions.{i}", "attention"))
                n = 2
            if level and i == nrb:
                out.append((f"output_blocks.{k}.{n}", f"up_blocks.{u}.upsamplers.0", sampler or "upconv"))
            k += 1
    return out + [("out.0", "conv_norm_out", "plain"), ("out.2", "conv_out", "plain")]


def _join(*parts: str) -> str:
    return ".".join(p for p in parts if p)


def key_map(f: AdmFlags, target_keys: set[str]) -> dict[str, str]:
    """ADM parameter name → UNet2DModel parameter name (``…qkv.*`` → ``…qkv.*``, split by ``_split_qkv``).
    ``target_keys`` (the UNet2DModel's) decide which optional 1×1 shortcuts exist."""
    mapping = {}
    for adm, ours, kind in _modules(f):
        for a_part, o_part in _PARTS[kind].items():
            for p in ("weight", "bias"):
                o = _join(ours, o_part, p)
                if o in target_keys or o_part == "qkv":
                    mapping[_join(adm, a_part, p)] = o
    return mapping


def _split_qkv(t: torch.Tensor, heads: int, new_order: bool) -> tuple[torch.Tensor, ...]:
    """ADM's fused QKV 1×1 convolution (3C rows) → diffusers' q, k, v (C rows each, head-major).
    Legacy order: rows are [q, k, v] per head; new order: [q of all heads, k …, v …]."""
    c3 = t.shape[0]
    c = c3 // 3
    rest = t.shape[1:2]  # weight: (3C, C, 1) → (C, C); bias: (3C,)
    t = t.reshape(c3, *rest)
    if new_order:
        parts = t.reshape(3, c, *rest).unbind(0)
    else:
        parts = t.reshape(heads, 3, c // heads, *rest).unbind(1)
    return tuple(p.reshape(c, *rest).contiguous() for p in parts)


def convert_state_dict(state: dict[str, torch.Tensor], f: AdmFlags, target: dict[str, torch.Tensor],
                       config_name: str = "custom") -> dict[str, torch.Tensor]:
    """The UNet2DModel state dict of an ADM one. Keys the config does not expect, keys it expects and the
    checkpoint lacks, and shapes that differ are named (the first few of each) with the config."""
    mapping = key_map(f, set(target))
    missing, unexpected = sorted(set(mapping) - set(state)), sorted(set(state) - set(mapping))
    if missing or unexpected:
        raise ValueError(_mismatch(config_name, missing=missing, unexpected=unexpected))
    head_dim = unet_config(f)["attention_head_dim"]
    out, bad = {}, []
    for adm, ours in mapping.items():
        t = state[adm].to(torch.float32)
        if ours.rsplit(".", 2)[-2:-1] == ["qkv"]:
            prefix, _, p = ours.rsplit(".", 2)
            if t.shape[0] % 3 or (t.shape[0] // 3) % head_dim:
                bad.append(f"{adm} {tuple(t.shape)} (not 3 × heads of {head_dim} channels)")
                continue
            parts = _split_qkv(t, t.shape[0] // 3 // head_dim, f.use_new_attention_order)
            pairs = [(f"{prefix}.{name}.{p}", part) for name, part in zip(("to_q", "to_k", "to_v"), parts)]
        else:
            want = target[ours]
            if t.dim() == 3 and want.dim() == 2:
                t = t[..., 0]  # a 1-d 1×1 convolution (attention's proj_out) → Linear
            pairs = [(ours, t)]
        for key, tensor in pairs:
            if tensor.shape != target[key].shape:
                bad.append(f"{adm} {tuple(state[adm].shape)} (the config wants {tuple(target[key].shape)} for {key})")
            out[key] = tensor
    if bad:
        raise ValueError(_mismatch(config_name, shapes=bad))
    return out


def _mismatch(config_name: str, missing=(), unexpected=(), shapes=()) -> str:
    said = [f"{what} ({len(keys)}): {', '.join(keys[:5])}{' …' if len(keys) > 5 else ''}"
            for what, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("shapes", shapes)) if keys]
    return (f"the checkpoint does not fit ADM config {config_name!r}: {'; '.join(said)}. It was saved with other "
            f"model flags: pass the config that trained it (named: {', '.join(sorted(CONFIGS))}, or a JSON file "
            f"of its guided-diffusion flags)")


# --------------------------------------------------------------------------- files

def load_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """A guided-diffusion state dict from disk, with named errors for a missing, truncated or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ADM checkpoint {path} does not exist" + (
            f": download {path.name} from {P2_README}, and place it there" if path.name in KNOWN_CHECKPOINTS else ""))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a cut zip archive (RuntimeError), a cut legacy pickle (EOFError, UnpicklingError), …
        raise ValueError(f"{path} ({path.stat().st_size} bytes) does not read as a PyTorch checkpoint "
                         f"({type(e).__name__}: {str(e).splitlines()[0][:200]}): the file is truncated or corrupt; "
                         f"download it again" + (f" ({P2_README})" if path.name in KNOWN_CHECKPOINTS else "")) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict of tensors (as guided-diffusion "
                         f"saves its models)")
    return state


def convert(state: dict[str, torch.Tensor], config: str | Path | AdmFlags):
    """(UNet2DModel with the checkpoint's weights, DDPMScheduler) of an ADM state dict."""
    from diffusers import DDPMScheduler, UNet2DModel

    name, f = resolve_config(config)
    unet = UNet2DModel(**unet_config(f))
    unet.load_state_dict(convert_state_dict(state, f, unet.state_dict(), name), strict=True)
    return unet.eval(), DDPMScheduler(**scheduler_config(f))


def convert_checkpoint(checkpoint: str | Path, config: str | Path | AdmFlags, out: str | Path,
                       overwrite: bool = False) -> Path:
    """Write ``out/unet`` and ``out/scheduler`` (``save_pretrained``) from an ADM checkpoint. The folder
    appears whole or not at all: it is written beside ``out`` under a temporary name and renamed."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists: delete it or pass --overwrite")
    name, f = resolve_config(config)
    unet, sched = convert(load_checkpoint(checkpoint), config)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        unet.save_pretrained(tmp / "unet")
        sched.save_pretrained(tmp / "scheduler")
        (tmp / "adm_source.json").write_text(json.dumps(
            dict(checkpoint=Path(checkpoint).name, config=name, flags=asdict(f)), indent=1) + "\n")
        if out.exists():  # appeared meanwhile (another process converting the same checkpoint)
            if not overwrite:
                raise FileExistsError(f"{out} exists: delete it or pass --overwrite")
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def cache_root() -> Path:
    return Path(os.environ.get("HSEP_CACHE", "~/.cache/hsep")).expanduser() / "adm"


def cached_conversion(checkpoint: str | Path) -> Path:
    """The converted model directory of a checkpoint a preset names directly (``KNOWN_CHECKPOINTS``),
    converted on first use. Keyed by the file's path, size and modification time and the converter's
    version, so a replaced file (or a changed converter) converts again."""
    checkpoint = Path(checkpoint)
    config = KNOWN_CHECKPOINTS.get(checkpoint.name)
    if config is None:
        raise ValueError(f"{checkpoint}: hsep knows the flags of {', '.join(sorted(KNOWN_CHECKPOINTS))} only; convert "
                         f"this one with `python -m hsep_utils.adm --checkpoint {checkpoint} --config NAME_OR_JSON "
                         f"--out DIR` and set base_model to DIR")
    if not checkpoint.is_file():
        load_checkpoint(checkpoint)  # the named FileNotFoundError
    st = checkpoint.resolve().stat()
    stamp = f"{checkpoint.resolve()}|{st.st_size}|{st.st_mtime_ns}|{CONVERTER_VERSION}"
    key = hashlib.sha1(stamp.encode()).hexdigest()[:12]
    out = cache_root() / f"{checkpoint.stem}-{config}-{key}"
    if not (out / "unet" / "config.json").exists():
        print(f"converting {checkpoint} ({config}) into {out} (once)", flush=True)
        try:
            convert_checkpoint(checkpoint, config, out)
        except OSError:  # FileExistsError, or a rename onto the folder: another process finished it first
            if not (out / "unet" / "config.json").exists():
                raise
    return out


def main(argv=None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True, help="guided-diffusion .pt state dict (e.g. ffhq_p2.pt)")
    ap.add_argument("--config", default=None,
                    help=f"named flags ({', '.join(sorted(CONFIGS))}) or a JSON file of guided-diffusion flags "
                         f"(default: by file name, {KNOWN_CHECKPOINTS})")
    ap.add_argument("--out", required=True, help="directory to write (save_pretrained: unet/ and scheduler/)")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    a = ap.parse_args(argv)
    config = a.config or KNOWN_CHECKPOINTS.get(Path(a.checkpoint).name)
    if config is None:
        ap.error(f"--config is needed for {Path(a.checkpoint).name} (known by name: {', '.join(KNOWN_CHECKPOINTS)})")
    out = convert_checkpoint(a.checkpoint, config, a.out, overwrite=a.overwrite)
    from safetensors import safe_open

    with safe_open(out / "unet" / "diffusion_pytorch_model.safetensors", "pt") as st:
        n = sum(torch.Size(st.get_slice(k).get_shape()).numel() for k in st.keys())
    print(f"wrote {out} (config {config}, {n / 1e6:.2f} M parameters); use it with base_model: {out}")


if __name__ == "__main__":
    main()
