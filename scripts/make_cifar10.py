"""Write CIFAR-10 (torchvision download) as an ImageFolder tree: OUT/{train,val}/<class>/NNNN.jpg.

Offline (or on any failed download) it stops with one line naming the fix and leaves no folder it
made behind; each split is written to a temporary folder and renamed into place when complete."""
import argparse
import shutil
from pathlib import Path

from vgg.download import fail, new_folders, reason

URL = "https://www.cs.toronto.edu/~kriz/cifar.html"


def write_split(ds, dst: Path) -> int:
    tmp = dst.with_name(dst.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    counts: dict[int, int] = {}
    for img, y in ds:
        d = tmp / ds.classes[y]
        d.mkdir(parents=True, exist_ok=True)
        img.save(d / f"{counts.get(y, 0):04d}.jpg", quality=95)
        counts[y] = counts.get(y, 0) + 1
    shutil.rmtree(dst, ignore_errors=True)
    tmp.rename(dst)
    return sum(counts.values())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="data/cifar10")
    p.add_argument("--download-dir", default="data/cifar10-download")
    a = p.parse_args()
    from torchvision.datasets import CIFAR10
    created = new_folders(a.download_dir, a.out)
    try:
        sets = {"train": CIFAR10(a.download_dir, train=True, download=True),
                "val": CIFAR10(a.download_dir, train=False, download=True)}
    except (OSError, RuntimeError) as e:  # no network (URLError is an OSError), checksum mismatch
        fail(f"could not download CIFAR-10 ({reason(e)}): connect to the internet and rerun `make data`, "
             f"or put cifar-10-python.tar.gz ({URL}) into {a.download_dir}/ and rerun, "
             "or set VGG_DATA to any ImageFolder tree", created)
    except KeyboardInterrupt:
        fail("interrupted", created, 130)
    for split, ds in sets.items():
        n = write_split(ds, Path(a.out, split))
        print(f"{split}: {n} images in {len(ds.classes)} classes -> {Path(a.out, split)}")


if __name__ == "__main__":
    main()
