"""The fixed learning-rate schedule of the Imagewoof reproduction, derived once from the plateau
rule's realised firings in the published Imagenette runs (no training).

With 3,925 validation images the plateau rule fires by chance (results/imagenette/plateau_rules.csv,
first_drop_effect.csv), so the new reproduction trains every net of a stage for the same epochs at
each lr. Each segment's length is the median, over the runs that completed that segment, of the
epochs the plateau-rule runs spent at that lr:

* stage "S=256" (from scratch and from net A; seeds 0-2 of A, A-LRN, B, C, D, E and seed 0 of B-5x5):
  epochs at lr, lr/10 and lr/100 (the preset stops after its second drop, so the last segment is the
  epochs from the second drop to the stop);
* stage "fine-tuning" (S=384 from S=256, jitter from S=384, at lr 1e-3; seed 0 of C, D, E): the same.
Where a run reached its epoch cap (50; fine-tuning 20) before a segment ended, that segment is left
out (censored). Medians are rounded up.

Writes results/imagenette/fixed_schedule.csv: per stage and segment, the runs, their lengths, the
median; vgg.protocol.FIXED_SCHEDULE is this file's result (tests/test_fixed_schedule.py checks it).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from vgg.chain import S256_CONFIGS
from vgg.chain_time import net_of_log
from vgg.plateau import drop_epochs
from vgg.protocol import get_preset
from vgg.results import write_table

LOGS = Path("results/imagenette/logs")
_IMAGENETTE = get_preset("imagenette")
CAPS = {"S=256": _IMAGENETTE.scratch_epochs, "fine-tuning": _IMAGENETTE.finetune_epochs}  # its epoch caps


def runs(logs: Path) -> dict[str, list[tuple[str, pd.DataFrame]]]:
    """Published plateau-rule runs by stage: seed 0 in logs/, seeds 1-2 in logs/seed<k>/."""
    out = {"S=256": [], "fine-tuning": []}
    for folder, seed in ((logs, 0), (logs / "seed1", 1), (logs / "seed2", 2)):
        for f in sorted(folder.glob("*.log.csv")):
            config, scale = net_of_log(f)
            stage = ("S=256" if scale == "256" and config in S256_CONFIGS
                     else "fine-tuning" if scale in ("384", "256-512") else None)
            if stage:
                out[stage].append((f"seed {seed} {config} S={scale}", pd.read_csv(f)))
    return out


def segments(log: pd.DataFrame, cap: int) -> list[int | None]:
    """Epochs a run spent at lr, lr/10 and lr/100: the first two end with a drop, the third with the
    rule's stop (it fires once more after the second drop); None where the run reached its ``cap``
    epochs with that segment still open (censored)."""
    drops, length = drop_epochs(log.lr.tolist()), len(log)
    edges = [0, *drops[:2]]
    out: list[int | None] = [b - a for a, b in zip(edges, edges[1:])]
    out += [None] * (2 - len(out))
    out.append(length - drops[1] if len(drops) >= 2 and length < cap else None)
    return out


def derive(logs: Path = LOGS) -> tuple[dict[str, tuple[int, ...]], pd.DataFrame]:
    schedule, rows = {}, []
    for stage, found in runs(logs).items():
        per_run = {name: segments(log, CAPS[stage]) for name, log in found}
        medians = []
        for k in range(3):
            observed = [s[k] for s in per_run.values() if s[k] is not None]
            med = int(np.ceil(np.median(observed))) if observed else 0
            medians.append(med)
            rows.append({"stage": stage, "segment": f"lr / 10^{k}", "runs": len(per_run), "observed": len(observed),
                         "epochs_each_run": " ".join(str(s[k]) if s[k] is not None else "-" for s in per_run.values()),
                         "median_epochs_rounded_up": med})
        schedule[stage] = tuple(medians)
    return schedule, pd.DataFrame(rows)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--logs", default=str(LOGS), help="the published plateau-rule logs (default %(default)s)")
    p.add_argument("--results", default="results", help="results folder (default results/)")
    a = p.parse_args(argv)
    schedule, df = derive(Path(a.logs))
    write_table(df, Path(a.results) / "imagenette" / "fixed_schedule.csv",
                {"source": "published Imagenette plateau-rule logs (seeds 0-2)", "schedule": repr(schedule)})
    print(f"fixed schedule: {schedule}")


if __name__ == "__main__":
    main()
