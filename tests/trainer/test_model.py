import pytest
import torch

from trainer.model import GPT, ModelConfig


def tiny(tied=True, **kw) -> GPT:
    torch.manual_seed(0)
    cfg = ModelConfig(
        vocab_size=64,
        d_model=32,
        n_layers=2,
        n_heads=4,
        ffn_hidden=80,
        tied_lm_head=tied,
        max_seq_len=64,
        **kw,
    )
    return GPT(cfg)


def test_shapes_and_loss():
    m = tiny()
    idx = torch.randint(0, 64, (3, 17))
    logits, loss = m(idx, torch.randint(0, 64, (3, 17)))
    assert logits.shape == (3, 17, 64)
    assert loss.shape == () and torch.isfinite(loss)
    # an untrained model is close to uniform
    assert abs(loss.item() - torch.log(torch.tensor(64.0)).item()) < 0.5


def test_causal_mask_future_tokens_never_change_earlier_logits():
    m = tiny().eval()
    a = torch.randint(0, 64, (1, 20))
    b = a.clone()
    b[0, 12:] = (b[0, 12:] + 7) % 64
    with torch.no_grad():
        la, _ = m(a)
        lb, _ = m(b)
    torch.testing.assert_close(la[0, :12], lb[0, :12], rtol=0, atol=0)
    assert not torch.allclose(la[0, 12:], lb[0, 12:])


def test_tied_head_shares_storage_and_gets_gradient():
    m = tiny(tied=True)
    assert m.head is None
    assert m.lm_weight.data_ptr() == m.embed.weight.data_ptr()
    idx = torch.randint(0, 64, (2, 9))
    # Gradient from the head alone: freeze the input path by using hidden states directly.
    h = m.hidden(idx).detach()
    loss = torch.nn.functional.cross_entropy((h @ m.lm_weight.T).view(-1, 64), idx.view(-1))
    loss.backward()
    g = m.embed.weight.grad
    assert g is not None and g.abs().sum() > 0
    # rows of tokens that never occur still get gradient through the softmax: it is the head's
    unused = torch.tensor(sorted(set(range(64)) - set(idx.view(-1).tolist())))
    assert g[unused].abs().sum() > 0


def test_untied_head_is_its_own_tensor():
    m = tiny(tied=False)
    assert m.head is not None
    assert m.lm_weight.data_ptr() != m.embed.weight.data_ptr()
    assert m.param_counts()["head"] == 64 * 32


def test_forward_backward_updates_every_parameter():
    m = tiny()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    idx = torch.randint(0, 64, (4, 16))
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    _, loss = m(idx[:, :-1], idx[:, 1:])
    loss.backward()
    for n, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), n
    opt.step()
    for n, p in m.named_parameters():
        assert not torch.equal(before[n], p), n


def test_param_counts_equal_analytic_counts():
    for tied in (True, False):
        m = tiny(tied=tied)
        assert m.param_counts() == m.analytic_counts()


def test_rejects_heads_that_do_not_divide():
    with pytest.raises(ValueError, match="n_heads"):
        GPT(ModelConfig(vocab_size=64, d_model=30, n_layers=1, n_heads=4, ffn_hidden=8))


def test_sequence_longer_than_rope_cache_is_refused():
    m = tiny()
    with pytest.raises(ValueError, match="max_seq_len"):
        m(torch.zeros(1, 65, dtype=torch.long))
