"""The inference engine on decoder-only models, against HF `transformers` PyTorch.

One random tiny HF `LlamaForCausalLM` (grouped-query attention, widths divisible
by 4 so a 2 x 4 mesh splits the model axes) and one tiny LLaMA-style
SentencePiece BPE vocabulary trained here (<unk> 0, <s> 1, </s> 2, no pad) serve
every test. HF references are computed the way a user of `transformers` would:
BOS + the HF tokenizer's ids of prompt + option, one forward, the log-probs
after the prompt's own token count; `generate(do_sample=False)` on a left-padded
batch.
"""

import jax
import numpy as np
import pytest
import torch
import transformers
from parity_helpers import PARITY_TOL, SELF_TOL, log_softmax, make_hf_llama

from jaxrobust import checkpoints, inference
from jaxrobust.inference import generation
from jaxrobust.inference import llama as inference_llama
from jaxrobust.inference.prompt_formats import get_format
from jaxrobust.inference.tokenizer import HFTokenizer
from jaxrobust.parallel import partitioning

CORPUS = [
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.",
    "### Instruction:\nIs the sky blue? Answer yes or no.\n\n### Response: yes",
    "Does the passage support the claim? Answer:\nno",
    "Pick the relation between the two entities. Answer: cause effect",
    "Answer:\nyes",
    "the answer is yes and not no, yes indeed",
] * 30
HF_WIDTHS = dict(
    vocab_size=120, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256
)

# Instructions of different lengths. The first ends in a newline, so its options
# follow "\n" and their first token is "yes", not "▁yes" as alone. The third
# holds characters outside the vocabulary: <unk>, id 0, inside the prompt.
INSTRUCTIONS = [
    "Is the sky blue? Answer:\n",
    "Does the passage support the claim? Answer yes or no.",
    "Pick the relation ☃ between the two entities ß.",
    "Answer:",
    "Is the answer yes? Does the passage support the claim? Pick the relation between the "
    "two entities. Answer yes or no.",
]
OPTIONS = [
    ["yes", "no"],
    ["yes", "no", "yes indeed"],
    ["cause effect", "the relation", "no"],
    ["no", "yes"],
    ["yes", "no", "not no", "the answer is yes"],
]


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    from tokenizers import SentencePieceBPETokenizer

    spm = SentencePieceBPETokenizer(unk_token="<unk>")
    spm.train_from_iterator(
        CORPUS, vocab_size=120, special_tokens=["<unk>", "<s>", "</s>"], min_frequency=2
    )
    hf_tok = transformers.PreTrainedTokenizerFast(
        tokenizer_object=spm, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    d = tmp_path_factory.mktemp("llama_tok")
    hf_tok.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, tok_dir):
    """(HF torch model, HF tokenizer, our tokenizer, config, params)."""
    d = tmp_path_factory.mktemp("llama")
    hf = make_hf_llama(d, **HF_WIDTHS)
    config, params = checkpoints.load_hf_llama(d)
    hf_tok = transformers.AutoTokenizer.from_pretrained(tok_dir)
    tok = HFTokenizer(tok_dir)
    assert (tok.unk_id, tok.bos_id, tok.eos_id, tok.pad_id) == (0, 1, 2, 2)
    assert tok.vocab_size <= config.vocab_size
    return hf, hf_tok, tok, config, params


def _engine(config, params, tok, mesh=None, **kw):
    kw.setdefault("batch_size", 4)
    kw.setdefault("max_input_len", 128)
    kw.setdefault("length_buckets", (32, 128))
    return inference.Engine(
        config, params, tok, mesh=mesh or partitioning.single_device_mesh(), **kw
    )


def _ids(hf_tok, text):
    return hf_tok(text, add_special_tokens=False)["input_ids"]


def _hf_option_lls(hf, hf_tok, prompt, options):
    """HF on BOS + prompt + " " + option, tokenised together; log-probs after the prompt."""
    n = 1 + len(_ids(hf_tok, prompt))
    sep = "" if prompt[-1].isspace() else " "
    out, first_tokens = [], []
    for opt in options:
        ids = [hf_tok.bos_token_id] + _ids(hf_tok, prompt + sep + opt)
        assert ids[:n] == [hf_tok.bos_token_id] + _ids(hf_tok, prompt)  # A clean boundary.
        with torch.no_grad():
            logits = hf(input_ids=torch.tensor([ids])).logits[0].numpy()
        lp = log_softmax(logits)
        out.append(sum(lp[t - 1, ids[t]] for t in range(n, len(ids))))
        first_tokens.append(ids[n])
    return np.array(out), first_tokens


@pytest.mark.parametrize("fmt", ["none", "alpaca"])
def test_option_log_likelihoods_match_hf(tiny, fmt):
    hf, hf_tok, tok, config, params = tiny
    results = _engine(config, params, tok, prompt_format=fmt).rank_classify(INSTRUCTIONS, OPTIONS)
    worst, merged_differently = 0.0, 0
    for instruction, opts, r in zip(INSTRUCTIONS, OPTIONS, results, strict=True):
        prompt = get_format(fmt).apply(instruction)
        ref, first_tokens = _hf_option_lls(hf, hf_tok, prompt, opts)
        np.testing.assert_allclose(r.scores, ref, **PARITY_TOL)
        worst = max(worst, float(np.abs(r.scores - ref).max()))
        assert r.prediction == int(np.argmax(ref)) and not r.truncated
        merged_differently += sum(
            f != _ids(hf_tok, o)[0] for f, o in zip(first_tokens, opts, strict=True)
        )
    if fmt == "none":
        # After "Answer:\n" the options' first tokens differ from theirs alone
        # ("yes" vs "▁yes"): tokenising options alone would score other tokens.
        prompt = INSTRUCTIONS[0]
        in_context = _ids(hf_tok, prompt + "yes")[len(_ids(hf_tok, prompt))]
        assert hf_tok.convert_ids_to_tokens([in_context, _ids(hf_tok, "yes")[0]]) == [
            "yes",
            "▁yes",
        ]
        assert merged_differently >= 2
    print(f"{fmt}: max |option log-likelihood - HF| = {worst:.2e}")


def test_unk_in_prompt_is_never_padding(tiny):
    """A prompt holding id 0 scores the same alone and left-padded among longer prompts."""
    hf, hf_tok, tok, config, params = tiny
    eng = _engine(config, params, tok)
    ids, _ = eng.encode_input(INSTRUCTIONS[2], 128)
    assert ids[0] == tok.bos_id and ids.count(0) == 2  # Two <unk>s, both real tokens.
    alone = eng.rank_classify(INSTRUCTIONS[2:3], OPTIONS[2:3])[0]
    batched = eng.rank_classify(INSTRUCTIONS, OPTIONS)[2]  # Padded to the longest prompt.
    np.testing.assert_allclose(batched.scores, alone.scores, **SELF_TOL)
    # The padded batch really pads row 2 (with EOS, not <unk>).
    batch = eng.adapter.input_batch([eng.encode_input(x, 128)[0] for x in INSTRUCTIONS], 64, 8)
    row = batch["inputs"][2]
    assert not batch["input_mask"][2, 0] and row[0] == tok.eos_id
    assert ((row == 0) == (batch["input_mask"][2] & (row == 0))).all()


def _hf_generate(hf, prompts, max_new, eos_id):
    """HF greedy generation on one LEFT-padded batch; the new tokens per row."""
    s = max(len(p) for p in prompts)
    ids = torch.tensor([[eos_id] * (s - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (s - len(p)) + [1] * len(p) for p in prompts])
    with torch.no_grad():
        out = hf.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=max_new,
            do_sample=False,
            pad_token_id=eos_id,
            eos_token_id=eos_id,
        )
    return out[:, s:].numpy()


def test_greedy_generation_matches_hf_and_returns_no_prompt(tmp_path, tiny):
    _, hf_tok, tok, _, _ = tiny
    hf = make_hf_llama(tmp_path, seed=1, **HF_WIDTHS)
    fmt = get_format("alpaca")
    prompts = [[tok.bos_id] + _ids(hf_tok, fmt.apply(x)) for x in INSTRUCTIONS]
    assert len({len(p) for p in prompts}) == len(prompts)  # Different lengths.
    first = _hf_generate(hf, prompts[:1], 6, tok.eos_id)[0]
    # Make EOS win wherever row 0's third token would, so rows stop at
    # different steps and the per-row EOS handling is exercised.
    with torch.no_grad():
        hf.lm_head.weight[tok.eos_id] = 1.05 * hf.lm_head.weight[int(first[2])]
    hf.save_pretrained(tmp_path)
    config, params = checkpoints.load_hf_llama(tmp_path)
    ref = _hf_generate(hf, prompts, 16, tok.eos_id)
    assert ref.shape == (len(prompts), 16)
    assert (ref == tok.eos_id).any(1).any() and not (ref == tok.eos_id).any(1).all()

    eng = _engine(config, params, tok, batch_size=8, prompt_format="alpaca")
    batch = eng.adapter.input_batch(prompts, 128, len(prompts))
    ours = jax.jit(generation.greedy_decode_llama, static_argnums=(0, 4))(
        config, params, batch["inputs"], batch["input_mask"], 16
    )[0]
    np.testing.assert_array_equal(np.asarray(ours), ref)  # Exactly HF's tokens, EOS fill after.

    texts = eng.generate(INSTRUCTIONS, 16)
    assert texts == [tok.decode(list(r)) for r in ref]
    for instruction, text in zip(INSTRUCTIONS, texts, strict=True):
        assert "Below is an instruction" not in text and "### Response" not in text
        assert instruction.strip() not in text
    assert any(texts)  # Not all empty: something new was generated.


def test_mesh_2x4_matches_one_device(tiny):
    _, _, tok, config, params = tiny
    one = _engine(config, params, tok, batch_size=8, prompt_format="vicuna_v1.1")
    many = _engine(
        config,
        params,
        tok,
        mesh=partitioning.make_mesh(2, 4),
        batch_size=8,
        prompt_format="vicuna_v1.1",
    )
    q = many.params["layers_0"]["self_attn"]["q_proj"]["kernel"]
    assert q.sharding.spec == jax.sharding.PartitionSpec(None, "model")
    for mode in ("standard", "sun"):
        a = one.rank_classify(INSTRUCTIONS * 2, OPTIONS * 2, mode)
        b = many.rank_classify(INSTRUCTIONS * 2, OPTIONS * 2, mode)
        worst = max(float(np.abs(x.scores - y.scores).max()) for x, y in zip(a, b, strict=True))
        for x, y in zip(a, b, strict=True):
            np.testing.assert_allclose(y.scores, x.scores, **SELF_TOL)
        print(f"{mode}: max |2x4 - one device| = {worst:.1e}")
    np.testing.assert_allclose(
        many.pooled_encoder_states(INSTRUCTIONS),
        one.pooled_encoder_states(INSTRUCTIONS),
        **SELF_TOL,
    )
    assert many.generate(INSTRUCTIONS, 8) == one.generate(INSTRUCTIONS, 8)


def test_sun_mode_reads_the_greedy_logits(tiny):
    """Sun et al.'s scores: option tokens' log-probs under HF `generate`'s logits.

    As their Alpaca rule: each option tokenised ALONE (BOS dropped, no EOS), n =
    the shortest option's token count, n greedy steps read.
    """
    hf, hf_tok, tok, config, params = tiny
    prompt = INSTRUCTIONS[1]
    options = ["yes indeed", "the answer is yes", "not no"]
    alone = [_ids(hf_tok, o) for o in options]
    n = min(len(a) for a in alone)
    assert n >= 2 and len({len(a) for a in alone}) > 1  # Mixed lengths, several steps.
    ids = [tok.bos_id] + _ids(hf_tok, prompt)
    with torch.no_grad():
        gen = hf.generate(
            input_ids=torch.tensor([ids]),
            max_new_tokens=n,
            do_sample=False,
            output_logits=True,
            return_dict_in_generate=True,
            pad_token_id=tok.eos_id,
        )
    steps = [log_softmax(s[0].numpy()) for s in gen.logits]
    expected = [sum(steps[t][a[t]] for t in range(n)) for a in alone]
    r = _engine(config, params, tok).rank_classify([prompt], [options], mode="sun")[0]
    np.testing.assert_allclose(r.scores, expected, **PARITY_TOL)
    assert r.prediction == int(np.argmax(expected))


def test_scorer_is_differentiable_and_prefix_equals_prepended_tokens(tiny):
    _, _, tok, config, params = tiny
    eng = _engine(config, params, tok)
    prompt, conts = eng.adapter.encode_rank(INSTRUCTIONS[1], OPTIONS[1], add_eos=False)
    batch = eng.adapter.rank_batch([prompt[1:]], [conts], 32, 4, 8, 1)
    with_bos = eng.adapter.rank_batch([prompt], [conts], 32, 4, 8, 1)
    # A soft prompt equal to the BOS embedding scores as the BOS token does.
    prefix = np.asarray(params["embed_tokens"])[[tok.bos_id]]
    score = jax.jit(inference_llama.option_log_likelihoods, static_argnums=0)
    np.testing.assert_allclose(
        np.asarray(score(config, params, batch, prefix))[0, :3],
        np.asarray(score(config, params, with_bos))[0, :3],
        **SELF_TOL,
    )
    assert np.isneginf(np.asarray(score(config, params, with_bos))[0, 3])  # Padded option.

    def loss(prefix):
        lls = inference_llama.option_log_likelihoods(config, params, batch, prefix)
        return -jax.nn.log_softmax(lls[0, :3])[0]

    noise = jax.random.normal(jax.random.PRNGKey(0), (3, config.emb_dim))
    value, grad = jax.jit(jax.value_and_grad(loss))(noise)
    assert np.isfinite(value) and np.all(np.isfinite(grad)) and np.abs(grad).max() > 0


def test_long_prompts_keep_bos_and_the_cue(tiny):
    _, _, tok, config, params = tiny
    eng = _engine(config, params, tok, max_input_len=32, prompt_format="alpaca")
    long = " ".join(["Does the passage support the claim?"] * 20)
    ids, truncated = eng.encode_input(long, 32)
    full = eng.adapter.encode_prompt(get_format("alpaca").apply(long))
    assert truncated and len(ids) == 32 and ids[0] == tok.bos_id and ids[1:] == full[-31:]
    assert tok.decode(ids).endswith("### Response:")
    [r] = eng.rank_classify([long], [["yes", "no"]])
    assert r.truncated and np.isfinite(r.scores).all()


def test_soft_prompt_through_the_engine_matches_hf_inputs_embeds(tiny):
    """A `[P, D]` soft prompt before BOS + prompt + option: the engine's scores equal HF
    run on `inputs_embeds` = prompt vectors + token embeddings (positions 0..P+T-1); a
    second prompt of the same shape compiles nothing new; the pooled states and
    target log-probs training uses see the prompt."""
    hf, hf_tok, tok, config, params = tiny
    eng = _engine(config, params, tok)
    rng = np.random.RandomState(0)
    soft = [rng.randn(3, config.emb_dim).astype(np.float32) for _ in range(2)]
    plain = eng.rank_classify(INSTRUCTIONS, OPTIONS)
    first = eng.rank_classify(INSTRUCTIONS, OPTIONS, prefix_embeddings=soft[0])
    traces = dict(eng.trace_counts)
    second = eng.rank_classify(INSTRUCTIONS, OPTIONS, prefix_embeddings=soft[1])
    assert eng.trace_counts == traces and traces["standard+prompt"] >= 1
    for prompt, results in zip(soft, (first, second), strict=True):
        for text, opts, r, p in zip(INSTRUCTIONS, OPTIONS, results, plain, strict=True):
            n = 1 + len(_ids(hf_tok, text))
            sep = "" if text[-1].isspace() else " "
            expected = []
            for opt in opts:
                ids = [hf_tok.bos_token_id] + _ids(hf_tok, text + sep + opt)
                with torch.no_grad():
                    emb = hf.model.embed_tokens(torch.tensor([ids]))
                    x = torch.cat([torch.from_numpy(prompt)[None], emb], dim=1)
                    lp = log_softmax(hf(inputs_embeds=x).logits[0].numpy())
                expected.append(sum(lp[3 + t - 1, ids[t]] for t in range(n, len(ids))))
            np.testing.assert_allclose(r.scores, expected, **PARITY_TOL)
            assert not np.allclose(r.scores, p.scores, atol=1e-3)  # The prompt is attended.

    prompt_ids, conts = eng.adapter.encode_rank(INSTRUCTIONS[1], OPTIONS[1], add_eos=False)
    batch = eng.adapter.rank_batch([prompt_ids], [conts[:1]], 32, 1, 8, 1)
    pooled = [
        np.asarray(inference_llama.pooled_states(config, params, batch, prefix))
        for prefix in (None, soft[0])
    ]
    assert pooled[0].shape == (1, config.emb_dim) and not np.allclose(*pooled, atol=1e-4)
    lp = np.asarray(inference_llama.target_log_probs(config, params, batch, soft[0]))
    gold = np.take_along_axis(lp[0], np.asarray(batch["targets"])[0, 0, :, None], -1)[:, 0]
    np.testing.assert_allclose(
        (gold * batch["target_mask"][0, 0]).sum(), first[1].scores[0], **PARITY_TOL
    )
