"""Compact Markdown side-by-side (paper | ours) of Tables 2-7 from results/<preset>/*.csv,
written to results/<preset>/summary.md (the README's Results section is pasted from it)."""
from pathlib import Path

import pandas as pd

from vgg.errors import UserError
from vgg.experiment import main
from vgg.io import atomic_write_text
from vgg.results import ROOT, SCALE_COLUMNS, findings_markdown, findings_side_by_side, read_results, replace_block
from vgg.wall_time import EVERY, TABLES, TOTAL, is_net, read_wall_time

README = ROOT / "README.md"

#: The presets whose findings the README shows side by side (its findings block), in this order.
README_PRESETS = {"imagenette": "Imagenette", "proxy": "CIFAR-10"}


def pair(a, b) -> str:
    return " / ".join("-" if pd.isna(v) else f"{v:g}" for v in (a, b))


def error_table(df: pd.DataFrame, label) -> list[str]:
    out = ["| row | paper top-1 / top-5 (ImageNet) | ours top-1 / top-5 |", "| --- | --- | --- |"]
    for r in df.itertuples():
        out.append(f"| {label(r)} | {pair(r.paper_top1_err, r.paper_top5_err)} | "
                   f"{pair(r.ours_top1_err, r.ours_top5_err)} |")
    return out


def seed_table(seeds: pd.DataFrame) -> list[str]:
    """seeds.csv (experiments/studies/seeds.py) as Markdown: Table 3's S=256 row per net and seed, its mean
    and sample sd over the seeds, and what each seed was trained with."""
    runs = seeds[seeds.seed.str.isdigit()].assign(seed=lambda d: d.seed.astype(int))
    stat = seeds[~seeds.seed.str.isdigit()].set_index(["config", "seed"]).ours_top1_err
    errs = runs.pivot(index="config", columns="seed", values="ours_top1_err")
    errs = errs.reindex(list(dict.fromkeys(runs.config)))
    out = ["| net | " + " | ".join(f"seed {s}" for s in errs.columns) + " | mean +- sd | paper |",
           "| --- |" + " --- |" * (len(errs.columns) + 2)]
    paper = runs.groupby("config").paper_top1_err.first()
    for config, r in errs.iterrows():
        out.append(f"| {config} | " + " | ".join("-" if pd.isna(v) else f"{v:.2f}" for v in r)
                   + f" | {stat[(config, 'mean')]:.2f} +- {stat[(config, 'sd')]:.2f} | {paper[config]:g} |")
    if "trained_with" in runs:
        # each training session's machine and precision (its speed, commit and epochs are in the CSV)
        def machines(seed: int) -> str:
            sessions = runs[runs.seed == seed].trained_with.dropna().str.split("; ").explode()
            return " / ".join(dict.fromkeys(", ".join(e.split(", ")[:2]) for e in sessions))
        out += ["", "Trained with: " + "; ".join(f"seed {s}: {machines(s)}" for s in errs.columns) + "."]
    return out


def summary(args) -> None:
    folder = Path(args.results) / args.preset
    t = {}
    for n in range(2, 8):
        path = folder / f"table{n}.csv"
        if not path.exists():
            raise UserError(f"{path} is missing: run `make table{n} PRESET={args.preset}` first")
        t[n] = read_results(path, dtype=SCALE_COLUMNS)
    lines = [f"# {args.preset} results beside the paper", "",
             f"Made by `experiments/summary.py --preset {args.preset}` from the CSVs in this folder "
             f"(commit {t[3]['commit'][0]}). Errors in %; proxy numbers are not ImageNet numbers.", ""]
    p2 = t[2]
    lines += ["## Table 2: parameters", "",
              f"| config | paper (M) | ours, 224 px / 1000 classes | ours, {p2.preset_net[0]} |",
              "| --- | --- | --- | --- |"]
    lines += [f"| {r.config} | {'-' if pd.isna(r.paper_params_millions) else f'{r.paper_params_millions:g}'} | "
              f"{r.params:,} | {r.preset_net_params:,} |" for r in p2.itertuples()]
    lines += ["", "## Table 3: single test scale (dense; B / B-5x5 centre crop)", ""]
    lines += error_table(t[3], lambda r: f"{r.config} S={r.train_scale} Q={r.test_scale}"
                         + (" centre crop" if r.method == "center-crop" else ""))
    lines += ["", "## Table 4: multiple test scales (dense)", ""]
    lines += error_table(t[4], lambda r: f"{r.config} S={r.train_scale} Q={r.test_scales.replace(';', ',')}")
    lines += ["", f"## Table 5: dense vs multi-crop (S=256-512, Q=256,384,512; {t[5].val_images[0]} val images)", ""]
    lines += error_table(t[5], lambda r: f"{r.config} {r.method}")
    lines += ["", f"## Table 6: fusion (posteriors averaged; {t[6].val_images[0]} val images)", ""]
    lines += error_table(t[6], lambda r: f"{r.nets} nets, {r.method}" + (" (ILSVRC submission)" if r.nets == 7
                                                                         else " (D + E jitter)"))
    lines += ["", "## Table 7: best single net and best fusion", ""]
    lines += error_table(t[7].iloc[:2], lambda r: r.ours)
    seeds = folder / "seeds.csv"
    if seeds.exists():
        sd = read_results(seeds, dtype={"seed": str, "seeds": str})
        lines += ["", f"## Seed spread: Table 3's S=256 nets (dense, Q=256; seeds {sd.seeds[0].replace(';', ', ')})",
                  "", "Top-1 error (%) of each net trained with each seed (B-E of seed k from seed k's A); "
                      "'-': not trained with that seed yet.", ""]
        lines += seed_table(sd)
    f = folder / "findings.csv"
    if f.exists():
        fd = read_results(f)
        # "inconclusive (flips between seeds)" is an inconclusive verdict
        counts = fd.verdict.str.split(" (", regex=False).str[0].value_counts().to_dict()
        lines += ["", "## Findings: the paper's claims (proxy results, not ImageNet results)", "",
                  f"{len(fd)} claims: " + ", ".join(f"{counts.get(v, 0)} {v}" for v in
                                                    ("reproduced", "inconclusive", "opposite", "not tested"))
                  + f". Verdicts by the analysis plan, version {fd.plan_version[0]} (docs/analysis_plan.md, commit "
                    f"{fd.plan_commit[0]}): one test per claim at the highest level of evidence there is (three "
                    "seeds, else per image on one seed, else unpaired), the Benjamini-Hochberg correction over the "
                    "claims; verdict_plan_v1, verdict_before_plan: the earlier rules. "
                    "Every test's numbers: findings_evidence.csv.", ""]
        ev = folder / "findings_evidence.csv"
        lines.append(findings_markdown(fd, read_results(ev, dtype={"seeds": str}) if ev.exists() else None))
    atomic_write_text(folder / "summary.md", "\n".join(lines) + "\n")
    print(f"wrote {folder / 'summary.md'}")
    readme = args.readme or (README if Path(args.results).resolve() == (ROOT / "results").resolve() else None)
    if readme:  # the README shows the published results only, never a test's or a scratch folder's
        update_readme(Path(args.results), Path(readme))


def reproduce_time_text(path: Path) -> str:
    """The reproduction's estimated wall time (results/reproduce_time.csv) per CPU: its newest set of
    rates in full, the range over all its sets; or ''."""
    if not path.exists():
        return ""
    t = read_results(path, dtype={"bf16_matmul_gflop_s": str, "code": str})
    each = []
    for cpu, g in t.groupby("cpu", sort=False):
        new = g.iloc[-1]
        span = (f"{g.total_h.min():.1f}-{g.total_h.max():.1f} h over its {len(g)} sets of rates"
                if len(g) > 1 else "its only set of rates")
        parts = " + ".join(f"{h:.1f} h {what}" for what, h in (
            ("training", new.train_h_per_seed), ("validation", new.get("val_h_per_seed")),
            ("evaluation", new.eval_h_per_seed)) if h == h and h is not None) + " a seed"
        mixed, factor, bound = (new.get(k) for k in ("input_h_per_seed", "eval_mixed_sizes_factor",
                                                     "eval_mixed_sizes_bound"))
        mixed_parts = ([f"{mixed:+.2f} h of input"] if mixed is not None and mixed == mixed else []) + (
            [f"evaluation x {factor:.2f}" + (f" (at most x {bound:.2f})" if bound is not None and bound == bound
                                             else "")] if factor is not None and factor == factor else [])
        if mixed_parts:  # what Imagewoof's images of mixed sizes add to Imagenette's of one size
            parts += f"; images of mixed sizes: {', '.join(mixed_parts)}"
        timed = new.get("eval_from")
        if isinstance(timed, str) and timed.startswith("results/"):
            parts += f"; evaluation: one seed's passes timed on photographs of mixed sizes (`{timed}`)"
        left_out = f"; leaves out {new.missing}" if isinstance(new.get("missing"), str) and new.missing else ""
        each.append(f"{cpu.replace(', 2 threads', '')}: {new.total_h:.1f} h with its newest rates ({new.measured}, "
                    f"{new.bf16_matmul_gflop_s} GFLOP/s bf16 matmul, code {new.code}: {parts}{left_out}), "
                    f"{span}")
    verdict = f"within the goal of {t.goal_h.iloc[0]:g} h (the issue's, on 2 AVX512-BF16 cores): " + ", ".join(
        f"{g.meets_goal.sum()} of the {len(g)} sets of {cpu.replace(', 2 threads', '')}"
        for cpu, g in t.groupby("cpu", sort=False))
    return (f" Estimated from real epochs timed at its geometry (`make reproduce_time`, "
            f"`results/reproduce_time.csv`), not measured as a whole run: {'; '.join(each)}; {verdict}.")


def wall_time_text(path: Path) -> str:
    """The measured wall time of `make reproduce` so far (its wall_time.csv, experiments/reproduce.py), or ''."""
    if not path.exists():
        return ""
    t = read_wall_time(path)
    nets = is_net(t.step)
    cpus = ", ".join(dict.fromkeys(t.cpu.str.replace(", 2 threads", "", regex=False)))
    return (f" Wall time measured so far: {t.wall_seconds.sum() / 3600:.1f} h over {t.invocation.nunique()} "
            f"invocation(s), {nets.sum()} nets trained ({t.epochs[nets].sum()} epochs), {(t.step == TABLES).sum()} "
            f"seed(s) scored, on {cpus} (`results/{path.parent.name}/{path.name}`).")


#: a measured run of the reproduction's protocol that checks the estimate (`make wall_time_check`)
REHEARSAL_CHECK = Path("imagenette_fixed") / "rehearsal" / "wall_time_check.csv"


def wall_time_check_text(results: Path, relative: Path = REHEARSAL_CHECK) -> str:
    """A measured `make reproduce` run beside what the sets of rates of its CPU estimated for the same
    steps (results/``relative``, experiments/studies/wall_time_check.py), or ''."""
    path = results / relative
    if not path.exists():
        return ""
    t = read_wall_time(path)
    total, first = t[t.step == TOTAL], t[t.rates == t.rates.iloc[0]]
    nets = first[is_net(first.step)]
    every = first[first.step == EVERY].iloc[0]
    rest = (nets.measured_s - nets.logged_s).sum() / 3600
    ratio, cpu = total.measured_over_predicted, t.run_cpu.iloc[0].replace(", 2 threads", "")
    parts = []  # the nets and the tables apart: measured, and the range of the estimates over the sets of rates
    for name, part in (("the nets", is_net), ("the tables", lambda steps: steps == TABLES)):
        predicted = t[part(t.step)].groupby("rates", sort=False).predicted_s.sum() / 3600
        if part(first.step).any():
            parts.append(f"; {name} {first[part(first.step)].measured_s.sum() / 3600:.2f} h against "
                         f"{predicted.min():.2f}-{predicted.max():.2f} h")
    return (f"Estimate checked on a measured run at its protocol (`make wall_time_check`: `results/"
            f"{relative.as_posix()}`): {t.run_preset.iloc[0]} on {t.run_data.iloc[0]}, {len(nets)} nets and the "
            f"tables of {(first.step == TABLES).sum()} seed(s) on {cpu}, code "
            f"{t.run_code.iloc[0]}: {every.measured_s / 3600:.2f} h; in the steps the estimate covers "
            f"{total.measured_s.iloc[0] / 3600:.2f} h against {total.predicted_s.min() / 3600:.2f}-"
            f"{total.predicted_s.max() / 3600:.2f} h from the {len(total)} sets of rates of that CPU (measured / "
            f"estimated {ratio.min():.2f}-{ratio.max():.2f}{''.join(parts)}); the nets' time beyond their epoch "
            f"logs (start-up, compiling, checkpoints) {rest:.2f} h.")


def verdict_block(results: Path) -> str:
    """The README's verdict, every number read from the CSVs under ``results``."""
    t2 = read_results(results / "table2.csv")
    t2 = t2[t2.paper_params_millions.notna()]  # the paper's Table 2 (not the B-5x5 control)
    lines = ["> **Verdict** (generated from the CSVs by `experiments/summary.py`). **Proxy results are not ImageNet "
             "results**: 10-class tasks, nets at 1/4 width.",
             "> - **No ImageNet run.** The `paper` preset ran its code path and measured its rates on one H200 "
             "(`results/gpu/`); no accuracy.",
             "> - **Table 2 exact**: " + " / ".join(f"{v / 1e6:.1f}" for v in t2.params) + " M parameters (paper "
             + " / ".join(f"{v:g}" for v in t2.paper_params_millions) + ") for " + ", ".join(t2.config) + "."]
    plan_line = None
    for preset, label in (*README_PRESETS.items(), ("imagewoof", "Imagewoof")):
        f = results / preset / "findings.csv"
        wall = wall_time_text(results / preset / "wall_time.csv")
        if not f.exists():
            lines.append(f"> - **{label}**: " + (f"running (`make reproduce PRESET={preset}`, resumable).{wall}" if wall
                         else f"not run yet (`make data DATASET={preset}`, then `make reproduce PRESET={preset}`; "
                              "three seeds of every net and the plan's controls).")
                         + (reproduce_time_text(results / "reproduce_time.csv") if preset == "imagewoof" else ""))
            check = wall_time_check_text(results) if preset == "imagewoof" else ""
            if check:
                lines.append(f">   {check}")
            continue
        fd = read_results(f)
        c = fd.verdict.str.split(" (", regex=False).str[0].value_counts()
        levels = fd.decided_by.str.split(",").str[0].value_counts()
        plan_line = plan_line or (f"analysis plan {fd.plan_version[0]} (`docs/analysis_plan.md`, commit "
                                  f"{fd.plan_commit[0]})")
        lines.append(f"> - **{label}**, {len(fd)} claims: **{c.get('reproduced', 0)} reproduced, "
                     f"{c.get('opposite', 0)} opposite, {c.get('inconclusive', 0)} inconclusive**, "
                     f"{c.get('not tested', 0)} not tested; decided at seed level (3 seeds) "
                     f"{levels.get('seed level', 0)}, on one seed per image {levels.get('paired per image', 0)}, "
                     f"unpaired {levels.get('unpaired (per-image correctness not saved)', 0)}.{wall}")
        sd = results / preset / "seeds.csv"
        if sd.exists():
            s = read_results(sd, dtype={"seed": str})
            s = s[s.seed == "sd"].set_index("config").ours_top1_err
            lines.append(">   Seed sd of Table 3's S=256 nets: " + ", ".join(f"{k} {v:.2f}" for k, v in s.items())
                         + " points.")
    fixed = fixed_schedule_line(results / "imagenette_fixed")
    if fixed:
        lines.append(fixed)
    lines.insert(3, f"> - Verdicts by the {plan_line}: one test per claim at the highest level of evidence "
                    "there is, an equivalence margin for ties, Benjamini-Hochberg over the claims." if plan_line
                 else "> - No findings yet.")
    return "\n".join(lines)


#: the fixed-schedule check's nets on Imagenette (experiments/studies/fixed_schedule_check.py: NETS and
#: INIT_NETS), three seeds each
FIXED_CHECK_NETS = 9


def fixed_schedule_line(folder: Path) -> str | None:
    """The fixed-schedule check on Imagenette (experiments/studies/fixed_schedule_check.py), as far as it
    has run, as a bullet with sub-bullets: each Table 3 net's seed sd beside the plateau rule's and the
    goal, the LRN control, the initialisation question (D and E from random init, ``-scratch``) and the
    paper's claims among its nets, each claim on its own line."""
    path = folder / "fixed_schedule_check.csv"
    if not path.exists():
        return None
    df = read_results(path, dtype={"seed": str})
    per_seed = df[df.seed.str.isdigit()]
    sd = df[df.seed == "sd"].set_index("config")
    nets, scratch = [], []
    for config, g in per_seed.groupby("config", sort=False):
        if config.endswith("-scratch"):  # the initialisation question's nets: their own line
            scratch.append(f"{config} {g.dense_top1_err.mean():.2f} "
                           + (f"(mean of {len(g)} seeds)" if len(g) > 1 else f"(seed {g.seed.iloc[0]})"))
            continue
        if config in sd.index:
            plateau = sd.plateau_rule_sd[config]
            nets.append(f"{config} {g.dense_top1_err.mean():.2f} "
                        f"(sd {sd.dense_top1_err[config]:.2f} over {len(g)} seeds"
                        + (f"; plateau rule {plateau:.2f})" if pd.notna(plateau) else ")"))
        else:
            nets.append(f"{config} {g.dense_top1_err.iloc[0]:.2f} (seed {g.seed.iloc[0]})")
    goal = "the plan's goal: sd <= 1.5 points"
    if "meets_sd_goal" in sd:
        judged = sd.meets_sd_goal.dropna().astype(str)
        met, missed = judged.index[judged == "True"].tolist(), judged.index[judged == "False"].tolist()
        if met or missed:
            goal += f", met for {', '.join(met) or 'none'}, missed for {', '.join(missed) or 'none'}"
    lines = [f"> - **Fixed schedule, Imagenette** (`make fixed_schedule_check`, exploratory; {len(per_seed)} of "
             f"its {FIXED_CHECK_NETS} x 3 nets scored; [what it shows](results/imagenette_fixed/README.md)):",
             ">   - Table 3's S=256 top-1 error, mean over the seeds scored: " + ", ".join(nets) + f"; {goal}."]
    pairs_path = folder / "fixed_schedule_pairs.csv"
    if pairs_path.exists():
        pairs = read_results(pairs_path)
        init = "Initialisation, D and E from random init (-scratch) instead of net A" + (
            f" (dense top-1 error {', '.join(scratch)})" if scratch else "")
        for question, text in (("LRN control", "LRN control"), ("initialisation", init)):
            diffs = pairs[(pairs.question == question) & (pairs.method == "dense")]
            if len(diffs):
                lines.append(f">   - {text}, dense, error difference in points [95% interval]: " + "; ".join(
                    f"{r.claim} {r.estimate:+.2f} [{r.ci_low:+.2f}, {r.ci_high:+.2f}] "
                    + ("(seed level)" if r.level == "seed" else f"(seed {r.seeds}, per image)")
                    for r in diffs.itertuples()) + ".")
        claims = pairs[pairs.question == "claim"]
        if len(claims):
            lines.append(">   - The paper's claims among these nets by the plan's rules, dense / centre crop, "
                         "error(a) - error(b) [95% interval]:")
            lines += [f">     - {claim_cells(g)}" for _, g in claims.groupby("claim", sort=False)]
    return "\n".join(lines)


def claim_cells(g: pd.DataFrame) -> str:
    """One claim of the fixed-schedule check: its verdict and interval under each method, and its level."""
    by = g.set_index("method")
    cells = " / ".join(f"{by.verdict[m]} {by.estimate[m]:+.2f} [{by.ci_low[m]:+.2f}, {by.ci_high[m]:+.2f}]"
                       for m in ("dense", "center-crop") if m in by.index)
    level = "seed level" if (g.level == "seed").all() else f"seed {g.seeds.iloc[0]}, per image"
    return f"*{g.claim.iloc[0]}* {cells} ({level})"


def findings_page(found: dict[str, pd.DataFrame]) -> str:
    """docs/findings.md: every claim's verdict on every preset, side by side (generated)."""
    first = next(iter(found.values()))
    return "\n".join([
        "# Findings: the paper's claims on each preset", "",
        "Generated by `experiments/summary.py` from `results/<preset>/findings.csv`; do not edit. "
        "**Proxy results are not ImageNet results.**", "",
        f"Verdicts by analysis plan {first.plan_version[0]} ([analysis_plan.md](analysis_plan.md), commit "
        f"{first.plan_commit[0]}). Each cell: error(a) - error(b) in points (negative: a is better) with its 95% "
        "interval; *seeds*: three seeds' t-interval, *unpaired*: two independent proportions, otherwise "
        "per image on one seed. Tags: *(dense geometry)*: a row uses dense evaluation off the training "
        "geometry (CIFAR-10's conv5 maps are 2x2); *(dense penalty)*: `dense_geometry.csv` measured dense "
        "over 3 points worse than a centre crop at a Q the claim uses. Every test's numbers: "
        "`results/<preset>/findings_evidence.csv`.", "",
        findings_side_by_side(found), ""])


def gpu_block(results: Path) -> str:
    """The README's GPU estimate, read from results/gpu/table_times.csv."""
    t = read_results(results / "gpu" / "table_times.csv", dtype={"table": str})
    per = t[t.table.str.len() == 1]
    node = t[t.table == "3-7"]
    best = node.loc[node.total_h_8gpu.idxmin()]
    k = int(t.best_gpus_per_net.iloc[0])
    return (f"Estimated (not measured; {t.gpu.iloc[0]} rates, NCCL bus {t.assumed_nccl_bus_gbps.iloc[0]:g} GB/s "
            f"assumed): Tables 3-7 take **{per.total_h_1gpu.sum():.0f} h on one GPU** "
            f"({per.train_h_1gpu.sum():.0f} h of it training) and **{best.total_h_8gpu:.1f} h on one 8-GPU node** "
            f"with {k} GPUs per net ({node.total_h_8gpu.min():.1f}-{node.total_h_8gpu.max():.1f} h over 1-8 GPUs per "
            f"net), of which evaluation {best.eval_h_8gpu:.2f} h ({100 * best.eval_h_8gpu / best.total_h_8gpu:.1f}%).")


def update_readme(results: Path, readme: Path) -> None:
    """The README's verdict block (<!-- verdict:begin/end -->) and docs/findings.md, remade from every
    preset's findings.csv that exists."""
    found = {label: read_results(results / p / "findings.csv") for p, label in
             (*README_PRESETS.items(), ("imagewoof", "Imagewoof")) if (results / p / "findings.csv").exists()}
    text = readme.read_text() if readme.exists() else ""
    if not found or "<!-- verdict:begin -->" not in text:
        return
    text = replace_block(text, "verdict", verdict_block(results))
    if "<!-- gpu:begin -->" in text and (results / "gpu" / "table_times.csv").exists():
        text = replace_block(text, "gpu", gpu_block(results))
    atomic_write_text(readme, text)
    atomic_write_text(readme.parent / "docs" / "findings.md", findings_page(found))
    print(f"updated the verdict in {readme} and {readme.parent / 'docs' / 'findings.md'}")


def extra(p) -> None:
    p.add_argument("--readme", help="README whose findings block is remade (default: the repository's README.md, "
                                    "when --results is the repository's results/)")


if __name__ == "__main__":
    main(summary, needs_data=False, extra=extra)
