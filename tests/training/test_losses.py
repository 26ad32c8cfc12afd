import torch
from torch.nn import functional as F

from tformer.training.losses import IGNORE_INDEX, nll_sum, token_cross_entropy


def test_ignored_positions_change_nothing():
    torch.manual_seed(0)
    logits, labels = torch.randn(2, 5, 7), torch.randint(0, 7, (2, 5))
    padded = labels.clone()
    padded[:, 3:] = IGNORE_INDEX
    garbage = logits.clone()
    garbage[:, 3:] = 100.0  # whatever the model says at padding
    assert torch.equal(
        token_cross_entropy(logits, padded, 0.1, pad_token_id=0),
        token_cross_entropy(garbage, padded, 0.1, pad_token_id=0),
    )
    assert torch.allclose(
        token_cross_entropy(logits, padded), token_cross_entropy(logits[:, :3], labels[:, :3])
    )


def test_padding_aware_label_smoothing_gives_the_pad_class_no_mass():
    torch.manual_seed(0)
    V, pad, eps = 6, 0, 0.2
    logits, labels = torch.randn(4, V), torch.tensor([1, 2, 3, 5])
    target = torch.full((4, V), eps / (V - 1))
    target[:, pad] = 0.0
    target[torch.arange(4), labels] += 1 - eps
    expected = -(target * F.log_softmax(logits, -1)).sum(-1).mean()
    assert torch.allclose(token_cross_entropy(logits, labels, eps, pad_token_id=pad), expected)
    # without a pad id it is torch's uniform smoothing
    assert torch.allclose(
        token_cross_entropy(logits, labels, eps), F.cross_entropy(logits, labels, label_smoothing=eps)
    )


def test_nll_sum_counts_only_real_labels():
    logits = torch.zeros(1, 4, 5)
    labels = torch.tensor([[1, 2, IGNORE_INDEX, IGNORE_INDEX]])
    total, count = nll_sum(logits, labels)
    assert count == 2 and abs(total - 2 * torch.log(torch.tensor(5.0)).item()) < 1e-5
