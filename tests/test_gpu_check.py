"""scripts/gpu_check.py end to end on the CPU (tiny preset, gloo, torchrun with one process) into a
temporary folder: its CSVs have their columns and positive, finite rates; results/gpu is untouched."""
import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import ROOT, load_script, run_cli

SHARED = ROOT.parent / "shared" / "data"
PROVENANCE = ["cpu", "preset", "torch", "torchvision", "device", "commit", "command"]
COLUMNS = {
    "step.csv": ["config", "input", "batch", "img_s", "step_tflop_s", "matmul_tflop_s", "fraction_of_matmul",
                 "peak_mem_gib", "amp_bf16", "channels_last"],
    "loader.csv": ["pipeline", "data", "scale", "workers", "img_s", "img_s_per_worker", "d_step_img_s",
                   "workers_for_d_step", "choose_pipeline"],
    "train.csv": ["run", "ok", "backend", "allreduce_ok", "ddp_step_max_abs_diff", "epochs_in_checkpoint", "steps",
                  "train_img_s", "train_loss", "val_top1_err", "complete"],
    "eval.csv": ["what", "ok", "images", "seconds", "img_s", "crops_s"],
    "decode.csv": ["data", "images", "decode_img_s", "shapes_equal", "decode_max_abs_diff", "decode_mean_abs_diff",
                   "crop_max_abs_diff", "crop_mean_abs_diff"],
    "compile.csv": ["mode", "img_s", "weights_diff_vs_eager", "weight_change"],
}
RATES = {"step.csv": ["img_s", "step_tflop_s", "matmul_tflop_s", "fraction_of_matmul", "peak_mem_gib"],
         "loader.csv": ["img_s", "img_s_per_worker", "d_step_img_s"], "train.csv": ["train_img_s", "train_loss"],
         "eval.csv": ["img_s", "seconds"], "decode.csv": ["decode_img_s"], "compile.csv": ["img_s", "weight_change"]}


def stamps(folder: Path) -> dict:
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*")} if folder.exists() else {}


def test_gpu_check_runs_end_to_end_on_the_cpu(tmp_path):
    if not (SHARED / "imagenette" / "train").is_dir() or not (SHARED / "imagenet-sample" / "train").is_dir():
        pytest.skip(f"no Imagenette / ImageNet photographs under {SHARED}")
    before = stamps(ROOT / "results" / "gpu")
    subset, out = tmp_path / "subset", tmp_path / "out"
    r = run_cli(["scripts/gpu_check.py", "--make-subset", str(subset), "--max-mib", "2", "--photos-mib", "0.5"])
    assert r.returncode == 0, r.stderr
    manifest = json.loads((subset / "SUBSET.json").read_text())
    assert manifest["bytes"] <= 2 * 2**20 and manifest["photos"] >= 1 and manifest["classes"] == 10
    assert sum(f.stat().st_size for f in subset.rglob("*.JPEG")) == manifest["bytes"]
    r = run_cli(["scripts/gpu_check.py", "--data", str(subset), "--out", str(out), "--runs", str(tmp_path / "runs"),
                 "--workers", "1", "--budget", "900",  # a busy machine must not skip a stage
                 "--compile-modes", "none"])  # compiling: minutes on a CPU
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    assert "stage: eval" in r.stdout and "done in" in r.stdout
    for name, columns in COLUMNS.items():
        df = pd.read_csv(out / name)
        assert set(columns + PROVENANCE) <= set(df.columns), name
        assert (df.preset == "tiny").all()
        for col in RATES[name]:
            values = df[col].astype(float)
            assert values.map(math.isfinite).all() and (values > 0).all(), (name, col)
    step = pd.read_csv(out / "step.csv")
    assert set(step.config) == {"D", "A"} and step.input.str.contains("gpu pipeline").any()
    assert step.input.str.contains("stream loader").any()
    loader = pd.read_csv(out / "loader.csv")
    assert len(loader) == 4 and loader.data.str.contains("photographs").any()
    stream = loader[loader.pipeline.str.startswith("stream")]
    assert len(stream) == 2 and (stream.choose_pipeline == "stream").all()  # a CPU never takes the GPU path
    assert (stream.workers_for_d_step > 0).all()
    train = pd.read_csv(out / "train.csv")
    assert train.run.tolist() == ["first", "resumed", "gpu pipeline"] and train.ok.all()
    assert train.epochs_in_checkpoint.tolist() == [1, 2, 1] and train.complete.tolist() == [False, True, True]
    assert train.pipeline.iloc[-1].startswith("gpu")  # the training loop on the GPU pipeline's batches
    assert (train.backend == "gloo").all() and train.allreduce_ok.all() and (train.ddp_step_max_abs_diff < 1e-5).all()
    decoded = pd.read_csv(out / "decode.csv")  # on a CPU torchvision decodes with PIL's libjpeg-turbo: equal
    assert len(decoded) == 2 and decoded.shapes_equal.all() and (decoded.decode_max_abs_diff == 0).all()
    assert (decoded.crop_max_abs_diff == 0).all()
    ev = pd.read_csv(out / "eval.csv")
    assert ev.ok.all() and ev.what.str.contains("vgg eval").any() and ev.crops_s.dropna().gt(0).all()
    # Table 5 on ImageNet-size images, batched by shape: dense and multi-crop through both evaluation loaders
    assert len(ev) == 9 and ev.what.str.contains("photographs").sum() == 6
    assert ev.what.str.contains("batched by shape, gpu decoding").sum() == 2
    assert ev.what.str.contains("loader alone").sum() == 2 and ev.what.str.contains("device alone").sum() == 2
    compiled = pd.read_csv(out / "compile.csv")
    assert compiled["mode"].tolist() == ["eager"] and compiled.weights_diff_vs_eager.iloc[0] == 0
    assert stamps(ROOT / "results" / "gpu") == before  # a test run writes only where --out says
    again = run_cli(["scripts/gpu_check.py", "--data", str(subset), "--out", str(tmp_path / "again"), "--runs",
                     str(tmp_path / "runs"), "--workers", "1", "--stages", "decode"])
    assert again.returncode == 0 and [p.name for p in (tmp_path / "again").iterdir()] == ["decode.csv"]
    bad = run_cli(["scripts/gpu_check.py", "--data", str(subset), "--stages", "train,bench"])
    assert bad.returncode == 2 and "--stages" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_gpu_check_without_a_subset_or_imagenette_exits_2_naming_the_fix(tmp_path):
    r = run_cli(["scripts/gpu_check.py", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "out")])
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "--make-subset" in r.stderr and not (tmp_path / "out").exists()
    r = run_cli(["scripts/gpu_check.py", "--make-subset", str(tmp_path / "s"), "--source", str(tmp_path / "no")])
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "--source" in r.stderr
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    if (SHARED / "imagenette" / "train").is_dir():
        r = run_cli(["scripts/gpu_check.py", "--make-subset", str(tmp_path / "mine")])
        assert r.returncode == 2 and "not a subset this script made" in r.stderr
        assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


def test_table_time_estimates_rest_on_the_measured_gpu_rates(tmp_path):
    """results/gpu/table_times.csv from the committed H200 CSVs: D trains at the rate measured with the
    GPU pipeline, the all-reduce is the ring formula at the assumed bus bandwidth, Table 5 is 6
    multi-crop passes at the measured crops/s, and the node's hours are the chain's schedule."""
    est = load_script("experiments/studies/gpu_estimates.py")
    folder = ROOT / "results" / "gpu"
    if not (folder / "step.csv").exists():
        pytest.skip("no GPU measurements committed")
    r = est.rates(folder)
    step = pd.read_csv(folder / "step.csv")
    fed = float(step[step.input.str.startswith("gpu pipeline")].img_s.iloc[0])
    from vgg.model import VGG, dense_multiply_adds, multiply_adds
    with torch.device("meta"):
        macs = {c: multiply_adds(VGG(c)) for c in ("A", "D", "E")}
        d_macs, d_dense = multiply_adds(VGG("D")), dense_multiply_adds(VGG("D"), 224, 224)
    assert est.train_rate("D", r, macs) == pytest.approx(fed, rel=1e-3)  # the CSV rounds TFLOP/s to 0.1
    assert est.train_rate("A", r, macs) > fed > est.train_rate("E", r, macs)
    assert est.allreduce_seconds(10**8, 1) == 0
    assert est.allreduce_seconds(10**8, 8) == pytest.approx(2 * 7 / 8 * 4e8 / 350e9)
    assert d_dense == d_macs  # the dense head at the crop
    df, facts = est.estimate(folder)
    by = df.set_index("table")
    assert by.loc["5"].eval_h_1gpu == pytest.approx(6 * 50_000 * 50 / r["multi_crop_crops_s"] / 3600, abs=0.01)
    assert by.loc["3"].paper_train_days_per_net_4gpus.startswith("14-21")
    node = df[df.table == "3-7"]
    tables_3_to_7 = by.loc[[str(t) for t in range(3, 8)]].total_h_8gpu.sum()
    assert len(node) == 4 and node.total_h_8gpu.min() == pytest.approx(tables_3_to_7, abs=0.2)
    assert by.loc["3"].train_h_8gpu < by.loc["3"].train_h_1gpu / 4  # several nets at a time
    assert facts["dense_device_img_s_estimated"][256] > facts["dense_device_img_s_estimated"][512]
