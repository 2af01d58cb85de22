"""Result tables: our value beside the paper's, with provenance, written atomically."""
from __future__ import annotations

import functools
import io
import platform
import shlex
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

import pandas as pd

from .io import atomic_write_text
from .runtime import cpu_isa, precision_name, rank_and_world

ROOT = Path(__file__).resolve().parent.parent


#: Columns that hold text though they may look like numbers: read as numbers, a commit such as 0e53793
#: becomes 0.0, 72e7494 becomes inf and 0123456 loses its 0.
TEXT_COLUMNS = ("commit", "plan_commit", "code", "run_code", "command", "sha256")  # commits: 3589917 is no number

#: Scale columns hold text: a fixed scale ("256"), a range ("256-512") or a list of test scales ("224;256;288").
SCALE_COLUMNS = {"train_scale": str, "test_scale": str, "test_scales": str}


def read_results(path, dtype: dict | None = None, **kwargs) -> pd.DataFrame:
    """A results CSV as written by :func:`write_table`, its provenance columns (TEXT_COLUMNS) as text."""
    return pd.read_csv(path, dtype={**{c: str for c in TEXT_COLUMNS}, **(dtype or {})}, **kwargs)


def paper_table(name: str) -> pd.DataFrame:
    """One of the paper's tables as shipped in vgg/paper/ (e.g. 'table3_single_scale')."""
    with resources.files("vgg.paper").joinpath(f"{name}.csv").open() as f:
        return pd.read_csv(f, dtype=SCALE_COLUMNS)


# What makes the numbers: a results CSV made with uncommitted changes here is marked "<commit>-dirty".
CODE_PATHS = ("vgg", "experiments", "Makefile")


def git_commit(root: Path = ROOT) -> str:
    """HEAD's short hash, with '-dirty' when the code (CODE_PATHS) differs from it."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
        commit = out.stdout.strip()
        if not commit:
            return "unknown"
        diff = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", *CODE_PATHS], cwd=root, capture_output=True)
        return commit + ("-dirty" if diff.returncode == 1 else "")
    except OSError:
        return "unknown"


def command_line() -> str:
    """The command that is running, its script relative to the repository."""
    script = Path(sys.argv[0])
    try:
        script = script.resolve().relative_to(ROOT)
    except ValueError:
        pass
    return " ".join(shlex.quote(a) for a in [script.as_posix(), *sys.argv[1:]])


def device_name() -> str:
    """The GPU, or the CPU model, its instruction set for training and the threads torch uses, e.g.
    'AMD EPYC (AVX512-BF16, 2 threads)'."""
    import torch
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"{cpu_model()} ({cpu_isa()}, {torch.get_num_threads()} threads)"


@functools.lru_cache(maxsize=None)
def matmul_gflops(device_type: str = "cpu", bf16: bool = True, n: int | None = None) -> float:
    """The device's speed in the training precision: GFLOP/s of an n x n matmul (default 2048 on a CPU,
    8192 on a GPU), best of three after a warm-up; once per process and size.  Machines of one model name can
    differ severalfold in speed, so every trained net records this beside the device's name."""
    import torch
    n = n or (8192 if device_type == "cuda" else 2048)
    a = torch.randn(n, n, dtype=torch.bfloat16 if bf16 else torch.float32, device=device_type)
    sync = torch.cuda.synchronize if device_type == "cuda" else (lambda: None)
    a @ a
    sync()
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        a @ a
        sync()
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best / 1e9


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what platform knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def environment() -> dict:
    """What the numbers depend on besides the code: library versions and the device."""
    import numpy
    import torch
    import torchvision
    return {"torch": torch.__version__, "torchvision": torchvision.__version__, "numpy": numpy.__version__,
            "device": device_name(),
            "precision": precision_name(None, "cuda" if torch.cuda.is_available() else "cpu")}


def with_errors(row: dict, ours_top1: float | None, ours_top5: float | None, paper_top1, paper_top5) -> dict:
    """Add our errors (percent, 2 decimals) beside the paper's. No difference column: a proxy's error
    over 10 classes minus the paper's over 1000 measures nothing (a near-zero one reads as agreement)."""
    def pct(v):
        return None if v is None else round(100 * float(v), 2)

    return {**row, "ours_top1_err": pct(ours_top1), "paper_top1_err": paper_top1, "ours_top5_err": pct(ours_top5),
            "paper_top5_err": paper_top5}


def same_but_stamp(text: str, path: str | Path) -> bool:
    """Whether the CSV at ``path`` holds exactly the CSV ``text`` apart from its commit and command:
    remaking an unchanged table (Tables 1-2 on every `make tables`) keeps the commit that first made it,
    unless that commit was '-dirty' (uncommitted code) and this one is clean: then the clean one is kept."""
    path = Path(path)
    if not path.exists():
        return False
    try:
        old = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        return False
    new = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    stamp = ["commit", "command"]
    if "commit" in old and "commit" in new and (old.commit.str.endswith("-dirty").any()
                                                 and not new.commit.str.endswith("-dirty").any()):
        return False
    return list(old.columns) == list(new.columns) and old.drop(columns=stamp).equals(new.drop(columns=stamp))


def write_table(df: pd.DataFrame, path: str | Path, provenance: dict | None = None) -> Path:
    """Write ``df`` with provenance columns (commit, command, ...) atomically; print it. A table
    that would come out the same apart from its commit and command is left as it is."""
    if rank_and_world()[0] != 0:  # under torchrun every process holds the gathered table: rank 0 writes it
        return Path(path)
    df = df.copy()
    extra = {**(provenance or {}), **environment(), "commit": git_commit(), "command": command_line()}
    clash = sorted(set(extra) & set(df.columns))
    if clash:  # a provenance column would silently replace the table's own values
        raise ValueError(f"table columns {clash} clash with provenance columns: rename them")
    for key, value in extra.items():
        df[key] = value
    with pd.option_context("display.width", 200, "display.max_columns", 12):
        print(df.drop(columns=["commit", "command"]).to_string(index=False))
    text = df.to_csv(index=False, lineterminator="\n")
    if same_but_stamp(text, path):
        print(f"{path}: unchanged (rows, columns and environment); kept with the commit that made it")
        return Path(path)
    atomic_write_text(path, text)
    print(f"wrote {path}")
    return Path(path)


def caveat_tag(caveat) -> str:
    """A verdict's short tag for its caveat (findings.csv's caveat column)."""
    if not isinstance(caveat, str) or "dense" not in caveat:
        return ""
    return " (dense geometry)" if "off the training geometry" in caveat else " (dense penalty)"


def seed_tag(row) -> str:
    """' (seeds 0, 1, 2: -1.30, +0.52, -4.69)' where the evidence lists the seed runs' differences."""
    seeds, diffs = getattr(row, "seeds", None), getattr(row, "seed_diffs", None)
    if not isinstance(seeds, str) or not seeds or not isinstance(diffs, str):
        return ""
    return f" (seeds {seeds.replace(';', ', ')}: {diffs.replace(';', ', ')})"


def decided_tag(rule) -> str:
    """The short name of the rule that decided a verdict (findings.csv's decided_by)."""
    rule = str(rule)
    return "seed level" if rule.startswith("seed level") else "unpaired" if rule.startswith("unpaired") else "paired"


def findings_markdown(df: pd.DataFrame, evidence: pd.DataFrame | None = None) -> str:
    """findings.csv as a Markdown table: claim, paper, ours, the deciding 95% interval and its rule,
    verdict (with every seed's difference where the seed runs trained both nets, from the evidence)."""
    ev = {} if evidence is None else {r.claim: r for r in evidence.itertuples()}
    lines = ["| claim (type, section) | paper a / b | ours a / b | estimate [95% CI] (rule) | verdict |",
             "| --- | --- | --- | --- | --- |"]
    for r in df.itertuples():
        paper = "- / -" if pd.isna(r.paper_a) else f"{r.paper_a:g} / {r.paper_b:g}"
        if pd.isna(r.paper_a) and "B-5x5" in r.claim:
            paper = "B-5x5 +7 (difference only)"
        if r.verdict == "not tested":
            lines.append(f"| {r.claim} ({r.claim_type}, {r.paper_section}) | {paper} | - | - | not tested |")
            continue
        lines.append(f"| {r.claim} ({r.claim_type}, {r.paper_section}) | {paper} | {r.ours_a:.2f} / {r.ours_b:.2f} | "
                     f"{r.estimate:+.2f} [{r.ci_low:+.2f}, {r.ci_high:+.2f}] ({decided_tag(r.decided_by)}) | "
                     f"{r.verdict}{caveat_tag(r.caveat)}{seed_tag(ev.get(r.claim))} |")
    return "\n".join(lines)


def findings_side_by_side(by_preset: dict[str, pd.DataFrame]) -> str:
    """Several presets' findings.csv as one Markdown table, a claim per row: the paper's errors and,
    per preset, error(a) - error(b) with the 95% interval that decided the verdict (short rule tag)."""
    names = list(by_preset)
    first = by_preset[names[0]]
    lines = ["| claim | Sect. | paper a / b | " + " | ".join(f"{n}: a - b [95% CI] verdict" for n in names) + " |",
             "| --- | --- | --- |" + " --- |" * len(names)]
    indexed = {n: df.set_index("claim") for n, df in by_preset.items()}
    for r in first.itertuples():
        paper = "-" if pd.isna(r.paper_a) else f"{r.paper_a:g} / {r.paper_b:g}"
        cells = []
        for n in names:
            if r.claim not in indexed[n].index:
                cells.append("-")
                continue
            q = indexed[n].loc[r.claim]
            if q.verdict == "not tested":
                cells.append("not tested")
                continue
            tag = {"seed level": "seeds", "unpaired": "unpaired", "paired": ""}[decided_tag(q.decided_by)]
            caveat = caveat_tag(q.get("caveat"))
            cells.append(f"{q.estimate:+.1f} [{q.ci_low:+.1f}, {q.ci_high:+.1f}]{' ' + tag if tag else ''} "
                         f"**{q.verdict.split(' (')[0]}**{caveat}")
        lines.append(f"| {r.claim} | {r.paper_section} | {paper} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def replace_block(text: str, name: str, block: str) -> str:
    """``text`` with the lines between ``<!-- name:begin -->`` and ``<!-- name:end -->`` replaced."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    if begin not in text or end not in text:
        raise ValueError(f"no {begin} ... {end} block")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{block}\n{end}{tail}"
