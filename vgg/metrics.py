"""Top-k error, the paper's two measures (top-1: multi-class error; top-5: ILSVRC's)."""
from __future__ import annotations

import math

import numpy as np
import torch


def topk_hits(scores, labels, k: int = 1) -> torch.Tensor:
    """Per row (bool): is the label among the k highest scores?  Ties between scores are broken
    as torch.topk breaks them, the same way for every measure (tables, paired tests)."""
    scores = torch.as_tensor(np.asarray(scores) if not torch.is_tensor(scores) else scores)
    labels = torch.as_tensor(np.asarray(labels) if not torch.is_tensor(labels) else labels)
    top = scores.topk(min(k, scores.shape[1]), dim=1).indices
    return (top == labels[:, None]).any(1)


def topk_correct(scores: torch.Tensor, labels: torch.Tensor, ks=(1, 5)) -> list[int]:
    """How many rows have their label among the k highest scores, for each k."""
    return [int(topk_hits(scores, labels, k).sum()) for k in ks]


def topk_error(scores, labels, k: int = 1) -> float:
    """Fraction of rows whose label is not among the k highest scores."""
    scores = torch.as_tensor(np.asarray(scores))
    labels = torch.as_tensor(np.asarray(labels))
    return 1.0 - topk_correct(scores, labels, (k,))[0] / len(labels)


def two_standard_errors(n: int, *errors: float) -> float:
    """Two binomial standard errors, in percentage points, of an error rate measured on n images,
    or of the difference of several such rates (treated as independent: conservative when paired)."""
    return 200 * math.sqrt(sum(p * (1 - p) for p in errors) / n)
