"""A ``DEFAULTS`` dict as the whole configuration of a training script, and as its CLI
(guided-diffusion style): ``base_ddpm`` and ``identity`` share this."""
from __future__ import annotations

import argparse

import torch


def resolve_options(defaults: dict, overrides: dict) -> dict:
    """``defaults`` updated by ``overrides``; an unknown name is an error listing the known ones. A
    non-zero ``num_threads`` option sets torch's CPU thread count (results are bit-identical only at
    the same count)."""
    cfg = {**defaults, **overrides}
    unknown = set(cfg) - set(defaults)
    if unknown:
        raise ValueError(f"unknown options {sorted(unknown)}; known: {sorted(defaults)}")
    if cfg.get("num_threads"):
        torch.set_num_threads(cfg["num_threads"])
    return cfg


def parse_options(defaults: dict, description: str, argv=None) -> dict:
    """One ``--option`` per key of ``defaults``, typed by its default (a tuple takes several ints)."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    for k, v in defaults.items():
        if isinstance(v, tuple):
            p.add_argument(f"--{k.replace('_', '-')}", type=int, nargs="+", default=v)
        else:
            p.add_argument(f"--{k.replace('_', '-')}", type=type(v), default=v)
    args = vars(p.parse_args(argv))
    return {k: tuple(v) if isinstance(defaults[k], tuple) else v for k, v in args.items()}
