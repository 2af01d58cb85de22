"""Photographs laid out as the imagewoof preset reads Imagewoof, for `make preflight`: the whole
`make reproduce PRESET=imagewoof` path (3 seeds x 15 nets, Tables 1-7, findings) on real ImageNet
photographs of mixed sizes in about 20 minutes, before the 10-hour run.

Each image of SRC (default ../shared/data/imagenet-sample/val: 250 ILSVRC-2012 photographs, one per
class) is resized to a shorter side of 320 px, aspect ratio kept, as fast.ai's imagewoof2-320 files
are, and written to OUT/{train,val}/group<k>/ (k = its index in sorted order mod 10; the same files
in both splits). The ten groups are arbitrary labels: the nets stay at chance, and the run's errors
mean nothing. It checks the code path and times each step, never accuracy.
The tree is built in a temporary folder beside OUT and renamed into place when complete; a missing
or empty SRC stops with one line (exit 2).
"""
import argparse
import shutil
from pathlib import Path

from PIL import Image
from torchvision.datasets.folder import IMG_EXTENSIONS

from vgg.data import load_rgb, rescaled_size
from vgg.download import fail, new_folders

SHORTER_SIDE = 320  # fast.ai's imagewoof2-320
GROUPS = 10  # Imagewoof's number of classes


def photographs(src: Path) -> list[Path]:
    return sorted(p for p in src.rglob("*") if p.suffix.lower() in IMG_EXTENSIONS)


def as_imagewoof(path: Path) -> Image.Image:
    """The photograph with its shorter side 320 px, aspect ratio kept (bicubic)."""
    im = load_rgb(str(path))
    if im is None:
        raise ValueError(f"{path} is not a readable image")
    h, w = rescaled_size(im.height, im.width, SHORTER_SIDE)
    return im.resize((w, h), Image.BICUBIC)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-sample"
                                        / "val"), help="a folder of photographs (searched recursively)")
    p.add_argument("--out", default="runs/preflight/data")
    args = p.parse_args()
    src, out = Path(args.src), Path(args.out)
    files = photographs(src) if src.is_dir() else []
    if len(files) < GROUPS:
        fail(f"{src} has {len(files)} images, fewer than {GROUPS}: give --src a folder of photographs "
             "(e.g. ../shared/data/imagenet-sample/val)", [])
    if out.exists():
        print(f"{out} exists: kept")
        return
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    created = new_folders(tmp)
    try:
        for i, f in enumerate(files):
            im = as_imagewoof(f)
            for split in ("train", "val"):
                folder = tmp / split / f"group{i % GROUPS}"
                folder.mkdir(parents=True, exist_ok=True)
                im.save(folder / f"{f.stem}.JPEG", quality=90)
    except (OSError, ValueError) as e:
        fail(f"{e}: remove the file from {src} or give another --src", created)
    tmp.rename(out)
    print(f"{out}: {len(files)} photographs (shorter side {SHORTER_SIDE} px) in {GROUPS} groups, train = val")


if __name__ == "__main__":
    main()
