"""Seed variance of the S=256 nets (Table 3's depth rows): per-image top-1 correctness of every
(config, seed), saved by experiments/seeds.py beside seeds.csv, and how a paired difference
between two configs varies from seed to seed.

A verdict that one seed's interval supports but another seed's difference contradicts is not
evidence: ``seed_check`` calls such a finding *inconclusive (flips between seeds)*."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .io import atomic_save_npz

SEEDS_FILE = "seeds_top1.npz"
#: Table 3's row the seed runs repeat: each config trained at S=256, dense evaluation at Q=256.
SEED_ROW = {"train_scale": "256", "test_scale": 256, "method": "dense"}


def save_correctness(folder: str | Path, correct: dict[tuple[str, int], np.ndarray]) -> Path:
    """``correct[(config, seed)]``: bool per validation image."""
    keys = list(correct)
    path = Path(folder) / SEEDS_FILE
    atomic_save_npz(path, configs=np.array([k[0] for k in keys]), seeds=np.array([k[1] for k in keys]),
                    n=np.int64(len(correct[keys[0]])), bits=np.stack([np.packbits(correct[k]) for k in keys]))
    return path


def load_correctness(folder: str | Path) -> dict[tuple[str, int], np.ndarray]:
    """What ``save_correctness`` wrote, or {} when the seed runs were not made."""
    path = Path(folder) / SEEDS_FILE
    if not path.exists():
        return {}
    z = np.load(path)
    n = int(z["n"])
    return {(str(c), int(s)): np.unpackbits(b)[:n].astype(bool) for c, s, b in zip(z["configs"], z["seeds"], z["bits"])}


def is_seed_row(row) -> bool:
    """Whether a table3 row is the one the seed runs repeat (S=256, dense, Q=256)."""
    return (str(row.train_scale) == SEED_ROW["train_scale"] and str(row.method) == SEED_ROW["method"]
            and int(row.test_scale) == SEED_ROW["test_scale"])


@dataclass(frozen=True)
class SeedCheck:
    seeds: list[int]
    diffs: list[float]  # error(a) - error(b) in points, one per seed
    sd: float  # sample sd of the differences (ddof 1)
    paper_side: list[bool]  # per seed: is the difference on the paper's side of the claim?

    @property
    def consistent(self) -> bool:
        """Every seed on the same side of the claim (all with the paper, or all against it)."""
        return len(set(self.paper_side)) == 1

    @property
    def text(self) -> str:
        return ";".join(f"{d:+.2f}" for d in self.diffs)


def on_paper_side(claim_type: str, diff: float, tolerance: float) -> bool:
    """One run's difference error(a) - error(b) taken alone: *better* wants it below 0, *no better*
    above -tolerance, *tie* within +-tolerance."""
    if claim_type == "better":
        return diff < 0
    if claim_type == "no better":
        return diff > -tolerance
    if claim_type == "tie":
        return abs(diff) <= tolerance
    raise ValueError(f"unknown claim type {claim_type!r}: better, no better or tie")


def seed_check(correct: dict[tuple[str, int], np.ndarray], config_a: str, config_b: str, claim_type: str,
               tolerance: float) -> SeedCheck | None:
    """The difference error(a) - error(b) in every seed both configs were trained with (None if
    fewer than two seeds)."""
    seeds = sorted({s for c, s in correct if c == config_a} & {s for c, s in correct if c == config_b})
    if len(seeds) < 2:
        return None
    diffs = [float(100 * (correct[(config_b, s)].mean() - correct[(config_a, s)].mean())) for s in seeds]
    return SeedCheck(seeds, [round(x, 2) for x in diffs], round(float(np.std(diffs, ddof=1)), 2),
                     [on_paper_side(claim_type, x, tolerance) for x in diffs])


def seeded_verdict(paired: str, check: SeedCheck | None) -> str:
    """The final verdict: seed 0's paired verdict, unless the seeds fall on both sides of the claim
    (then no single run decides it: *inconclusive (flips between seeds)*)."""
    if check is None or check.consistent or paired == "inconclusive":
        return paired
    return "inconclusive (flips between seeds)"


def stale_seed_runs(correct: dict[tuple[str, int], np.ndarray], seed0_now: dict[str, np.ndarray]) -> list[str]:
    """Configs whose seed-0 correctness in the saved seed runs differs from the chain's seed-0 net
    now (``seed0_now``: config -> correctness of Table 3's seed row): the chain was retrained
    (another schedule, another machine) after experiments/seeds.py ran, so seeds 1, 2 belong to
    another protocol and must not be mixed with it."""
    return sorted(c for c, now in seed0_now.items()
                  if (c, 0) in correct and (len(correct[(c, 0)]) != len(now) or (correct[(c, 0)] != now).any()))
