"""What each table of the `paper` preset (ILSVRC-2012, full width, crop 224) would take on one
H200 and on a 4-GPU node, from the rates scripts/gpu_check.py measured (results/gpu/*.csv);
writes results/gpu/table_times.csv. An estimate from measured rates, never a measured run.

The model, each term from a measured CSV (the `basis` column names which):

- Training, per net: the preset's 74 epochs (every stage: from scratch, from net A, fine-tuning at
  S = 384 and with jitter; the preset trains exactly that many) x 1,281,167 images at the net's
  rate on real JPEGs. Net D fed through the GPU pipeline was measured (step.csv); another net's rate
  is D's scaled by multiply-adds, at an efficiency (TFLOP/s) interpolated between A's and D's
  synthetic steps (E: D's). The crop is 224 at every S, so S does not change a step's cost.
- Per-epoch validation: 50,000 centre crops at min(3 x the training rate (a forward is a third of
  forward + backward), the stream loader's img/s on ImageNet photographs at S = 256 (loader.csv)).
- Evaluation: 50,000 images per (net, test scale) pass, at the dense and multi-crop rates measured
  over Q = 256, 384, 512 on ImageNet photographs (eval.csv, past the loaders' start) divided evenly
  over the three scales: an upper bound for Tables 3-4's smaller Q (224-416).
- Table 3 trains the 13 nets of the chain (A, A-LRN, B, B with 5x5, C/D/E at S = 256, 384, jitter);
  Tables 4-6 reuse them and the cached posteriors (Table 6's fusions average posteriors Tables 4-5
  computed); Table 7 is compiled from Tables 5-6 (no compute).
- 4 GPUs: `torchrun --nproc_per_node 4`, training and evaluation split 4 ways with ideal scaling
  (the gradient all-reduce was not measured: one GPU was lent) and 16 CPU cores per GPU for the
  loader, as measured.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from vgg.chain import CHAIN
from vgg.model import VGG, multiply_adds
from vgg.protocol import PAPER, multi_test_scales
from vgg.results import write_table

TRAIN_IMAGES, VAL_IMAGES = 1_281_167, 50_000
GPUS = 4
#: Sect. 3.3: "On a system equipped with four NVIDIA Titan Black GPUs, training a single net took 2-3
#: weeks depending on the architecture." The paper gives no evaluation times.
PAPER_TRAIN_DAYS_PER_NET_4GPUS = (14, 21)


def rates(folder: Path) -> dict:
    step, loader, ev = (pd.read_csv(folder / f) for f in ("step.csv", "loader.csv", "eval.csv"))
    synthetic = step[step.input == "synthetic tensors"].set_index("config")
    fed = step[step.input.str.startswith("gpu pipeline")].iloc[0]
    stream = loader[loader.pipeline.str.startswith("stream") & loader.data.str.contains("photographs")
                    & (loader.scale.astype(str) == "256")].iloc[0]
    table5 = ev[ev.what.str.startswith("Table 5 rate")]
    return {"tflops": synthetic.step_tflop_s.to_dict(), "d_synthetic": float(synthetic.loc["D", "img_s"]),
            "d_fed": float(fed.img_s), "stream_val": float(stream.img_s),
            "dense": float(table5[table5.what.str.contains(" dense")].steady_img_s.iloc[0]),
            "multi_crop": float(table5[table5.what.str.contains("multi-crop")].steady_img_s.iloc[0])}


def train_rate(config: str, r: dict, macs: dict) -> float:
    """img/s on real JPEGs: D's measured rate scaled by multiply-adds and the interpolated efficiency."""
    a, d = macs["A"], macs["D"]
    t = min(max((macs[config] - a) / (d - a), 0.0), 1.0)
    tflops = r["tflops"]["A"] + t * (r["tflops"]["D"] - r["tflops"]["A"])
    synthetic = tflops * 1e12 / (6 * macs[config])
    return synthetic * r["d_fed"] / r["d_synthetic"]


def estimate(folder: Path) -> pd.DataFrame:
    r = rates(folder)
    configs = sorted({n.config for n in CHAIN})
    macs = {c: multiply_adds(VGG(c)) for c in configs}
    epochs = PAPER["epochs"]
    per_pass = {"dense": 3 / r["dense"], "multi-crop": 3 / r["multi_crop"]}  # s per image per test scale
    train_h = 0.0
    for net in CHAIN:
        rate = train_rate(net.config, r, macs)
        val_rate = min(3 * rate, r["stream_val"])
        train_h += epochs * (TRAIN_IMAGES / rate + VAL_IMAGES / val_rate) / 3600
    table4 = [n for n in CHAIN if n.config in ("B", "C", "D", "E") and not (n.config == "B" and n.scale != "256")]
    passes = {
        "3": ("dense", len(CHAIN)),
        "4": ("dense", sum(len(multi_test_scales(n.scale)) for n in table4)),
        "5": ("multi-crop", 2 * 3),  # D and E (jitter), Q = 256, 384, 512; dense reused from Table 4
    }
    rows = []
    for table in ("3", "4", "5", "6", "7"):
        method, n = passes.get(table, ("", 0))
        eval_h = n * VAL_IMAGES * per_pass[method] / 3600 if n else 0.0
        train = train_h if table == "3" else 0.0
        what = {"3": f"train the {len(CHAIN)} nets ({epochs} epochs each) + dense eval, 1 scale each",
                "4": f"dense eval, {n} (net, Q) passes (nets from Table 3)",
                "5": "multi-crop eval of D and E (jitter), Q = 256, 384, 512; dense from Table 4",
                "6": "fusions of cached posteriors (Tables 4-5): no forward passes",
                "7": "compiled from Tables 5-6: no compute"}[table]
        lo, hi = PAPER_TRAIN_DAYS_PER_NET_4GPUS
        rows.append({"table": int(table), "work": what,
                     "paper_train_days_per_net_4gpus": f"{lo}-{hi} (4 Titan Black, Sect. 3.3)" if train else
                     "not stated",
                     "ours_train_days_per_net_4gpus": round(train / len(CHAIN) / GPUS / 24, 2) if train else None,
                     "train_h_1gpu": round(train, 1),
                     "eval_h_1gpu": round(eval_h, 2), "total_h_1gpu": round(train + eval_h, 1),
                     "total_h_4gpu": round((train + eval_h) / GPUS, 1),
                     "basis": "step.csv (A, D synthetic; D fed by the GPU pipeline), loader.csv (stream, "
                              "photographs, S=256), eval.csv (Table 5 rates past the loaders' start)"})
    df = pd.DataFrame(rows)
    for c, rate in sorted(((c, train_rate(c, r, macs)) for c in configs)):
        print(f"{c}: {rate:.0f} img/s on real JPEGs (estimated), {epochs} epochs = "
              f"{epochs * TRAIN_IMAGES / rate / 3600:.1f} h of training steps")
    return df


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gpu-results", default="results/gpu", help="gpu_check's CSVs (default %(default)s)")
    a = p.parse_args(argv)
    folder = Path(a.gpu_results)
    write_table(estimate(folder), folder / "table_times.csv",
                {"gpu": pd.read_csv(folder / "step.csv").device.iloc[0], "estimate": True})


if __name__ == "__main__":
    main()
