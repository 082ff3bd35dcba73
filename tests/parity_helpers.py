"""Tolerance policy and reference-model builders shared by the model tests.

Tolerance policy (never loosened; if a comparison fails, find the cause):
- parity with HF `transformers` PyTorch: log-probabilities (log-softmax of the
  logits) on non-pad positions, float32, atol = rtol = 1e-4;
- self-consistency (sharded vs one device, KV cache vs full forward):
  atol = rtol = 1e-5 on the same quantity.
"""

from __future__ import annotations

import pathlib

import numpy as np

PARITY_TOL = dict(atol=1e-4, rtol=1e-4)
SELF_TOL = dict(atol=1e-5, rtol=1e-5)


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    m = x.max(-1, keepdims=True)
    return (x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))).astype(np.float32)


def assert_logprobs_close(actual, expected, mask, tol) -> float:
    """Compares log-softmax of two `[..., T, V]` logit arrays where `mask` `[..., T]`.

    Returns the largest absolute difference, for tests that report it.
    """
    a = log_softmax(actual)[np.asarray(mask, bool)]
    e = log_softmax(expected)[np.asarray(mask, bool)]
    np.testing.assert_allclose(a, e, **tol)
    return float(np.abs(a - e).max())


# Random tiny HF configs of each T5 family. head_dim x heads != d_model on purpose.
T5_FAMILIES = {
    # T5 v1.0: ReLU MLP, tied embedding with the d_model**-0.5 output scaling.
    "t5_v1_0": dict(feed_forward_proj="relu", tie_word_embeddings=True),
    # T5 v1.1 / Flan-T5: gated GELU, untied lm_head.
    "t5_v1_1": dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False),
    # T0 / T0++: T5 v1.1 LM-adapted; same architecture, deeper decoder here.
    "t0": dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False, num_decoder_layers=3),
}


def make_hf_t5(directory: pathlib.Path, seed: int = 0, **overrides):
    """Builds a random HF `T5ForConditionalGeneration`, saves it with `save_pretrained`.

    Returns the (eval-mode) torch model.
    """
    import torch
    import transformers

    torch.manual_seed(seed)
    kwargs = dict(
        vocab_size=120,
        d_model=20,
        d_kv=6,
        d_ff=36,
        num_layers=2,
        num_heads=3,
        dropout_rate=0.0,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=20,
        decoder_start_token_id=0,
    )
    kwargs.update(overrides)
    tie = kwargs.get("tie_word_embeddings", True)
    model = transformers.T5ForConditionalGeneration(transformers.T5Config(**kwargs)).eval()
    if not tie:
        # transformers >= 5 ties lm_head at construction; give it its own tensor.
        model.lm_head.weight = torch.nn.Parameter(torch.empty_like(model.shared.weight))
    with torch.no_grad():
        # Trained-model-like scales rather than HF's init: layer-norm scales near
        # 1, matrices N(0, 1/fan_in) (queries also / head_dim, as T5 folds the
        # attention scaling into them), relative biases N(0, 1), and an output
        # projection giving peaked distributions (logit std ~ 4), so argmax
        # comparisons are not decided by near-ties, and every tensor is far from
        # zero so a wrong transpose or scale cannot hide under the tolerance.
        for name, p in model.named_parameters():
            if "layer_norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif name in ("shared.weight", "lm_head.weight") or "relative_attention" in name:
                p.normal_(0.0, 4.0 / kwargs["d_model"] ** 0.5 if name == "lm_head.weight" else 1.0)
            elif name.endswith(".q.weight"):
                # T5 folds attention's 1/sqrt(head_dim) into the query weights.
                p.normal_(0.0, (p.shape[1] * kwargs["d_kv"]) ** -0.5)
            else:
                p.normal_(0.0, p.shape[1] ** -0.5)
    model.save_pretrained(directory)
    return model


def padded_batch(vocab: int, seed: int = 0, batch: int = 4, enc_len: int = 13, dec_len: int = 7):
    """Encoder tokens with right padding (pad 0) and decoder inputs starting at 0.

    Returns (encoder_tokens [B, S], decoder_inputs [B, T], decoder_mask [B, T]).
    """
    from jaxrobust.models import layers

    rng = np.random.RandomState(seed)
    enc = rng.randint(2, vocab, (batch, enc_len)).astype(np.int32)
    enc_lengths = np.linspace(enc_len, 2, batch).astype(int)
    for i, n in enumerate(enc_lengths):
        enc[i, n:] = 0
    targets = rng.randint(2, vocab, (batch, dec_len)).astype(np.int32)
    dec_lengths = np.linspace(dec_len, 2, batch).astype(int)
    mask = np.arange(dec_len)[None, :] < dec_lengths[:, None]
    targets = np.where(mask, targets, 0)
    dec_in = np.asarray(layers.shift_right(targets, 0))
    return enc, dec_in, targets, mask


def make_hf_llama(directory, seed=0, **overrides):
    """Builds a random HF `LlamaForCausalLM`, saves it with `save_pretrained`.

    Returns the (eval-mode) torch model.
    """
    import torch
    import transformers

    torch.manual_seed(seed)
    kwargs = dict(
        vocab_size=120,
        hidden_size=32,
        intermediate_size=44,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        rms_norm_eps=1e-5,
        max_position_embeddings=64,
        attn_implementation="eager",
    )
    kwargs.update(overrides)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**kwargs)).eval()
    d = kwargs["hidden_size"]
    with torch.no_grad():
        # Trained-model-like scales rather than HF's init (see make_hf_t5):
        # norms near 1, matrices N(0, 1/fan_in), embeddings N(0, 1) and an
        # output projection giving peaked distributions, so a wrong transpose,
        # head order or rotary pairing cannot hide under the tolerance.
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif name == "model.embed_tokens.weight":
                p.normal_(0.0, 1.0)
            elif name == "lm_head.weight":
                p.normal_(0.0, 4.0 / d**0.5)
            else:
                p.normal_(0.0, p.shape[1] ** -0.5)
    model.save_pretrained(directory)
    return model


def left_padded_batch(vocab, seed=0, batch=4, length=11, pad_id=2):
    """Random prompts of decreasing length, left-padded; some contain <unk> (id 0)."""
    from jaxrobust.models import llama

    rng = np.random.RandomState(seed)
    lengths = np.linspace(length, 3, batch).astype(int)
    rows = []
    for n in lengths:
        row = [1] + list(rng.randint(3, vocab, n - 1))
        row[n // 2] = 0  # <unk> is a real token, never padding.
        rows.append(row)
    return llama.left_pad(rows, pad_id, length)


def membership_targets(enc: np.ndarray, dec_in: np.ndarray, vocab: int) -> np.ndarray:
    """A small task that needs encoder, cross-attention and decoder alike.

    The next token is the decoder input + 1 where that token occurs in the
    encoder input, else + 2 (mod the vocabulary).
    """
    member = (dec_in[:, :, None] == enc[:, None, :]).any(-1)
    return (dec_in + np.where(member, 1, 2)) % vocab


def _train_hf(model, batch, steps: int, lr: float, threads: int = 1):
    """Adam on token cross-entropy; `batch(step)` -> (model kwargs, targets, weights).

    Deterministic by construction: `threads` intra-op threads (a float32 sum's
    order follows the thread count, and 300 Adam steps turn a last-bit
    difference into another model), deterministic kernels, a fixed seed; the
    caller's torch settings are restored afterwards. One thread also keeps the
    training fast on busy cores, where torch's spinning OpenMP threads are not.
    """
    import torch

    saved = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        with torch.random.fork_rng(devices=[]):  # The caller's random stream is untouched.
            torch.manual_seed(0)
            model.train()
            opt = torch.optim.Adam(model.parameters(), lr=lr)
            for step in range(steps):
                inputs, targets, weights = batch(step)
                kwargs = {k: torch.tensor(v, dtype=torch.long) for k, v in inputs.items()}
                logits = model(**kwargs).logits
                targets = torch.tensor(targets, dtype=torch.long)[..., None]
                nll = -torch.log_softmax(logits, -1).gather(-1, targets)[..., 0]
                loss = (nll * torch.tensor(weights)).sum() / weights.sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
    finally:
        torch.set_num_threads(saved[0])
        torch.use_deterministic_algorithms(saved[1])
    return model.eval(), loss.item()


def train_hf_t5_on_membership(model, steps: int = 300, lr: float = 1e-2, threads: int = 1):
    """Trains an HF T5 with Adam on `membership_targets` over random padded batches.

    The batches come from `padded_batch` with seeds 1000.., never the parity
    batch (seed 0); `threads` as in `_train_hf`. Returns the model in eval mode
    and the last loss.
    """
    vocab = model.config.vocab_size

    def batch(step):
        enc, dec_in, _, mask = padded_batch(
            vocab, seed=1000 + step, batch=32, enc_len=24, dec_len=16
        )
        inputs = dict(input_ids=enc, attention_mask=enc != 0, decoder_input_ids=dec_in)
        return inputs, membership_targets(enc, dec_in, vocab), mask

    return _train_hf(model, batch, steps, lr, threads)


def previous_token_targets(tokens: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A decoder-only task that needs attention: predict the token one before.

    Returns (targets `[B, T]`, where `[B, T]`: positions with a previous token).
    """
    targets = np.concatenate([tokens[:, :1], tokens[:, :-1]], axis=1)
    where = mask & np.concatenate([np.zeros_like(mask[:, :1]), mask[:, :-1]], axis=1)
    return targets, where


def train_hf_llama_on_previous_token(model, steps: int = 300, lr: float = 1e-2, threads: int = 1):
    """Trains an HF LLaMA with Adam on `previous_token_targets`.

    Batches are `left_padded_batch(seed=1000..., batch=32, length=24)`, never
    the parity batch (seed 0); `threads` as in `_train_hf`. Returns the model
    in eval mode and the last loss.
    """
    vocab = model.config.vocab_size

    def batch(step):
        tokens, mask, positions = left_padded_batch(vocab, seed=1000 + step, batch=32, length=24)
        inputs = dict(input_ids=tokens, attention_mask=mask, position_ids=positions)
        return (inputs, *previous_token_targets(tokens, mask))

    return _train_hf(model, batch, steps, lr, threads)
