"""Soft prompts: the module, its initialisers and files, and how it joins the input.

The join is checked against things we did not write: HF `transformers` T5 fed
`inputs_embeds` = [prompt; token embeddings] with the mask grown by P, and
(for both T5 and LLaMA) the model run on the prompt's tokens prepended, where
a prompt initialised from a text's embeddings must give the same outputs.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from parity_helpers import (
    PARITY_TOL,
    SELF_TOL,
    T5_FAMILIES,
    assert_logprobs_close,
    make_hf_t5,
    padded_batch,
)

from jaxrobust import checkpoints
from jaxrobust.models import llama, llama_config, prompts, t5, t5_config
from jaxrobust.parallel import partitioning

PREFIX_TOKENS = np.array([5, 9, 11, 7])


@functools.cache
def _tiny_t5_params(config):
    init = jax.jit(lambda rng: t5.T5(config).init(rng, *t5.dummy_inputs()))
    return nn.meta.unbox(init(jax.random.PRNGKey(0)))["params"]


def _prompt(embedding, ids, seed=0):
    module = prompts.Prompt(len(ids), embedding.shape[1], prompts.from_text(embedding, ids))
    variables = module.init(jax.random.PRNGKey(seed))
    return module.apply(nn.meta.unbox(variables))


def test_prompt_module_is_replicated_and_named():
    mesh = jax.make_mesh((2, 4), ("data", "model"), devices=jax.devices()[:8])
    rules = partitioning.standard_logical_axis_rules()
    module = prompts.Prompt(6, 16)
    params, shardings = partitioning.init_sharded(module.init, jax.random.PRNGKey(0), mesh, rules)
    assert params["prompt"].shape == (6, 16)
    assert shardings["prompt"].spec == jax.sharding.PartitionSpec(None, None)
    assert params["prompt"].sharding.is_fully_replicated
    spec = nn.get_partition_spec(jax.eval_shape(module.init, jax.random.PRNGKey(0)))
    assert spec["params"]["prompt"] == jax.sharding.PartitionSpec("prompt", "prompt_embed")


@pytest.mark.parametrize("family", ["t5_v1_0", "t5_v1_1"])
def test_t5_prompt_matches_hf_inputs_embeds(tmp_path, family):
    """A random prompt on a right-padded batch, against HF T5 given the same embeddings."""
    hf = make_hf_t5(tmp_path, **T5_FAMILIES[family])
    config, params = checkpoints.load_hf_t5(tmp_path)
    enc, dec_in, _, dec_mask = padded_batch(config.vocab_size)
    module = prompts.Prompt(5, config.emb_dim, nn.initializers.normal(1.0))
    prompt = module.apply(nn.meta.unbox(module.init(jax.random.PRNGKey(1))))
    forward = jax.jit(lambda p, e, d, pr: t5.T5(config).apply({"params": p}, e, d, pr))
    ours = np.asarray(forward(params, enc, dec_in, prompt))

    embeds = np.asarray(params["token_embedder"]["embedding"])[enc]
    joined = np.concatenate(
        [np.broadcast_to(np.asarray(prompt), (len(enc), 5, config.emb_dim)), embeds], 1
    )
    mask = np.concatenate([np.ones((len(enc), 5), bool), enc != 0], axis=1)
    with torch.no_grad():
        theirs = hf(
            inputs_embeds=torch.tensor(joined),
            attention_mask=torch.tensor(mask),
            decoder_input_ids=torch.tensor(dec_in),
        ).logits.numpy()
    assert_logprobs_close(ours, theirs, dec_mask, PARITY_TOL)


def test_t5_prompt_from_text_equals_prepended_tokens():
    """Right padding stays at the end either way, so padded rows compare whole."""
    config = t5_config.get_preset("tiny", vocab_size=64)
    params = _tiny_t5_params(config)
    enc, dec_in, _, dec_mask = padded_batch(config.vocab_size)
    prompt = _prompt(params["token_embedder"]["embedding"], PREFIX_TOKENS)
    np.testing.assert_array_equal(prompt, params["token_embedder"]["embedding"][PREFIX_TOKENS])
    forward = jax.jit(lambda p, e, d, pr: t5.T5(config).apply({"params": p}, e, d, pr))
    with_prompt = forward(params, enc, dec_in, prompt)
    prepended = np.concatenate([np.tile(PREFIX_TOKENS, (len(enc), 1)), enc], 1).astype(np.int32)
    with_tokens = forward(params, prepended, dec_in, None)
    assert_logprobs_close(with_prompt, with_tokens, dec_mask, SELF_TOL)
    # The encoder mask grows by P always-attended positions.
    encode = jax.jit(lambda p, e, pr: t5.T5(config).apply({"params": p}, e, pr, method="encode"))
    _, mask = encode(params, enc, prompt)
    np.testing.assert_array_equal(mask, prepended != 0)


def test_t5_combine_is_swappable():
    """`combine` decides how the prompt joins: one that ignores it equals no prompt."""
    config = t5_config.get_preset("tiny", vocab_size=64)
    params = _tiny_t5_params(config)
    enc, _, _, _ = padded_batch(config.vocab_size)
    prompt = jnp.ones((3, config.emb_dim))

    def encode(combine):
        fn = lambda p, e, pr: t5.T5(config).apply({"params": p}, e, pr, combine, method="encode")
        return jax.jit(fn)(params, enc, prompt)[0]

    plain = jax.jit(lambda p, e: t5.T5(config).apply({"params": p}, e, method="encode"))(
        params, enc
    )[0]
    ignored = encode(lambda p, x, m: (x, m))
    joined = encode(prompts.prefix_concat)
    np.testing.assert_array_equal(plain, ignored)
    assert joined.shape == (enc.shape[0], enc.shape[1] + 3, config.emb_dim)


def test_llama_prompt_from_text_equals_prepended_tokens():
    """Left-padded rows: the prompt takes RoPE positions 0..P-1, tokens P onwards."""
    config = llama_config.get_preset("tiny")
    params = nn.meta.unbox(jax.jit(llama.init_fn(config))(jax.random.PRNGKey(0)))["params"]
    rng = np.random.RandomState(0)
    tokens = rng.randint(3, config.vocab_size, (3, 7)).astype(np.int32)
    mask = np.arange(7)[None, :] >= np.array([[0], [2], [5]])  # Left padding.
    prompt = _prompt(params["embed_tokens"], PREFIX_TOKENS)
    p = len(PREFIX_TOKENS)
    model = llama.Llama(config)
    forward = jax.jit(lambda pa, t, pos, m, pr: model.apply({"params": pa}, t, pos, m, None, pr)[0])
    with_prompt = forward(params, tokens, llama.positions_from_mask(mask, offset=p), mask, prompt)
    full_tokens = np.concatenate([np.tile(PREFIX_TOKENS, (3, 1)), tokens], 1).astype(np.int32)
    full_mask = np.concatenate([np.ones((3, p), bool), mask], axis=1)
    with_tokens = forward(
        params, full_tokens, llama.positions_from_mask(full_mask), full_mask, None
    )
    assert_logprobs_close(with_prompt, np.asarray(with_tokens)[:, p:], mask, SELF_TOL)


def test_initialisers():
    table = np.arange(40 * 8, dtype=np.float32).reshape(40, 8)
    sampled = prompts.from_sampled_vocab(table, population=10)(jax.random.PRNGKey(0), (6, 8))
    rows = [int(r[0]) // 8 for r in np.asarray(sampled)]
    assert len(set(rows)) == 6 and max(rows) < 10  # Distinct rows among the first 10.
    np.testing.assert_array_equal(sampled, table[rows])
    text = prompts.from_text(table, [3, 4])(jax.random.PRNGKey(0), (5, 8))
    np.testing.assert_array_equal(text[:2], table[np.array([3, 4])])
    assert {int(r[0]) // 8 for r in np.asarray(text[2:])} <= set(range(40))
    with pytest.raises(ValueError, match="3 tokens, more than the prompt length P=2"):
        prompts.from_text(table, [1, 2, 3])(jax.random.PRNGKey(0), (2, 8))
    with pytest.raises(ValueError, match="width D=4 does not match"):
        prompts.from_sampled_vocab(table)(jax.random.PRNGKey(0), (2, 4))


def test_file_round_trip_and_errors(tmp_path):
    value = np.random.RandomState(0).randn(4, 8).astype(np.float32)
    path = tmp_path / "p" / "prompt.npy"
    prompts.save_prompt(path, value)
    np.testing.assert_array_equal(prompts.load_prompt(path, embed_dim=8), value)
    module = prompts.Prompt(4, 8, prompts.from_file(path))
    np.testing.assert_array_equal(
        module.init(jax.random.PRNGKey(0))["params"]["prompt"].value, value
    )
    with pytest.raises(ValueError, match=r"shape \(4, 8\), expected \(4, 16\)"):
        prompts.Prompt(4, 16, prompts.from_file(path)).init(jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="width D=8 .* emb_dim=32"):
        prompts.load_prompt(path, embed_dim=32)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        prompts.load_prompt(tmp_path / "missing.npy")
    with pytest.raises(ValueError, match="width 8 .* width 32"):
        prompts.prefix_concat(jnp.zeros((4, 8)), jnp.zeros((2, 3, 32)), jnp.ones((2, 3), bool))
