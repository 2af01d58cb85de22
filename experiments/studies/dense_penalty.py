"""Why does dense evaluation lose to crops for D and E above the training scale? A direct test.

At a test scale Q larger than the crop, the dense score map has one position per crop-sized window
of the image, one pool5 cell (32 px) apart; position (i, j) sees exactly the pixels of the window at
(32 i, 32 j). Dense evaluation averages the map's scores over positions; a centre crop scores one
window. Their difference splits into two terms, each measured on the same images:

    dense - centre crop = (dense - windows as crops) + (windows as crops - centre crop)

- *boundary conditions*: "windows as crops" forwards every window of the score map as a crop of its
  own (zero padding at the window's border, as in training) and averages the scores over the windows
  exactly as dense evaluation does. Same pixels, same averaging: only what the convolutions see
  beyond each window differs (the neighbouring image, or zeros). Sect. 3.2 of the paper names this.
- *averaging*: windows as crops against the centre crop alone: what averaging off-centre windows
  (corners with little of the object) costs or gains, with training's boundary conditions.
- Where the map has a centre position (odd side), that position against the centre crop is the
  boundary term on one window: identical pixels.
- Averaging soft-max posteriors over positions instead of scores is a third arm (the map's weights).

The images Tables 5-6 use (the preset's multi-crop subset), flips averaged as in the tables.
Writes results/<preset>/dense_penalty.csv.
"""
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from vgg.checkpoint import load_training_checkpoint, model_from_checkpoint
from vgg.data import ColourStats, center_crop
from vgg.errors import UserError
from vgg.evaluate import _forward, crop_scores
from vgg.experiment import Experiment, main
from vgg.model import feature_size
from vgg.results import write_table
from vgg.stats import compare

CELL = 32  # px of input per pool5 cell: five 2x2 max-pools
ARMS = ("centre crop", "dense", "windows as crops", "dense, posteriors averaged", "centre position (dense)")


@torch.no_grad()
def arms(model, x: torch.Tensor, amp) -> dict[str, torch.Tensor]:
    """Posteriors (N, C) of every arm on one batch at one scale, flip-averaged."""
    crop = model.crop_size
    out = {k: 0 for k in ARMS}
    for img in (x, x.flip(-1)):
        smap = _forward(model, img, amp, dense=True)  # N, C, h, w scores
        n, c, h, w = smap.shape
        windows = torch.stack([img[..., CELL * i:CELL * i + crop, CELL * j:CELL * j + crop]
                               for i in range(h) for j in range(w)], 1)
        win_scores = crop_scores(model, windows.reshape(n * h * w, *windows.shape[2:]), amp).reshape(n, h * w, c)
        out["centre crop"] = out["centre crop"] + _forward(model, center_crop(img, crop), amp, False).softmax(1)
        out["dense"] = out["dense"] + smap.mean((2, 3)).softmax(1)
        out["windows as crops"] = out["windows as crops"] + win_scores.mean(1).softmax(1)
        out["dense, posteriors averaged"] = out["dense, posteriors averaged"] + smap.softmax(1).mean((2, 3))
        if h % 2 and w % 2:
            out["centre position (dense)"] = out["centre position (dense)"] + smap[:, :, h // 2, w // 2].softmax(1)
    return {k: v / 2 for k, v in out.items() if torch.is_tensor(v)}


def penalty_rows(ex: Experiment, path: Path, name: str, q_paper: int, indices) -> list[dict]:
    ckpt = load_training_checkpoint(path)
    model = model_from_checkpoint(ckpt).eval()
    colour = ColourStats.from_dict(ckpt["colour"])
    q = ex.preset.px(q_paper)
    if q % CELL or q < model.crop_size:
        raise UserError(f"Q = {q} px: this test needs a multiple of {CELL} px at least the crop {model.crop_size}")
    hits: dict[str, list] = {}
    for x, y in ex.data.val_images(q, indices=indices):
        for arm, p in arms(model, colour.normalise(x), ckpt["spec"].get("amp")).items():
            hits.setdefault(arm, []).append((p.argmax(1) == torch.as_tensor(y)).numpy())
    correct = {k: np.concatenate(v) for k, v in hits.items()}
    side = feature_size(q) - feature_size(model.crop_size) + 1
    rows = []
    pairs = [("dense", "centre crop"), ("dense", "windows as crops"), ("windows as crops", "centre crop"),
             ("dense, posteriors averaged", "dense")]
    if "centre position (dense)" in correct:
        pairs.append(("centre position (dense)", "centre crop"))
    for a, b in pairs:
        r = compare(correct[a], correct[b])
        rows.append({"net": name, "epochs": ckpt["epoch"], "test_scale": q_paper, "test_scale_px": q,
                     "score_map": f"{side}x{side}", "a": a, "b": b, "err_a": round(r.ours_a, 2),
                     "err_b": round(r.ours_b, 2), "diff": round(r.diff, 2), "ci_low": round(r.ci_low, 2),
                     "ci_high": round(r.ci_high, 2), "mcnemar_p": float(f"{r.p_value:.3g}"), "images": len(correct[a])})
    return rows


def dense_penalty(args) -> None:
    ex = Experiment(args)
    rows = []
    for spec in args.nets:
        name, _, path = spec.partition("=")
        path = Path(path or Path(args.runs) / ex.preset.name / f"{name}.pt")
        if not path.exists():
            raise UserError(f"{path} is missing: train {name} first (or give NAME=PATH)")
        for q in args.scales:
            subset = ex.multi_crop_subset
            subset = np.arange(len(ex.data.val)) if subset is None else subset
            rows += penalty_rows(ex, path, name, q, subset[:args.images] if args.images else subset)
            # written after every (net, Q): a run stopped later keeps what it measured
            write_table(pd.DataFrame(rows), Path(args.results) / ex.preset.name / "dense_penalty.csv",
                        {"preset": ex.preset.name, "dataset": ex.root.name})


def extra(p) -> None:
    p.add_argument("--nets", nargs="+", default=["D_S256"],
                   help="chain net names (runs/<preset>/<name>.pt) or NAME=PATH (default D_S256)")
    p.add_argument("--scales", nargs="+", type=int, default=[288, 416],
                   help="test scales Q in paper pixels (default 288 416: odd score maps at the imagenette preset)")
    p.add_argument("--images", type=int, help="the first N images of the multi-crop subset only (smoke runs)")


if __name__ == "__main__":
    main(dense_penalty, extra=extra)
