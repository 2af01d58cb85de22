"""Bad inputs a user can give: one line, exit code 2, no file left behind.

Corrupt or non-image files inside a class folder are not errors: they are skipped,
counted, and the run continues.
"""
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT, run_cli

TRAIN = ["-m", "vgg", "train", "--preset", "tiny", "--no-progress"]


def one_line_exit2(r, needle):
    assert r.returncode == 2, (r.returncode, r.stderr[-1500:])
    lines = [line for line in r.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], r.stderr


@pytest.fixture(scope="module")
def d_checkpoint(small_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("ck") / "D.pt"
    r = run_cli(TRAIN + ["--config", "D", "--data", str(small_data), "--epochs", "1", "--out", str(out)])
    assert r.returncode == 0, r.stderr[-2000:]
    return out


def no_files(folder: Path, pattern="*"):
    return not [p for p in folder.glob(pattern) if p.is_file()]


CASES = {
    "unknown config": (["--config", "Z"], "unknown config 'Z'"),
    "zero batch": (["--config", "A", "--batch", "0"], "--batch must be a positive"),
    "negative batch": (["--config", "A", "--batch", "-4"], "--batch must be a positive"),
    "zero epochs": (["--config", "A", "--epochs", "0"], "--epochs must be a positive"),
    "negative epochs": (["--config", "A", "--epochs", "-1"], "--epochs must be a positive"),
    "zero scale": (["--config", "A", "--scale", "0"], "S must be positive"),
    "garbage scale": (["--config", "A", "--scale", "big"], "bad scale"),
    "jitter Smin > Smax": (["--config", "A", "--scale", "512-256"], "Smin <= Smax"),
    "scale below crop": (["--config", "A", "--scale", "128"], "smaller than the crop"),
    "unknown flag": (["--config", "A", "--lerning-rate", "1"], "unrecognized arguments"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_train_flags(case, small_data, tmp_path, capsys):
    """In-process through the CLI's main() (same path as `python -m vgg`, no interpreter start-up)."""
    from vgg.__main__ import main
    args, needle = CASES[case]
    try:
        code = main(TRAIN[2:] + args + ["--data", str(small_data), "--out", str(tmp_path / "x.pt")])
    except SystemExit as e:  # argparse errors
        code = e.code
    one_line_exit2(subprocess.CompletedProcess([], code, "", capsys.readouterr().err), needle)
    assert no_files(tmp_path)


def test_data_dir_without_class_folders(tmp_path):
    (tmp_path / "d" / "train").mkdir(parents=True)
    (tmp_path / "d" / "val").mkdir()
    r = run_cli(TRAIN + ["--config", "A", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "x.pt")])
    one_line_exit2(r, "no class folders")
    assert not (tmp_path / "x.pt").exists()


def test_corrupt_and_non_image_files_are_skipped_and_counted(small_data, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(small_data, data)
    cls = sorted((data / "train").iterdir())[0]
    good = sorted(cls.iterdir())[0].read_bytes()
    (cls / "0000_truncated.jpg").write_bytes(good[: len(good) // 3])
    (cls / "0000_text.jpg").write_text("hello, I am text")
    (cls / "notes.txt").write_text("ignored: not an image extension")
    r = run_cli(TRAIN + ["--config", "A", "--data", str(data), "--epochs", "1", "--out", str(tmp_path / "a.pt")])
    assert r.returncode == 0, r.stderr[-2000:]
    assert "(2 unreadable skipped)" in r.stderr


def test_checkpoint_of_another_config_for_resume_init_from_weights(d_checkpoint, small_data, tmp_path):
    base = TRAIN + ["--config", "E", "--data", str(small_data), "--out", str(tmp_path / "e.pt")]
    one_line_exit2(run_cli(base + ["--resume", str(d_checkpoint)]), "of config D, not E")
    one_line_exit2(run_cli(base + ["--init-from", str(d_checkpoint)]), "checkpoint of config D")
    sd = tmp_path / "d_plain.pth"
    assert run_cli(["-m", "vgg", "export", str(d_checkpoint), str(sd)]).returncode == 0
    r = run_cli(["-m", "vgg", "eval", "--weights", str(sd), "--config", "E", "--data", str(small_data)])
    one_line_exit2(r, "do not fit config E")
    assert no_files(tmp_path, "e.pt*")


def test_truncated_checkpoint(d_checkpoint, small_data, tmp_path):
    bad = tmp_path / "cut.pt"
    bad.write_bytes(d_checkpoint.read_bytes()[:5000])
    r = run_cli(["-m", "vgg", "eval", "--checkpoint", str(bad), "--data", str(small_data)])
    one_line_exit2(r, "truncated")
    r = run_cli(TRAIN + ["--config", "D", "--data", str(small_data), "--resume", str(bad),
                         "--out", str(tmp_path / "x.pt")])
    one_line_exit2(r, "truncated")


def test_test_scale_below_crop(d_checkpoint, small_data):
    r = run_cli(["-m", "vgg", "eval", "--checkpoint", str(d_checkpoint), "--data", str(small_data),
                 "--scales", "128"])
    one_line_exit2(r, "smaller than the crop")


def test_unknown_eval_method(d_checkpoint, small_data):
    r = run_cli(["-m", "vgg", "eval", "--checkpoint", str(d_checkpoint), "--data", str(small_data),
                 "--method", "ten-crop"])
    one_line_exit2(r, "unknown method")


def test_unwritable_results_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    r = run_cli([str(ROOT / "experiments" / "02_table2_params.py"), "--results", str(blocker / "out"),
                 "--figures", str(tmp_path / "figs")])
    one_line_exit2(r, "cannot write")
    assert no_files(tmp_path / "figs") if (tmp_path / "figs").exists() else True


@pytest.mark.parametrize("script, args, needle", [
    ("experiments/reproduce.py", ["--seeds", "0,x"], "argument --seeds: '0,x': give comma-separated int values"),
    ("experiments/studies/seeds.py", ["--seeds", ","], "argument --seeds: give at least one value"),
    ("experiments/studies/fixed_schedule_check.py", ["--nets", ""], "argument --nets: give at least one value"),
    ("experiments/studies/bench.py", ["--name", "../bench"], "argument --name: '../bench': use letters, digits"),
])
def test_bad_lists_and_names(script, args, needle, tmp_path, monkeypatch, capsys):
    """The experiment scripts' comma-separated lists and output names are checked by the parser: one line,
    exit 2, nothing written."""
    import runpy
    import sys
    monkeypatch.setattr(sys, "argv", [script, "--preset", "tiny", "--results", str(tmp_path), *args])
    with pytest.raises(SystemExit) as e:
        runpy.run_path(str(ROOT / script), run_name="__main__")
    one_line_exit2(subprocess.CompletedProcess([], e.value.code, "", capsys.readouterr().err), needle)
    assert no_files(tmp_path, "**/*")
