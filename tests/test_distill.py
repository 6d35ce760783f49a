"""Knowledge distillation (eq. 13): the loss's limits and a short resumable run."""

import torch

from prunerec_utils.method.distill import kd_loss
from prunerec_utils.prompts import IGNORE


def test_kd_loss_limits():
    torch.manual_seed(0)
    s, t = torch.randn(2, 5, 11), torch.randn(2, 5, 11)
    y = torch.randint(0, 11, (2, 5))
    y[0, :2] = IGNORE
    ce = torch.nn.functional.cross_entropy(s.reshape(-1, 11), y.reshape(-1), ignore_index=IGNORE)
    assert torch.isclose(kd_loss(s, t, y, 0.0), ce)  # λ = 0: plain cross-entropy
    assert kd_loss(s, s, y, 1.0).abs() < 1e-6  # λ = 1 and student = teacher: zero
    p, q = t.log_softmax(-1), s.log_softmax(-1)
    kl = (p.exp() * (p - q)).sum(-1)[y != IGNORE].mean()
    assert torch.isclose(kd_loss(s, t, y, 1.0), kl)
    assert torch.isclose(kd_loss(s, t, y, 0.8), 0.8 * kl + 0.2 * ce)
