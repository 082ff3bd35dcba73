"""The model family registry and the one model factory (`inference.load_model`).

Random weights are checked against flax's own eager `Module.init` (the bits a
user of the model code would get), checkpoint weights against the tensors HF
`transformers` saved, the mesh layout against the rule that a mesh axis must
divide the axis it splits.
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import traverse_util
from parity_helpers import make_hf_llama, make_hf_t5

from jaxrobust import inference
from jaxrobust.inference import families
from jaxrobust.inference.tokenizer import ByteTokenizer
from jaxrobust.models import llama, llama_config, t5, t5_config
from jaxrobust.parallel import partitioning

BYTE_VOCAB = ByteTokenizer().vocab_size  # 259: no model axis of 2, 4 or 8 divides it.


def _flat(tree):
    return traverse_util.flatten_dict(jax.device_get(tree), sep="/")


def test_builtin_families_and_lookup_errors():
    assert inference.known_families()[:2] == ["llama", "t5"]
    t5_family = inference.get_family("t5")
    assert t5_family.config_class is t5_config.T5Config
    assert inference.get_family("llama").config_class is llama_config.LlamaConfig
    assert inference.for_config(llama_config.get_preset("tiny")) is inference.get_family("llama")
    with pytest.raises(ValueError, match="unknown model family 'gpt'; known: llama, t5"):
        inference.get_family("gpt")
    # A family under a taken name, or for a taken config type, is refused ...
    with pytest.raises(ValueError, match="clashes with the registered family 't5'"):
        inference.register_family(dataclasses.replace(t5_family, name="t5-again"))
    # ... and registering the same declaration again changes nothing.
    assert inference.register_family(t5_family) is t5_family

    @dataclasses.dataclass(frozen=True)
    class Unregistered:
        emb_dim: int = 4

    with pytest.raises(TypeError, match="no model family has config type Unregistered"):
        inference.Engine(Unregistered(), {}, ByteTokenizer())


@pytest.mark.parametrize("family", ["t5", "llama"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_random_weights_are_flax_eager_init(family, dtype):
    """Seeded random weights, on a 2 x 4 mesh, equal `Module.init` run eagerly."""
    mesh = partitioning.make_mesh(data=2, model=4)
    spec = inference.ModelSpec(name="m", family=family, tokenizer="byte", seed=3, dtype=dtype)
    loaded = inference.load_model(spec, mesh)
    if family == "t5":
        config = t5_config.get_preset("tiny", vocab_size=BYTE_VOCAB)
        eager = t5.T5(config).init(jax.random.PRNGKey(3), *t5.dummy_inputs())
    else:
        config = llama_config.get_preset("tiny", vocab_size=BYTE_VOCAB)
        eager = llama.Llama(config).init(jax.random.PRNGKey(3), *llama.dummy_inputs())
    assert loaded.config == config
    expected = _flat(nn.meta.unbox(eager)["params"])
    got = _flat(loaded.params)
    assert set(got) == set(expected)
    for path, value in expected.items():
        want = np.asarray(jnp.asarray(value).astype(dtype))
        assert got[path].dtype == want.dtype, path
        assert np.array_equal(got[path].view(np.uint8), want.view(np.uint8)), path
    # 259 vocabulary rows do not split over 4 devices: `vocab` is replicated.
    assert dict(loaded.rules)["vocab"] is None and dict(loaded.rules)["mlp"] == "model"
    leaves = jax.tree.leaves(loaded.params)
    assert all(leaf.sharding.mesh.shape == mesh.shape for leaf in leaves)
    assert any(leaf.sharding.spec != jax.sharding.PartitionSpec() for leaf in leaves)


@pytest.mark.parametrize("family", ["t5", "llama"])
def test_checkpoint_weights_are_the_hf_tensors(family, tmp_path):
    """An HF directory's tensors arrive in their shardings, with the tokenizer rule."""
    if family == "t5":
        hf = make_hf_t5(tmp_path, tie_word_embeddings=False, vocab_size=128)
        table, mine = hf.shared.weight, ("token_embedder", "embedding")
    else:
        hf = make_hf_llama(tmp_path, vocab_size=128)
        table, mine = hf.model.embed_tokens.weight, ("embed_tokens",)
    mesh = partitioning.make_mesh(data=2, model=4)
    spec = inference.ModelSpec(
        name="m", family=family, checkpoint=str(tmp_path), tokenizer="byte", dtype="bfloat16"
    )
    loaded = inference.load_model(spec, mesh)
    got = loaded.params
    for key in mine:
        got = got[key]
    want = table.detach().to(torch.bfloat16).float().numpy()
    np.testing.assert_array_equal(np.asarray(got, np.float32), want)
    assert got.dtype == jnp.bfloat16
    assert dict(loaded.rules)["vocab"] == "model"  # 128 rows split over 4 devices.
    assert (
        got.sharding.spec
        == partitioning.logical_to_shardings({"t": ("vocab", "embed")}, mesh, loaded.rules)[
            "t"
        ].spec
    )
    assert isinstance(loaded.tokenizer, ByteTokenizer)


def test_tokenizer_rule_and_no_hf_loader():
    with pytest.raises(ValueError, match="random weights need ModelSpec.tokenizer"):
        inference.load_model(inference.ModelSpec(name="m"), partitioning.single_device_mesh())
    no_hf = dataclasses.replace(
        inference.get_family("t5"),
        name="t5-nohf",
        config_class=type("T5NoHF", (t5_config.T5Config,), {}),
        load_hf=None,
    )
    families.register_family(no_hf)
    spec = inference.ModelSpec(name="m", family="t5-nohf", checkpoint="/x", tokenizer="byte")
    with pytest.raises(ValueError, match="family 't5-nohf' reads no HF checkpoints"):
        inference.load_model(spec, partitioning.single_device_mesh())


def test_loaded_model_engine_equals_a_direct_engine():
    spec = inference.ModelSpec(name="m", tokenizer="byte", seed=1)
    loaded = inference.load_model(spec, partitioning.single_device_mesh())
    inputs, options = ["Is it? yes or no", "Pick: a, b or c"], [["yes", "no"], ["a", "b", "c"]]
    via = loaded.engine(batch_size=2, max_input_len=64).rank_classify(inputs, options)
    direct = inference.Engine(
        loaded.config,
        jax.device_get(loaded.params),
        ByteTokenizer(),
        mesh=partitioning.single_device_mesh(),
        batch_size=2,
        max_input_len=64,
    ).rank_classify(inputs, options)
    for a, b in zip(via, direct, strict=True):
        np.testing.assert_array_equal(a.scores, b.scores)
    assert type(loaded.adapter()) is inference.T5Adapter
