"""The fixed schedule checked on data that is here: Table 3's S=256 nets (A, A-LRN, B, C, D, E) and the
LRN control A-LRN0, three seeds each, trained under the reproduction's fixed schedule
(``imagenette_fixed``: the imagewoof preset's protocol on Imagenette's 224x224 copies). With
``--preset imagewoof`` the same study is the analysis plan's Sect. 6 LRN control and centre-crop depth
pairs on the reproduction's own nets (it trains only A-LRN0 there).

It asks three questions of the nets that produced the published Imagenette opposites, with schedule
luck taken out (docs/analysis_plan.md, Sects. 2 and 6):

- Does the fixed schedule bring Table 3's seed sd to the plan's goal (<= 1.5 points for every net)?
  Beside each net: its sd under the plateau rule (results/imagenette/seeds.csv).
- LRN: is A-LRN's gain over A normalisation, or conv1's output divided by the constant k^beta
  (A-LRN0)? The differences A-LRN0 - A and A-LRN0 - A-LRN.
- Depth: the Table 3 claims among these nets, tested as the plan tests them (the plan's margin),
  under dense evaluation (the claims' own protocol) and under centre crops at the same Q, with the
  published plateau-rule verdict beside.
- Initialisation (added before any of its nets trained): B-E start from net A's conv1_1, conv2_1,
  conv3_1, conv3_2 and three FC layers, their other layers from the preset's random (Glorot) init. Do D
  and E trained from that random init alone (D-scratch, E-scratch: the paper's Sect. 3.1 alternative,
  same schedule and lr) fit their training set and score better, and does E still trail D? The
  differences D-scratch - D, E-scratch - E and E-scratch - D-scratch, beside each net's last-epoch
  training error. If starting from net A causes the deep nets' deficit, the first two are negative and
  the third's interval covers zero. Trained on the imagenette_fixed preset only (INIT_NETS).

Every pair is tested at the highest level the nets allow, as the plan does: seed level with three
common seeds, before that per image on the first common seed (column ``level``).

Exploratory (Sect. 6 of the plan): p-values are reported raw and Benjamini-Hochberg-adjusted within
this study's family; no verdict of the reproduction depends on them.

Writes results/<preset>/fixed_schedule_check.csv (one row per net and seed, then per net the mean and
sd), fixed_schedule_pairs.csv (each pair's test, with the paper's difference scaled to our error beside
its interval) and the per-image correctness (fixed_schedule_top1.npz). Resumable:
nets train through the chain (locks, resume), posteriors are cached; a net scored before whose
checkpoint is gone (runs/ is not committed) keeps its saved scores and record; each scored net's epoch
log is copied to results/<preset>/logs/seed<k>/. ``--no-train`` scores
only the nets whose training has finished (a report while the rest trains).
"""
from __future__ import annotations

import functools
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from vgg.chain import BY_NAME, checkpoint_path
from vgg.checkpoint import checkpoint_record, load_metadata, publish_log
from vgg.errors import UserError
from vgg.evaluate import cached_posteriors
from vgg.experiment import Experiment, comma_list, main
from vgg.findings import MissingRow, claims, pick
from vgg.plan import PLAN_VERSION, benjamini_hochberg, image_test, margin, p_values, plan_commit, seed_test, verdict
from vgg.plots import save_figure
from vgg.results import paper_table, read_results, write_table
from vgg.seeds import SEED_LEVEL_MIN, seed_check
from vgg.stats import correct_top1

NETS = ("A", "A-LRN", "A-LRN0", "B", "C", "D", "E")
#: the initialisation question's nets (label -> chain run name): D and E from random init, not net A
INIT_NETS = {"D-scratch": "D_S256-scratch", "E-scratch": "E_S256-scratch"}
#: the presets whose default nets include INIT_NETS (on the reproduction's data the plan's Sect. 6 is fixed)
INIT_PRESETS = ("imagenette_fixed",)
#: Table 3's single-scale protocol of the S=256 nets (paper pixels), and the centre crop at the same Q
Q = 256
METHODS = ("dense", "center-crop")
SD_GOAL = 1.5  # points: the plan's goal for Table 3's seed sd
#: preset -> the preset whose published plateau-rule runs trained on the same data (results/<that>/)
PLATEAU_OF = {"imagenette_fixed": "imagenette"}


def run_name_of(label: str) -> str:
    """The chain's run name of a net of this study: ``<config>_S256``, or an INIT_NETS entry."""
    return INIT_NETS.get(label, f"{label}_S256")


def finished(path: Path) -> bool:
    return path.exists() and bool(load_metadata(path).get("complete"))


#: what the results record of each net's checkpoint (vgg.checkpoint.checkpoint_record)
RECORD = ("epochs", "train_seconds", "train_loss_last_epoch", "train_top1_err_last_epoch", "trained_on", "sha256")


def saved_scores(folder: Path, preset: str, dataset: str, images: int) -> dict:
    """(config, seed) -> (per-method correctness, record) that an earlier run of this study saved for
    this preset and data (fixed_schedule_check.csv and fixed_schedule_top1.npz)."""
    table, arrays = folder / "fixed_schedule_check.csv", folder / "fixed_schedule_top1.npz"
    if not (table.exists() and arrays.exists()):
        return {}
    rows = read_results(table, dtype={"seed": str, "dataset": str})
    rows = rows[rows.seed.str.isdigit() & (rows.preset == preset) & (rows.dataset == dataset) & (rows.images == images)]
    out = {}
    with np.load(arrays) as z:
        for _, r in rows.iterrows():
            keys = {m: f"{r.config}|{r.seed}|{m}" for m in METHODS}
            if all(k in z.files and len(z[k]) == images for k in keys.values()):
                out[(r.config, int(r.seed))] = ({m: z[k] for m, k in keys.items()}, {k: r.get(k) for k in RECORD})
    return out


def score(ex: Experiment, args, configs: list[str], seeds: list[int], saved: dict):
    """(config, seed) -> {method: correctness per val image}, and one record per net and seed. A net
    whose checkpoint is not under runs/ (it is not committed) but that an earlier run scored comes
    from ``saved`` (saved_scores), not trained again; so does every saved net that ``configs`` and
    ``seeds`` do not name, so that a run on some nets never drops the others from the results."""
    correct, records = {}, []
    order = list(dict.fromkeys([*NETS, *INIT_NETS, *configs]))
    asked = {(c, s) for c in configs for s in seeds}
    kept = [k for k in saved if k not in asked]
    for config, seed in sorted([*asked, *kept], key=lambda k: (k[1], order.index(k[0]) if k[0] in order else 0)):
        name = run_name_of(config)
        path = checkpoint_path(args.runs, ex.preset.name, name, seed)
        done = finished(path)
        if (config, seed) not in asked:
            per_method, rec = saved[(config, seed)]
        elif not done and (config, seed) in saved:
            per_method, rec = saved[(config, seed)]
            print(f"{config} seed {seed}: no finished checkpoint at {path}; its saved scores are used "
                  f"(checkpoint sha256 {rec['sha256'][:12]})", file=sys.stderr)
        elif args.no_train and not done:
            continue
        else:
            path = ex.checkpoint(name, seed)
            per_method = {}
            for method in METHODS:
                p, y = cached_posteriors(path, method, [Q], ex.data)
                per_method[method] = correct_top1(p, y)
            rec = checkpoint_record(path)
            publish_log(path, Path(args.results) / ex.preset.name / "logs", seed)
        correct[(config, seed)] = per_method
        records.append({"config": config, "seed": str(seed),
                        **{f"{m}_top1_err": round(100 * (1 - c.mean()), 2) for m, c in per_method.items()},
                        **{k: rec[k] for k in RECORD}})
    return correct, pd.DataFrame(records)


def plateau_seeds(plateau: Path | None) -> pd.DataFrame:
    """Table 3's S=256 dense error per config and seed, and its sd, under the plateau rule (published
    in the folder ``plateau``; None: no such runs of this data)."""
    path = None if plateau is None else plateau / "seeds.csv"
    if path is None or not path.exists():
        return pd.DataFrame(columns=["config", "seed", "ours_top1_err"])
    return read_results(path, dtype={"seed": str})[["config", "seed", "ours_top1_err"]]


def plateau_sd(plateau: Path | None) -> dict[str, float]:
    df = plateau_seeds(plateau)
    return dict(zip(df[df.seed == "sd"].config, df[df.seed == "sd"].ours_top1_err))


def spread(records: pd.DataFrame, plateau: Path | None) -> pd.DataFrame:
    """Per config: mean and sd over its seeds beside the plateau rule's sd and the goal; the goal is met
    or missed only over the plan's seeds (SEED_LEVEL_MIN), empty before."""
    published = plateau_sd(plateau)
    #: the error columns aggregated; the last epoch's training error (how well a net fits its training
    #: set, beside how well it generalises) where the records have it
    errors = [c for c in ("dense_top1_err", "center-crop_top1_err", "train_top1_err_last_epoch") if c in records]
    rows = []
    for config, g in records.groupby("config", sort=False):
        values = {c: pd.to_numeric(g[c]) for c in errors}
        rows.append({"config": config, "seed": "mean", **{c: round(float(v.mean()), 2) for c, v in values.items()}})
        if len(g) > 1:
            sds = {c: round(float(v.std(ddof=1)), 2) for c, v in values.items()}
            # the goal is Table 3's (and its LRN control's), not the initialisation question's
            goal = sds["dense_top1_err"] <= SD_GOAL if len(g) >= SEED_LEVEL_MIN and config in NETS else None
            rows.append({"config": config, "seed": "sd", **sds, "plateau_rule_sd": published.get(config),
                         "seeds_scored": len(g), "meets_sd_goal": goal})
    return pd.DataFrame(rows)


def plot(records: pd.DataFrame, plateau: Path | None, path: Path, preset: str) -> Path:
    """Each config's seeds under the plateau rule (published) beside the fixed schedule's, dense and
    centre crop; the sd above each group."""
    configs = list(dict.fromkeys(records.config))
    published = plateau_seeds(plateau)
    published = published[published.seed.str.isdigit()]
    fig, ax = plt.subplots(figsize=(max(1.5 * len(configs), 4.5) + 4, 4.2))
    series = (("plateau rule, dense (published)", published, "ours_top1_err", "#999999", -0.25),
              ("fixed schedule, dense", records, "dense_top1_err", "#d9822b", 0.0),
              ("fixed schedule, centre crop", records, "center-crop_top1_err", "#3b75af", 0.25))
    for label, df, column, colour, dx in series:
        for i, config in enumerate(configs):
            v = df[df.config == config][column].to_numpy(dtype=float)
            if len(v) == 0:
                continue
            ax.scatter(np.full(len(v), i + dx), v, color=colour, s=18, zorder=3, label=label if i == 0 else None)
            if len(v) > 1:
                ax.text(i + dx, v.max() + 0.6, f"{v.std(ddof=1):.1f}", ha="center", fontsize=7, color=colour)
    ax.set_xticks(np.arange(len(configs)), [f"{c}\nS=256" + (", random init" if c in INIT_NETS else "")
                                             for c in configs])
    ax.set_ylabel("top-1 error (%), Q=256 (paper px)")
    ax.grid(axis="y", alpha=0.3)
    top = max(records[["dense_top1_err", "center-crop_top1_err"]].max().max(), published.ours_top1_err.max())
    ax.set_ylim(top=top + 1.5)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.set_title(f"Seeds of Table 3's S=256 nets (B-E from net A): plateau rule vs fixed schedule ({preset})"
                 f"\nnumbers: seed sd (goal <= {SD_GOAL}); proxy errors on 10 classes, not ImageNet errors", fontsize=9)
    return save_figure(fig, path)


@functools.cache
def paper_s256() -> pd.DataFrame:
    """The paper's Table 3 rows of its S=256 nets, read once (callers copy before changing them)."""
    t3 = paper_table("table3_single_scale")
    return t3[t3.train_scale == "256"]


def s256_table(configs: list[str]) -> pd.DataFrame:
    """Table 3's S=256 rows of ``configs`` in the layout the claims' queries read."""
    t3 = paper_s256()
    t3 = t3[t3.config.isin(configs)].copy()
    t3["method"] = "dense"
    t3["init"] = ""
    return t3


def claim_pairs(configs: list[str]) -> list[tuple[str, str, str, str]]:
    """(claim, type, a, b): the Table 3 claims whose both rows are S=256 rows of ``configs``."""
    tables = {"table3": s256_table(configs)}
    out = []
    for c in claims().itertuples():
        if c.table_a != "table3" or c.table_b != "table3":
            continue
        try:
            a, b = pick(tables, "table3", c.row_a), pick(tables, "table3", c.row_b)
        except MissingRow:
            continue
        out.append((c.claim, c.claim_type, a.config, b.config))
    return out


def published_verdicts(plateau: Path | None) -> dict[str, str]:
    path = None if plateau is None else plateau / "findings.csv"
    if path is None or not path.exists():
        return {}
    df = read_results(path)
    return dict(zip(df.claim, df.verdict))


def paper_diff_scaled(a: str, b: str, err_b: float) -> float | None:
    """The paper's error(a) - error(b) at S=256 as a fraction of its error(b), times our error(b): the
    size of the paper's effect on our error scale, beside which an interval's half-width says whether the
    test could have detected it (None where the paper has no such pair)."""
    t3 = paper_s256()
    paper = dict(zip(t3.config, t3.top1_val_err.astype(float)))
    if a not in paper or b not in paper:
        return None
    return round((paper[a] - paper[b]) / paper[b] * err_b, 2)


def pair_row(correct, a: str, b: str, method: str, claim_type: str) -> dict | None:
    """The plan's test of error(a) - error(b) under ``method`` at the highest level the nets allow: seed
    level with three common seeds or more, else per image on the first common seed (None: no common seed)."""
    per_method = {k: v[method] for k, v in correct.items()}
    common = sorted({s for c, s in per_method if c == a} & {s for c, s in per_method if c == b})
    if not common:
        return None
    check = seed_check(per_method, a, b, claim_type if claim_type != "difference" else "better", 0.0)
    if check is not None and len(check.seeds) >= SEED_LEVEL_MIN:
        t = seed_test(check.diffs, check.image_var)
        seeds, per_seed = check.seeds, check.text
    else:
        seeds = common[:1]
        t = image_test(per_method[(a, seeds[0])], per_method[(b, seeds[0])])
        per_seed = f"{t.estimate:+.2f}"
    err_b = float(np.mean([100 * (1 - per_method[(b, s)].mean()) for s in seeds]))
    low, high = t.interval()
    row = {"method": method, "level": t.level, "seeds": ";".join(map(str, seeds)), "diff_per_seed": per_seed,
           "estimate": round(t.estimate, 2), "se": round(t.se, 2), "df": round(t.df, 1),
           "ci_low": round(low, 2), "ci_high": round(high, 2), "paper_diff_scaled": paper_diff_scaled(a, b, err_b)}
    if claim_type == "difference":  # the LRN control: two-sided, no claim
        row["p_two_sided"] = float(f"{min(1.0, 2 * min(p_values('better', t, 0.0))):.3g}")
        return row
    m = margin(err_b)
    p_paper, p_against = p_values(claim_type, t, m)
    return {**row, "margin": round(m, 2), "p_paper": float(f"{p_paper:.3g}"), "p_against": float(f"{p_against:.3g}")}


def pairs(correct, configs: list[str], plateau: Path | None) -> pd.DataFrame:
    rows = []
    published = published_verdicts(plateau)
    for claim, claim_type, a, b in claim_pairs(configs):
        for method in METHODS:
            r = pair_row(correct, a, b, method, claim_type)
            if r is not None:
                rows.append({"question": "claim", "claim": claim, "claim_type": claim_type, "a": a, "b": b, **r,
                             "plateau_rule_verdict": published.get(claim, "") if method == "dense" else ""})
    differences = {"LRN control": (("A-LRN0", "A"), ("A-LRN0", "A-LRN"), ("A-LRN", "A")),
                   "initialisation": (("D-scratch", "D"), ("E-scratch", "E"), ("E-scratch", "D-scratch"))}
    for question, nets in differences.items():
        for a, b in nets:
            for method in METHODS:
                r = pair_row(correct, a, b, method, "difference")
                if r is not None:
                    rows.append({"question": question, "claim": f"{a} minus {b}", "claim_type": "difference",
                                 "a": a, "b": b, **r})
    df = pd.DataFrame(rows)
    if "p_paper" in df:  # Benjamini-Hochberg over both sides of every claim test of this study
        tested = df.p_paper.notna()
        both = benjamini_hochberg([*df.p_paper[tested], *df.p_against[tested]])
        k = int(tested.sum())
        df.loc[tested, "p_paper_adj"] = [float(f"{p:.3g}") for p in both[:k]]
        df.loc[tested, "p_against_adj"] = [float(f"{p:.3g}") for p in both[k:]]
        df.loc[tested, "verdict_raw"] = [verdict(p, q) for p, q in zip(df.p_paper[tested], df.p_against[tested])]
        df.loc[tested, "verdict"] = [verdict(p, q) for p, q in zip(df.p_paper_adj[tested], df.p_against_adj[tested])]
    return df


def fixed_schedule_check(args) -> None:
    seeds = args.seeds
    configs = args.nets or [*NETS, *(INIT_NETS if args.preset in INIT_PRESETS else ())]
    unknown = [c for c in configs if run_name_of(c) not in BY_NAME]
    if unknown:
        raise UserError(f"--nets: {', '.join(unknown)} is not a net of this study; choose from "
                        f"{', '.join([*NETS, *INIT_NETS])}")
    ex = Experiment(args)
    if not ex.preset.fixed_schedule:
        raise UserError(f"preset {ex.preset.name} trains under the plateau rule: this study checks the fixed "
                        "schedule (--preset imagenette_fixed)")
    folder = Path(args.results) / ex.preset.name
    correct, records = score(ex, args, configs, seeds, saved_scores(folder, ex.preset.name, ex.root.name,
                                                                     len(ex.data.val)))
    arrays = folder / "fixed_schedule_top1.npz"
    if arrays.exists():  # never drop a scored net (one saved for other data, or without its record)
        with np.load(arrays) as z:
            before = {(c, int(s)) for c, s, _ in (k.split("|") for k in z.files)}
        lost = sorted((c, s) for c, s in before if c in configs and s in seeds and (c, s) not in correct)
        if lost:
            raise UserError(f"{arrays} holds {len(lost)} net(s) that neither a finished checkpoint under "
                            f"{args.runs}/ nor fixed_schedule_check.csv gives for this data "
                            f"({', '.join(f'{c} seed {s}' for c, s in lost)}): restore the checkpoints or train "
                            "them again (without --no-train); nothing written")
    if records.empty:
        raise UserError(f"no finished net of {', '.join(configs)} under runs/{ex.preset.name}: run without --no-train")
    stamp = {"preset": ex.preset.name, "dataset": ex.root.name, "images": len(ex.data.val),
             "protocol": f"Table 3's S=256 row: Q = {Q} (paper pixels), dense (flips averaged) and centre crop",
             "fixed_schedule": "S=256 stage " + " + ".join(map(str, ex.preset.fixed_schedule["S=256"])) + " epochs",
             "plan_version": PLAN_VERSION, "plan_commit": plan_commit()}
    plateau = Path(args.results) / PLATEAU_OF[ex.preset.name] if ex.preset.name in PLATEAU_OF else None
    summary = spread(records, plateau)
    write_table(pd.concat([records, summary], ignore_index=True), folder / "fixed_schedule_check.csv", stamp)
    tested = pairs(correct, list(dict.fromkeys(c for c, _ in correct)), plateau)  # every net scored or kept
    if not tested.empty:  # a pair needs a seed of both nets
        write_table(tested, folder / "fixed_schedule_pairs.csv", stamp)
    arrays = {f"{c}|{s}|{m}": v for (c, s), per in correct.items() for m, v in per.items()}
    tmp = folder / "fixed_schedule_top1.tmp.npz"
    np.savez_compressed(tmp, **arrays)
    tmp.replace(folder / "fixed_schedule_top1.npz")
    plot(records, plateau, Path(args.figures) / ex.preset.name / "fixed_schedule_check.png", ex.preset.name)
    print(summary.to_string(index=False))


def extra(p) -> None:
    p.add_argument("--nets", type=comma_list(), default=None,
                   help=f"nets (default {','.join(NETS)}, and {','.join(INIT_NETS)} on {','.join(INIT_PRESETS)})")
    p.add_argument("--seeds", type=comma_list(int), default="0,1,2", help="seeds (default 0,1,2)")
    p.add_argument("--no-train", action="store_true", help="score only the nets whose training has finished")


if __name__ == "__main__":
    main(fixed_schedule_check, extra=extra)
