"""The inference engine against HF `transformers` PyTorch, across meshes, and by hand.

One tiny random T5 v1.1 (byte vocabulary, widths divisible by 4 so a 2 x 4 mesh
splits every model axis) serves every test; the byte tokenizer needs no file.
"""

import jax
import numpy as np
import pytest
import torch
from parity_helpers import PARITY_TOL, SELF_TOL, T5_FAMILIES, log_softmax, make_hf_t5

from jaxrobust import checkpoints, inference
from jaxrobust.inference import generation
from jaxrobust.inference.tokenizer import ByteTokenizer
from jaxrobust.parallel import partitioning

TOK = ByteTokenizer()
HF_WIDTHS = dict(vocab_size=260, d_model=16, d_kv=4, num_heads=4, d_ff=32)

INPUTS = [
    "Is the sky blue? Answer yes or no.",
    "Pick the colour of grass:",
    "x",
    "The relation between e1 and e2 in 'the cup is in the box' is",
    "Question: 2 + 2 = ? Options: four, five, six. Answer:",
]
OPTIONS = [
    ["yes", "no"],
    ["green", "red", "blue"],
    ["a", "bb"],
    ["Content-Container(e1,e2)", "Other", "Entity-Origin(e2,e1)", "Cause-Effect"],
    ["four", "five", "six"],
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(HF torch model, config, params) of one random tiny T5 v1.1."""
    d = tmp_path_factory.mktemp("t5")
    hf = make_hf_t5(d, **HF_WIDTHS, **T5_FAMILIES["t5_v1_1"])
    config, params = checkpoints.load_hf_t5(d)
    return hf, config, params


def _engine(config, params, mesh=None, **kw):
    kw.setdefault("batch_size", 4)
    kw.setdefault("max_input_len", 128)
    return inference.Engine(
        config, params, TOK, mesh=mesh or partitioning.single_device_mesh(), **kw
    )


def _hf_option_lls(hf, text, options, average=False):
    """HF's usual way: one forward per option, labels = option tokens + EOS."""
    ids = torch.tensor([TOK.encode(text)])
    out = []
    for opt in options:
        labels = torch.tensor([TOK.encode(opt)])
        with torch.no_grad():
            logits = hf(input_ids=ids, labels=labels).logits[0].numpy()
        lp = log_softmax(logits)[np.arange(labels.shape[1]), labels[0].numpy()]
        out.append(lp.mean() if average else lp.sum())
    return np.array(out)


@pytest.mark.parametrize("average", [False, True])
def test_option_log_likelihoods_match_hf(tiny, average):
    hf, config, params = tiny
    results = _engine(config, params).rank_classify(INPUTS, OPTIONS, average=average)
    worst = 0.0
    for text, opts, r in zip(INPUTS, OPTIONS, results, strict=True):
        ref = _hf_option_lls(hf, text, opts, average)
        np.testing.assert_allclose(r.scores, ref, **PARITY_TOL)
        worst = max(worst, float(np.abs(r.scores - ref).max()))
        assert r.prediction == int(np.argmax(ref))
        np.testing.assert_allclose(r.probs.sum(), 1.0, atol=1e-12)
        np.testing.assert_allclose(np.log(r.probs) - np.log(r.probs[0]), r.scores - r.scores[0])
        assert not r.truncated
    print(f"max |option log-likelihood - HF| = {worst:.2e}")


def test_scorer_is_a_differentiable_pure_function(tiny):
    _, config, params = tiny
    eng = _engine(config, params)
    ids = [TOK.encode(INPUTS[1])]
    opts = [[TOK.encode(o) for o in OPTIONS[1]]]
    batch = eng.adapter.rank_batch(ids, opts, 32, 4, 8, 1)
    prefix = jax.random.normal(jax.random.PRNGKey(0), (3, config.emb_dim))

    def loss(prefix):
        lls = inference.option_log_likelihoods(config, params, batch, prefix)
        return -jax.nn.log_softmax(lls[0, :3])[0]

    value, grad = jax.jit(jax.value_and_grad(loss))(prefix)
    lls = jax.jit(inference.option_log_likelihoods, static_argnums=0)(config, params, batch)
    assert np.isneginf(np.asarray(lls)[0, 3])  # The padded 4th option.
    assert np.isfinite(value) and np.all(np.isfinite(grad)) and np.abs(grad).max() > 0


def _hf_greedy(hf, texts, max_new):
    out = []
    for t in texts:
        with torch.no_grad():
            seq = hf.generate(
                input_ids=torch.tensor([TOK.encode(t)]), max_new_tokens=max_new, do_sample=False
            )
        out.append([int(x) for x in seq[0, 1:]])  # Drop the decoder start token.
    return out


def test_generation_matches_hf_greedy(tmp_path):
    hf = make_hf_t5(tmp_path, **HF_WIDTHS, **T5_FAMILIES["t5_v1_1"])
    first = _hf_greedy(hf, INPUTS[:1], 6)[0]
    # Make EOS win wherever row 0's third token would: rows then stop at
    # different steps, which exercises per-row EOS.
    with torch.no_grad():
        hf.lm_head.weight[TOK.eos_id] = 1.05 * hf.lm_head.weight[first[2]]
    hf.save_pretrained(tmp_path)
    config, params = checkpoints.load_hf_t5(tmp_path)
    ref = _hf_greedy(hf, INPUTS, 12)
    assert any(TOK.eos_id in r for r in ref) and any(TOK.eos_id not in r for r in ref)

    eng = _engine(config, params)
    batch = {"inputs": eng.adapter.rank_batch([TOK.encode(t) for t in INPUTS], [], 128, 1, 1, 5)}
    tokens = np.asarray(
        jax.jit(generation.greedy_decode, static_argnums=(0, 3))(
            config, params, batch["inputs"]["inputs"], 12
        )[0]
    )
    for row, r in zip(tokens, ref, strict=True):
        n = len(r)
        assert list(row[:n]) == r
        assert np.all(row[n:] == config.pad_id)  # Pad after EOS (HF stops there).
    assert eng.generate(INPUTS, 12) == [TOK.decode(r) for r in ref]


def test_mesh_2x4_matches_one_device(tiny):
    _, config, params = tiny
    one = _engine(config, params, batch_size=8)
    many = _engine(config, params, mesh=partitioning.make_mesh(2, 4), batch_size=8)
    q = many.params["encoder"]["layers_0"]["attention"]["query"]["kernel"]
    assert q.sharding.spec == jax.sharding.PartitionSpec(None, "model")
    a = one.rank_classify(INPUTS * 2, OPTIONS * 2)
    b = many.rank_classify(INPUTS * 2, OPTIONS * 2)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(y.scores, x.scores, **SELF_TOL)
    for mode in ("sun",):
        for x, y in zip(
            one.rank_classify(INPUTS, OPTIONS, mode),
            many.rank_classify(INPUTS, OPTIONS, mode),
            strict=True,
        ):
            np.testing.assert_allclose(y.scores, x.scores, **SELF_TOL)
    np.testing.assert_allclose(
        many.pooled_encoder_states(INPUTS), one.pooled_encoder_states(INPUTS), **SELF_TOL
    )
    assert many.generate(INPUTS, 8) == one.generate(INPUTS, 8)


def test_pooled_states_are_masked_means(tiny):
    _, config, params = tiny
    from jaxrobust.models import t5

    pooled = _engine(config, params).pooled_encoder_states(INPUTS[:2])
    ids = np.array([TOK.encode(INPUTS[1])], np.int32)
    encoded, _ = t5.T5(config).apply({"params": params}, ids, method=t5.T5.encode)
    np.testing.assert_allclose(pooled[1], np.asarray(encoded)[0].mean(0), **SELF_TOL)


def test_default_buckets_cap_padding():
    assert inference.length_buckets(32, 1024) == (32, 64, 128, 192, 256, 384, 512, 768, 1024)
    assert inference.length_buckets(32, 128) == inference.power_of_two_buckets(32, 128)
    assert inference.length_buckets(32, 300) == (32, 64, 128, 192, 256, 300)
    # Options (count and tokens): the midpoints from 8 on; SemEval's 19 relations -> 24.
    from jaxrobust.inference import batching

    assert batching.OPTION_COUNT_BUCKETS == (2, 4, 8, 12, 16, 24, 32, 48, 64)
    assert batching.OPTION_LEN_BUCKETS == (4, 8, 12, 16, 24, 32, 48, 64, 96, 128)
    assert inference.bucket(19, batching.OPTION_COUNT_BUCKETS) == 24
    buckets = inference.length_buckets(32, 2048)
    for n in range(129, 2049):  # Above 128 tokens a row is at most a third padding.
        assert (inference.bucket(n, buckets) - n) / inference.bucket(n, buckets) < 1 / 3


def test_engine_counts_real_and_padded_input_tokens(tiny):
    _, config, params = tiny
    eng = _engine(config, params, batch_size=2, max_input_len=256)
    assert eng.length_buckets == (32, 64, 128, 192, 256)  # The default sets.
    assert eng.option_count_buckets[:4] == (2, 4, 8, 12)
    inputs = ["a" * 150, "b" * 10, "c" * 40]  # Byte tokens + EOS: 151, 11, 41.
    eng.rank_classify(inputs, [["x", "y"]] * 3)
    # Longest first: [151, 41] padded to 192, then [11] and a dummy row to 32.
    assert eng.input_tokens == {"real": 151 + 41 + 11, "padded": 2 * 192 + 2 * 32}


def test_compilations_stay_within_buckets(tiny):
    _, config, params = tiny
    eng = _engine(
        config,
        params,
        batch_size=4,
        length_buckets=(32, 64, 128),
        option_count_buckets=(2, 4, 8),
        option_len_buckets=(8, 16),
    )
    rng = np.random.RandomState(0)
    n = 37
    lengths = [rng.randint(1, 120) for _ in range(n)]
    option_lengths = [[rng.randint(1, 15) for _ in range(rng.randint(1, 8))] for _ in range(n)]

    def evaluate(char, order):
        inputs = [char * lengths[i] for i in order]
        options = [[char.upper() * k for k in option_lengths[i]] for i in order]
        res = eng.rank_classify(inputs, options)
        assert [len(r.scores) for r in res] == [len(o) for o in options]  # Input order.
        eng.pooled_encoder_states(inputs)
        eng.generate(inputs[:9], 4)
        return inputs, options, res

    evaluate("w", range(n))
    first = dict(eng.trace_counts)
    # 3 input x 3 option-count x 2 option-length buckets at most; 3 for the others.
    assert 1 < first["standard"] <= 3 * 3 * 2
    assert first["pool"] <= 3 and first["generate_4"] <= 3
    # A second evaluation (other texts, the sizes in another order) compiles nothing new.
    inputs, options, res = evaluate("v", rng.permutation(n))
    assert eng.trace_counts == first
    # Input order: the same example alone gets the same scores.
    alone = eng.rank_classify([inputs[5]], [options[5]])[0]
    np.testing.assert_allclose(alone.scores, res[5].scores, **SELF_TOL)


class _BakedPromptAdapter(inference.T5Adapter):
    """The engine's former soft-prompt path: the prompt a constant of the jitted scorer."""

    def __init__(self, config, tokenizer, prompt):
        super().__init__(config, tokenizer)
        self.prompt = prompt

    def functions(self):
        constant = jax.numpy.asarray(self.prompt)
        return {
            "standard": lambda p, b: inference.option_log_likelihoods(self.config, p, b, constant)
        }


def test_soft_prompt_is_an_argument_of_the_compiled_scorer(tiny):
    _, config, params = tiny
    eng = _engine(config, params)
    prompts = [
        np.asarray(jax.random.normal(jax.random.PRNGKey(k), (3, config.emb_dim)), np.float32)
        for k in range(2)
    ]
    first = eng.rank_classify(INPUTS, OPTIONS, prefix_embeddings=prompts[0])
    traces = dict(eng.trace_counts)
    assert set(traces) == {"standard+prompt"} and traces["standard+prompt"] >= 1
    # A second prompt of the same shape compiles nothing new ...
    second = eng.rank_classify(INPUTS, OPTIONS, prefix_embeddings=prompts[1])
    assert eng.trace_counts == traces
    # ... and no prompt at all is a program of its own.
    plain = eng.rank_classify(INPUTS, OPTIONS)
    assert eng.trace_counts["standard+prompt"] == traces["standard+prompt"]
    assert eng.trace_counts["standard"] >= 1
    for results, prompt in zip((first, second), prompts, strict=True):
        baked = _engine(config, params)
        baked.adapter = _BakedPromptAdapter(config, TOK, prompt)
        ref = baked.rank_classify(INPUTS, OPTIONS)
        for r, c, p in zip(results, ref, plain, strict=True):
            assert r.prediction == c.prediction
            np.testing.assert_allclose(r.scores, c.scores, rtol=1e-6, atol=1e-6)
            assert not np.allclose(r.scores, p.scores)  # The prompt is attended.
    with pytest.raises(NotImplementedError, match="'standard' mode only"):
        eng.rank_classify(INPUTS, OPTIONS, mode="sun", prefix_embeddings=prompts[0])
    with pytest.raises(ValueError, match=rf"expected \[P, {config.emb_dim}\]"):
        eng.rank_classify(INPUTS, OPTIONS, prefix_embeddings=prompts[0][:, :-1])


def test_truncation_keeps_instruction_options_and_cue(tiny):
    _, config, params = tiny
    instruction = "Read the passage and answer. Passage: "
    passage = " ".join(f"word{i}" for i in range(200))  # ~1400 bytes.
    cue = "\nOptions: yes, no\nAnswer:"
    text, truncated = inference.truncate_passage(
        instruction, passage, cue, lambda s: len(TOK.encode(s)), 128
    )
    assert truncated and text.startswith(instruction) and text.endswith(cue)
    assert len(TOK.encode(text)) <= 128
    # The longest passage prefix: one more word would not fit.
    kept = text[len(instruction) : -len(cue)].split(" ")
    assert kept == passage.split(" ")[: len(kept)]
    longer = instruction + " ".join(passage.split(" ")[: len(kept) + 1]) + cue
    assert len(TOK.encode(longer)) > 128

    words = passage.split(" ")
    item = inference.Truncatable(
        lambda k: instruction + " ".join(words[:k]) + cue, num_words=len(words)
    )
    eng = _engine(config, params, max_input_len=128)
    res = eng.rank_classify([item, "short input"], [["yes", "no"], ["a", "b"]])
    assert [r.truncated for r in res] == [True, False]
    ids, trunc = eng.encode_input(item, 128)
    assert trunc and TOK.decode(ids) == text
    with pytest.raises(ValueError, match="with the passage removed"):
        inference.truncate_passage("x" * 200, passage, cue, lambda s: len(TOK.encode(s)), 128)


def test_sun_mode_hand_example(tiny):
    """Scores read off the greedy decode's logits (HF `generate`), first min-length tokens.

    Sun et al.'s option length counts the EOS the T5 tokenizer appends: "ab" is
    a, b, EOS (3), "abcd" 5, "xyz" 4, so 3 steps are read and step 2 compares
    EOS ("ab") with "c" ("abcd") and "z" ("xyz").
    """
    hf, config, params = tiny
    text = INPUTS[0]
    options = ["ab", "abcd", "xyz"]
    with torch.no_grad():
        gen = hf.generate(
            input_ids=torch.tensor([TOK.encode(text)]),
            max_new_tokens=3,
            do_sample=False,
            output_logits=True,
            return_dict_in_generate=True,
        )
    steps = [log_softmax(s[0].numpy()) for s in gen.logits]
    tokens = [
        [0x61 + 3, 0x62 + 3, TOK.eos_id],
        [0x61 + 3, 0x62 + 3, 0x63 + 3],
        [0x78 + 3, 0x79 + 3, 0x7A + 3],
    ]
    expected = [sum(steps[t][tokens[j][t]] for t in range(3)) for j in range(3)]
    r = _engine(config, params).rank_classify([text], [options], mode="sun")[0]
    np.testing.assert_allclose(r.scores, expected, **PARITY_TOL)
    # Without EOS only 2 steps were read and "ab" tied "abcd"; step 2 now separates them.
    assert r.scores[0] != r.scores[1]
    assert r.prediction == int(np.argmax(expected))
    # 512-token truncation at the end, EOS kept.
    long = _engine(config, params, max_input_len=128).encode_input("z" * 600, 512)
    assert long[1] and len(long[0]) == 512 and long[0][-1] == TOK.eos_id


def test_ni_mode_hand_example(tiny):
    _, config, params = tiny
    eng = _engine(config, params, ni_max_new_tokens=8)
    first = eng.rank_classify(INPUTS[:2], [["qqq", "rrr"], ["qqq"]], mode="ni_free")
    assert [r.prediction for r in first] == [inference.NO_MATCH] * 2
    gen = first[0].generated
    assert gen == eng.generate(INPUTS[:1], 8)[0]
    # The same text in other case, spacing and punctuation is an exact match.
    variant = "  " + gen.upper() + " ."
    res = eng.rank_classify(INPUTS[:1], [["qqq", variant, "rrr"]], mode="ni_free")[0]
    assert res.prediction == 1 and list(res.probs) == [0, 1, 0] and res.generated == gen


def test_verbalizer_hand_cases():
    opts = ["Content-Container(e1,e2)", "Other", "entity origin"]
    match = generation.match_option
    assert match("other", opts) == 1
    assert match("  OTHER. ", opts) == 1
    assert match("Entity-Origin", opts) == 2
    assert match("content container e1 e2", opts) == 0
    assert match("B", opts) == 1
    assert match("(c)", opts) == 2
    assert match("Answer: A", opts) == 0
    assert match("(B) Other", opts) == 1
    assert match("(B) entity origin", opts) == generation.NO_MATCH  # Letter and text disagree.
    assert match("D", opts) == generation.NO_MATCH
    assert match("B", opts, letters=False) == generation.NO_MATCH
    assert match("something else", opts) == generation.NO_MATCH
    assert match("yes", ["Yes", "yes!"]) == generation.NO_MATCH  # Ambiguous.
