"""Write CIFAR-10 (torchvision download) as an ImageFolder tree: OUT/{train,val}/<class>/NNNN.jpg."""
import argparse
from pathlib import Path

from torchvision.datasets import CIFAR10


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--out", default="data/cifar10")
    p.add_argument("--download-dir", default="data/cifar10-download")
    a = p.parse_args()
    for split, train in (("train", True), ("val", False)):
        ds = CIFAR10(a.download_dir, train=train, download=True)
        counts: dict[int, int] = {}
        for img, y in ds:
            d = Path(a.out, split, ds.classes[y])
            d.mkdir(parents=True, exist_ok=True)
            img.save(d / f"{counts.get(y, 0):04d}.jpg", quality=95)
            counts[y] = counts.get(y, 0) + 1
        print(f"{split}: {sum(counts.values())} images in {len(counts)} classes -> {Path(a.out, split)}")


if __name__ == "__main__":
    main()
