"""The wall time of `make reproduce`, recorded as it runs (results/<preset>/wall_time.csv).

Every step that does work appends a row: a net trained or resumed (the step is the net's name), a
seed's tables (``TABLES``) and the tables over seeds (``OVER_SEEDS``). Each row holds its seconds of
wall time, the epochs it trained, the CPU and the code it ran on, and the invocation it belongs to. A
run that spans sessions is the sum of its rows; the work an interrupted invocation lost after its last
checkpoint is not in it. experiments/studies/wall_time_check.py sets the rows beside the estimate.
"""
from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from vgg.results import environment, git_commit, read_results, write_table

WALL_TIME = "wall_time.csv"  # in results/<preset>/
COLUMNS = ["invocation", "seed", "step", "epochs", "wall_seconds", "finished", "cpu", "code"]
TABLES = "tables"  # a seed's Tables 3-6 and per-image file
OVER_SEEDS = "over seeds"  # the tables, findings and summary over the seeds
SCORING_STEPS = (TABLES, OVER_SEEDS)
TOTAL, EVERY = "total", "all"  # wall_time_check.csv's rows per set of rates: the steps estimated, every step
CHECK_TOTALS = (TOTAL, EVERY)


def read_wall_time(path: Path) -> pd.DataFrame:
    """A wall_time.csv (or a file with its ``seed`` and ``step`` columns), seeds kept as text ("0;1;2")."""
    return read_results(path, dtype={"seed": str})


def is_net(steps: pd.Series) -> pd.Series:
    """Which rows are nets trained: not a scoring step, nor one of wall_time_check's totals."""
    return ~steps.isin(SCORING_STEPS + CHECK_TOTALS)


def utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


class WallTime:
    """The run's wall time: the rows of earlier invocations, and this invocation's steps appended as
    they finish (the file rewritten atomically after each)."""

    def __init__(self, results: str | Path, preset: str):
        self.path = Path(results) / preset / WALL_TIME
        self.preset = preset
        self.started = time.time()
        self.invocation = utc(self.started)
        self.rows = read_wall_time(self.path)[COLUMNS] if self.path.exists() else pd.DataFrame(columns=COLUMNS)
        self.earlier = float(self.rows.wall_seconds.sum())

    def elapsed(self) -> float:
        """Seconds of the run so far: the earlier invocations' recorded steps and this invocation's."""
        return self.earlier + time.time() - self.started

    def record(self, seed: str | int, step: str, seconds: float, epochs: int = 0) -> None:
        row = {"invocation": self.invocation, "seed": str(seed), "step": step, "epochs": epochs,
               "wall_seconds": round(seconds, 1), "finished": utc(time.time()), "cpu": environment()["device"],
               "code": git_commit()}
        self.rows = pd.concat([self.rows, pd.DataFrame([row])], ignore_index=True)
        write_table(self.rows, self.path, {"preset": self.preset})
