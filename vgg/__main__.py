"""``python -m vgg {train,chain,eval,export,configs}`` -- see ``--help`` of each."""
from __future__ import annotations

import argparse
import sys

from .errors import Divergence, UserError
from .protocol import PRESETS
from .runtime import AMP_CHOICES


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="proxy", help=f"{' | '.join(PRESETS)} (default proxy)")
    p.add_argument("--data", help="dataset root in ImageFolder layout (default $VGG_DATA)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--precision", dest="amp", choices=AMP_CHOICES, default=None,
                   help="bf16 (autocast) | fp32 | auto: bf16 where the CPU (AVX512-BF16, AMX) or GPU runs it "
                        "natively, else fp32 (default: $VGG_AMP, else auto)")
    p.add_argument("--no-amp", dest="amp", action="store_const", const="fp32", help="same as --precision fp32")
    p.add_argument("--batch", type=int, help="override the preset's (global) batch size")
    p.add_argument("--width", type=float, help="override the preset's width multiplier")
    p.add_argument("--max-per-class", type=int, help="subsample the dataset (tests)")
    p.add_argument("--loader", help="memory (decoded dataset in RAM, batched augmentation) | stream "
                                    "(decoded per epoch by DataLoader workers); default: the preset's")
    p.add_argument("--workers", type=int, help="DataLoader workers for --loader stream "
                                               "(default: the preset's, at most the CPUs this process may use)")


def cmd_train(a) -> None:
    from .train import TrainSpec, train
    spec = TrainSpec(config=a.config, scale=a.scale, preset=a.preset, data=a.data, out=a.out, resume=a.resume,
                     init=a.init, init_std=a.init_std, init_from=a.init_from, lr=a.lr, epochs=a.epochs,
                     batch=a.batch, width=a.width, max_per_class=a.max_per_class, seed=a.seed, amp=a.amp,
                     progress=not a.no_progress, stop_after=a.stop_after, loader=a.loader, workers=a.workers)
    print(train(spec))


def cmd_chain(a) -> None:
    if a.gpus_per_net:
        from .node import run_on_node
        passed = [f"--{k.replace('_', '-')}={v}" for k, v in (("preset", a.preset), ("runs", a.runs), ("seed", a.seed),
                  ("data", a.data), ("precision", a.amp), ("batch", a.batch), ("width", a.width),
                  ("max_per_class", a.max_per_class), ("loader", a.loader), ("workers", a.workers)) if v is not None]
        from .data import data_root, list_images
        images = a.train_images or len(list_images(data_root(a.data) / "train")[0])
        for path in run_on_node(a.preset, a.runs, a.seed, a.only, a.gpus_per_net, a.devices, passed,
                                train_images=images, max_per_class=a.max_per_class):
            print(path)
        return
    from .chain import build_chain
    for path in build_chain(a.preset, a.data, a.runs, seed=a.seed, only=a.only, max_per_class=a.max_per_class,
                            progress=not a.no_progress, batch=a.batch, width=a.width, amp=a.amp,
                            loader=a.loader, workers=a.workers):
        print(path)


def cmd_eval(a) -> None:
    from .evaluate import eval_command
    eval_command(a)


def cmd_export(a) -> None:
    from .checkpoint import export_state_dict, load_training_checkpoint
    from .io import atomic_torch_save
    ckpt = load_training_checkpoint(a.checkpoint)
    atomic_torch_save(export_state_dict(ckpt), a.out)
    print(a.out)


def cmd_configs(a) -> None:
    from .configs import CONFIGS
    for name, layers in CONFIGS.items():
        print(f"{name:6s} {layers}")


def main(argv=None) -> int:
    parser = Parser(prog="python -m vgg", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    t = sub.add_parser("train", help="train one net (Sect. 3.1)")
    t.add_argument("--config", required=True, help="A, A-LRN, B, B-5x5, C, D, E")
    t.add_argument("--scale", default="256", help="training scale in the paper's pixels: 256, 384 or 256-512")
    t.add_argument("--out", help="checkpoint path (default runs/<preset>/<config>_S<scale>.pt)")
    t.add_argument("--resume", nargs="?", const="auto", help="continue --out (or the given checkpoint)")
    t.add_argument("--init", choices=["normal", "glorot"], help="random init (default: the preset's)")
    t.add_argument("--init-std", type=float, default=0.01, help="std of --init normal (paper: 0.01)")
    t.add_argument("--init-from", help="net A checkpoint (partial init) or same-config one (fine-tune)")
    t.add_argument("--lr", type=float)
    t.add_argument("--epochs", type=int)
    t.add_argument("--stop-after", type=int, help="stop after this many epochs (resume later)")
    t.add_argument("--no-progress", action="store_true")
    add_common(t)
    t.set_defaults(func=cmd_train)

    c = sub.add_parser("chain", help="train the checkpoints Table 3 needs, in the paper's order")
    c.add_argument("--runs", default="runs", help="checkpoint folder (default runs/)")
    c.add_argument("--only", nargs="*", help="net names to build (with what they need), e.g. D_S256-512")
    c.add_argument("--no-progress", action="store_true")
    c.add_argument("--gpus-per-net", type=int, help="train independent nets at the same time, each on its own "
                   "group of this many devices (torchrun per net; the critical path first)")
    c.add_argument("--devices", help="with --gpus-per-net: GPU ids (0,1,2,3; default all visible) or cpu:N "
                                     "(N CPU processes)")
    c.add_argument("--train-images", type=int, help="with --gpus-per-net: training images per epoch, for the "
                                                    "estimates (default: those of --data)")
    add_common(c)
    c.set_defaults(func=cmd_chain)

    e = sub.add_parser("eval", help="evaluate a checkpoint or torchvision weights (Sect. 3.2)")
    e.add_argument("--checkpoint", help="a vgg-repro training checkpoint")
    e.add_argument("--weights", help="a plain state dict, e.g. torchvision's vgg16 weights")
    e.add_argument("--config", help="config of --weights (A, B, D, E for torchvision)")
    e.add_argument("--method", default="dense", help="dense | multi-crop | multi-crop & dense | center-crop")
    e.add_argument("--scales", help="test scales Q in the paper's pixels, e.g. 256,384,512 (default: Table 3's)")
    e.add_argument("--limit", type=int, help="evaluate the first N validation images only")
    add_common(e)
    e.set_defaults(func=cmd_eval, preset=None)  # a checkpoint's own preset; 'paper' for --weights

    x = sub.add_parser("export", help="write a checkpoint's weights as a torchvision-compatible state dict")
    x.add_argument("checkpoint")
    x.add_argument("out")
    x.set_defaults(func=cmd_export)

    sub.add_parser("configs", help="print Table 1").set_defaults(func=cmd_configs)

    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (UserError, Divergence) as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
