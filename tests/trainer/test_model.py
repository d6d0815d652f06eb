import pytest
import torch

from trainer.model import GPT, ModelConfig, linear_cross_entropy
from trainer.params import count_params


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
    logits, none = m(idx)
    assert logits.shape == (3, 17, 64) and none is None
    no_logits, loss = m(idx, torch.randint(0, 64, (3, 17)))
    assert no_logits is None  # the loss path never builds the full logits
    assert loss.shape == () and torch.isfinite(loss)
    # an untrained model is close to uniform
    assert abs(loss.item() - torch.log(torch.tensor(64.0)).item()) < 0.5


@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
def test_chunked_linear_cross_entropy_matches_the_plain_path(chunk):
    torch.manual_seed(0)
    h = torch.randn(130, 16, requires_grad=True)
    W = torch.randn(50, 16, requires_grad=True)
    t = torch.randint(0, 50, (130,))
    loss = linear_cross_entropy(h, W, t, "mean", chunk=chunk)
    gh, gW = torch.autograd.grad(2.0 * loss, (h, W))
    ref = torch.nn.functional.cross_entropy(h @ W.T, t)
    rh, rW = torch.autograd.grad(2.0 * ref, (h, W))
    torch.testing.assert_close(loss, ref)
    torch.testing.assert_close(gh, rh)
    torch.testing.assert_close(gW, rW)
    s = linear_cross_entropy(h, W, t, "sum", chunk=chunk)
    torch.testing.assert_close(s, ref * 130)


def test_chunked_loss_under_bf16_autocast_is_close_to_fp32():
    m = tiny()
    idx = torch.randint(0, 64, (2, 33))
    _, ref = m(idx[:, :-1], idx[:, 1:])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, low = m(idx[:, :-1], idx[:, 1:])
    assert low.dtype == torch.float32 and abs(low.item() - ref.item()) < 0.05


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
    idx = torch.randint(0, 32, (2, 9))  # tokens 32..63 never appear as inputs or targets
    _, loss = m(idx[:, :-1], idx[:, 1:])
    loss.backward()
    g = m.embed.weight.grad
    assert g is not None
    # their rows get gradient only through the softmax of the LM head: the head is the embedding
    assert g[32:].abs().sum() > 0


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
        c = m.cfg
        analytic = count_params(
            d_model=c.d_model,
            n_layers=c.n_layers,
            ffn_hidden=c.ffn_hidden,
            vocab_size=c.vocab_size,
            tied_lm_head=c.tied_lm_head,
        )
        assert m.param_counts() == analytic


def test_rejects_heads_that_do_not_divide():
    with pytest.raises(ValueError, match="n_heads"):
        GPT(ModelConfig(vocab_size=64, d_model=30, n_layers=1, n_heads=4, ffn_hidden=8))


def test_sequence_longer_than_rope_cache_is_refused():
    m = tiny()
    with pytest.raises(ValueError, match="max_seq_len"):
        m(torch.zeros(1, 65, dtype=torch.long))


def _loss_and_grads(model: GPT, x, y):
    model.zero_grad(set_to_none=True)
    _, loss = model(x, y)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("plan", ["full", "big-chunks"])
def test_cuda_loss_paths_match_the_cpu_path_on_cpu_tensors(plan):
    """The CUDA loss plans (full logits; chunks of >= 8192 rows) forced on CPU tensors give the
    CPU path's loss and gradients."""
    from trainer.model import MIN_CUDA_CHUNK_ROWS, LossPlan

    torch.manual_seed(0)
    model = tiny(tied=True).double()
    rows = 2 * MIN_CUDA_CHUNK_ROWS + 100  # three chunks, the last one short
    x = torch.randint(0, model.cfg.vocab_size, (rows // 50, 50))
    y = torch.randint(0, model.cfg.vocab_size, (rows // 50, 50))
    ref_loss, ref_grads = _loss_and_grads(model, x, y)  # the CPU plan: chunks of 128 rows
    assert model.loss_plan == LossPlan()
    vocab = model.cfg.vocab_size
    if plan == "full":  # budget for every row: one cross-entropy over the full logits
        model.loss_plan = LossPlan.for_device(torch.device("cuda"), vocab, budget_bytes=1 << 40)
        assert model.loss_plan.full_rows >= x.numel()
    else:  # budget for 10 rows: chunks, but never fewer than 8192 rows
        model.loss_plan = LossPlan.for_device(
            torch.device("cuda"), vocab, budget_bytes=10 * vocab * 10
        )
        assert model.loss_plan == LossPlan(chunk=MIN_CUDA_CHUNK_ROWS, full_rows=10)
    loss, grads = _loss_and_grads(model, x, y)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-10, atol=1e-10)
    for name, g in ref_grads.items():
        torch.testing.assert_close(grads[name], g, rtol=1e-9, atol=1e-12, msg=name)


def test_loss_plan_is_chosen_by_device_and_budget():
    from trainer.model import CPU_CHUNK_ROWS, LossPlan

    assert LossPlan.for_device(torch.device("cpu"), 16000) == LossPlan(CPU_CHUNK_ROWS, 0)
    # 32,768 rows of a 16k vocabulary: full logits need ~5.2 GB
    roomy = LossPlan.for_device(torch.device("cuda"), 16000, budget_bytes=8 << 30)
    assert roomy.full_rows >= 32768
    tight = LossPlan.for_device(torch.device("cuda"), 16000, budget_bytes=1 << 30)
    assert tight.full_rows < 32768 and tight.chunk >= 8192
    assert LossPlan.for_device(torch.device("cuda"), 16000, chunk=512) == LossPlan(512, 0)


def test_determinism_defaults_per_device():
    from trainer.runtime import is_deterministic

    assert is_deterministic(None, torch.device("cpu")) is True
    assert is_deterministic(None, torch.device("cuda")) is False
    assert is_deterministic(True, torch.device("cuda")) is True


def test_kv_cache_decoding_gives_the_full_forward_logits():
    """Issue 14: decode latency is measured with a KV cache; its logits are the model's."""
    from trainer.model import KVCache

    model = tiny().eval()
    x = torch.randint(0, model.cfg.vocab_size, (1, 20))
    full, _ = model(x)
    cache = KVCache(model.cfg, 1, 20, torch.float32, torch.device("cpu"))
    step = [model.next_logits(x[:, :12], cache)]  # prefill 12, then one token at a time
    step += [model.next_logits(x[:, t : t + 1], cache) for t in range(12, 20)]
    for i, t in enumerate(range(11, 20)):
        torch.testing.assert_close(step[i], full[:, t], rtol=1e-5, atol=1e-5)
    assert cache.len == 20


def test_inference_memory_counts_tensors_not_the_process():
    from trainer.evaluation.profile import inference_memory

    model = tiny()
    m = inference_memory(model, torch.device("cpu"), context=32)
    weights = sum(p.nbytes for p in model.parameters())
    assert m["kind"] == "cpu_tensor_bytes" and m["weights"] == weights
    assert m["kv_cache"] == 2 * 2 * 1 * 33 * 32 * 4  # layers x (k, v) x B x T x d x fp32
    assert m["bytes"] == weights + m["kv_cache"] + m["activation"] + m["logits"]
    assert m["bytes"] < 10 * weights  # not an RSS of hundreds of MB


def test_dropout_acts_in_training_only_and_defaults_off():
    torch.manual_seed(0)
    off = tiny()
    x = torch.randint(0, 64, (2, 16))
    assert off.cfg.dropout == 0.0
    a, b = off.train()(x)[0], off(x)[0]
    assert torch.equal(a, b)  # no dropout by default: training passes are deterministic
    drop = tiny(dropout=0.3)
    drop.load_state_dict(off.state_dict())
    assert not torch.equal(drop.train()(x)[0], drop(x)[0])
    assert torch.equal(drop.eval()(x)[0], off.eval()(x)[0])  # evaluation: no dropout


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rope_in_one_pass_is_bit_for_bit_the_split_rotation(dtype):
    """Issue 29 (eager at small batches is launch-bound): q and k rotate together as
    x * cos + (-x2, x1) * sin over full-width tables, which must equal the split form
    (x1 cos - x2 sin, x1 sin + x2 cos) exactly, so CPU runs stay bit-exact."""
    from trainer.model import apply_rope, rope_cache

    T, D = 16, 8
    cos, sin = rope_cache(T, D, 10_000.0)
    x = torch.randn(2, 3, 4, T, D).to(dtype)
    half_cos, half_sin = cos[:, : D // 2].to(dtype), sin[:, : D // 2].to(dtype)
    x1, x2 = x.chunk(2, dim=-1)
    split = torch.cat((x1 * half_cos - x2 * half_sin, x1 * half_sin + x2 * half_cos), dim=-1)
    assert torch.equal(apply_rope(x, cos, sin), split)
    assert torch.equal(cos[:, : D // 2], cos[:, D // 2 :])  # each half's angle repeated
