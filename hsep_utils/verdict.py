"""A plain verdict at the end of notebooks 02 and 04: did the separation show, and if its swap
success stayed near 0, which of the causes that can be measured explain it — reconstructions too
poor at the preset's DDIM steps for any edit to show, an attribute classifier that cannot judge,
or a mapping network whose S is as silent for targets as for backgrounds."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import torch

from .classifier import load_classifier
from .diffusion import Diffusion
from .mapping import MappingNetwork
from .splits import Split
from .train import InversionCache

NEAR_ZERO_SR = 0.1
"""A swap success at or below this in both directions is a failed separation."""
MIN_CLASSIFIER_ACCURACY = 0.8
"""Below this test accuracy the attribute classifier cannot say whether an edit worked."""
MIN_SALIENT_CONTRAST = 1.5
"""S must be at least this much stronger on targets than on backgrounds to carry the attribute."""


@torch.no_grad()
def salient_rms(diffusion: Diffusion, net: MappingNetwork, xT: torch.Tensor, is_target: torch.Tensor,
                n_steps: int) -> float:
    """The RMS of the images' S over that of their h (on the network's h scale), along their own
    DDIM generation: near 0 on backgrounds (the paper's removal sets S = 0), larger on targets."""
    _, path = diffusion.generate(xT, n_steps, return_trajectory=True)
    s_ms = torch.stack([net.split(h, t, is_target)[1].pow(2).mean() for t, h in zip(path.timesteps, path.h)])
    h_ms = torch.stack([h.pow(2).mean() for h in path.h]) / net.h_scale ** 2
    return (s_ms.mean() / h_ms.mean()).sqrt().item()


def separation_verdict(sr_add: float, sr_remove: float, split: str, params: dict, out_dir: str | Path,
                       diffusion: Diffusion, net: MappingNetwork, bg: Split, tg: Split, cache: InversionCache,
                       n: int = 16) -> str:
    """One line when ``split``'s swap success (adding, removing) shows the separation; otherwise the
    verdict and each measured cause: reconstruction PSNR at the preset's steps (notebook 01's
    ``hspace_steps.csv`` in ``out_dir``), the classifier's test accuracy (``classifier.pt``) and
    the S strength of ``n`` images per class (``salient_rms``)."""
    out_dir = Path(out_dir)
    said = f"{split} swap success: adding {sr_add:.2f}, removing {sr_remove:.2f}"
    if max((v for v in (sr_add, sr_remove) if not math.isnan(v)), default=0.0) > NEAR_ZERO_SR:
        return f"verdict: the separation shows ({said})"
    lines, causes = [f"verdict: the separation FAILED ({said}, both ≤ {NEAR_ZERO_SR}). What was measured:"], 0
    steps, floor = params["ddim_steps"], params["ddim_steps_min_psnr"]
    csv = out_dir / "hspace_steps.csv"
    row = pd.read_csv(csv).query("n_steps == @steps") if csv.exists() else pd.DataFrame()
    if len(row):
        psnr = float(row["psnr"].iloc[0])
        bad = psnr < floor
        causes += bad
        lines.append(f"- reconstruction at {steps} DDIM steps: {psnr:.1f} dB (notebook 01)"
                     + (f" — below {floor:g} dB: the base model loses these images, so no edit can show; use more "
                        f"steps (ddim_steps) or a base model trained on this domain" if bad else ", fine"))
    else:
        lines.append(f"- reconstruction at {steps} DDIM steps: not measured ({csv} has no row for it: run notebook 01 "
                     f"with {steps} in hspace_steps)")
    if (out_dir / "classifier.pt").exists():
        accuracy = load_classifier(out_dir / "classifier.pt")[1]
        bad = accuracy < MIN_CLASSIFIER_ACCURACY
        causes += bad
        lines.append(f"- attribute classifier test accuracy: {accuracy:.3f}"
                     + (f" — below {MIN_CLASSIFIER_ACCURACY}: it cannot judge the edits; are the two folders "
                        f"really told apart by the attribute?" if bad else ", fine"))
    n = min(n, len(bg.x), len(tg.x))
    s_bg = salient_rms(diffusion, net, cache(bg.keys[:n], bg.x[:n]), torch.zeros(n, dtype=torch.bool), steps)
    s_tg = salient_rms(diffusion, net, cache(tg.keys[:n], tg.x[:n]), torch.ones(n, dtype=torch.bool), steps)
    bad = s_tg < MIN_SALIENT_CONTRAST * s_bg
    causes += bad
    lines.append(f"- S strength (RMS of S over h, {n} images per class): targets {s_tg:.3f}, backgrounds {s_bg:.3f}"
                 + (f" — S is not ≥ {MIN_SALIENT_CONTRAST}× stronger on targets: the mapping network found nothing "
                    f"only the target class has; train longer, or check that h carries the attribute "
                    f"(python -m hsep_utils.diagnostics on a toy preset)" if bad else ", fine"))
    if not causes:
        lines.append("- none of these explains it: look at the edits (notebook 03) and the loss curves (notebook 02)")
    return "\n".join(lines)
