"""Worker for test_ddp: one DDP step (gloo, CPU) of the training code on a fixed global batch."""
import os
import sys

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from vgg.data import fraction_of  # noqa: E402
from vgg.model import VGG  # noqa: E402
from vgg.protocol import get_preset  # noqa: E402
from vgg.train import make_optimizer, setup_distributed, train_step  # noqa: E402


def fixed_batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(8, 3, 32, 32, generator=g), torch.randint(0, 10, (8,), generator=g)


def fresh_model():
    torch.manual_seed(0)
    return VGG("A", num_classes=10, width=0.125, crop_size=32, dropout=0.0)


if __name__ == "__main__":
    torch.set_num_threads(1)
    rank, world, _ = setup_distributed()
    model = fresh_model()
    net = torch.nn.parallel.DistributedDataParallel(model)
    opt = make_optimizer(model, get_preset("proxy"), 0.01)
    x, y = fixed_batch()
    part = fraction_of(len(y), rank, world)
    train_step(net, opt, x[part], y[part], amp=False)
    if rank == 0:
        torch.save(model.state_dict(), sys.argv[1])
    dist.destroy_process_group()
