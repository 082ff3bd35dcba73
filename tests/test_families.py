"""The model family registry and the one model factory (`inference.load_model`).

Random weights are checked against flax's own eager `Module.init` (the bits a
user of the model code would get), checkpoint weights against the tensors HF
`transformers` saved, the mesh layout against the rule that a mesh axis must
divide the axis it splits. A family declared in `tests/fixtures/toy_family.py`
(one file, one `register_family` call) is prompt-tuned and evaluated end to end.
"""

import dataclasses
import pathlib

import flax.linen as nn
import jax
import jax.numpy as jnp
import jaxrobust.tasks as tasks
import numpy as np
import pytest
import torch
from flax import traverse_util
from parity_helpers import make_hf_llama, make_hf_t5

from jaxrobust import inference, training
from jaxrobust.inference import families
from jaxrobust.inference.tokenizer import ByteTokenizer
from jaxrobust.models import llama, llama_config, prompts, t5, t5_config
from jaxrobust.parallel import partitioning
from jaxrobust.storage import records
from jaxrobust.training import data as training_data

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
        hf = make_hf_t5(tmp_path, tie_word_embeddings=False, vocab_size=264)
        table, mine = hf.shared.weight, ("token_embedder", "embedding")
    else:
        hf = make_hf_llama(tmp_path, vocab_size=264)
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
    # 264 rows (the byte tokenizer's 259 ids need 259 at least) split over 4 devices.
    assert dict(loaded.rules)["vocab"] == "model"
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


# ---------------------------------------------------------------------------
# A family declared in tests/ (tests/fixtures/toy_family.py) evaluates and trains.
# ---------------------------------------------------------------------------

FIXTURES = pathlib.Path(__file__).parent / "fixtures"


def _toy_eval(out, *bindings):
    from jaxrobust import main

    args = [
        "eval",
        "--gin_file=gin_configs/runs/eval.gin",
        "--gin_file=gin_configs/tiny.gin",
        "--gin.MIXTURES=['jr:toysent:qa#all']",
        f"--gin.OUTPUT_DIR='{out}'",
        "--gin.TASK_MODULES=['train_tasks', 'toy_family']",
        "--gin.RECORD_POOLED=True",
        "--gin.evaluation.ModelSpec.name='toy'",
        "--gin.evaluation.ModelSpec.family='toy'",
        *bindings,
    ]
    assert main.main(args) == 0
    files = sorted((out / "records" / "toy").glob("*.jsonl"))
    return {p.name: records.read_records(p).records for p in files}


def test_a_family_declared_in_tests_evaluates_and_prompt_tunes(tmp_path, monkeypatch):
    """`toy` (one file, one register_family call, imported as a task module) is
    prompt-tuned by `training.train` and evaluated by the `eval` command with gin,
    with and without the learned prompt."""
    monkeypatch.syspath_prepend(str(FIXTURES))
    spec = inference.ModelSpec(name="toy", family="toy", preset="tiny", tokenizer="byte")
    data = training_data.DataOptions(
        task="jr:toysent:qa", limit=40, batch_size=8, num_paraphrases=1, eval_limit=16
    )
    loss = training.LossOptions(kl_weight=1.0)
    # Prompt tuning's usual learning rate (0.3, TrainOptions' default).
    options = training.TrainOptions(
        prompt_length=4, num_steps=30, log_every=10, checkpoint_every=1000
    )
    work = tmp_path / "pt"
    result = training.train(
        spec, str(work), data, loss, options, task_modules=("train_tasks", "toy_family")
    )
    import toy_family  # Registered by now (train imported it).

    base = inference.load_model(spec, partitioning.single_device_mesh())
    assert base.family is toy_family.FAMILY and type(base.adapter()) is toy_family.ToyAdapter
    trained = _flat(result["params"]["model"])
    for path, value in _flat(base.params).items():
        assert np.array_equal(trained[path], value), path  # The model stayed frozen.
    assert (work / "prompt.npy").is_file() and not (work / "hf_model").exists()

    # The loss fell: the objective on the 30 trained batches, initial vs learned
    # prompt. Measured: 4.743 -> 2.527.
    split = training_data.split_templates(data)
    enc = training_data.encode_examples(
        split, split.original + split.paraphrase, base.adapter(), data, "train", data.limit
    )
    batches = training_data.ParaphraseBatches(enc, len(split.original), data, base.adapter())
    init = training.prompt_initializer(
        options, toy_family.FAMILY.token_embedding(base.params), base.tokenizer
    )
    first = prompts.Prompt(4, base.config.emb_dim, init).init(jax.random.PRNGKey(0))
    fn = jax.jit(lambda p, b: training.losses(base.config, p, b, loss)[0])

    def mean_loss(prompt):
        params = {"model": base.params, "prompt": {"prompt": prompt}}
        return float(np.mean([fn(params, batches.batch(k)) for k in range(30)]))

    before = mean_loss(nn.meta.unbox(first)["params"]["prompt"])
    after = mean_loss(jax.device_get(result["params"]["prompt"]["prompt"]))
    print(f"toy family, mean training loss over 30 batches: {before:.4f} -> {after:.4f}")
    assert after < 0.9 * before

    # eval: every template of the task, with and without the learned prompt.
    plain = _toy_eval(tmp_path / "eval")
    tuned = _toy_eval(
        tmp_path / "eval_pt", f"--gin.evaluation.ModelSpec.soft_prompt='{work / 'prompt.npy'}'"
    )
    assert len(plain) == len(tuned) == 8
    for name, recs in plain.items():
        assert len(recs) == 8 and all(len(r["scores"]) == 2 for r in recs)
        a = np.array([r["scores"] for r in recs])
        b = np.array([r["scores"] for r in tuned[name]])
        assert np.isfinite(a).all() and np.abs(a - b).max() > 1e-3  # The prompt is read.
    # A record's scores are the family's scorer on that example, unjitted.
    recs = sorted(plain.items())[0][1]
    rendered = tasks.examples(f"jr:toysent:qa:{recs[0]['template_id']}", "test", limit=8)
    ex = {x["example_id"]: x for x in rendered}[recs[0]["example_id"]]
    ids, conts = base.adapter().encode_rank(ex["inputs"], ex["options"], True)
    batch = base.adapter().rank_batch([ids], [conts], len(ids), 2, max(map(len, conts)), 1)
    want = toy_family.option_log_likelihoods(base.config, base.params, batch)[0]
    np.testing.assert_allclose(recs[0]["scores"], want, rtol=1e-5, atol=1e-5)


def test_readme_family_example_is_the_toy_familys_declaration():
    """README's "A new model family" block is the declaration this file tests, verbatim."""
    import pathlib
    import re

    repo = pathlib.Path(__file__).resolve().parents[1]
    readme = (repo / "README.md").read_text()
    block = re.search(
        r"```python\nfrom jaxrobust import inference\n\n(FAMILY = .*?\n)```", readme, re.S
    )
    assert block, "README lost its family example"
    source = (repo / "tests" / "fixtures" / "toy_family.py").read_text()
    assert block.group(1) in source
