"""Init study: nets A and D at S=256-equiv trained with the same schedule and seed under
(a) the paper's N(0, 1e-2), (b) Glorot uniform, (c) D initialised from a trained net A
(the paper's chain; on the proxy that A is the Glorot one, as N(0, 1e-2) does not train).

Writes results/<preset>/init_study.csv (one row per run and epoch) and
figures/<preset>/init_study.png. Reuses the chain's A_S256 and D_S256 checkpoints when they
have exactly this schedule; the other runs go to runs/<preset>/init_study/ and resume.
"""
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from vgg.checkpoint import load_training_checkpoint
from vgg.experiment import Experiment, main
from vgg.plots import save_figure
from vgg.results import write_table
from vgg.train import TrainSpec, train

# (config, label, how): how is an init name, or 'from A' (the chain's partial init).
RUNS = [
    ("A", "N(0, 1e-2)", "normal"),
    ("A", "Glorot", "glorot"),
    ("D", "N(0, 1e-2)", "normal"),
    ("D", "Glorot", "glorot"),
    ("D", "from trained A", "from A"),
]


def run_length(preset, epochs: int | None) -> tuple[str, int | str]:
    """How long each run trains: its checkpoint-name suffix and the study_epochs column."""
    if epochs is not None:
        return f"{epochs}ep", epochs
    if preset.stop_after_drops:
        return (f"until{preset.stop_after_drops}drops",
                f"preset's: until the plateau rule fires after {preset.stop_after_drops} lr drops, "
                f"at most {preset.scratch_epochs}")
    return f"{preset.scratch_epochs}ep", preset.scratch_epochs


def checkpoint_for(ex: Experiment, config: str, how: str, epochs: int | None) -> Path:
    """The run's checkpoint, trained if missing. epochs None: the preset's own schedule (with its
    stop rule where it has one), so the chain's A and D are exactly two of the runs."""
    preset, runs = ex.preset, Path(ex.args.runs)
    chain_net = {("A", preset.scratch_init): "A_S256", ("D", "from A"): "D_S256"}.get((config, how))
    if chain_net and (epochs is None or (preset.stop_after_drops is None
                                         and preset.scratch_epochs == preset.from_a_epochs
                                         and epochs <= preset.scratch_epochs)):
        # the chain's own run has this init, schedule and seed; its first `epochs` epochs are
        # exactly an `epochs`-epoch run (same seeds per epoch, same plateau decisions so far)
        return ex.checkpoint(chain_net)
    out = runs / preset.name / "init_study" / f"{config}_{how.replace(' ', '_')}_{run_length(preset, epochs)[0]}.pt"
    train(TrainSpec(config=config, scale="256", preset=preset.name, data=str(ex.root), out=str(out),
                    resume="auto", init=None if how == "from A" else how, seed=ex.args.seed,
                    init_from=str(ex.checkpoint("A_S256")) if how == "from A" else None,
                    epochs=epochs, progress=sys.stderr.isatty()))
    return out


def init_study(args) -> None:
    ex = Experiment(args)
    epochs = args.epochs  # None: the preset's schedule, stop rule included
    frames = []
    for config, label, how in RUNS:
        ckpt = load_training_checkpoint(checkpoint_for(ex, config, how, epochs))
        log = pd.DataFrame(ckpt["log"][:epochs])
        log.insert(0, "init", label)
        log.insert(0, "config", config)
        log["start"] = ckpt["spec"]["how"]
        frames.append(log)
    df = pd.concat(frames, ignore_index=True).drop(columns=["seconds", "val_seconds"], errors="ignore")  # times vary
    for c in ("train_loss", "train_top1_err", "val_top1_err", "val_top5_err"):
        df[c] = df[c].round(4)
    write_table(df, ex.out("results", "init_study.csv"),
                {**ex.provenance(), "study_epochs": run_length(ex.preset, epochs)[1]})

    fig, axes = plt.subplots(2, 2, figsize=(10, 7), sharex=True)
    for col, config in enumerate(("A", "D")):
        for (label, g) in df[df.config == config].groupby("init", sort=False):
            axes[0, col].plot(g.epoch, g.train_loss, marker="o", ms=3, label=label)
            axes[1, col].plot(g.epoch, 100 * g.val_top1_err, marker="o", ms=3, label=label)
        axes[0, col].set_title(f"net {config}", fontsize=10)
        axes[0, col].axhline(2.3026, color="grey", ls=":", lw=1)
        axes[0, col].text(1, 2.33, "ln 10: chance", fontsize=7, color="grey")
        axes[1, col].axhline(90, color="grey", ls=":", lw=1)
        axes[1, col].set_xlabel("epoch")
        axes[0, col].legend(fontsize=8)
    axes[0, 0].set_ylabel("training loss")
    axes[1, 0].set_ylabel("validation top-1 error (%), centre crop")
    for ax in axes.flat:
        ax.grid(alpha=0.3)
    fig.suptitle(f"Init study ({ex.preset.name}, {ex.root.name}, width x{ex.preset.width}, seed {args.seed}): "
                 "the paper's N(0, 1e-2) vs Glorot vs D from a trained A", fontsize=10)
    save_figure(fig, ex.out("figures", "init_study.png"))


def extra(p) -> None:
    p.add_argument("--epochs", type=int, help="epochs per run, no stop rule (default: the preset's schedule, its stop "
                                               "rule included; the chain's A and D are then two of the runs)")


if __name__ == "__main__":
    main(init_study, extra=extra)
