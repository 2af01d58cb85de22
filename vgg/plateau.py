"""The paper's schedule lowers the learning rate "when the validation set accuracy stopped
improving"; it gives no patience or threshold. ``first_drop`` replays torch's ReduceLROnPlateau
(mode max, absolute threshold; what vgg.train.make_scheduler uses) on a sequence of validation
accuracies, so a logged or simulated curve can be tested under other rules without training."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import curve_fit


def first_drop(accuracy, patience: int, threshold: float = 0.0) -> int | None:
    """The 1-based epoch after which the rule lowers the lr first, or None if it does not.
    An epoch improves when its accuracy beats the best so far by more than ``threshold``; the
    lr drops once more than ``patience`` epochs in a row have not improved."""
    curve = np.asarray(accuracy, dtype=float)[None, :]
    epoch = int(first_drops(curve, patience, threshold)[0])
    return None if epoch > curve.shape[1] else epoch


def first_drops(accuracy: np.ndarray, patience: int, threshold: float = 0.0) -> np.ndarray:
    """``first_drop`` of every row of a (curves, epochs) array; epochs + 1 where it does not drop."""
    curves, epochs = accuracy.shape
    best = np.full(curves, -np.inf)
    bad = np.zeros(curves, int)
    out = np.full(curves, epochs + 1)
    for t in range(epochs):
        a = accuracy[:, t]
        better = a > best + threshold
        best = np.where(better, a, best)
        bad = np.where(better, 0, bad + 1)
        fire = (bad > patience) & (out == epochs + 1)
        out[fire] = t + 1
    return out


def drop_epochs(lrs) -> list[int]:
    """The 1-based epochs after which a logged per-epoch lr sequence was lowered."""
    return [t for t, (a, b) in enumerate(zip(lrs, lrs[1:]), start=1) if b < a]


def drops_taken(lrs) -> int:
    """How many times a logged per-epoch lr sequence was lowered."""
    return len(drop_epochs(lrs))


def rule_firings(accuracy, patience: int, threshold: float = 0.0) -> list[int]:
    """Every 1-based epoch after which torch's ReduceLROnPlateau fires on this accuracy curve (after
    a firing the count of bad epochs restarts and the best so far is kept, as torch does)."""
    best, bad, out = -np.inf, 0, []
    for t, a in enumerate(np.asarray(accuracy, dtype=float), start=1):
        if a > best + threshold:
            best, bad = a, 0
        else:
            bad += 1
        if bad > patience:
            out.append(t)
            bad = 0
    return out


def plateau_stop(accuracy, patience: int, threshold: float, drops: int) -> int | None:
    """The epoch at which a run that stops once the lr has been lowered ``drops`` times and the
    rule fires again (``Preset.stop_after_drops``) stops, or None if it runs on."""
    firings = rule_firings(accuracy, patience, threshold)
    return firings[drops] if len(firings) > drops else None


MIN_EPOCHS = 4  # a first-lr segment shorter than this says nothing about a plateau


def segments(folder: Path) -> dict[str, np.ndarray]:
    """Validation top-1 error (fraction) of every logged run's epochs at its first learning rate
    (``<folder>/*.log.csv`` as vgg.train writes them), by run name (``A_S256``)."""
    from .train import is_epoch_log
    out = {}
    for path in sorted(Path(folder).glob("*.log.csv")):
        log = pd.read_csv(path)
        if not is_epoch_log(log.columns):
            continue
        first = log[log.lr == log.lr.iloc[0]].val_top1_err.to_numpy(dtype=float)
        if len(first) >= MIN_EPOCHS:
            out[path.name.removesuffix(".log.csv")] = first
    return out


def decay(t, floor, span, tau):
    """The falling curve a validation error is fitted with: floor + span * exp(-epoch / tau)."""
    return floor + span * np.exp(-np.asarray(t, dtype=float) / tau)


def fit_decay(error: np.ndarray) -> tuple[float, float, float] | None:
    """(floor, span, tau) of ``decay`` fitted by least squares to an error curve of epochs 1..n, or
    None where it cannot be fitted (too short or flat)."""
    error = np.asarray(error, dtype=float)
    t = np.arange(1, len(error) + 1, dtype=float)
    try:
        p, _ = curve_fit(decay, t, error, p0=(error.min() * 0.9, error[0] - error.min() + 1e-3, 3.0),
                         bounds=([0, 0, 0.3], [1, 2, 100]), maxfev=20_000)
    except (RuntimeError, ValueError):
        return None
    return tuple(float(v) for v in p)


def smooth_curve(error: np.ndarray) -> np.ndarray:
    """A noiseless stand-in for a validation error curve: ``decay`` fitted by least squares (a
    falling curve, as every logged one is while the lr is constant); a straight line through the
    ends where it cannot be fitted."""
    p = fit_decay(error)
    if p is None:
        return np.linspace(error[0], error[-1], len(error))
    return decay(np.arange(1, len(error) + 1), *p)


def epoch_noise(curves: dict[str, np.ndarray], fitted: dict[str, np.ndarray]) -> tuple[float, float]:
    """Epoch-to-epoch noise of validation error around its fitted curves: the pooled sd of the
    residuals (3 fitted parameters per run) and their lag-1 autocorrelation within runs."""
    res = [curves[k] - fitted[k] for k in curves]
    flat = np.concatenate(res)
    sd = float(np.sqrt(np.sum(flat ** 2) / max(len(flat) - 3 * len(res), 1)))
    lag1 = sum(float(np.sum(r[1:] * r[:-1])) for r in res) / sum(float(np.sum(r ** 2)) for r in res)
    return sd, lag1


def ema(accuracy: np.ndarray, alpha: float) -> np.ndarray:
    """Exponential moving average along the last axis: s_1 = a_1, s_t = alpha s_(t-1) + (1 - alpha) a_t
    (alpha 0: the curve itself). A plateau rule fed s instead of a sees one noisy epoch at (1 - alpha)
    of its size."""
    a = np.asarray(accuracy, dtype=float)
    out = a.copy()
    for t in range(1, a.shape[-1]):
        out[..., t] = alpha * out[..., t - 1] + (1 - alpha) * a[..., t]
    return out
