"""The reproduction in one command (`make reproduce PRESET=imagewoof`): every net of the chain and
the analysis plan's controls for each seed, Tables 3-6 per seed, every row's per-image correctness,
the tables over seeds and the findings at seed level (docs/analysis_plan.md).

Per seed k (each its own chain, its own net A):
1. the nets, one at a time in chain order (vgg.chain.build_chain: finished nets are reused,
   an interrupted one resumes), a progress line with the ETA before each; each net's epoch log is
   copied to results/<preset>/logs/seed<k>/ (runs/ is not committed);
2. Tables 3-6 of that seed (the table scripts with --seed k --per-seed: results/<preset>/seed<k>/);
3. the per-image top-1 correctness of every row of those tables (results/<preset>/seed<k>/
   per_image_top1.npz, keyed by vgg.findings.row_id) from the cached posteriors.
Then, over the seeds: results/<preset>/table3-6.csv (each row's error per seed, mean and sd, the
paper's value), seeds.csv (Table 3's nets per seed with the CPU and precision each trained on),
checkpoints.csv (every checkpoint's SHA-256), findings.csv at seed level (the plan's tests), Table 7
and summary.md. A run stopped anywhere resumes where it was (`make reproduce` again).

ETA: the epochs each net still has x the seconds per epoch measured so far for its config (the
median over finished epochs of any seed), else the imagenette preset's published epoch time x the
median measured / published ratio (vgg.chain_time; before any epoch is timed, x this run's training
images / Imagenette's); plus its validations left x the seconds per
validation measured so far (its config's, else scaled by the median validation / epoch ratio); plus
the tables of the seeds not yet scored x the median time a scored seed took (seed<k>/scoring_time.csv),
else one seed's evaluation passes as `make eval_rates` timed them on this CPU (results/eval_rates/, the
median over its files, the run's --results and the repository's), else left out, and the line says so.
`experiments/studies/reproduce_time.py` gives the whole run's estimate before it starts.

Wall time: every step that does work (a net trained or resumed, a seed's tables, the tables over
seeds) appends a row to results/<preset>/wall_time.csv (vgg.wall_time). The progress line's "elapsed"
and the last line count the earlier invocations' rows too.
"""
from __future__ import annotations

import functools
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from vgg.chain import BY_NAME, checkpoint_path, needed, plan
from vgg.chain_time import chain_seconds, eval_rates_path, evaluation_seconds, log_rates, validation_chain_seconds
from vgg.checkpoint import checkpoint_record, load_metadata, publish_log
from vgg.data import image_counts
from vgg.errors import UserError
from vgg.experiment import Experiment, comma_list, main
from vgg.findings import CLAIM_TABLES, claims, evaluate_claims, pick, row_id, side_key
from vgg.node import hours
from vgg.plan import PLAN_VERSION, plan_commit
from vgg.protocol import get_preset
from vgg.results import environment, findings_markdown, read_results, write_table
from vgg.seeds import load_per_image, save_per_image
from vgg.stats import correct_top1
from vgg.wall_time import OVER_SEEDS, TABLES, WallTime

ROOT = Path(__file__).resolve().parents[1]
TABLE_SCRIPTS = ["03_table3_single_scale.py", "04_table4_multi_scale.py", "05_table5_eval_methods.py",
                 "06_table6_fusion.py"]  # each defines table3(args) ... table6(args)


def eta(todo: list[tuple[int, object]], runs: Path, preset, seeds: list[int], train_images: int | None = None) -> float:
    """Seconds the nets of ``todo`` [(seed, Net)] still need: the epochs left x the seconds per epoch
    this run's logs have measured (vgg.chain_time; unmeasured configs scaled from the published ones,
    by ``train_images`` before any epoch is timed), and their validations left x the seconds per
    validation the logs have measured (once they have)."""
    logs = [p for p in (checkpoint_path(runs, preset.name, net.name, seed).with_suffix(".log.csv")
                        for seed in seeds for net in BY_NAME.values()) if p.exists()]
    rates, val_rates = log_rates(logs, train_images)
    done = []
    for seed, net in todo:
        path = checkpoint_path(runs, preset.name, net.name, seed)
        done.append((net, load_metadata(path)["epoch"] if path.exists() else 0))
    return chain_seconds(done, preset, rates) + (validation_chain_seconds(done, preset, val_rates) if val_rates else 0)


def trained_epochs(path: Path) -> int:
    return load_metadata(path)["epoch"] if path.exists() else 0


def train_seed(args, seed: int, seeds: list[int], wall: WallTime) -> None:
    from vgg.chain import build_chain
    preset = get_preset(args.preset)
    nets = needed(None, preset.plan_controls)
    runs = Path(args.runs)
    train_images, _ = image_counts(args.data)
    for i, net in enumerate(nets):
        remaining = [(s, n) for s in seeds if s >= seed for n in nets
                     if (s > seed or nets.index(n) >= i)
                     and plan(n, checkpoint_path(runs, preset.name, n.name, s), preset.name, runs, s) != "reuse"]
        scoring, source = evaluation_eta(args, seeds)
        left = hours(eta(remaining, runs, preset, seeds, train_images) + (scoring or 0.0))
        print(f"[reproduce {time.strftime('%H:%M')}] seed {seed} ({seeds.index(seed) + 1}/{len(seeds)}), "
              f"net {net.name} ({i + 1}/{len(nets)}); elapsed {hours(wall.elapsed())}, "
              f"ETA {left} ({len(remaining)} nets to train or finish; "
              + (f"their evaluation {source})" if scoring is not None else f"evaluation not included: {source})"),
              file=sys.stderr, flush=True)
        path = checkpoint_path(runs, preset.name, net.name, seed)
        state = plan(net, path, preset.name, runs, seed)
        before = trained_epochs(path) if state == "resume" else 0  # a stale net trains from its first epoch
        t0 = time.time()
        build_chain(preset.name, args.data, runs, seed=seed, only=[net.name], progress=False,
                    log=lambda m: print(m, file=sys.stderr, flush=True))
        if state != "reuse":
            wall.record(seed, net.name, time.time() - t0, trained_epochs(path) - before)
        publish_log(path, Path(args.results) / preset.name / "logs", seed)


SCORING_TIME = "scoring_time.csv"  # in each seed's folder: the wall time of its tables and per-image file


def evaluation_eta(args, seeds: list[int]) -> tuple[float | None, str]:
    """(seconds, where they come from) of the tables of the seeds not yet scored (module docstring);
    (None, why) when nothing has timed them on this CPU."""
    left = [s for s in seeds if not seed_is_scored(args, s)]
    if not left:
        return 0.0, "done"
    timed = [float(read_results(p).scoring_seconds.iloc[0]) for s in seeds
             if (p := seed_folder(args, s) / SCORING_TIME).exists()]
    if timed:
        return len(left) * float(np.median(timed)), f"as this run's scored seeds took, {len(left)} seed(s) to score"
    per_seed = eval_rates_seed_seconds(args.results, args.data, args.preset)
    if per_seed is None:
        return None, f"no seed scored yet and no `make eval_rates` on {environment()['device']}"
    return len(left) * per_seed, f"from `make eval_rates` on this CPU, {len(left)} seed(s) to score"


#: where `make eval_rates` writes: a CPU's rates serve a run on it whatever its --results
MACHINE_RATES = eval_rates_path(ROOT / "results")


@functools.lru_cache(maxsize=None)
def eval_rates_seed_seconds(results: str, data: str, preset_name: str) -> float | None:
    """One seed's evaluation on this run's val images, the median over the `make eval_rates` files of
    this CPU under the run's results and the repository's (None without one); read once per run."""
    device = environment()["device"]
    _, val = image_counts(data)
    folders = dict.fromkeys(p.resolve() for p in (eval_rates_path(results), MACHINE_RATES))
    per_seed = [evaluation_seconds(t, get_preset(preset_name), val)
                for f in sorted(f for folder in folders for f in folder.glob("*.csv"))
                if (t := read_results(f)).device.iloc[0] == device]
    return float(np.median(per_seed)) if per_seed else None


def script_function(script: str, name: str):
    """The function ``name`` of experiments/``script`` (the numbered scripts are not importable by name)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(script.removesuffix(".py"), ROOT / "experiments" / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


def run_tables(args, seed: int) -> None:
    """Tables 3-6 of one seed into results/<preset>/seed<k>/ (the table scripts' own functions)."""
    import argparse
    for script in TABLE_SCRIPTS:
        fn = script_function(script, script.split("_")[1])  # table3 ... table6
        fn(argparse.Namespace(**{**vars(args), "seed": seed, "per_seed": True, "seed_spread_only": False}))


def seed_is_scored(args, seed: int) -> bool:
    """The seed's tables and per-image file are newer than every checkpoint of its chain (make's rule)."""
    from vgg.seeds import PER_IMAGE_FILE
    scored = seed_folder(args, seed) / PER_IMAGE_FILE
    if not scored.exists():
        return False
    preset = get_preset(args.preset)
    stamps = [checkpoint_path(args.runs, args.preset, n.name, seed) for n in needed(None, preset.plan_controls)]
    return all(p.exists() and p.stat().st_mtime_ns <= scored.stat().st_mtime_ns for p in stamps)


def seed_folder(args, seed: int) -> Path:
    return Path(args.results) / args.preset / f"seed{seed}"


def save_row_correctness(args, seed: int) -> None:
    """Per-image top-1 correctness of every row of the seed's Tables 3-6 (from cached posteriors)."""
    from vgg.findings import read_tables
    folder = seed_folder(args, seed)
    tables = read_tables(folder)
    sub = type(args)(**{**vars(args), "seed": seed})
    ex = Experiment(sub)
    out, classes = {}, None
    for table, df in tables.items():
        for _, row in df.iterrows():
            if table == "table3" and "minus" in str(row.get("config", "")):
                continue  # a difference row, not a predictor
            p, y = ex.row_posteriors(table, row)
            out[row_id(table, row)] = correct_top1(p, y)
            classes = p.shape[1]
    save_per_image(folder, out, classes)


IDENTITY_END = "ours_top1_err"


def combine(args, seeds: list[int]) -> dict[str, pd.DataFrame]:
    """results/<preset>/tableN.csv: each row's top-1 error per seed, their mean and sd, the paper's."""
    from vgg.findings import read_tables
    per_seed = {s: read_tables(seed_folder(args, s)) for s in seeds}
    out = {}
    for table in CLAIM_TABLES:
        base = per_seed[seeds[0]][table]
        ident = list(base.columns[:list(base.columns).index(IDENTITY_END)])
        df = base[ident].copy()
        errs = np.stack([per_seed[s][table].ours_top1_err.to_numpy(float) for s in seeds])
        for k, s in enumerate(seeds):
            df[f"ours_top1_err_seed{s}"] = errs[k]
        df["ours_top1_err"] = errs.mean(0).round(2)
        df["ours_top1_err_sd"] = errs.std(0, ddof=1).round(2) if len(seeds) > 1 else np.nan
        df["paper_top1_err"] = base.paper_top1_err
        top5 = np.stack([per_seed[s][table].ours_top5_err.to_numpy(float) for s in seeds])
        df["ours_top5_err"] = top5.mean(0).round(2)
        df["paper_top5_err"] = base.paper_top5_err
        for extra in ("d_jitter", "init", "val_images"):
            if extra in base.columns and extra not in df.columns:
                df[extra] = base[extra]
        out[table] = df
        write_table(df, Path(args.results) / args.preset / f"{table}.csv",
                    {"preset": args.preset, "seeds": ";".join(map(str, seeds)), "per_seed": f"seed<k>/{table}.csv"})
    return out


def net_records(args, seeds: list[int]) -> pd.DataFrame:
    """Every checkpoint of the reproduction: its SHA-256, epochs, training seconds, CPU and precision."""
    preset = get_preset(args.preset)
    rows = []
    for seed in seeds:
        for net in needed(None, preset.plan_controls):
            path = checkpoint_path(args.runs, args.preset, net.name, seed)
            if not path.exists():
                continue
            rows.append({"net": net.name, "seed": seed, **checkpoint_record(path)})
    return pd.DataFrame(rows)


def seed_spread(t3: pd.DataFrame, records: pd.DataFrame, seeds: list[int]) -> pd.DataFrame:
    """seeds.csv as experiments/studies/seeds.py writes it: Table 3's S=256 dense rows per net and
    seed, with the mean and sd over the seeds and what each net trained on (the whole of Table 3 per
    seed is in table3.csv's seed columns)."""
    rows = []
    for r in t3[(t3.method == "dense") & (t3.train_scale.astype(str) == "256")].itertuples():
        errs = [getattr(r, f"ours_top1_err_seed{s}") for s in seeds]
        for s, e in zip(seeds, errs):
            rec = records[(records.net == f"{r.config}_S256") & (records.seed == s)]
            rows.append({"config": r.config, "train_scale": "256", "test_scale": r.test_scale, "method": "dense",
                         "seed": str(s), "ours_top1_err": e, "paper_top1_err": r.paper_top1_err,
                         "trained_with": rec.trained_on.iloc[0] if len(rec) else "not recorded"})
        for stat, v in (("mean", np.mean(errs)), ("sd", np.std(errs, ddof=1) if len(errs) > 1 else np.nan)):
            rows.append({"config": r.config, "train_scale": "256", "test_scale": r.test_scale, "method": "dense",
                         "seed": stat, "ours_top1_err": round(float(v), 2), "paper_top1_err": r.paper_top1_err})
    return pd.DataFrame(rows)


def seed_findings(args, seeds: list[int], tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The plan's tests on the claims, at seed level where every seed has both rows."""
    cs = claims()
    per_seed = {s: load_per_image(seed_folder(args, s))[0] for s in seeds}
    classes = load_per_image(seed_folder(args, seeds[0]))[1]
    row_seeds, correct = {}, {}
    for c in cs.itertuples():
        for table, query in ((c.table_a, c.row_a), (c.table_b, c.row_b)):
            try:
                rid = row_id(table, pick(tables, table, query))
            except UserError:
                continue
            for s in seeds:
                if rid in per_seed[s]:
                    row_seeds[(side_key(table, query), s)] = per_seed[s][rid]
            if rid in per_seed[seeds[0]]:
                correct[side_key(table, query)] = per_seed[seeds[0]][rid]
    images = {t: len(next(v for k, v in per_seed[seeds[0]].items() if k.startswith(t + "|"))) for t in CLAIM_TABLES}
    df, evidence = evaluate_claims(cs, tables, correct, images, classes, {}, get_preset(args.preset), None,
                                   row_seeds=row_seeds)
    stamp = {"preset": args.preset, "reproduction_seeds": ";".join(map(str, seeds)), "plan_version": PLAN_VERSION,
             "plan_commit": plan_commit()}
    folder = Path(args.results) / args.preset
    write_table(df, folder / "findings.csv", stamp)
    write_table(evidence, folder / "findings_evidence.csv", stamp)
    print(findings_markdown(df, evidence))
    return df


def reproduce(args) -> None:
    seeds = args.seeds
    wall = WallTime(args.results, args.preset)
    for seed in seeds:
        train_seed(args, seed, seeds, wall)
        if seed_is_scored(args, seed):
            continue
        scoring = time.time()
        run_tables(args, seed)
        save_row_correctness(args, seed)
        seconds = time.time() - scoring
        write_table(pd.DataFrame([{"seed": seed, "scoring_seconds": round(seconds, 1)}]),
                    seed_folder(args, seed) / SCORING_TIME, {"preset": args.preset})
        wall.record(seed, TABLES, seconds)
        print(f"[reproduce] seed {seed}: tables and per-image correctness in {seed_folder(args, seed)}",
              file=sys.stderr, flush=True)
    combining = time.time()
    tables = combine(args, seeds)
    folder = Path(args.results) / args.preset
    records = net_records(args, seeds)
    write_table(records, folder / "checkpoints.csv", {"preset": args.preset})
    write_table(seed_spread(tables["table3"], records, seeds), folder / "seeds.csv",
                {"preset": args.preset, "seeds": ";".join(map(str, seeds))})
    seed_findings(args, seeds, tables)
    import argparse
    base = {"preset": args.preset, "results": args.results, "figures": args.figures, "readme": None}
    per_preset = {"results": str(folder), "figures": str(Path(args.figures) / args.preset)}  # as `make table1`
    for script, name, where in (("01_table1_configs.py", "table1", per_preset),
                                ("02_table2_params.py", "table2", per_preset),
                                ("07_table7_state_of_the_art.py", "table7", {}), ("summary.py", "summary", {})):
        script_function(script, name)(argparse.Namespace(**{**base, **where}))
    wall.record(";".join(map(str, seeds)), OVER_SEEDS, time.time() - combining)
    invocations = wall.rows.invocation.nunique()
    print(f"[reproduce] done: {folder}; this invocation {hours(time.time() - wall.started)}, the run "
          f"{hours(wall.elapsed())} of recorded wall time over {invocations} invocation(s) ({wall.path})",
          file=sys.stderr)


def extra(p) -> None:
    p.add_argument("--seeds", type=comma_list(int), default="0,1,2", help="seeds, each its own chain (default 0,1,2)")


if __name__ == "__main__":
    main(reproduce, extra=extra)
