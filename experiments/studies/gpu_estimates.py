"""What Tables 3-7 of the `paper` preset (ILSVRC-2012, full width, crop 224) would take on one H200
and on one 8-GPU H200 node: results/gpu/table_times.csv. An estimate, never a measured run; each
term says whether it rests on a rate measured on the lent H200 (results/gpu/*.csv), an estimate
from measured rates, or an assumption.

- Epochs per stage (assumed from the paper and our proxy): 74 for every net trained at S = 256 (from
  scratch or from net A; Sect. 3.1: 370K iterations); the fine-tuning stages (S = 384 from S = 256,
  jitter from S = 384, from lr 1e-3) are not stated by the paper: 74 x 18 / 40 = 33 epochs, the
  ratio of the fixed schedule derived from the plateau rule's firings on Imagenette
  (vgg.protocol.FIXED_SCHEDULE).
- Training rate of a net on one GPU (estimated from measured rates): D fed by the GPU pipeline
  (step.csv); another config's rate is D's scaled by multiply-adds at an efficiency interpolated
  between A's and D's synthetic steps (E: D's).
- On K GPUs per net: each step computes 256 / K images a GPU, then all-reduces the net's fp32
  gradients (ring: 2 (K - 1) / K x 4 bytes x parameters) at ASSUMED_BUS_GBPS, an NCCL bus bandwidth
  assumed for an NVLink H200 node (not measured: one GPU was lent), with no overlap of the
  all-reduce and the backward pass (DDP overlaps them: an upper bound on the time).
- Per-epoch validation: 50,000 centre crops at min(3 x the training rate, the GPU pipeline's rate).
- The chain on the node: vgg.node.simulate, the same list scheduling `python -m vgg chain
  --gpus-per-net K` uses (longest remaining path first), on 8 / K groups; the best K is reported.
- Evaluation (estimated): dense on the device at the bf16 matmul rate measured x the fraction D's
  training step reached (step.csv) / dense multiply-adds x 4 (2 flips, 2 FLOPs) of a 4:3 photograph
  at Q (vgg.model.dense_multiply_adds), batched by shape (not yet measured on a GPU); the evaluation
  loader at the GPU pipeline's measured rate on photographs at S = 256 (loader.csv); end to end the
  slower of the two. Multi-crop at the crops/s measured on the device (eval.csv). Evaluation is
  sharded over all 8 GPUs after training.
- Tables: 3 trains the 13 nets and scores each at its Q; 4 scores 30 (net, Q) passes; 5 the 6
  multi-crop passes of D and E (jitter) at Q = 256, 384, 512; 6 and 7 reuse cached posteriors.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import torch

from vgg.chain import CHAIN
from vgg.model import VGG, dense_multiply_adds, multiply_adds
from vgg.node import critical_path, simulate
from vgg.protocol import FIXED_SCHEDULE, PAPER, multi_test_scales, single_test_scale
from vgg.results import write_table

TRAIN_IMAGES, VAL_IMAGES = 1_281_167, 50_000
GPUS = 8
ASSUMED_BUS_GBPS = 350.0  # NCCL all-reduce bus bandwidth, GB/s: assumed, not measured
S256_EPOCHS = PAPER["epochs"]
FINETUNE_EPOCHS = round(PAPER["epochs"] * sum(FIXED_SCHEDULE["fine-tuning"]) / sum(FIXED_SCHEDULE["S=256"]))
#: Sect. 3.3: "On a system equipped with four NVIDIA Titan Black GPUs, training a single net took 2-3
#: weeks depending on the architecture." The paper gives no evaluation times.
PAPER_TRAIN_DAYS_PER_NET_4GPUS = (14, 21)
PHOTO_ASPECT = 4 / 3  # ILSVRC-2012's commonest shape (500 x 375)


def rates(folder: Path) -> dict:
    step, loader, ev = (pd.read_csv(folder / f) for f in ("step.csv", "loader.csv", "eval.csv"))
    synthetic = step[step.input == "synthetic tensors"].set_index("config")
    fed = step[step.input.str.startswith("gpu pipeline")].iloc[0]
    photos = loader[loader.data.str.contains("photographs") & (loader.scale.astype(str) == "256")]
    gpu_loader = photos[photos.pipeline.str.startswith("gpu")].iloc[0]
    device_mc = ev[ev.what.str.contains("multi-crop on the device alone")]
    return {"tflops": synthetic.step_tflop_s.to_dict(), "d_synthetic": float(synthetic.loc["D", "img_s"]),
            "d_fed": float(fed.img_s), "matmul_tflops": float(synthetic.loc["D", "matmul_tflop_s"]),
            "d_fraction": float(synthetic.loc["D", "fraction_of_matmul"]), "gpu_loader": float(gpu_loader.img_s),
            "multi_crop_crops_s": float(device_mc.crops_s.iloc[0])}


def train_rate(config: str, r: dict, macs: dict) -> float:
    """img/s on one GPU on real JPEGs: D's measured rate scaled by multiply-adds and the interpolated
    efficiency."""
    a, d = macs["A"], macs["D"]
    t = min(max((macs[config] - a) / (d - a), 0.0), 1.0)
    tflops = r["tflops"]["A"] + t * (r["tflops"]["D"] - r["tflops"]["A"])
    synthetic = tflops * 1e12 / (6 * macs[config])
    return synthetic * r["d_fed"] / r["d_synthetic"]


def allreduce_seconds(params: int, k: int, bus_gbps: float = ASSUMED_BUS_GBPS) -> float:
    """One ring all-reduce of ``params`` fp32 gradients over ``k`` GPUs at the bus bandwidth."""
    return 0.0 if k == 1 else 2 * (k - 1) / k * 4 * params / (bus_gbps * 1e9)


def rate_on(config: str, k: int, r: dict, macs: dict, params: dict) -> float:
    """img/s of one net on k GPUs: 256 / k images a GPU per step, then the all-reduce (no overlap)."""
    step = PAPER["batch"] / k / train_rate(config, r, macs) + allreduce_seconds(params[config], k)
    return PAPER["batch"] / step


def epochs_of(net) -> int:
    return FINETUNE_EPOCHS if net.finetuning else S256_EPOCHS


def net_seconds(net, k: int, r: dict, macs: dict, params: dict) -> float:
    rate = rate_on(net.config, k, r, macs, params)
    val_rate = min(3 * rate, r["gpu_loader"] * k)
    return epochs_of(net) * (TRAIN_IMAGES / rate + VAL_IMAGES / val_rate)


def dense_rate(q: int, r: dict) -> tuple[float, float]:
    """(device img/s, end-to-end img/s) of dense evaluation of net D at Q on one GPU (estimated)."""
    with torch.device("meta"):
        macs = dense_multiply_adds(VGG("D"), q, round(q * PHOTO_ASPECT))
    device = r["matmul_tflops"] * 1e12 * r["d_fraction"] / (4 * macs)
    return device, min(device, r["gpu_loader"])


def estimate(folder: Path) -> tuple[pd.DataFrame, dict]:
    r = rates(folder)
    configs = sorted({n.config for n in CHAIN})
    with torch.device("meta"):  # layer shapes only: no weights are made
        nets = {c: VGG(c) for c in configs}
    macs = {c: multiply_adds(n) for c, n in nets.items()}
    params = {c: sum(p.numel() for p in n.parameters()) for c, n in nets.items()}
    # evaluation, in GPU-seconds
    dense_s = {q: VAL_IMAGES / dense_rate(q, r)[1] for q in (224, 256, 288, 352, 384, 416, 448, 512)}
    mc_s = VAL_IMAGES * 50 / r["multi_crop_crops_s"]
    table4 = [n for n in CHAIN if n.config in ("B", "C", "D", "E") and not (n.config == "B" and n.scale != "256")]
    eval_s = {3: sum(dense_s[single_test_scale(n.scale)] for n in CHAIN),
              4: sum(dense_s[q] for n in table4 for q in multi_test_scales(n.scale)),
              5: 2 * 3 * mc_s, 6: 0.0, 7: 0.0}
    one = {n.name: net_seconds(n, 1, r, macs, params) for n in CHAIN}
    train_1 = sum(one.values())
    best = None
    node_rows = []
    for k in (1, 2, 4, 8):
        seconds = {n.name: net_seconds(n, k, r, macs, params) for n in CHAIN}
        makespan, _ = simulate(CHAIN, seconds, GPUS // k)
        total = makespan + sum(eval_s.values()) / GPUS
        node_rows.append({"table": "3-7", "work": f"8 GPUs, {k} per net ({GPUS // k} nets at a time), "
                                                  f"critical path {' -> '.join(critical_path(CHAIN, seconds))}",
                          "train_h_1gpu": None, "eval_h_1gpu": None, "total_h_1gpu": None,
                          "train_h_8gpu": round(makespan / 3600, 1),
                          "eval_h_8gpu": round(sum(eval_s.values()) / GPUS / 3600, 2),
                          "total_h_8gpu": round(total / 3600, 1)})
        if best is None or total < best[1]:
            best = (k, total, makespan)
    k, _, makespan = best
    lo, hi = PAPER_TRAIN_DAYS_PER_NET_4GPUS
    rows = []
    for table in (3, 4, 5, 6, 7):
        train = train_1 if table == 3 else 0.0
        what = {3: f"train the {len(CHAIN)} nets ({S256_EPOCHS} epochs at S=256, {FINETUNE_EPOCHS} fine-tuning) "
                   "+ dense, one Q each",
                4: f"dense, {sum(len(multi_test_scales(n.scale)) for n in table4)} (net, Q) passes",
                5: "multi-crop of D and E (jitter), Q = 256, 384, 512; dense from Table 4",
                6: "fusions of cached posteriors (Tables 4-5): no forward passes",
                7: "compiled from Tables 5-6: no compute"}[table]
        rows.append({"table": str(table), "work": what,
                     "paper_train_days_per_net_4gpus": (f"{lo}-{hi} (4 Titan Black, Sect. 3.3)" if train
                                                        else "not stated"),
                     "train_h_1gpu": round(train / 3600, 1), "eval_h_1gpu": round(eval_s[table] / 3600, 2),
                     "total_h_1gpu": round((train + eval_s[table]) / 3600, 1),
                     "train_h_8gpu": round(makespan / 3600, 1) if table == 3 else 0.0,
                     "eval_h_8gpu": round(eval_s[table] / GPUS / 3600, 2),
                     "total_h_8gpu": round(((makespan if table == 3 else 0.0) + eval_s[table] / GPUS) / 3600, 1)})
    df = pd.DataFrame(rows + node_rows)
    facts = {"best_gpus_per_net": k, "assumed_bus_gbps": ASSUMED_BUS_GBPS, "finetune_epochs": FINETUNE_EPOCHS,
             "dense_device_img_s_estimated": {q: round(dense_rate(q, r)[0]) for q in (256, 384, 512)},
             "eval_loader_img_s_measured": r["gpu_loader"]}
    for c in configs:
        print(f"{c}: {train_rate(c, r, macs):.0f} img/s on 1 GPU (estimated), {rate_on(c, 8, r, macs, params):.0f} "
              f"on 8 (all-reduce {allreduce_seconds(params[c], 8) * 1e3:.1f} ms a step, assumed bus)")
    print(facts)
    return df, facts


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gpu-results", default="results/gpu", help="gpu_check's CSVs (default %(default)s)")
    a = p.parse_args(argv)
    folder = Path(a.gpu_results)
    df, facts = estimate(folder)
    write_table(df, folder / "table_times.csv",
                {"gpu": pd.read_csv(folder / "step.csv").device.iloc[0], "estimate": True,
                 "best_gpus_per_net": facts["best_gpus_per_net"], "assumed_nccl_bus_gbps": ASSUMED_BUS_GBPS,
                 "basis": "measured on one H200: step.csv (A, D synthetic; D fed by the GPU pipeline), loader.csv "
                          "(GPU pipeline, photographs, S=256), eval.csv (multi-crop on the device); estimated: dense "
                          "batched from the matmul rate x D's step fraction; assumed: epochs of fine-tuning, the "
                          "all-reduce's bus bandwidth"})


if __name__ == "__main__":
    main()
