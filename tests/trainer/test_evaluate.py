import math

import numpy as np
import pytest
import torch

from trainer.evaluation.perplexity import evaluate_split, perplexities, split_nll
from trainer.model import GPT, ModelConfig


class Uniform(torch.nn.Module):
    """Every token has probability 1/V: NLL per token is exactly log V."""

    def __init__(self, V):
        super().__init__()
        self.V = V
        self.calls = []

    def forward(self, x, y=None, reduction="mean"):
        self.calls.append(tuple(x.shape))
        logits = torch.zeros(*x.shape, self.V)
        loss = torch.nn.functional.cross_entropy(
            logits.view(-1, self.V), y.reshape(-1), reduction=reduction
        )
        return logits, loss


@pytest.mark.parametrize("n", [1, 63, 64, 65, 1000])
def test_every_token_is_scored_exactly_once(n):
    m = Uniform(50)
    tokens = np.arange(n) % 50
    total, scored = split_nll(m, tokens, 64, torch.device("cpu"), batch_size=4)
    assert scored == n
    assert total == pytest.approx(n * math.log(50))
    assert all(t <= 64 for _, t in m.calls)


def test_batching_does_not_change_the_result():
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=64, d_model=32, n_layers=1, n_heads=4, ffn_hidden=64))
    tokens = np.random.default_rng(0).integers(0, 64, 700)
    a, _ = split_nll(model, tokens, 64, torch.device("cpu"), batch_size=1)
    b, _ = split_nll(model, tokens, 64, torch.device("cpu"), batch_size=8)
    assert a == pytest.approx(b, rel=1e-5)


def test_perplexity_conventions():
    p = perplexities(1000.0, 500, word_level_tokens=400, n_bytes=2000)
    assert p["token_ppl"] == pytest.approx(math.exp(2.0))
    assert p["word_ppl"] == pytest.approx(math.exp(2.5))
    assert p["bits_per_byte"] == pytest.approx(1000 / (math.log(2) * 2000))


def test_capped_eval_scales_words_and_bytes():
    m = Uniform(10)
    stats = {"tokens": 1000, "word_level_tokens": 800, "bytes": 4000}
    res = evaluate_split(
        m, np.zeros(1000, dtype=np.int64), stats, 50, torch.device("cpu"), max_tokens=250
    )
    assert res["partial"] and res["scored_tokens"] == 250
    assert res["word_level_tokens"] == 200 and res["bytes"] == 1000


def test_strided_eval_scores_every_token_once_with_more_context(tokenized_dir):
    """Issue 14: context reset every seq_len. Strided windows score each token exactly once;
    with stride = seq_len they are the non-overlapping windows, to the bit."""
    import numpy as np
    import torch

    from trainer.evaluation.perplexity import split_nll, strided_nll
    from trainer.model import GPT, ModelConfig
    from trainer.prep.tokenizer import load_tokens

    torch.manual_seed(0)
    model = GPT(ModelConfig(512, 32, 2, 4, 80, True, 64))
    tokens = np.asarray(load_tokens(tokenized_dir, "valid")[:1024])  # 16 whole windows
    cpu = torch.device("cpu")
    plain, n = split_nll(model, tokens, 64, cpu)
    same, m = strided_nll(model, tokens, 64, 64, cpu)
    assert m == n == len(tokens) and same == pytest.approx(plain, rel=1e-12)
    strided, k = strided_nll(model, tokens, 64, 16, cpu)
    assert k == len(tokens) and strided != plain
