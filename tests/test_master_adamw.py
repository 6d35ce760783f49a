"""fp32 master weights for the bf16 training step: small updates survive, resume is exact."""

import torch

from prunerec_utils.master_adamw import MasterWeightAdamW


def _bf16_start(seed=0, n=256):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, generator=g) * 0.1 + 1.0).bfloat16()  # |w| ≈ 1: rounding step 2⁻⁸..2⁻⁷


def _grads(steps, n=256, drift=0.0):
    """Random gradients; ``drift`` > 0 gives them one sign, so every weight moves the same way."""
    gs = [torch.randn(n, generator=torch.Generator().manual_seed(100 + i)) for i in range(steps)]
    return [g.abs() + drift for g in gs] if drift else gs


def _run(param, opt, grads):
    for g in grads:
        param.grad = g.to(param.dtype)
        opt.step()
        opt.zero_grad()


def test_updates_below_the_bf16_rounding_step_accumulate_as_in_fp32():
    """lr 1e-4 moves each weight ≈ 1e-4 per step, far below bf16's step near 1 (≈ 4e-3): a plain
    bf16 AdamW never moves; with masters the bf16 weights equal fp32 AdamW's, rounded."""
    start, grads = _bf16_start(), _grads(100, drift=0.1)  # ≈ 1e-2 in all: a few rounding steps
    fp32 = torch.nn.Parameter(start.float())
    ours = torch.nn.Parameter(start.clone())
    plain = torch.nn.Parameter(start.clone())
    _run(fp32, torch.optim.AdamW([fp32], lr=1e-4, weight_decay=0.01), grads)
    opt = MasterWeightAdamW([ours], lr=1e-4, weight_decay=0.01)
    _run(ours, opt, grads)
    _run(plain, torch.optim.AdamW([plain], lr=1e-4, weight_decay=0.01), grads)
    assert torch.equal(plain.detach(), start)  # what the masters are for
    assert ours.dtype == torch.bfloat16 and opt.masters[0][0].dtype == torch.float32
    assert torch.allclose(opt.masters[0][0], fp32.detach(), atol=1e-6)
    assert (ours.detach().float() != start.float()).float().mean() > 0.5
    assert torch.equal(ours.detach(), fp32.detach().bfloat16())


def test_learning_rate_set_on_its_groups_reaches_the_update():
    """The Trainer's scheduler writes the lr into this optimizer's groups; a 0 lr must freeze."""
    p = torch.nn.Parameter(_bf16_start())
    opt = MasterWeightAdamW([p], lr=1e-2)
    opt.param_groups[0]["lr"] = 0.0
    _run(p, opt, _grads(3))
    assert torch.equal(p.detach(), _bf16_start())


def test_state_dict_round_trip_resumes_bit_identically():
    grads = _grads(20)
    straight = torch.nn.Parameter(_bf16_start())
    opt = MasterWeightAdamW([straight], lr=3e-3)
    _run(straight, opt, grads)

    first = torch.nn.Parameter(_bf16_start())
    opt_a = MasterWeightAdamW([first], lr=3e-3)
    _run(first, opt_a, grads[:10])
    saved = opt_a.state_dict()
    resumed = torch.nn.Parameter(first.detach().clone())  # what a checkpoint's bf16 weights hold
    opt_b = MasterWeightAdamW([resumed], lr=3e-3)
    opt_b.load_state_dict(saved)
    _run(resumed, opt_b, grads[10:])
    assert torch.equal(resumed.detach(), straight.detach())
    assert torch.equal(opt_b.masters[0][0], opt.masters[0][0])  # the fp32 values, not the rounded ones


def test_parameters_without_gradients_are_left_alone():
    a, b = torch.nn.Parameter(_bf16_start(1)), torch.nn.Parameter(_bf16_start(2))
    opt = MasterWeightAdamW([a, b], lr=1e-2)
    a.grad = torch.ones_like(a)
    opt.step()
    assert not torch.equal(a.detach(), _bf16_start(1)) and torch.equal(b.detach(), _bf16_start(2))
