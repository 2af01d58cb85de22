"""Is A-LRN's gain over A normalisation, or a rescaling of conv1's output?

AlexNet's LRN as the paper uses it divides conv1's output by (k + alpha * sum a^2)^beta, k = 2,
alpha = 1e-4, beta = 0.75. Where the sum term is small beside k, LRN is a fixed division by
k^beta = 2^0.75 = 1.68. The control net A-LRN0 (vgg.configs.CONTROLS) is A-LRN with alpha = 0: exactly
that division, nothing else. It is trained like Table 3's A-LRN (same preset, seed, init, schedule).

- If A-LRN0 reaches A-LRN's error, the gain is the rescaling; if it stays at A's, it is the
  normalisation (the sum term).
- The divisor itself is measured: (k + alpha * sum a^2)^beta / k^beta over every position and channel
  where conv1's output is positive, on validation images, for conv1 as each net has it (A-LRN0
  trained, A trained where its checkpoint exists, A-LRN at its random init).

Errors: Table 3's protocol (dense, Q = S = 256, all validation images), paired with the published
seeds of A and A-LRN (seeds_top1.npz: the same images in the same order).

Writes results/<preset>/lrn_control.csv (errors and paired differences) and lrn_divisor.csv.
"""
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from vgg.checkpoint import load_training_checkpoint, model_from_checkpoint
from vgg.configs import LRN_PARAMS
from vgg.errors import UserError
from vgg.evaluate import cached_posteriors
from vgg.experiment import Experiment, main
from vgg.init import initialise
from vgg.model import VGG, channel_band
from vgg.results import write_table
from vgg.seeds import load_correctness
from vgg.stats import compare, correct_top1

CONTROL = "A-LRN0"
DIVISOR_IMAGES = 256


def train_control(ex: Experiment) -> Path:
    """The chain's A-LRN0 net of this preset and seed (vgg.chain.EXPLANATIONS): trained like A-LRN."""
    return ex.checkpoint(f"{CONTROL}_S256")


def lrn_divisor_ratio(conv1_out: torch.Tensor) -> torch.Tensor:
    """(k + alpha * sum_window a^2)^beta / k^beta at every position and channel where a > 0."""
    p = LRN_PARAMS
    a = conv1_out.permute(0, 2, 3, 1)  # N, H, W, C
    window_sum = torch.matmul(a * a, channel_band(a.shape[-1], p["size"]))
    ratio = ((p["k"] + p["alpha"] * window_sum) / p["k"]) ** p["beta"]
    return ratio[a > 0]


@torch.no_grad()
def divisor_row(ex: Experiment, model: VGG, name: str) -> dict:
    model.eval()
    conv1 = model.features[:2]  # conv1 and its ReLU: what LRN divides
    ratios = []
    q = ex.preset.px(256)
    for x, _ in ex.data.val_images(q, indices=np.arange(min(DIVISOR_IMAGES, len(ex.data.val)))):
        ratios.append(lrn_divisor_ratio(conv1(ex.data.colour.normalise(x.float()))))
    r = torch.cat(ratios).double().numpy()
    lo, med, hi = np.quantile(r, [0.05, 0.5, 0.95])
    return {"conv1_of": name, "positions": len(r), "ratio_p05": round(lo, 4), "ratio_median": round(med, 4),
            "ratio_p95": round(hi, 4), "within_5pct_of_constant": round(float(np.mean(r < 1.05)), 4),
            "divisor_median": round(med * LRN_PARAMS["k"] ** LRN_PARAMS["beta"], 4)}


def lrn_control(args) -> None:
    ex = Experiment(args)
    folder = Path(args.results) / ex.preset.name
    path = train_control(ex)
    p, y = cached_posteriors(path, "dense", [256], ex.data)
    ours = correct_top1(p, y)
    published = load_correctness(folder)
    if not published:
        raise UserError(f"{folder / 'seeds_top1.npz'} is missing: the control is compared with the published "
                        f"seeds of A and A-LRN (make seeds PRESET={ex.preset.name})")
    ckpt = load_training_checkpoint(path)
    rows = [{"net": f"{CONTROL} (conv1 / 1.68)", "seed": args.seed, "top1_err": round(100 * (1 - ours.mean()), 2),
             "epochs": ckpt["epoch"], "vs": "", "diff": None, "ci_low": None, "ci_high": None, "mcnemar_p": None}]
    for config in ("A", "A-LRN"):
        for seed in sorted(s for c, s in published if c == config):
            other = published[(config, seed)]
            if len(other) != len(ours):
                raise UserError(f"seeds_top1.npz has {len(other)} images, this evaluation {len(ours)}: another "
                                "validation set")
            r = compare(ours, other)
            rows.append({"net": config, "seed": seed, "top1_err": round(r.ours_b, 2), "epochs": None,
                         "vs": f"{CONTROL} minus {config}", "diff": round(r.diff, 2), "ci_low": round(r.ci_low, 2),
                         "ci_high": round(r.ci_high, 2), "mcnemar_p": float(f"{r.p_value:.3g}")})
    df = pd.DataFrame(rows)
    mean = df.groupby("net").top1_err.mean()
    gap = mean["A"] - mean["A-LRN"]
    closed = (mean["A"] - df.top1_err.iloc[0]) / gap
    df["share_of_lrn_gain"] = [round(closed, 3)] + [None] * (len(df) - 1)
    stamp = {"preset": ex.preset.name, "dataset": ex.root.name, "images": len(ours),
             "protocol": "Table 3: dense, Q = S = 256 (paper pixels), flips averaged"}
    write_table(df, folder / "lrn_control.csv", stamp)

    divisors = [divisor_row(ex, model_from_checkpoint(ckpt), f"{CONTROL} trained")]
    a_path = Path(args.runs) / ex.preset.name / "A_S256.pt"
    if a_path.exists():
        divisors.append(divisor_row(ex, model_from_checkpoint(load_training_checkpoint(a_path)), "A trained"))
    torch.manual_seed(args.seed)
    at_init = VGG("A-LRN", num_classes=len(ex.data.classes), width=ex.preset.width, crop_size=ex.preset.crop)
    initialise(at_init, ex.preset.scratch_init)
    divisors.append(divisor_row(ex, at_init, f"A-LRN at {ex.preset.scratch_init} init"))
    write_table(pd.DataFrame(divisors), folder / "lrn_divisor.csv",
                {"preset": ex.preset.name, "dataset": ex.root.name, "images": DIVISOR_IMAGES,
                 "constant": f"k^beta = {LRN_PARAMS['k']:g}^{LRN_PARAMS['beta']:g}"})


if __name__ == "__main__":
    main(lrn_control)
