"""Write Imagenette 2 as the 224x224 ImageFolder tree the imagenette preset reads:
OUT/{train,val}/<wnid>/<name>.JPEG.

Downloads fast.ai's imagenette2-320.tgz through torchvision.datasets.Imagenette (which checks
the archive's MD5, 3df6f0d01a2c9592104656642f5e78a3), then resizes every image to 224x224
without keeping its aspect ratio (PIL bicubic, antialiased; greyscale files stay greyscale),
saved as JPEG quality 95.  That is how the copy the published runs used was made
(../shared/data/README.md: thunderInfy/imagenette, every image resized to 224x224); files
resized by another program differ in their pixels, so numbers can differ slightly.

Offline (or on any failed download) it stops with one line naming the fix and leaves no folder it
made behind.
"""
import argparse
import shutil
from pathlib import Path

from PIL import Image

from vgg.download import fail, new_folders, reason

SIZE = 224
EXTENSIONS = {".jpeg", ".jpg", ".png"}


def convert_split(src: Path, dst: Path, size: int = SIZE) -> int:
    """Resize every image of an ImageFolder split to size x size into ``dst`` (written to a temp
    folder, renamed into place when complete); returns the number of images."""
    tmp = dst.with_name(dst.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    n = 0
    for cls in sorted(p for p in src.iterdir() if p.is_dir()):
        (tmp / cls.name).mkdir(parents=True)
        for f in sorted(cls.iterdir()):
            if f.suffix.lower() not in EXTENSIONS:
                continue
            with Image.open(f) as im:
                im = im.convert("L" if im.mode in ("L", "1") else "RGB").resize((size, size), Image.BICUBIC)
                im.save(tmp / cls.name / (f.stem + ".JPEG"), "JPEG", quality=95)
            n += 1
    shutil.rmtree(dst, ignore_errors=True)
    tmp.rename(dst)
    return n


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="data/imagenette")
    p.add_argument("--download-dir", default="data/imagenette-download")
    a = p.parse_args()
    from torchvision.datasets import Imagenette
    created = new_folders(a.download_dir, a.out)
    try:
        ds = Imagenette(a.download_dir, split="train", size="320px", download=True)  # MD5-checked
    except (OSError, RuntimeError) as e:  # no network (URLError is an OSError), checksum mismatch
        fail(f"could not download Imagenette ({reason(e)}): connect to the internet and rerun "
             "`make data PRESET=imagenette`, or get imagenette2-320.tgz from https://github.com/fastai/imagenette "
             f"and extract it into {a.download_dir}/, or set VGG_DATA to any ImageFolder tree", created)
    except KeyboardInterrupt:
        fail("interrupted", created, 130)
    root = Path(ds._image_root).parent
    for split in ("train", "val"):
        n = convert_split(root / split, Path(a.out) / split)
        print(f"{split}: {n} images -> {Path(a.out) / split}")


if __name__ == "__main__":
    main()
