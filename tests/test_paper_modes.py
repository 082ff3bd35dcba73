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

from jaxrobust import checkpoints, inference
from jaxrobust.inference import engine as engine_lib
from jaxrobust.inference import llama as inference_llama
from jaxrobust.inference.tokenizer import ByteTokenizer
from jaxrobust.parallel import partitioning

TOK = ByteTokenizer()
HF_WIDTHS = dict(vocab_size=260, d_model=16, d_kv=4, num_heads=4, d_ff=32)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
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


def test_sun_reads_at_most_32_steps(tiny):
    """Their `generate(max_new_tokens=32)`: options longer than 32 tokens are compared
    on their first 32 tokens only (here 40-byte options that differ at byte 35 tie)."""
    hf, config, params = tiny
    text = "Which string? Answer:"
    options = ["q" * 34 + "a" * 6, "q" * 34 + "b" * 6, "r" * 40]
    steps = _hf_steps(hf, TOK.encode(text), 32)
    assert len(steps) == 32
    expected = [sum(steps[t][TOK.encode(o)[t]] for t in range(32)) for o in options]
    r = _engine(config, params).rank_classify([text], [options], mode="sun")[0]
    np.testing.assert_allclose(r.scores, expected, **PARITY_TOL)
    assert r.scores[0] == r.scores[1]  # Identical first 32 tokens.


def test_sun_keeps_right_truncation_at_512(tiny):
    """HF `truncation=True` at 512: the input's end is cut (T5 keeps EOS), even for an
    input whose passage the default truncation would shorten instead."""
    _, config, params = tiny
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
