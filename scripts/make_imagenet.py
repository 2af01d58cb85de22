"""Prepare ILSVRC-2012 (the paper's dataset) from the official archives you already have, as the
ImageFolder tree the project reads: OUT/train/<wnid>/*.JPEG (1,281,167 images) and
OUT/val/<wnid>/*.JPEG (50,000, sorted into classes by the devkit's ground truth).

ImageNet is not downloadable without an account: from
https://image-net.org/challenges/LSVRC/2012/2012-downloads.php get ILSVRC2012_img_train.tar (138 GB),
ILSVRC2012_img_val.tar (6.3 GB) and ILSVRC2012_devkit_t12.tar.gz (2.5 MB) into one folder
(--archives, default data/imagenet-download), then `make data DATASET=imagenet`.

torchvision.datasets.ImageNet does the parsing (the devkit's data/meta.mat: the 1,000 classes'
wnids; data/ILSVRC2012_validation_ground_truth.txt: each val image's class; the train tar's one tar
per class). It reads the archives from its root, so OUT is made that root: the archives are linked
into it (not copied), each split is extracted into OUT/<split>.partial and renamed into place when
complete (an interrupted run starts that split again), and the links are removed at the end. The
archives' MD5 sums are checked first, as torchvision does (it reads all 145 GB; --skip-md5 trusts
them). Extraction needs about 150 GB free where OUT is; afterwards the archives can be deleted.
Any mistake (missing archive, wrong folder, bad checksum, no space) stops with one line naming the
fix, exit 2, and leaves no folder this run made.
"""
import argparse
import os
import shutil
import tarfile
from pathlib import Path

from vgg.download import fail, new_folders

URL = "https://image-net.org/challenges/LSVRC/2012/2012-downloads.php"
ARCHIVES = {"devkit": "ILSVRC2012_devkit_t12.tar.gz", "val": "ILSVRC2012_img_val.tar",
            "train": "ILSVRC2012_img_train.tar"}
SPACE_FACTOR = 1.05  # extracted size / archive size (JPEGs do not compress; tar headers and slack)


class Failure(Exception):
    """A user's mistake: one line, exit 2."""


def check_archives(folder: Path, out: Path) -> dict[str, Path]:
    if not folder.exists():
        raise Failure(f"archive folder {folder} not found: put {', '.join(ARCHIVES.values())} (from {URL}) into "
                      "one folder and pass it as --archives")
    if not folder.is_dir():
        raise Failure(f"--archives {folder} is a file: pass the folder that holds {', '.join(ARCHIVES.values())}")
    paths = {k: folder / name for k, name in ARCHIVES.items()}
    missing = [p.name for p in paths.values() if not p.is_file()]
    if missing:
        found = sorted(p.name for p in folder.glob("ILSVRC2012*"))
        hint = f" (found there: {', '.join(found)})" if found else ""
        raise Failure(f"{', '.join(missing)} not in {folder}{hint}: download {'it' if len(missing) == 1 else 'them'} "
                      f"from {URL} into {folder}, or pass --archives with the folder that has all three")
    need = SPACE_FACTOR * sum(paths[k].stat().st_size for k in ("train", "val"))
    probe = next((p for p in [out, *out.absolute().parents] if p.exists()), Path("/"))
    free = shutil.disk_usage(probe).free
    if free < need:
        raise Failure(f"extracting needs {need / 1e9:.0f} GB free where {out} is, {free / 1e9:.0f} GB are: free "
                      "space or pass --out on a larger disk")
    return paths


def link(src: Path, dst: Path) -> None:
    """dst -> src (the archive stays where it is); nothing to do when they are the same file."""
    if dst.exists() and dst.resolve() == src.resolve():
        return
    if dst.is_symlink():
        dst.unlink()
    dst.symlink_to(src.resolve())


def prepare(archives: Path, out: Path, skip_md5: bool) -> dict:
    paths = check_archives(archives, out)
    from torchvision.datasets import ImageNet  # (seconds to import: after the quick checks)
    from torchvision.datasets import imagenet as tv

    if skip_md5:  # torchvision checks each archive against ARCHIVE_META's MD5; None: the file exists
        for key, (name, _) in list(tv.ARCHIVE_META.items()):
            tv.ARCHIVE_META[key] = (name, None)
    out.mkdir(parents=True, exist_ok=True)
    links = []
    try:
        for p in paths.values():
            if out.resolve() != archives.resolve():
                link(p, out / p.name)
                links.append(out / p.name)
        tv.parse_devkit_archive(str(out))   # -> OUT/meta.bin: class wnids and names, val labels
        for split, parse in (("val", tv.parse_val_archive), ("train", tv.parse_train_archive)):
            if (out / split).is_dir():
                continue
            partial = out / f"{split}.partial"
            shutil.rmtree(partial, ignore_errors=True)
            print(f"extracting {paths[split].name} into {out / split} ...", flush=True)
            parse(str(out), folder=partial.name)
            partial.rename(out / split)
    except RuntimeError as e:
        if "is not present in the root directory or is corrupted" in str(e):
            name = next((p.name for p in paths.values() if p.name in str(e)), "an archive")
            raise Failure(f"{name} in {archives} does not match ILSVRC-2012's MD5 (an incomplete download?): "
                          "download it again, or pass --skip-md5 to trust it") from e
        raise
    except tarfile.TarError as e:  # a truncated or foreign file under an archive's name
        raise Failure(f"an archive in {archives} is not a readable tar ({e}): download it again") from e
    except OSError as e:  # disk full, a read-only folder
        raise Failure(f"extracting into {out} failed ({e.strerror or e}): free space, or pass --out on a "
                      "writable disk with about 150 GB free") from e
    finally:
        for p in links:
            p.unlink(missing_ok=True)
        for split in ("train", "val"):
            shutil.rmtree(out / f"{split}.partial", ignore_errors=True)
    counts = {}
    for split in ("train", "val"):
        ds = ImageNet(str(out), split=split)  # meta.bin and the extracted folder: parses nothing again
        counts[split] = (len(ds), len(ds.wnids))
    return counts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="data/imagenet")
    p.add_argument("--archives", "--download-dir", dest="archives",
                   default=os.environ.get("IMAGENET_ARCHIVES", "data/imagenet-download"),
                   help="folder with the three ILSVRC-2012 archives (default $IMAGENET_ARCHIVES, else "
                        "data/imagenet-download)")
    p.add_argument("--skip-md5", action="store_true", help="trust the archives (skip reading 145 GB for MD5)")
    a = p.parse_args()
    out, archives = Path(a.out), Path(a.archives)
    created = new_folders(out)
    try:
        if (out / "train").is_dir() and (out / "val").is_dir() and (out / "meta.bin").is_file():
            print(f"{out} is already prepared (train/, val/, meta.bin); remove it to prepare it again")
            return
        counts = prepare(archives, out, a.skip_md5)
    except Failure as e:
        fail(str(e), created)
    except KeyboardInterrupt:
        fail("interrupted", created, 130)
    for split, (n, k) in counts.items():
        print(f"{split}: {n} images in {k} classes -> {out / split}")


if __name__ == "__main__":
    main()
