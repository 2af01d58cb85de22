"""The repository as a newcomer meets it: `vgg` installed as a package (importable from anywhere,
no sys.path edits), every make target listed by `make help` and runnable, `make data` offline
failing in one line, and the CIFAR-10 sample that `make table3` smoke-runs on without a dataset."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

SAMPLE = ROOT / "vgg" / "samples" / "cifar10-sample"
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def clean_env(**extra) -> dict:
    """This process's environment without PYTHONPATH or VGG_DATA (a fresh shell after `make install`)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VGG_DATA", "PRESET")}
    return {**env, **extra}


def test_vgg_is_an_installed_package_importable_from_anywhere(tmp_path):
    code = ("import importlib.metadata as m, vgg; from vgg.results import paper_table; "
            "print(vgg.__file__); print(m.version('vgg-repro'), vgg.__version__); "
            "print(m.metadata('vgg-repro')['Requires-Python']); print(';'.join(m.requires('vgg-repro'))); "
            "print(len(paper_table('table3_single_scale')))")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=clean_env(), capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, f"vgg is not installed for {sys.executable}: run `make install`\n{r.stderr[-1500:]}"
    path, versions, python, requires, rows = r.stdout.strip().splitlines()
    assert Path(path).resolve() == ROOT / "vgg" / "__init__.py"  # editable: this checkout's code
    installed, own = versions.split()
    assert installed == own
    assert python == ">=3.10"
    wanted = {re.split(r"[<>=!~ ;\[]", line)[0].lower() for line in (ROOT / "requirements.txt").read_text().split()
              if line and not line.startswith("#")}
    assert wanted == {re.split(r"[<>=!~ ;\[]", d)[0].lower() for d in requires.split(";") if d}
    assert int(rows) > 0  # the paper's tables ship inside the package


def test_no_script_or_module_edits_sys_path_or_sets_pythonpath():
    offenders = [str(p.relative_to(ROOT)) for folder in ("experiments", "vgg")
                 for p in sorted((ROOT / folder).rglob("*.py")) if "sys.path" in p.read_text()]
    assert offenders == [], "import vgg as the installed package instead"
    assert "PYTHONPATH" not in (ROOT / "Makefile").read_text()


def make(*args, cwd=ROOT, env=None, timeout=60):
    return subprocess.run(["make", *args], cwd=cwd, env=env or clean_env(), capture_output=True, text=True,
                          timeout=timeout)


def phony_targets() -> list[str]:
    text = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    return re.search(r"^\.PHONY:(.*)$", text, re.M).group(1).split()


def test_make_help_lists_every_target_and_each_prints_a_command():
    r = make("help")
    assert r.returncode == 0, r.stderr
    listed = dict(re.findall(r"^  (\S+) +(\S.*)$", r.stdout, re.M))
    internal = {"installed"}  # the prerequisite that checks `make install` ran
    assert set(listed) == set(phony_targets()) - internal
    assert make().stdout == r.stdout  # `make` alone prints the help
    for target in listed:
        r = make("-n", target, f"PYTHON={sys.executable}")
        assert r.returncode == 0 and r.stdout.strip(), (target, r.stderr)
    makefile = (ROOT / "Makefile").read_text().replace("$(DATASET)", "cifar10")
    for script in re.findall(r"\b(experiments/\S+\.py|scripts/\S+\.py)", makefile):
        assert (ROOT / script).is_file(), script


def test_table3_without_a_dataset_is_a_smoke_run_on_the_sample(tmp_path):
    """A fresh clone (no data/cifar10, VGG_DATA not set): the smoke preset on the sample; given a
    dataset (VGG_DATA, or data/cifar10 present): the preset asked for."""
    makefile = str(ROOT / "Makefile")
    smoke = make("-n", "-f", makefile, "table3", cwd=tmp_path).stdout
    assert "03_table3_single_scale.py --preset smoke --data vgg/samples/cifar10-sample" in smoke
    assert "smoke run" in smoke and "make data" in smoke
    given = make("-n", "-f", makefile, "table3", "PRESET=tiny", cwd=tmp_path,
                 env=clean_env(VGG_DATA=str(tmp_path))).stdout
    assert "03_table3_single_scale.py --preset tiny\n" in given and "smoke" not in given
    (tmp_path / "data" / "cifar10" / "train").mkdir(parents=True)
    found = make("-n", "-f", makefile, "table3", cwd=tmp_path).stdout
    assert "--preset proxy\n" in found and "smoke" not in found


def test_smoke_and_test_preset_outputs_are_ignored_by_git():
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout")
    paths = [f"{d}/{p}/x" for d in ("results", "figures") for p in ("smoke", "tiny")]
    paths += ["runs/smoke/A_S256.pt", "runs/cache/x.npz", "vgg_repro.egg-info/PKG-INFO"]
    r = subprocess.run(["git", "check-ignore", "--no-index", *paths], cwd=ROOT, capture_output=True, text=True)
    assert sorted(r.stdout.split()) == sorted(paths)
    r = subprocess.run(["git", "check-ignore", "--no-index", "-q", "vgg/samples/cifar10-sample/train/cat/0000.jpg"],
                       cwd=ROOT)
    assert r.returncode == 1  # the sample itself is tracked


OFFLINE = {k: "http://127.0.0.1:9" for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY")}


@pytest.mark.parametrize("dataset, fix", [("cifar10", "`make data`"), ("imagenette", "`make data PRESET=imagenette`")])
def test_make_data_offline_fails_in_one_line_and_leaves_no_folder(tmp_path, dataset, fix):
    """The network unreachable (every proxy a closed local port): exit 2, one line on stderr naming
    the fix, and no folder the run made is left (an existing data/ stays, empty)."""
    env = clean_env(**OFFLINE, NO_PROXY="", no_proxy="")
    for existing in (False, True):
        if existing:
            (tmp_path / "data").mkdir()
        r = subprocess.run([sys.executable, str(ROOT / "scripts" / f"make_{dataset}.py"), "--out", f"data/{dataset}",
                            "--download-dir", f"data/{dataset}-download"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 2, r.stderr[-2000:]
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: could not download"), r.stderr
        assert fix in lines[0] and "VGG_DATA" in lines[0]
        assert [p.name for p in tmp_path.iterdir()] == (["data"] if existing else [])
        assert not existing or not any((tmp_path / "data").iterdir())


def test_the_embedded_sample_is_valid():
    from PIL import Image

    from vgg.data import data_root, list_images
    counts = {"train": 50, "val": 20}
    total = 0
    for split, n in counts.items():
        assert sorted(p.name for p in (SAMPLE / split).iterdir()) == CLASSES
        for cls in CLASSES:
            files = sorted((SAMPLE / split / cls).iterdir())
            assert [f.name for f in files] == [f"{i:04d}.jpg" for i in range(n)], (split, cls)
            for f in files:
                with Image.open(f) as im:
                    assert (im.format, im.mode, im.size) == ("JPEG", "RGB", (32, 32)), f
                total += f.stat().st_size
    assert total <= 5_000_000
    assert data_root(SAMPLE) == SAMPLE
    paths, labels, classes = list_images(SAMPLE / "train")
    assert (len(paths), classes) == (500, CLASSES)
    readme = (SAMPLE.parent / "README.md").read_text()
    for needle in ("CIFAR-10", "Krizhevsky", "https://www.cs.toronto.edu/~kriz/cifar.html", "YoongiKim",
                   "10 classes x 50 = 500", "10 classes x 20 = 200"):
        assert needle in readme, needle


def test_smoke_preset_is_the_proxy_geometry_without_a_subsample():
    from vgg.protocol import PAPER, get_preset
    smoke, proxy = get_preset("smoke"), get_preset("proxy")
    assert (smoke.crop, smoke.loader, smoke.scratch_init, smoke.max_per_class) == (32, "memory", "glorot", None)
    assert smoke.px(256) == proxy.px(256) and smoke.scratch_epochs <= 3
    assert "lr_factor" not in PAPER and "train_scales" not in PAPER  # dead: train.py divides by 10


def test_the_readme_leads_with_the_verdict_the_commands_and_the_deviations():
    """A reviewer's first screen: at most 250 lines in all; the verdict box within the first 40, the
    rerun commands with their wall times and the deviation table within the first 80."""
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 250
    head = "\n".join(lines[:40])
    assert "**Verdict**" in head and "not ImageNet results" in head and "No ImageNet run" in head
    first80 = "\n".join(lines[:80])
    for command in ("make install", "make test", "make smoke", "PRESET=proxy", "PRESET=imagenette", "--preset paper"):
        assert command in first80, command
    assert "## Deviations from the paper" in first80 and "| paper | ours" in first80
    assert "DENSE_PENALTY_SENTENCE" not in "\n".join(lines)


def test_python_lines_fit_the_line_length_of_pyproject():
    """Every line of the repository's Python within pyproject's [tool.ruff] line-length."""
    limit = int(re.search(r"line-length\s*=\s*(\d+)", (ROOT / "pyproject.toml").read_text()).group(1))
    long = [f"{p.relative_to(ROOT)}:{i}" for folder in ("vgg", "experiments", "scripts", "tests")
            for p in sorted((ROOT / folder).rglob("*.py"))
            for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if len(line) > limit]
    assert not long, f"lines over {limit} characters: {long}"
