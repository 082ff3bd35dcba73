"""The papers' scoring rules, checked by hand: Sun et al.'s 'sun' mode (the rule of
their `inference_modules.py` / `metrics.py`) and Ni et al.'s 'ni' mode (QA4RE's
letter-constrained decoding, `utils/hf_model_utils.py`).

The option-set and long-option cases of 'sun' against HF `generate` are in
tests/test_inference.py::test_sun_mode_hand_example (T5, EOS counted) and
tests/test_inference_llama.py::test_sun_mode_reads_the_greedy_logits (LLaMA,
options alone, BOS dropped).
"""

import numpy as np
import pytest
import torch
from parity_helpers import PARITY_TOL, T5_FAMILIES, log_softmax, make_hf_t5
from test_inference_llama import (
    tiny,  # noqa: F401  (the tiny LLaMA fixture)
    tok_dir,  # noqa: F401  (its tokenizer fixture)
)

from jaxrobust import checkpoints, inference
from jaxrobust.inference import engine as engine_lib
from jaxrobust.inference import llama as inference_llama
from jaxrobust.inference import option_trie
from jaxrobust.inference.tokenizer import ByteTokenizer
from jaxrobust.parallel import partitioning

TOK = ByteTokenizer()
HF_WIDTHS = dict(vocab_size=260, d_model=16, d_kv=4, num_heads=4, d_ff=32)


@pytest.fixture(scope="module")
def t5(tmp_path_factory):
    d = tmp_path_factory.mktemp("t5")
    hf = make_hf_t5(d, **HF_WIDTHS, **T5_FAMILIES["t5_v1_1"])
    config, params = checkpoints.load_hf_t5(d)
    return hf, config, params


def _engine(config, params, **kw):
    kw.setdefault("batch_size", 2)
    kw.setdefault("max_input_len", 128)
    return inference.Engine(config, params, TOK, mesh=partitioning.single_device_mesh(), **kw)


def _hf_steps(hf, ids, n):
    with torch.no_grad():
        gen = hf.generate(
            input_ids=torch.tensor([ids]),
            max_new_tokens=n,
            do_sample=False,
            output_logits=True,
            return_dict_in_generate=True,
        )
    return [log_softmax(s[0].numpy()) for s in gen.logits]


def test_sun_reads_at_most_32_steps(t5):
    """Their `generate(max_new_tokens=32)`: options longer than 32 tokens are compared
    on their first 32 tokens only (here 40-byte options that differ at byte 35 tie)."""
    hf, config, params = t5
    text = "Which string? Answer:"
    options = ["q" * 34 + "a" * 6, "q" * 34 + "b" * 6, "r" * 40]
    steps = _hf_steps(hf, TOK.encode(text), 32)
    assert len(steps) == 32
    expected = [sum(steps[t][TOK.encode(o)[t]] for t in range(32)) for o in options]
    r = _engine(config, params).rank_classify([text], [options], mode="sun")[0]
    np.testing.assert_allclose(r.scores, expected, **PARITY_TOL)
    assert r.scores[0] == r.scores[1]  # Identical first 32 tokens.


def test_sun_keeps_right_truncation_at_512(t5):
    """HF `truncation=True` at 512: the input's end is cut (T5 keeps EOS), even for an
    input whose passage the default truncation would shorten instead."""
    _, config, params = t5
    eng = _engine(config, params)
    words = [f"w{i}" for i in range(300)]
    item = inference.Truncatable(
        lambda k: "Passage: " + " ".join(words[:k]) + " Question: yes or no? Answer:",
        num_words=len(words),
    )
    full = item.render(len(words))
    ids, conts, truncated = eng._sun_encode(item, ["yes", "no"])
    assert truncated and len(ids) == 512
    assert ids == TOK.encode(full)[:511] + [TOK.eos_id]  # The cue at the end is gone.
    # Options with the EOS their tokenizer appends, cut to the shortest length (3).
    assert conts == [TOK.encode("yes")[:3], TOK.encode("no")]
    # The default mode shortens the passage and keeps the cue.
    text, cut = eng.render_input(item, 128)
    assert cut and text.endswith("Answer:")


def test_sun_llama_rule_by_hand():
    """LLaMA: prompt cut from the right keeping BOS and the first tokens; options alone,
    no BOS (they drop it), no EOS."""

    class Tok:
        bos_id, eos_id, pad_id = 1, 2, 2

        def encode(self, text, add_eos=True):
            return [ord(c) for c in text] + ([2] if add_eos else [])

    adapter = inference_llama.LlamaAdapter(None, Tok())
    ids, conts, truncated = adapter.sun_encode("abcdef", ["xy", "z"], 4)
    assert (ids, conts, truncated) == ([1, 97, 98, 99], [[120, 121], [122]], True)
    assert adapter.sun_encode("ab", ["x"], 4) == ([1, 97, 98], [[120]], False)
    assert engine_lib.SUN_MAX_NEW_TOKENS == 32


def _qa4re_reference(hf, text, options):
    """QA4RE's HF rule, run through `transformers` itself: greedy `generate` with
    `prefix_allowed_tokens_fn` walking a trie of the options' tokens (+ EOS), at
    most the longest option's length; the output decoded and looked up."""
    seqs = [TOK.encode(o, add_eos=False) + [TOK.eos_id] for o in options]

    def allowed(batch_id, decoded):
        prefix = [int(t) for t in decoded[1:]]  # Drop the decoder start token.
        nxt = {s[len(prefix)] for s in seqs if len(s) > len(prefix) and s[: len(prefix)] == prefix}
        return sorted(nxt)

    with torch.no_grad():
        out = hf.generate(
            input_ids=torch.tensor([TOK.encode(text)]),
            max_new_tokens=max(len(s) - 1 for s in seqs),
            do_sample=False,
            prefix_allowed_tokens_fn=allowed,
            eos_token_id=TOK.eos_id,
        )
    return options.index(TOK.decode([int(t) for t in out[0][1:]]))


NI_CASES = [
    ("Which option? A, B, C or D. Answer:", ["A", "B", "C", "D"]),  # Letters: one step.
    ("Pick one:", ["ab", "ac", "b", "bcd"]),  # The trie branches at steps 0 and 1.
    ("Pick one:", ["a", "ab", "abc"]),  # Options that are prefixes: EOS competes.
    ("x", ["qq", "qr", "rq", "rr", "q"]),
]


@pytest.mark.parametrize("case", range(len(NI_CASES)))
def test_ni_constrained_decoding_matches_hf_generate(t5, case):
    hf, config, params = t5
    text, options = NI_CASES[case]
    r = _engine(config, params).rank_classify([text], [options], mode="ni")[0]
    assert r.prediction == _qa4re_reference(hf, text, options)
    assert r.generated == options[r.prediction] and list(r.probs) == list(r.scores)
    assert r.scores[r.prediction] == 1.0 and r.scores.sum() == 1.0


def test_ni_constrained_walk_by_hand():
    """The greedy walk on made-up prefix scores, checked step by step."""
    eos = 1
    seqs = [(10, 20, eos), (10, 21, eos), (11, eos)]
    # Step 0: 10 (-1.0) beats 11 (-2.0); step 1 given 10: 21 (-1.5) beats 20 (-3.0).
    total = {(10,): -1.0, (11,): -2.0, (10, 20): -3.0, (10, 21): -1.5}
    assert option_trie.constrained_greedy(seqs, total, eos) == 1
    total[(11,)] = -0.5  # Now 11 wins step 0 and its option ends there.
    assert option_trie.constrained_greedy(seqs, total, eos) == 2
    total[(11,)] = -1.0  # A tie: the lower token id (10), as torch's argmax.
    assert option_trie.constrained_greedy(seqs, total, eos) == 1
    # An option that is a prefix of another: EOS competes with the longer one's token.
    seqs = [(5, eos), (5, 6, eos)]
    assert option_trie.contested_prefixes(seqs) == [(5, eos), (5, 6)]
    assert option_trie.constrained_greedy(seqs, {(5, eos): -0.1, (5, 6): -0.2}, eos) == 0
    assert option_trie.constrained_greedy(seqs, {(5, eos): -0.3, (5, 6): -0.2}, eos) == 1


def test_ni_constrained_decoding_matches_hf_generate_llama(tiny):  # noqa: F811 (fixture)
    """LLaMA, as QA4RE's `call_hf_llm_causal`: the prompt with BOS, options tokenised
    alone without special tokens plus EOS, `generate` constrained to their trie."""
    hf, hf_tok, tok, config, params = tiny  # test_inference_llama's tiny LLaMA.
    engine = inference.Engine(
        config, params, tok, mesh=partitioning.single_device_mesh(), batch_size=2
    )
    for prompt, options in [
        ("Answer:", ["yes", "no", "yes indeed"]),
        ("Pick the relation between the two entities.", ["cause effect", "the relation", "no"]),
        ("Is the answer yes?", ["A", "B", "C"]),
    ]:
        seqs = [hf_tok(o, add_special_tokens=False)["input_ids"] + [tok.eos_id] for o in options]
        ids = [tok.bos_id] + hf_tok(prompt, add_special_tokens=False)["input_ids"]

        def allowed(batch_id, decoded, seqs=seqs, ids=ids):
            prefix = [int(t) for t in decoded[len(ids) :]]
            k = len(prefix)
            return sorted({s[k] for s in seqs if len(s) > k and s[:k] == prefix})

        with torch.no_grad():
            out = hf.generate(
                input_ids=torch.tensor([ids]),
                max_new_tokens=max(len(s) - 1 for s in seqs),
                do_sample=False,
                prefix_allowed_tokens_fn=allowed,
                eos_token_id=tok.eos_id,
                pad_token_id=tok.eos_id,
            )
        new = [int(t) for t in out[0][len(ids) :]]
        new = new[: new.index(tok.eos_id)] if tok.eos_id in new else new
        want = [s[:-1] for s in seqs].index(new)
        r = engine.rank_classify([prompt], [options], mode="ni")[0]
        assert r.prediction == want, (prompt, options)


def test_ni_many_options_span_several_rows(t5):
    """TACRED's 42 relation names as options (61 contested prefixes in bytes): with an
    option-count bucket of 16 an example is scored over several rows, and the
    prediction is the one a single row gives, and transformers' constrained generate."""
    hf, config, params = t5
    from jaxrobust.tasks import relation_schemas

    options = list(relation_schemas.TACRED_LABELS)
    text = "Anna Berg was born in Oslo. Relation:"
    small = _engine(config, params, option_count_buckets=(4, 16))
    big = _engine(config, params, option_count_buckets=(4, 16, 64))
    a = small.rank_classify([text], [options], mode="ni")[0]
    b = big.rank_classify([text], [options], mode="ni")[0]
    assert a.prediction == b.prediction == _qa4re_reference(hf, text, options)
