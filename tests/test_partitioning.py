"""Sharded execution equals one device, and parameters really are split."""

import flax.linen as nn
import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P
from parity_helpers import SELF_TOL, assert_logprobs_close, make_hf_t5, padded_batch

from jaxrobust import checkpoints
from jaxrobust.models import t5, t5_config
from jaxrobust.parallel import partitioning

RULES = partitioning.standard_logical_axis_rules()


def _sharded_forward(config, params, enc, dec_in, mesh):
    shardings = partitioning.logical_to_shardings(t5.param_logical_axes(config), mesh, RULES)
    params = partitioning.shard_params(params, shardings)
    batch = partitioning.batch_sharding(mesh, 2)
    fn = partitioning.partition(
        lambda p, e, d: t5.T5(config).apply({"params": p}, e, d),
        mesh,
        RULES,
        in_shardings=(shardings, batch, batch),
    )
    return params, np.asarray(fn(params, enc, dec_in))


@pytest.mark.parametrize("shape", [(2, 4), (8, 1)])
def test_mesh_matches_one_device(tmp_path, shape):
    # Widths divisible by 4 so every model-axis rule splits: 4 heads x 4 = 16
    # joined_kv, mlp 32, vocab 128.
    make_hf_t5(
        tmp_path,
        vocab_size=128,
        d_model=16,
        d_kv=4,
        num_heads=4,
        d_ff=32,
        feed_forward_proj="gated-gelu",
        tie_word_embeddings=False,
    )
    config, params = checkpoints.load_hf_t5(tmp_path)
    enc, dec_in, _, mask = padded_batch(config.vocab_size, batch=8)
    _, one = _sharded_forward(config, params, enc, dec_in, partitioning.single_device_mesh())
    mesh = partitioning.make_mesh(*shape)
    sharded_params, many = _sharded_forward(config, params, enc, dec_in, mesh)
    assert_logprobs_close(many, one, mask, SELF_TOL)

    q = sharded_params["encoder"]["layers_0"]["attention"]["query"]["kernel"]
    wi = sharded_params["decoder"]["layers_1"]["mlp"]["wi_0"]["kernel"]
    emb = sharded_params["token_embedder"]["embedding"]
    assert q.sharding.spec == P(None, "model")
    assert wi.sharding.spec == P(None, "model")
    assert emb.sharding.spec == P("model", None)
    model = shape[1]
    assert q.addressable_shards[0].data.shape == (16, 16 // model)
    assert wi.addressable_shards[0].data.shape == (16, 32 // model)
    assert emb.addressable_shards[0].data.shape == (128 // model, 16)


def test_init_sharded_creates_split_params():
    config = t5_config.get_preset("tiny")
    mesh = partitioning.make_mesh(2, 4)
    params, shardings = partitioning.init_sharded(
        lambda rng: t5.T5(config).init(rng, *t5.dummy_inputs()),
        jax.random.PRNGKey(0),
        mesh,
        RULES,
    )
    out = params["decoder"]["layers_0"]["self_attention"]["out"]["kernel"]
    assert out.shape == (32, 32)
    assert out.sharding.spec == P("model", None)
    assert out.addressable_shards[0].data.shape == (8, 32)
    rel = params["encoder"]["relpos_bias"]["rel_embedding"]
    assert rel.sharding.spec == P("model", None)  # heads -> model


def test_partition_resolves_logical_constraints_by_itself():
    """No `with` needed: the wrapper enters the mesh and the rules on every call."""
    mesh = partitioning.make_mesh(2, 4)

    def double(x):
        return nn.with_logical_constraint(2 * x, ("batch", "mlp"))

    x = np.arange(8 * 16, dtype=np.float32).reshape(8, 16)
    out = partitioning.partition(double, mesh, RULES)(x)
    assert out.sharding.spec == P("data", "model")
    assert out.addressable_shards[0].data.shape == (4, 4)
    np.testing.assert_array_equal(np.asarray(out), 2 * x)
    # A bare jit outside the context has no rules: the constraint is dropped.
    assert isinstance(jax.jit(double)(x).sharding, jax.sharding.SingleDeviceSharding)


def test_embed_over_data_rule():
    rules = dict(partitioning.standard_logical_axis_rules(shard_embed_over_data=True))
    assert rules["embed"] == "data" and rules["joined_kv"] == "model" and rules["kv"] is None


def test_mesh_errors_name_the_sizes():
    with pytest.raises(ValueError, match="mesh data=3 x model=2 needs 6 devices, got 8"):
        partitioning.make_mesh(3, 2)
    with pytest.raises(ValueError, match="model=3 does not divide the 8 devices"):
        partitioning.make_mesh(-1, 3)
