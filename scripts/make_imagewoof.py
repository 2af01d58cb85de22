"""Write Imagewoof 2 (320 px) as the ImageFolder tree the imagewoof preset reads:
OUT/{train,val}/<wnid>/<name>.JPEG, the files exactly as fast.ai distributes them (shorter side
320 px, aspect ratios kept; nothing is resized here).

Source: fast.ai's imagewoof2-320.tgz (https://github.com/fastai/imagenette), downloaded, or a local
copy given with --archive (a .tgz, or a folder already extracted). The archive is checked against
its own file list, imagewoof2-320/noisy_imagewoof.csv (path, labels, is_valid): every file it lists
is present in its split and class, there is no other image, and the classes are Imagewoof's ten;
the archive's SHA-256 is written to OUT/SOURCE.json beside the counts. Offline, on a failed download
or a failed check it stops with one line naming the fix (exit 2) and leaves no folder it made behind.
The tree is built in a temporary folder beside OUT and renamed into place when complete.
"""
import argparse
import csv
import hashlib
import json
import shutil
import tarfile
import urllib.request
from pathlib import Path

from vgg.download import fail, new_folders, reason

URL = "https://s3.amazonaws.com/fast-ai-imageclas/imagewoof2-320.tgz"
TOP = "imagewoof2-320"
LIST = "noisy_imagewoof.csv"
# Imagewoof's ten ILSVRC-2012 dog breeds (fast.ai's README)
CLASSES = ("n02086240", "n02087394", "n02088364", "n02089973", "n02093754", "n02096294", "n02099601",
           "n02105641", "n02111889", "n02115641")
HOW = ("get imagewoof2-320.tgz from https://github.com/fastai/imagenette and pass it with --archive "
       "(`make data DATASET=imagewoof ARCHIVE=<file>`), or set VGG_DATA to an ImageFolder tree")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download(dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    part = dst.with_suffix(".part")
    with urllib.request.urlopen(URL, timeout=60) as r, open(part, "wb") as f:
        shutil.copyfileobj(r, f, 1 << 20)
    part.rename(dst)
    return dst


def extract(archive: Path, into: Path) -> Path:
    """The archive's imagewoof2-320/ folder, extracted under ``into`` (a folder given as is)."""
    if archive.is_dir():
        return archive / TOP if (archive / TOP).is_dir() else archive
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into / TOP


def check(root: Path) -> dict:
    """Counts per split when the files under ``root`` are exactly noisy_imagewoof.csv's list."""
    listing = root / LIST
    if not listing.is_file():
        raise ValueError(f"no {LIST} in the archive's {TOP}/ folder")
    with open(listing, newline="") as f:
        listed = {row["path"] for row in csv.DictReader(f)}
    present = {p.relative_to(root).as_posix() for p in root.glob("*/*/*") if p.is_file()}
    missing, extra = sorted(listed - present), sorted(present - listed)
    if missing or extra:
        raise ValueError(f"{len(missing)} listed files missing (e.g. {missing[:1]}), {len(extra)} unlisted "
                         f"(e.g. {extra[:1]})")
    classes = {p.split("/")[1] for p in listed}
    if classes != set(CLASSES) or {p.split("/")[0] for p in listed} != {"train", "val"}:
        raise ValueError(f"classes {sorted(classes)} / splits are not Imagewoof's")
    return {s: sum(p.startswith(s + "/") for p in listed) for s in ("train", "val")}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="data/imagewoof")
    p.add_argument("--archive", help="a local imagewoof2-320.tgz (or its extracted folder) instead of the download")
    p.add_argument("--download-dir", default="data/imagewoof-download")
    a = p.parse_args(argv)
    out = Path(a.out)
    if (out / "SOURCE.json").is_file():
        print(f"{out} is already made ({(out / 'SOURCE.json').read_text().strip()})")
        return
    created = new_folders(a.download_dir, out) if not a.archive else new_folders(out)
    tmp = out.with_name(out.name + ".partial")
    try:
        if a.archive:
            archive = Path(a.archive)
            if not archive.exists():
                fail(f"--archive {archive} not found: {HOW}", created)
        else:
            archive = Path(a.download_dir) / "imagewoof2-320.tgz"
            if not archive.exists():
                download(archive)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        root = extract(archive, tmp / "extracted")
        counts = check(root)
        for split in ("train", "val"):
            shutil.move(str(root / split), str(tmp / split))
        shutil.rmtree(tmp / "extracted", ignore_errors=True)
        source = {"archive": archive.name, "sha256": sha256(archive) if archive.is_file() else None,
                  "listed_in": f"{TOP}/{LIST}", **counts}
        (tmp / "SOURCE.json").write_text(json.dumps(source) + "\n")
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
    except (OSError, tarfile.TarError) as e:  # offline (URLError is an OSError), a truncated archive
        shutil.rmtree(tmp, ignore_errors=True)
        fail(f"could not get Imagewoof ({reason(e)}): {HOW}", created)
    except ValueError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        fail(f"{archive} is not fast.ai's imagewoof2-320 ({e}): {HOW}", created)
    except KeyboardInterrupt:
        shutil.rmtree(tmp, ignore_errors=True)
        fail("interrupted", created, 130)
    print(f"train: {counts['train']} images, val: {counts['val']} images -> {out}")


if __name__ == "__main__":
    main()
