"""Row-sparse Adam: Adam's steps on the rows it is given, nothing on the others."""
import pytest
import torch

from dsr_backend.row_adam import RowAdam


def test_rows_updated_every_step_follow_torch_adam_and_the_others_do_not_move():
    generator = torch.Generator().manual_seed(0)
    ours = torch.randn(6, 4, 3, generator=generator)
    theirs = ours[:4].clone().requires_grad_()
    untouched = ours[4:].clone()
    optimizer, reference = RowAdam([ours], betas=(0.8, 0.99), eps=1e-6), torch.optim.Adam([theirs], lr=0.05,
                                                                                         betas=(0.8, 0.99), eps=1e-6)
    for _ in range(15):
        grad = torch.randn(4, 4, 3, generator=generator)
        optimizer.step(torch.arange(4), [grad], lr=0.05)
        theirs.grad = grad
        reference.step()
    torch.testing.assert_close(ours[:4], theirs.detach())
    assert torch.equal(ours[4:], untouched)
    assert optimizer.updates.tolist() == [15, 15, 15, 15, 0, 0]


def test_each_row_counts_its_own_updates_for_the_bias_correction():
    late = torch.zeros(3, 2)
    optimizer = RowAdam([late])
    optimizer.step(torch.tensor([0]), [torch.ones(1, 2)], lr=0.1)
    optimizer.step(torch.tensor([2]), [torch.ones(1, 2)], lr=0.1)
    # a row's first update is Adam's first step wherever it comes: lr times the sign of the gradient
    torch.testing.assert_close(late[[0, 2]], torch.full((2, 2), -0.1), rtol=1e-6, atol=1e-6)
    assert torch.equal(late[1], torch.zeros(2))


def test_state_round_trip_and_a_clear_error_for_uneven_tensors():
    tensor = torch.zeros(3, 2)
    optimizer = RowAdam([tensor])
    optimizer.step(torch.tensor([1]), [torch.ones(1, 2)], lr=0.1)
    copy = RowAdam([tensor.clone()])
    copy.load_state_dict(optimizer.state_dict())
    assert torch.equal(copy.updates, optimizer.updates) and torch.equal(copy.exp_avg_sq[0], optimizer.exp_avg_sq[0])
    with pytest.raises(ValueError, match="same number of rows"):
        RowAdam([torch.zeros(3, 2), torch.zeros(4, 2)])
