"""The paper's protocol as plain numbers, and the presets derived from it.

The ``paper`` preset is Sect. 3 verbatim (ILSVRC-2012, crop 224).  ``proxy`` is the
same protocol scaled for a 2-core CPU: every pixel size (crop, S, Q) is multiplied by
one geometry factor (32/224 for CIFAR-10's 32 px images) and rounded, conv channels
and FC units by a width multiplier, and the schedule is shortened.  ``tiny`` exists
for tests only (seconds per net); ``smoke`` runs the tables end to end on the small
CIFAR-10 sample shipped in vgg/samples/ (`make table3` with no dataset), its numbers
meaningless.  Everything else is one code path.

Scales are named in the paper's pixels everywhere ("256", "384", "256-512");
:meth:`Preset.px` converts a paper size into the preset's pixels.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from .errors import UserError

# Sect. 3.1-3.2 of the paper. The training scales (256, 384, 256-512) are the paper's tables
# (vgg/paper/table3_single_scale.csv); each lr drop divides the lr by 10 (vgg/train.py).
PAPER = {
    "crop": 224,
    "batch": 256,
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "dropout": 0.5,
    "lr": 1e-2,
    "finetune_lr": 1e-3,  # S=384 nets start from the S=256 net at lr 1e-3
    "lr_drops": 3,
    "epochs": 74,
    "pca_std": 0.1,
}


def parse_scale(scale: str | int) -> tuple[int, int]:
    """'256' -> (256, 256); '256-512' -> (256, 512).  Paper pixels."""
    text = str(scale)
    try:
        lo, _, hi = text.partition("-")
        smin, smax = int(lo), int(hi or lo)
    except ValueError:
        raise UserError(f"bad scale {text!r}: give S as an integer (256) or a jitter range Smin-Smax (256-512)")
    if smin <= 0 or smax <= 0:
        raise UserError(f"bad scale {text!r}: S must be positive")
    if smin > smax:
        raise UserError(f"bad scale {text!r}: jitter range needs Smin <= Smax")
    return smin, smax


def single_test_scale(train_scale: str) -> int:
    """Table 3: Q = S for fixed S, Q = 0.5 (Smin + Smax) for jittered S."""
    smin, smax = parse_scale(train_scale)
    return (smin + smax) // 2


def multi_test_scales(train_scale: str) -> list[int]:
    """Table 4: {S-32, S, S+32} for fixed S; {Smin, 0.5(Smin+Smax), Smax} for jittered S."""
    smin, smax = parse_scale(train_scale)
    if smin == smax:
        return [smin - 32, smin, smin + 32]
    return [smin, (smin + smax) // 2, smax]


#: Preset fields added after checkpoints and seed fingerprints were first saved, with the value every
#: earlier run had: a checkpoint without the field was trained with it, and the protocol fingerprint
#: hashes it only where a preset sets another value, so saved seed entries keep their fingerprints.
LATER_FIELDS = {"plateau_ema": 0.0, "fixed_schedule": {}, "plan_controls": False, "validate_every": 1}

#: Epochs at lr, lr / 10 and lr / 100 for every net of a stage ("S=256": from scratch and from net A;
#: "fine-tuning": S=384 from S=256 and jitter from S=384, from the fine-tuning lr): the medians of the
#: plateau rule's realised firings in the published Imagenette runs, seeds 0-2
#: (experiments/studies/fixed_schedule.py -> results/imagenette/fixed_schedule.csv), fixed before
#: the Imagewoof reproduction's first run (docs/analysis_plan.md).
FIXED_SCHEDULE = {"S=256": (24, 10, 6), "fine-tuning": (8, 7, 3)}


@dataclass(frozen=True)
class Preset:
    name: str
    crop: int                     # training crop in the preset's pixels
    width: float = 1.0            # conv channel / FC unit multiplier
    batch: int = PAPER["batch"]
    lr: float = PAPER["lr"]
    finetune_lr: float = PAPER["finetune_lr"]
    momentum: float = PAPER["momentum"]
    weight_decay: float = PAPER["weight_decay"]
    dropout: float = PAPER["dropout"]
    lr_drops: int = PAPER["lr_drops"]
    patience: int = 2             # epochs without val-accuracy gain before lr /= 10
    # Every stage (from scratch, from net A, fine-tuning) stops at the end of the epoch where the
    # plateau rule fires once more after lowering the lr this many times (the paper stopped after its
    # third drop); scratch_epochs / from_a_epochs / finetune_epochs are then caps. None: train exactly
    # those epochs.
    stop_after_drops: int | None = None
    plateau_threshold: float = 0.0  # a gain in val accuracy below this (absolute) counts as no gain
    # The rule sees val accuracy smoothed, s_t = a s_(t-1) + (1 - a) acc_t, with this a (0: the raw
    # accuracy, as every chain so far). experiments/studies/plateau_rules.py measured what it buys.
    plateau_ema: float = 0.0
    # Stage ("S=256" | "fine-tuning") -> epochs at lr, lr / 10, lr / 100, ...: a fixed schedule, the same
    # for every net of a stage, instead of the plateau rule (empty: the plateau rule).
    fixed_schedule: dict[str, tuple[int, ...]] = field(default_factory=dict)
    # The analysis plan's control nets (vgg.chain.CONTROLS) and extra rows (Tables 3, 4, 6) are made too
    plan_controls: bool = False
    # Under a fixed schedule validation decides nothing: validate every this many epochs, and the last
    validate_every: int = 1
    scratch_epochs: int = PAPER["epochs"]   # nets from random init (A, A-LRN, B-5x5)
    from_a_epochs: int = PAPER["epochs"]    # B, C, D, E initialised from net A
    finetune_epochs: int = PAPER["epochs"]  # S=384 from S=256, jitter from S=384
    scratch_init: str = "normal"  # 'normal' (N(0, 0.01)) or 'glorot'
    pca_std: float = PAPER["pca_std"]
    loader: str = "stream"        # 'stream' (torchvision decoding) or 'memory' (uint8 tensors)
    max_per_class: int | None = None  # subsample (tests only)
    multi_crop_images: int | None = None  # Tables 5-6 on this many val images (None: all); see imagenette
    workers: int = 8
    # Learning rate of a config trained from scratch where the preset's lr diverges (measured)
    lr_by_config: dict[str, float] = field(default_factory=dict)
    # Paper pixel size -> this preset's pixels, where plain scaling by ``factor`` is not used
    # (e.g. sizes rounded to multiples of 32 so that no max-pool floors; see ``imagenette``).
    sizes: dict[int, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def factor(self) -> float:
        return self.crop / PAPER["crop"]

    def px(self, paper_pixels: int) -> int:
        """A paper pixel size in this preset's pixels (the crop maps exactly): the preset's
        ``sizes`` table where it names the size, else scaled by ``factor`` and rounded."""
        paper_pixels = int(paper_pixels)
        if paper_pixels in self.sizes:
            return self.sizes[paper_pixels]
        return int(round(paper_pixels * self.factor))

    def scale_px(self, train_scale: str) -> tuple[int, int]:
        smin, smax = parse_scale(train_scale)
        return self.px(smin), self.px(smax)

    def as_dict(self) -> dict:
        return asdict(self)


# CIFAR-10 (32 px): crop 32, S = 37 / 55 / [37, 73]; conv 16..128, FC 1024.
# Schedule sized so the 13 nets of Table 3 train in well under an hour on 2 cores.
_PROXY = Preset(
    name="proxy", crop=32, width=0.25, batch=128, patience=1,
    scratch_epochs=10, from_a_epochs=10, finetune_epochs=3,
    scratch_init="glorot", loader="memory", workers=0,
    notes=["batch 128 (not 256): twice the updates in a short schedule",
           "Glorot init for nets from scratch: N(0, 0.01) does not train at 1/4 width (see init study)",
           "lr / 10 after 2 epochs without a new best val accuracy (patience 1; the paper gives none): "
           "with patience 0 one noisy epoch decided most first drops (plateau study)",
           "the same 10 epochs from scratch and from net A (the paper: 74 for every net); "
           "3 per fine-tuning stage"],
)


# Imagenette (ImageNet photographs, 224x224 copies): crop 128, so conv5 maps are 8x8 and pool5 4x4
# in training and FC6 becomes a 4x4 conv for dense evaluation. Every size is a multiple of 32 px
# (one pool5 cell), as all of the paper's are, so no max-pool floors and dense evaluation sees the
# whole image: S = 160 / 224 / [160, 288] (S/crop 1.25 / 1.75 / [1.25, 2.25]; the paper's 1.14 /
# 1.71 / [1.14, 2.29]); Table 4's Q +-32 stays one pool5 cell, as in the paper.
IMAGENETTE_SIZES = {224: 128, 256: 160, 288: 192, 352: 192, 384: 224, 416: 256, 512: 288}

# crop 160 (the imagenette160 diagnostic): paper x 5/7 rounded to multiples of 32, Table 4's +-32 one cell.
IMAGENETTE160_SIZES = {224: 160, 256: 192, 288: 224, 352: 256, 384: 288, 416: 320, 512: 352}

_IMAGENETTE = replace(
    _PROXY, name="imagenette", crop=128, sizes=IMAGENETTE_SIZES, batch=64,
    scratch_epochs=50, from_a_epochs=50, finetune_epochs=20, patience=2, plateau_threshold=0.0,
    stop_after_drops=2, lr_drops=2, multi_crop_images=1000, lr_by_config={"B-5x5": 2.5e-3},
    notes=["Imagenette (10 ILSVRC-2012 classes, 224x224 copies of ImageNet photographs)",
           "crop 128; every size a multiple of 32 px: S = 160 / 224 / [160, 288], Q alike "
           "(paper -> here: 224->128, 256->160, 288->192, 352->192, 384->224, 416->256, 512->288)",
           "batch 64 (not 256), lr 1e-2: 148 updates per epoch on 9,469 images",
           "Glorot init for nets from scratch: N(0, 0.01) does not train at 1/4 width (init study)",
           "B-5x5 (the shallow control) at lr 2.5e-3, the largest lr / 2^k that trains with seeds 0, 1 and 2",
           "every stage trains until the plateau rule (lr / 10 after 3 epochs without a new best val "
           "accuracy, patience 2) has lowered the lr twice and fires again (the paper stopped after its third "
           "drop, 74 epochs): at most 50 epochs from scratch and from net A, 20 per fine-tuning stage (S=384 "
           "and jitter, from lr 1e-3)",
           "patience 2 (CIFAR-10 proxy: 1): with patience 1 epoch-to-epoch noise decided the first lr drop "
           "in a quarter of the plateau study's replays (results/imagenette/README.md has the measurements)",
           "Tables 5-6 (150-crop multi-crop) on 1,000 of the 3,925 val images, every 4th image "
           "(stratified by class); Tables 3-4 on all"],
)


# Imagewoof 2 (10 ILSVRC-2012 dog breeds, fast.ai's copy with the shorter side 320 px, aspect ratios
# kept): the imagenette geometry (every size <= 288 px, so no image is upsampled), the fixed schedule
# of the analysis plan (docs/analysis_plan.md) instead of the plateau rule, three seeds of every net.
_IMAGEWOOF = replace(
    _IMAGENETTE, name="imagewoof", fixed_schedule=FIXED_SCHEDULE, stop_after_drops=None, plan_controls=True,
    validate_every=5,
    scratch_epochs=sum(FIXED_SCHEDULE["S=256"]), from_a_epochs=sum(FIXED_SCHEDULE["S=256"]),
    finetune_epochs=sum(FIXED_SCHEDULE["fine-tuning"]),
    notes=["Imagewoof 2 (10 ILSVRC-2012 dog breeds; fast.ai's imagewoof2-320: shorter side 320 px, aspect "
           "ratios kept); 9,025 train / 3,929 val images",
           "crop 128; every size a multiple of 32 px as in the imagenette preset: S = 160 / 224 / [160, 288], Q "
           "alike; the largest (288 px) is below the files' 320 px, so no image is upsampled",
           "batch 64 (not 256), lr 1e-2; Glorot init for nets from scratch; B-5x5 at lr 2.5e-3 (imagenette's)",
           "a fixed schedule instead of the plateau rule (with 3,929 val images the rule fires by chance): "
           "S=256 stage (from scratch, from net A) 24 epochs at lr, 10 at lr/10, 6 at lr/100; fine-tuning (S=384, "
           "jitter, from lr 1e-3) 8 + 7 + 3; the medians of the rule's firings in the published Imagenette runs",
           "Tables 5-6 (150-crop multi-crop) on 1,000 of the val images, every 4th (stratified by class)",
           "validation every 5th epoch and the last (the fixed schedule does not use it): the training curves"])

# The reproduction's protocol (fixed schedule) on Imagenette's 224x224 copies: the check, on data that is
# here, that the fixed schedule brings Table 3's seed sd to its goal, and the LRN and centre-crop
# explanations of the published Imagenette opposites on nets trained without schedule luck.
_IMAGENETTE_FIXED = replace(
    _IMAGEWOOF, name="imagenette_fixed", plan_controls=False,
    notes=[*_IMAGENETTE.notes[:5],
           "a fixed schedule instead of the plateau rule (with 3,925 val images the rule fires by chance): the "
           "imagewoof preset's (S=256 stage 24 + 10 + 6 epochs, fine-tuning 8 + 7 + 3)", _IMAGEWOOF.notes[5],
           "Imagenette's copies are 224 px: S=384 (224 px) is their size, jitter up to 288 px upsamples"])

_TINY = Preset(name="tiny", crop=32, width=0.0625, batch=32, patience=0, scratch_epochs=1, from_a_epochs=1,
               finetune_epochs=1, scratch_init="glorot", loader="memory", workers=0, max_per_class=20)

PRESETS: dict[str, Preset] = {
    "paper": Preset(name="paper", crop=224),
    "proxy": _PROXY,
    "imagenette": _IMAGENETTE,
    "imagewoof": _IMAGEWOOF,
    "imagenette_fixed": _IMAGENETTE_FIXED,
    # Diagnostic: the proxy at twice the geometry (CIFAR-10 upsampled; crop 64, S = 73 / 110 /
    # [73, 146], conv5 4x4 in training). Only for experiments/studies/dense_geometry.py: does dense
    # evaluation's penalty off the training geometry shrink as the conv5 map grows?
    "proxy64": replace(_PROXY, name="proxy64", crop=64,
                       notes=["the proxy preset with crop 64 instead of 32 (dense-geometry diagnostic)"]),
    # Diagnostic: the imagenette preset at crop 160 (conv5 10x10, pool5 5x5 in training; FC6 a 5x5 conv
    # in the dense head), sizes multiples of 32 as there (paper x 5/7, rounded; S = 192 / 288 /
    # [192, 352]). Only for experiments/studies/crop_study.py: does a larger crop shrink the dense
    # penalty?
    # Imagenette's copies are 224 px, so every S above 224 upsamples them (S=384 -> 288 px: 1.3x).
    "imagenette160": replace(
        _IMAGENETTE, name="imagenette160", crop=160, sizes=IMAGENETTE160_SIZES,
        notes=["the imagenette preset with crop 160 instead of 128 (dense-geometry diagnostic; "
               "paper -> here: 224->160, 256->192, 288->224, 352->256, 384->288, 416->320, 512->352)"]),
    "tiny": _TINY,
    # The reproduction's protocol (fixed schedule, the plan's controls) at the tiny preset's size: tests only
    "tiny_plan": replace(
        _TINY, name="tiny_plan", plan_controls=True, fixed_schedule={"S=256": (1, 1), "fine-tuning": (1,)},
        lr_by_config={"B-5x5": 2.5e-3}),
    # The proxy's geometry at half its width and a few epochs, for vgg/samples/cifar10-sample
    # (10 classes x 50 train + 20 val images): the whole Table 3 chain in under a minute (make table3).
    "smoke": replace(
        _PROXY, name="smoke", width=0.125, batch=32, scratch_epochs=2, from_a_epochs=1, finetune_epochs=1,
        notes=["smoke test on the 700-image CIFAR-10 sample in vgg/samples/: checks that the pipeline runs; "
               "its errors mean nothing"]),
}


LOADERS = ("memory", "stream")


def get_preset(name: str, **overrides) -> Preset:
    """A preset by name, with overrides (None = keep).  DataLoader workers are capped at the CPUs
    this process may use unless ``workers`` is given explicitly."""
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if overrides.get("loader") not in (None, *LOADERS):
        raise UserError(f"unknown loader {overrides['loader']!r}; valid loaders: {', '.join(LOADERS)}")
    if "workers" in overrides and overrides["workers"] < 0:
        raise UserError(f"--workers must be 0 or more, got {overrides['workers']}")
    preset = replace(PRESETS[name], **overrides)
    if "workers" not in overrides:
        from .runtime import usable_cpus
        preset = replace(preset, workers=min(preset.workers, usable_cpus()))
    return preset
