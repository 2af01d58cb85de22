"""Seed variance of the S=256 nets (Table 3's depth rows): per-image top-1 correctness of every
(config, seed), saved by experiments/studies/seeds.py beside seeds.csv, and how a paired difference
between two configs varies from seed to seed.

A verdict that one seed's interval supports but another seed's difference contradicts is not
evidence: ``seed_check`` calls such a finding *inconclusive (flips between seeds)*.

The saved correctness is also what lets the seed runs span sessions and fresh clones (checkpoints
are not published): every entry carries the fingerprint of the training protocol that made it
(``protocol_fingerprint``), and experiments/studies/seeds.py reuses an entry whose fingerprint is the
preset's now instead of training that net again; seed 0 is read from the published chain's
per-image correctness (``published_seed0``) when it matches Table 3."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .io import atomic_save_npz
from .protocol import LATER_FIELDS
from .results import SCALE_COLUMNS, read_results
from .stats import verdict

SEEDS_FILE = "seeds_top1.npz"
#: experiments/findings.py's per-image top-1 correctness of every row its claims compare
PER_IMAGE_FILE = "per_image_top1.npz"
#: Preset fields that do not change what a net learns (how images are read, how many threads,
#: prose, which val images Tables 5-6 use): left out of the protocol fingerprint.
NOT_PROTOCOL = {"loader", "workers", "notes", "multi_crop_images"}
#: Table 3's row the seed runs repeat: each config trained at S=256, dense evaluation at Q=256.
SEED_ROW = {"train_scale": "256", "test_scale": 256, "method": "dense"}


def protocol_fingerprint(preset, dataset: str, val_images: int) -> str:
    """A short hash of everything that decides what a seed's nets learn and are scored on: the
    preset's training fields (lr, schedule, stop rule, sizes, ...), the dataset's name and its
    number of validation images. Two runs with the same fingerprint differ only by seed (and by the
    machine's arithmetic: findings.py's stale check compares seed 0 with the chain's)."""
    fields = {k: v for k, v in dataclasses.asdict(preset).items()
              if k not in NOT_PROTOCOL and not (k in LATER_FIELDS and v == LATER_FIELDS[k])}
    text = json.dumps({**fields, "dataset": dataset, "val_images": int(val_images)}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def save_correctness(folder: str | Path, correct: dict[tuple[str, int], np.ndarray],
                     top5_err: dict[tuple[str, int], float] | None = None, protocol: str = "",
                     trained_with: dict[tuple[str, int], str] | None = None) -> Path:
    """``correct[(config, seed)]``: bool per validation image; ``top5_err``: its top-5 error (%);
    ``protocol``: the fingerprint of the protocol that trained them (``protocol_fingerprint``);
    ``trained_with``: the machine and precision each net was trained with ('AMD EPYC (2 threads), fp32')."""
    keys = list(correct)
    top5_err, trained_with = top5_err or {}, trained_with or {}
    path = Path(folder) / SEEDS_FILE
    atomic_save_npz(path, configs=np.array([k[0] for k in keys]), seeds=np.array([k[1] for k in keys]),
                    n=np.int64(len(correct[keys[0]])), bits=np.stack([np.packbits(correct[k]) for k in keys]),
                    top5_err=np.array([top5_err.get(k, np.nan) for k in keys], dtype=float),
                    protocol=np.array([protocol] * len(keys)),
                    trained_with=np.array([trained_with.get(k, "") for k in keys]))
    return path


#: one saved net of a seed run: (top-1 correctness per val image, top-5 error %, trained with)
Entry = tuple[np.ndarray, float, str]


def load_reusable(folder: str | Path, protocol: str, val_images: int) -> dict[tuple[str, int], Entry]:
    """The saved entries a seed run may reuse instead of training: made under ``protocol`` (files
    from before fingerprints were recorded have none and are never reused) on as many images.
    (config, seed) -> (top-1 correctness, top-5 error %, trained with)."""
    path = Path(folder) / SEEDS_FILE
    if not path.exists():
        return {}
    z = np.load(path)
    if "protocol" not in z.files or int(z["n"]) != val_images:
        return {}
    correct = load_correctness(folder)
    return {(str(c), int(s)): (correct[(str(c), int(s))], float(t5), str(how))
            for c, s, t5, fp, how in zip(z["configs"], z["seeds"], z["top5_err"], z["protocol"], z["trained_with"])
            if str(fp) == protocol and np.isfinite(t5)}


def save_per_image(folder: str | Path, correct: dict[str, np.ndarray], classes: int) -> Path:
    """findings.py's per-image top-1 correctness of every row its claims compare (key: 'table3: <query>'),
    and the number of classes. Rows differ in length where Tables 5-6 use the multi-crop subset: the
    bits are padded and each row keeps its own n."""
    keys = list(correct)
    longest = max(len(v) for v in correct.values())
    path = Path(folder) / PER_IMAGE_FILE
    atomic_save_npz(path, keys=np.array(keys), n=np.array([len(correct[k]) for k in keys], np.int64),
                    bits=np.stack([np.packbits(np.pad(correct[k], (0, longest - len(correct[k])))) for k in keys]),
                    classes=np.int64(classes))
    return path


def load_per_image(folder: str | Path) -> tuple[dict[str, np.ndarray], int | None]:
    """What ``save_per_image`` wrote: (row key -> top-1 correctness, number of classes), the classes
    None in a file saved before they were recorded; ({}, None) when the file is missing. Reads files
    from before each row kept its own n too (one n for all rows)."""
    path = Path(folder) / PER_IMAGE_FILE
    if not path.exists():
        return {}, None
    z = np.load(path)
    ns = z["n"] if z["n"].ndim else np.full(len(z["keys"]), int(z["n"]))
    correct = {str(k): np.unpackbits(b)[:int(n)].astype(bool) for k, b, n in zip(z["keys"], z["bits"], ns)}
    return correct, (int(z["classes"]) if "classes" in z.files else None)


def published_seed0(folder: str | Path) -> dict[str, Entry]:
    """Seed 0 of Table 3's seed row as the chain published it, without its checkpoints: the per-image
    correctness findings.py saved (per_image_top1.npz) of each table3.csv row that is the seed row,
    kept only where it gives exactly the error table3.csv states (else that table was remade after
    findings ran). config -> (top-1 correctness, top-5 error % and device, precision from table3.csv)."""
    folder = Path(folder)
    saved, table = load_per_image(folder)[0], folder / "table3.csv"
    if not (saved and table.exists()):
        return {}
    t3 = read_results(table, dtype=SCALE_COLUMNS)
    out = {}
    for key, correct in saved.items():
        if not key.startswith("table3: "):
            continue
        rows = t3.query(key.removeprefix("table3: "))
        if len(rows) != 1 or not is_seed_row(rows.iloc[0]):
            continue
        row = rows.iloc[0]
        if abs(100 * (1 - correct.mean()) - row.ours_top1_err) <= 0.006:
            out[str(row.config)] = (correct, float(row.ours_top5_err),
                                    ", ".join(str(row[k]) for k in ("device", "precision") if k in row.index))
    return out


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
    claim_type: str  # better, no better or tie (vgg.stats.verdict)
    tolerance: float  # points: a tie's band, a no-better claim's margin
    image_var: float = 0.0  # variance (points^2) of the seeds' mean difference from sampling the images

    @property
    def consistent(self) -> bool:
        """Every seed on the same side of the claim (all with the paper, or all against it)."""
        return len(set(self.paper_side)) == 1

    @property
    def text(self) -> str:
        return ";".join(f"{d:+.2f}" for d in self.diffs)

    def interval(self, level: float = 0.95) -> tuple[float, float, float]:
        """Mean of the seeds' differences and its 95% interval over both sources of noise: training
        the nets again (the seeds' variance / n) and the validation images (``image_var``: every
        seed is scored on the same images, so that part does not shrink with n). The multiplier is
        Student's t with n - 1 degrees of freedom, as if all of the variance were estimated from the
        seeds: conservative (Welch-Satterthwaite would grant more degrees of freedom for the known
        image part, and an interval that narrows when a noise is added). With image_var 0 it is the
        plain t-interval over the seeds: 12.7 x the standard error with two seeds, 4.3 with three."""
        from scipy.stats import t
        n, mean = len(self.diffs), float(np.mean(self.diffs))
        var = float(np.var(self.diffs, ddof=1)) / n + self.image_var
        half = float(t.ppf(0.5 + level / 2, n - 1)) * np.sqrt(var)
        return round(mean, 2), round(mean - half, 2), round(mean + half, 2)

    @property
    def level_verdict(self) -> str:
        """What the seed-level interval alone says of the claim (vgg.stats.verdict)."""
        _, low, high = self.interval()
        return verdict(self.claim_type, low, high, self.tolerance)


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
    # per seed and image, error(a) - error(b) in points (-100, 0 or +100)
    per_seed = np.array([100.0 * (correct[(config_b, s)].astype(float) - correct[(config_a, s)]) for s in seeds])
    diffs = [float(d) for d in per_seed.mean(axis=1)]
    per_image = per_seed.mean(axis=0)  # averaged over the seeds: what sampling other images would move
    return SeedCheck(seeds, [round(x, 2) for x in diffs], round(float(np.std(diffs, ddof=1)), 2),
                     [on_paper_side(claim_type, x, tolerance) for x in diffs], claim_type, tolerance,
                     float(np.var(per_image, ddof=1)) / len(per_image))


#: From this many seeds on, a seeded claim's verdict is the seed-level interval's (fixed before any
#: pair of Imagenette's seed-2 nets was scored: with two seeds the multiplier is 12.7).
SEED_LEVEL_MIN = 3


def seeded_verdict(paired: str, check: SeedCheck | None) -> str:
    """The final verdict on a claim both of whose nets the seed runs trained.

    - one seed (``check`` None): seed 0's paired verdict;
    - two seeds: seed 0's paired verdict, unless the seeds fall on both sides of the claim (then no
      single run decides it: *inconclusive (flips between seeds)*);
    - SEED_LEVEL_MIN seeds or more: what the 95% interval of the seeds' mean difference says
      (SeedCheck.level_verdict), tagged *(seed level)*: the claim is about the architectures, and
      retraining is the larger noise (the paired interval holds the nets fixed)."""
    if check is None:
        return paired
    if len(check.seeds) >= SEED_LEVEL_MIN:
        return f"{check.level_verdict} (seed level)"
    if check.consistent or paired == "inconclusive":
        return paired
    return "inconclusive (flips between seeds)"


def stale_seed_runs(correct: dict[tuple[str, int], np.ndarray], seed0_now: dict[str, np.ndarray]) -> list[str]:
    """Configs whose seed-0 correctness in the saved seed runs differs from the chain's seed-0 net
    now (``seed0_now``: config -> correctness of Table 3's seed row): the chain was retrained
    (another schedule, another machine) after experiments/studies/seeds.py ran, so seeds 1, 2 belong to
    another protocol and must not be mixed with it."""
    return sorted(c for c, now in seed0_now.items()
                  if (c, 0) in correct and (len(correct[(c, 0)]) != len(now) or (correct[(c, 0)] != now).any()))
