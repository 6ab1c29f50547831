"""Pictures and widgets for notebook 02: the scaffold at every stage, per-epoch compression, the LR
schedules against the compression stage g(t), training curves per section, tables beside the paper."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from ..core.plotting import png_bytes, save_figure
from ..core.scaffold import Reasoning
from .trainer import calr_switch_step, lr_multiplier


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
    """CALR (Eq. 4) beside cosine and constant, with the global stage g(t) (a step per epoch) on a second axis,
    the warmup shaded and t* marked."""
    t = np.arange(total)
    fig, ax = plt.subplots(figsize=(10, 3.8))
    for sched, style in (("calr", "-"), ("cosine", "--"), ("constant", ":")):
        ax.plot(t, [eta * lr_multiplier(s, total, steps_per_epoch, sched, warmup, b_star, polish_ratio) for s in t],
                style, lw=2, label=sched.upper() if sched == "calr" else sched)
    if warmup:
        ax.axvspan(0, warmup, color="grey", alpha=0.15, label=f"warmup ({warmup} steps)")
    t_star = calr_switch_step(b_star, steps_per_epoch)
    if t_star < total:
        ax.axvline(t_star, color="tab:red", lw=1, label=f"t* = {t_star} (first step with g(t) > B*)")
    ax.set_xlabel("optimizer step t")
    ax.set_ylabel("learning rate")
    ax2 = ax.twinx()
    ax2.step(t, t // steps_per_epoch, where="post", color="grey", alpha=0.6, label="g(t) = epoch - 1")
    ax2.axhline(b_star, color="tab:red", alpha=0.4, ls="-.", label=f"B* = {b_star}")
    ax2.set_ylabel("global stage g(t)")
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="center left", fontsize=8)
    ax.set_title("LR schedules against the compression stage")
    return save_figure(fig, path)


def calr_explorer(total: int, steps_per_epoch: int, warmup: int, b_star: int, polish_ratio: float, eta: float):
    """ipywidgets: B*, eta_polish / eta_struct, the number of epochs and the warmup as sliders over the schedule
    and g(t) (``plot_lr_schedules``); starts at this scale's values."""
    import ipywidgets as w

    epochs = max(1, total // steps_per_epoch)
    controls = {"b_star": w.IntSlider(value=b_star, min=0, max=20, description="B*"),
                "ratio": w.FloatSlider(value=polish_ratio, min=0.05, max=1.0, step=0.05, description="η_pol/η_str"),
                "epochs": w.IntSlider(value=epochs, min=1, max=20, description="epochs"),
                "warmup": w.IntSlider(value=warmup, min=0, max=3 * steps_per_epoch, description="warmup")}
    for c in controls.values():
        c.continuous_update = False
    image, note = w.Image(format="png"), w.HTML()

    def draw(_=None) -> None:
        b, n = controls["b_star"].value, controls["epochs"].value
        t_star = calr_switch_step(b, steps_per_epoch)
        note.value = (f"t* = {t_star}: CALR holds η_struct through epoch {b + 1} (g(t) = {b} = B*) and drops at the "
                      f"start of epoch {b + 2}" + ("" if t_star < n * steps_per_epoch else
                                                   f", after the last of {n} epochs: no polish phase"))
        image.value = png_bytes(plot_lr_schedules(n * steps_per_epoch, steps_per_epoch, controls["warmup"].value, b,
                                                  controls["ratio"].value, eta))

    for c in controls.values():
        c.observe(draw, names="value")
    draw()
    return w.VBox([w.HBox(list(controls.values())[:2]), w.HBox(list(controls.values())[2:]), note, image])


def plot_training_curves(histories: Mapping[str, Sequence[Mapping[str, Any]]], path: str | Path | None = None
                         ) -> plt.Figure:
    """The CoT and JSON section losses and the LR over steps, one colour per run; dotted verticals at epoch starts,
    where a PICD run folds its next block and L_cot jumps (a new block's latent tokens are not yet learnt). The LR
    lines are dashed differently, since runs with the same schedule draw the same curve."""
    fig, ax = plt.subplots(1, 3, figsize=(15, 3.8))
    dashes = ("-", "--", ":", "-.", (0, (5, 1)))
    for k, (name, hist) in enumerate(histories.items()):
        logs = [h for h in hist if "loss" in h]
        steps = [h["step"] for h in logs]
        style = {"label": name, "color": f"C{k}"}  # one colour per run in every panel
        if any("loss_cot" in h for h in logs):  # Direct-SFT has no CoT section: no line, same colours after it
            ax[0].plot(steps, [h.get("loss_cot", np.nan) for h in logs], **style)
        ax[1].plot(steps, [h.get("loss_json", np.nan) for h in logs], **style)
        ax[2].plot(steps, [h["learning_rate"] for h in logs], ls=dashes[k % len(dashes)], lw=2, **style)
    first = next(iter(histories.values()), [])
    per_epoch = [h["step"] / h["epoch"] for h in first if h.get("epoch") and "loss" in h]
    if per_epoch:
        spe, last = per_epoch[-1], max(h["step"] for h in first if "step" in h)
        for a in ax[:2]:
            for e in np.arange(spe, last, spe):
                a.axvline(e, color="grey", lw=0.5, ls=":")
    for a, title, ylabel in zip(ax, ("L_cot (CoT section)", "L_json (JSON section)", "learning rate"),
                                ("mean token loss (log)", "mean token loss (log)", "learning rate")):
        a.set_title(title)
        a.set_xlabel("optimizer step (dotted: epoch starts)" if a is not ax[2] else "optimizer step")
        a.set_ylabel(ylabel)
    ax[0].set_yscale("log")
    ax[1].set_yscale("log")
    ax[2].legend(fontsize=8)
    return save_figure(fig, path)
