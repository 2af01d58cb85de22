"""experiments/studies/wall_time_check.py on a made-up Imagewoof run and rates timed on Imagenette: a net's
prediction is scaled by the two datasets' training and validation images (vgg.chain_time.SPLIT_SIZES, or
the folder --run-data names)."""
import pandas as pd
from conftest import ROOT, run_cli

from vgg.protocol import get_preset

CPU = "X (AMX, 2 threads)"


def test_an_imagewoof_run_is_predicted_from_imagenette_rates_scaled_by_the_images(tmp_path):
    preset = get_preset("imagewoof")
    run = tmp_path / "results" / "imagewoof"
    (run / "logs" / "seed0").mkdir(parents=True)
    # A trained in two invocations (32 + 8 epochs of 40), B in one
    pd.DataFrame({"invocation": ["t1", "t2", "t2"], "seed": ["0", "0", "0"], "step": ["A_S256", "A_S256", "B_S256"],
                  "epochs": [32, 8, 40], "wall_seconds": [500.0, 200.0, 900.0], "cpu": [CPU] * 3,
                  "code": ["abc1234"] * 3, "preset": "imagewoof"}).to_csv(run / "wall_time.csv", index=False)
    for net, s in (("A_S256", [10.0] * 32 + [11.0] * 8), ("B_S256", [20.0] * 40)):  # A slower after its resume
        pd.DataFrame({"epoch": range(1, 41), "seconds": s, "val_seconds": [1.0 if e % 5 == 0 else None
                                                                           for e in range(1, 41)]}).to_csv(
            run / "logs" / "seed0" / f"{net}.log.csv", index=False)
    rates = tmp_path / "results" / "imagenette_fixed" / "epoch_rates" / "L"
    rates.mkdir(parents=True)
    seconds = {"A": 12.0, "A-LRN": 15.0, "B": 18.0, "B-5x5": 11.0, "C": 19.0, "D": 21.0, "E": 24.0}
    for config, s in seconds.items():
        pd.DataFrame({"epoch": [1, 2], "seconds": [s, s], "val_seconds": [s / 4, s / 4]}).to_csv(
            rates / f"{config}_S256.log.csv", index=False)
    pd.DataFrame({"config": list(seconds), "device": CPU}).to_csv(rates / "rates.csv", index=False)
    (tmp_path / "results" / "eval_rates").mkdir()
    pd.DataFrame({"config": ["A"], "method": ["dense"], "test_scale": [256], "ms_per_image": [1.0],
                  "first_pass_ms": [1.0], "images_timed": [1]}).to_csv(tmp_path / "results" / "eval_rates" / "L.csv",
                                                                    index=False)
    out = tmp_path / "check.csv"
    r = run_cli([str(ROOT / "experiments" / "studies" / "wall_time_check.py"), "--run", str(run), "--results",
                 str(tmp_path / "results"), "--out", str(out), "--run-data", "made up"])
    assert r.returncode == 0, r.stderr[-2000:]
    check = pd.read_csv(out)
    assert preset.validate_every == 5 and sum(preset.fixed_schedule["S=256"]) == 40
    train, val = 9025 / 9469, 3929 / 3925
    # A's first invocation: epochs 1-32, validated after 5, 10, ..., 30; its second: 33-40, after 35 and 40
    expected = [32 * 12 * train + 6 * 3 * val, 8 * 12 * train + 2 * 3 * val, 40 * 18 * train + 8 * 4.5 * val]
    steps = check[check.step.isin(["A_S256", "B_S256"])]
    assert [round(v, 1) for v in steps.predicted_s] == [round(v, 1) for v in expected]
    assert list(steps.logged_s) == [32 * 10 + 6, 8 * 11 + 2, 40 * 20 + 8]  # the log's rows of each step
    total = check[check.step == "total"].iloc[0]
    assert abs(total.predicted_s - sum(expected)) < 0.2 and total.measured_s == 1600
    assert abs(total.measured_over_predicted - round(1600 / sum(expected), 3)) < 1e-9
    assert (check.run_data == "made up").all() and (check.run_preset == "imagewoof").all()
    # --run-data naming the run's data folder: its own images scale the nets (here 6 train, 2 val)
    data = tmp_path / "data"
    for split, n in (("train", 3), ("val", 1)):
        for c in ("x", "y"):
            (data / split / c).mkdir(parents=True)
            for i in range(n):
                (data / split / c / f"{i}.jpg").write_bytes(b"")  # listed by extension, never decoded here
    r = run_cli([str(ROOT / "experiments" / "studies" / "wall_time_check.py"), "--run", str(run), "--results",
                 str(tmp_path / "results"), "--out", str(out), "--run-data", str(data)])
    assert r.returncode == 0, r.stderr[-2000:]
    check = pd.read_csv(out)
    first = check[check.step == "A_S256"].predicted_s.iloc[0]
    assert abs(first - (32 * 12 * 6 / 9469 + 6 * 3 * 2 / 3925)) <= 0.05 and (check.run_images == "6/2").all()  # 0.1 s
    none = run_cli([str(ROOT / "experiments" / "studies" / "wall_time_check.py"), "--run", str(run), "--results",
                    str(tmp_path / "elsewhere")])
    assert none.returncode == 2 and "make epoch_rates" in none.stderr
