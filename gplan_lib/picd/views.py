"""Pictures and widgets for notebook 02: the scaffold at every stage, per-epoch compression, the LR
schedules against the compression stage g(t), training curves per section, tables beside the paper."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from ..core.plotting import save_figure
from ..core.scaffold import Reasoning
from .trainer import lr_multiplier


def scaffold_slider(reasoning: Reasoning, plan_json: str):
    """An ipywidgets slider over the stage b showing the training target at that stage."""
    import html

    import ipywidgets as w

    out = w.HTML()

    def show(change=None):
        b = slider.value
        text = html.escape(reasoning.fold(b) + plan_json)
        out.value = (f"<b>stage b = {b}</b> of B = {reasoning.n_blocks} "
                     f"({min(b, reasoning.n_blocks)} blocks folded)<br><code style='white-space:pre-wrap'>{text}</code>")

    slider = w.IntSlider(value=0, min=0, max=reasoning.n_blocks, description="stage b")
    slider.observe(show, names="value")
    show()
    return w.VBox([slider, out])


def plot_compression(profile: Sequence[Mapping[str, float]], path: str | Path | None = None) -> plt.Figure:
    """Per epoch: blocks folded, share of samples fully latent, CoT vs JSON target tokens."""
    e = [p["epoch"] for p in profile]
    fig, ax = plt.subplots(1, 3, figsize=(14, 3.6))
    ax[0].plot(e, [p["blocks_folded"] for p in profile], "o-")
    ax[0].set_title("mean blocks folded b(e)")
    ax[1].plot(e, [p["fully_latent"] for p in profile], "o-", color="tab:green")
    ax[1].set_title("share of samples fully latent")
    ax[1].set_ylim(-0.05, 1.05)
    ax[2].plot(e, [p["cot_tokens"] for p in profile], "o-", label="CoT target tokens")
    ax[2].plot(e, [p["json_tokens"] for p in profile], "s-", label="JSON target tokens")
    ax[2].set_title("target tokens per sample")
    ax[2].legend()
    for a in ax:
        a.set_xlabel("epoch")
    return save_figure(fig, path)


def plot_lr_schedules(total: int, steps_per_epoch: int, warmup: int, b_star: int, polish_ratio: float,
                      eta: float, path: str | Path | None = None) -> plt.Figure:
    """CALR (Eq. 4) beside cosine and constant, with the global stage g(t) on a second axis."""
    t = np.arange(total)
    fig, ax = plt.subplots(figsize=(10, 3.8))
    for sched, style in (("calr", "-"), ("cosine", "--"), ("constant", ":")):
        ax.plot(t, [eta * lr_multiplier(s, total, steps_per_epoch, sched, warmup, b_star, polish_ratio) for s in t],
                style, lw=2, label=sched.upper() if sched == "calr" else sched)
    ax.set_xlabel("optimizer step t")
    ax.set_ylabel("learning rate")
    ax2 = ax.twinx()
    ax2.plot(t, t // steps_per_epoch, color="grey", alpha=0.5, label="g(t)")
    ax2.axhline(b_star, color="tab:red", alpha=0.4, ls="-.", label=f"B* = {b_star}")
    ax2.set_ylabel("global stage g(t)")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="center left")
    ax.set_title("LR schedules against the compression stage")
    return save_figure(fig, path)


def plot_training_curves(histories: Mapping[str, Sequence[Mapping[str, Any]]], path: str | Path | None = None
                         ) -> plt.Figure:
    """The CoT and JSON section losses and the LR over steps, one line per run."""
    fig, ax = plt.subplots(1, 3, figsize=(15, 3.8))
    for k, (name, hist) in enumerate(histories.items()):
        logs = [h for h in hist if "loss" in h]
        steps = [h["step"] for h in logs]
        style = {"label": name, "color": f"C{k}"}  # one colour per run in every panel
        if any("loss_cot" in h for h in logs):  # Direct-SFT has no CoT section: no line, same colours after it
            ax[0].plot(steps, [h.get("loss_cot", np.nan) for h in logs], **style)
        ax[1].plot(steps, [h.get("loss_json", np.nan) for h in logs], **style)
        ax[2].plot(steps, [h["learning_rate"] for h in logs], **style)
    for a, title in zip(ax, ("L_cot (CoT section)", "L_json (JSON section)", "learning rate")):
        a.set_title(title)
        a.set_xlabel("step")
    ax[0].set_yscale("log")
    ax[1].set_yscale("log")
    ax[2].legend(fontsize=8)
    return save_figure(fig, path)


