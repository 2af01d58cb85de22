"""Schedule study: does the paper's depth ordering at S=256 (A, B, C, D, E) depend on how
long the proxy trains? Every S=256 net of the chain is continued from its chain checkpoint
to ``--factor`` times the preset's epochs (default 2), same seed and the same lr rule (divide by 10 when validation
accuracy stalls, at most the preset's lr_drops times). Epochs are seeded by their index and the optimiser and
lr state are in the checkpoint, so the continuation is the run a longer preset would give
(B..E keep the 10-epoch net A as their init, as the chain does).

Writes results/<preset>/schedule_study.csv (each net at both lengths: dense top-1/top-5 at
Q = S as Table 3, centre-crop top-1, lr drops taken, and dense minus centre-crop top-1 at every Q
Table 4 tests an S=256 net at: S-32, S, S+32), schedule_study_claims.csv (the paper's depth
claims at both lengths, tested paired as findings.py tests them: bootstrap interval, McNemar,
verdict) and figures/<preset>/schedule_study.png.
The longer runs go to runs/<preset>/schedule_study/ and resume.
"""


import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from vgg.checkpoint import load_training_checkpoint
from vgg.configs import Conv, blocks
from vgg.errors import UserError
from vgg.evaluate import cached_posteriors
from vgg.experiment import Experiment, main, schedule_taken
from vgg.metrics import two_standard_errors
from vgg.plots import save_figure
from vgg.protocol import multi_test_scales
from vgg.results import paper_table, write_table
from vgg.stats import compare, correct_top1, verdict

NETS = ["A", "B", "C", "D", "E"]
# The paper's claims on these nets (a, b, claim type: a beats b, or a ties b), as in vgg/paper/findings.csv.
CLAIMS = [("B", "A", "better"), ("D", "B", "better"), ("E", "D", "tie"), ("D", "C", "better")]


def layers(config: str) -> int:
    """Weight layers: convolutions plus the three FC layers."""
    return sum(isinstance(layer, Conv) for block in blocks(config) for layer in block) + 3


def schedule_study(args) -> None:
    if args.factor < 2:
        raise UserError(f"--factor must be 2 or more (the preset's epochs times it), got {args.factor}")
    ex = Experiment(args)
    longer = f"{args.factor}x preset"
    tested_q = multi_test_scales("256")  # Table 4: S-32, S, S+32
    paper = paper_table("table3_single_scale").query("train_scale == '256'").set_index("config").top1_val_err
    n_val = len(ex.data.val)
    rows, correct = [], {}
    for config in NETS:
        chain = ex.checkpoint(f"{config}_S256")
        base = load_training_checkpoint(chain)["epoch"]
        extended = ex.continued(f"{config}_S256", chain, args.factor * base, "schedule_study")
        for schedule, path in (("preset", chain), (longer, extended)):
            p, y = cached_posteriors(path, "dense", [256], ex.data)
            correct[config, schedule] = correct_top1(p, y)
            e1, e5 = ex.errors(p, y)
            c1, _ = ex.errors(*cached_posteriors(path, "center-crop", [256], ex.data))
            rows.append({"config": config, "layers": layers(config), "schedule": schedule,
                         **schedule_taken(load_training_checkpoint(path)),
                         "ours_top1_err": round(100 * e1, 2), "ours_top5_err": round(100 * e5, 2),
                         "ours_top1_err_center_crop": round(100 * c1, 2),
                         "two_se": round(two_standard_errors(n_val, e1), 2),
                         **{f"dense_minus_crop_Q{r['test_scales']}": r["dense_minus_crop"]
                            for r in ex.dense_vs_crop_rows(path, tested_q)},
                         "paper_top1_err": paper[config]})
    df = pd.DataFrame(rows)
    write_table(df, ex.out("results", "schedule_study.csv"), {**ex.provenance(), "factor": args.factor})

    # The depth claims, tested paired on the same images as findings.py tests them.
    schedules = ("preset", longer)
    claims = []
    for a, b, kind in CLAIMS:
        for sched in schedules:
            c = compare(correct[a, sched], correct[b, sched])
            claims.append({"claim": f"{a} {'ties' if kind == 'tie' else 'beats'} {b}", "claim_type": kind,
                           "schedule": sched, "ours_a": round(c.ours_a, 2), "ours_b": round(c.ours_b, 2),
                           "diff": round(c.diff, 2), "ci_low": round(c.ci_low, 2), "ci_high": round(c.ci_high, 2),
                           "p_value": float(f"{c.p_value:.2g}"), "verdict": verdict(kind, c.ci_low, c.ci_high)})
    claims = pd.DataFrame(claims)
    write_table(claims, ex.out("results", "schedule_study_claims.csv"), {**ex.provenance(), "factor": args.factor})
    for r in claims.itertuples():
        print(f"{r.claim} ({r.claim_type}), {r.schedule}: {r.ours_a:.2f} / {r.ours_b:.2f}, {r.diff:+.2f} "
              f"[{r.ci_low:+.2f}, {r.ci_high:+.2f}], McNemar p {r.p_value:.2g}: {r.verdict}")

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    x = range(len(NETS))
    for sched, marker in zip(schedules, "os"):
        g = df[df.schedule == sched].set_index("config").loc[NETS]
        epochs = "/".join(str(e) for e in sorted(set(g.epochs)))
        ax.errorbar(x, g.ours_top1_err, yerr=g.two_se, marker=marker, capsize=3,
                    label=f"ours, {epochs} epochs (dense, Q=S; bars: 2 SE)")
    ax.plot(x, paper.loc[NETS], marker="^", color="grey", ls="--", label="paper (ImageNet)")
    ax.set_xticks(list(x), [f"{c}\n({layers(c)} layers)" for c in NETS])
    ax.set_ylabel("top-1 error (%), S=256")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"Depth at S=256: the preset's schedule and {args.factor}x as long ({ex.preset.name}, {ex.root.name})",
                 fontsize=10)
    save_figure(fig, ex.out("figures", "schedule_study.png"))


def extra(p) -> None:
    p.add_argument("--factor", type=int, default=2, help="epochs x this (default 2)")


if __name__ == "__main__":
    main(schedule_study, extra=extra)
