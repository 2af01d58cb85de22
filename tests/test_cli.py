"""User errors: one line, exit code 2, nothing written."""
from conftest import ROOT, run_cli


def _one_line_exit2(r, *needles):
    assert r.returncode == 2, (r.returncode, r.stderr[-1500:])
    lines = [line for line in r.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def test_unknown_config_lists_valid_names(tmp_path):
    r = run_cli(["-m", "vgg", "train", "--config", "F", "--data", str(tmp_path)])
    _one_line_exit2(r, "unknown config 'F'", "A, A-LRN, B, B-5x5, C, D, E")


def test_unknown_preset(tmp_path):
    r = run_cli([str(ROOT / "experiments" / "03_table3_single_scale.py"), "--preset", "imagenet-huge",
                 "--data", str(tmp_path)])
    _one_line_exit2(r, "unknown preset",
                    "paper, proxy, imagenette, imagewoof, imagenette_fixed, proxy64, imagenette160, tiny")


def test_missing_data_dir(tmp_path):
    r = run_cli(["-m", "vgg", "train", "--config", "A", "--data", str(tmp_path / "nope"),
                 "--out", str(tmp_path / "a.pt")])
    _one_line_exit2(r, "not found", "ImageFolder")
    assert not (tmp_path / "a.pt").exists()


def test_init_from_checkpoint_of_another_config(small_data, tmp_path):
    a = tmp_path / "d.pt"
    r = run_cli(["-m", "vgg", "train", "--config", "D", "--preset", "tiny", "--data", str(small_data),
                 "--epochs", "1", "--out", str(a), "--no-progress"])
    assert r.returncode == 0, r.stderr[-2000:]
    out = tmp_path / "e.pt"
    r = run_cli(["-m", "vgg", "train", "--config", "E", "--preset", "tiny", "--data", str(small_data),
                 "--init-from", str(a), "--out", str(out)])
    _one_line_exit2(r, "config D")
    assert not out.exists() and not list(tmp_path.glob(".e.pt*"))
    r = run_cli(["-m", "vgg", "train", "--config", "E", "--preset", "tiny", "--data", str(small_data),
                 "--resume", str(a), "--out", str(out)])
    _one_line_exit2(r, "of config D, not E")
