"""Truncation in parts: only the shortenable part of an input (a passage, a sentence
around its entity mentions) is shortened to fit, on every path (evaluation, training;
T5 and LLaMA); what cannot fit without cutting protected text is flagged.

The real-data tests run every template of every bank of BoolQ, SemEval (plain and
multiple-choice) and FewRel on the shared data's first examples, at lengths that
force shortening; the world tasks need no data.
"""

import json

import numpy as np
import pytest
from conftest import data_missing

from jaxrobust import evaluation, inference
from jaxrobust.data.parts import InputParts, shorten, tagged_window, window
from jaxrobust.inference.batching import fit_input
from jaxrobust.inference.tokenizer import ByteTokenizer
from jaxrobust.storage import records

TOK = ByteTokenizer()


def _count(text: str) -> int:
    return len(TOK.encode(text))


# ---------------------------------------------------------------------------
# The parts, by hand.
# ---------------------------------------------------------------------------


def test_window_grows_evenly_around_what_must_survive():
    # 10 words, the mentions are words 4..5: 6 words keep 2 on each side.
    assert window(10, (4, 6), 6) == (2, 8)
    assert window(10, (4, 6), 5) == (3, 8)  # The left gets the smaller half.
    assert window(10, (1, 3), 6) == (0, 6)  # The left runs out; the right takes the rest.
    assert window(10, (8, 10), 5) == (5, 10)
    assert window(10, (4, 6), 1) == (4, 6)  # Never less than the mentions.
    assert window(10, (0, 0), 3) == (0, 3)  # No window: the first words.
    assert shorten("a b c d e", (0, 0), 2) == "a b c"
    # One word more than the mentions: it goes to the right (the smaller half is 0).
    assert shorten("a b <e1>c</e1> d <e2>e</e2> f g", (2, 5), 3) == "<e1>c</e1> d <e2>e</e2> f"
    assert shorten("a b <e1>c</e1> d <e2>e</e2> f g", (2, 5), 2) == "b <e1>c</e1> d <e2>e</e2> f"
    assert tagged_window("a <e1>b c</e1> d <e2>e</e2> f") == (1, 5)
    assert tagged_window("no tags here") == (0, 3)


def test_input_parts_render_and_check_their_shape():
    p = InputParts(("Q: ", "w0 w1 w2 w3", " Answer:"), ((0, 0),))
    assert p.text == "Q: w0 w1 w2 w3 Answer:" and p.render(0) == p.text
    assert p.render(3) == "Q: w0 Answer:" and p.max_drop == 4 and p.render(4) == "Q:  Answer:"
    assert InputParts.from_dict(json.loads(json.dumps(p.as_dict()))) == p
    with pytest.raises(ValueError, match="odd number of segments"):
        InputParts(("a", "b"), ((0, 0),))
    with pytest.raises(ValueError, match=r"keep window \(0, 9\)"):
        InputParts(("a", "w0 w1", "b"), ((0, 9),))


def test_fit_input_shortens_the_passage_only_and_flags_what_cannot_fit():
    p = InputParts(
        ("Passage: ", " ".join(f"w{i}" for i in range(50)), "\nIs it? yes/no\nA:"), ((0, 0),)
    )
    full = _count(p.text)
    f = fit_input(p, _count, 60)
    assert f.truncated and not f.protected_cut and _count(f.text) <= 60
    assert f.text.startswith("Passage: w0 w1") and f.text.endswith("\nIs it? yes/no\nA:")
    # The longest passage that fits: one more word would not.
    kept = len(f.text.split(" ")) - 2
    assert _count(p.render(50 - kept - 1)) > 60
    assert fit_input(p, _count, full) == type(f)(p.text, False, False)  # Fits: untouched.
    # The protected text alone needs more: the passage at its least, flagged.
    f = fit_input(p, _count, 20)
    assert f.truncated and f.protected_cut and f.text == p.render(p.max_drop)
    # A plain string has nothing shortenable: too long is a protected cut.
    assert fit_input("x" * 30, _count, 10) == type(f)("x" * 30, True, True)
    # The paper's right truncation ignores the parts.
    f = fit_input(p, _count, 60, truncation="right")
    assert f.text == p.text and f.truncated and f.protected_cut


# ---------------------------------------------------------------------------
# Every template of every bank on real data.
# ---------------------------------------------------------------------------

REAL = {
    "boolq/qa": ("boolq", "qa"),
    "semeval/re": ("semeval", "re"),
    "semeval/mcqa": ("semeval", "mcqa"),
    "fewrel/re": ("fewrel", "re"),
    "fewrel/mcqa": ("fewrel", "mcqa"),
    "world_rel/re": ("world_rel", "re"),
    "world_yn/qa": ("world_yn", "qa"),
}
N_EXAMPLES = 12


def _templates(dataset: str, fmt: str) -> list[str]:
    import jaxrobust.tasks  # noqa: F401  (registers the tasks)
    from jaxrobust.tasks import registry

    return sorted(
        name
        for name, (spec, _) in registry.REGISTERED.items()
        if spec.dataset == dataset and spec.format == fmt
    )


def _in_order(text: str, pieces) -> bool:
    at = 0
    for piece in pieces:
        found = text.find(piece, at)
        if found < 0:
            return False
        at = found + len(piece)
    return True


@pytest.mark.parametrize("bench", sorted(REAL))
def test_every_template_keeps_its_protected_parts(bench, request):
    from jaxrobust.tasks import registry

    dataset, fmt = REAL[bench]
    if not dataset.startswith("world"):
        request.getfixturevalue("shared_data_dir")
    names = _templates(dataset, fmt)
    assert len(names) >= 12, names
    shortened = 0
    for name in names:
        spec, template = registry.REGISTERED[name]
        try:
            exs = list(
                registry.examples(
                    spec, template, registry.split_for(name), limit=N_EXAMPLES, parts=True
                )
            )
        except FileNotFoundError as e:
            data_missing(str(e))
        for ex in exs:
            parts = evaluation.examples.model_input(ex)
            assert isinstance(parts, InputParts) and parts.text == ex["inputs"], name
            assert len(parts.segments) >= 3, f"{name}: no shortenable part"
            least, full = _count(parts.render(parts.max_drop)), _count(parts.text)
            if full > least:
                f = fit_input(parts, _count, (least + full) // 2)
                assert f.truncated and not f.protected_cut, name
                assert _count(f.text) <= (least + full) // 2
                assert _in_order(f.text, parts.protected), f"{name}: protected text cut"
                assert f.text.startswith(parts.segments[0]) and f.text.endswith(parts.segments[-1])
                if dataset in ("semeval", "fewrel"):  # entity mentions survive
                    for s, (lo, hi) in zip(parts.shortenable, parts.keep, strict=True):
                        assert hi > lo, f"{name}: no entity window in {s!r}"
                        mention = " ".join(s.split(" ")[lo:hi])
                        assert mention in f.text, f"{name}: entity mention {mention!r} lost"
                shortened += 1
            f = fit_input(parts, _count, least - 1)
            assert f.truncated and f.protected_cut, name  # Never cut silently.
    assert shortened >= len(names) * N_EXAMPLES // 2


def _parts_of(name: str, n: int):
    from jaxrobust.tasks import registry

    spec, template = registry.REGISTERED[name]
    exs = list(registry.examples(spec, template, registry.split_for(name), limit=n, parts=True))
    return exs, [evaluation.examples.model_input(ex) for ex in exs]


def test_untruncated_inputs_render_exactly_as_before():
    """An input that fits is the template's text byte for byte: the same tokens."""
    from jaxrobust.tasks import registry

    for name in _templates("world_yn", "qa")[:4]:
        spec, template = registry.REGISTERED[name]
        plain = list(registry.examples(spec, template, "test", limit=5))
        exs, parts = _parts_of(name, 5)
        for a, b, p in zip(plain, exs, parts, strict=True):
            assert {k: v for k, v in b.items() if k != "input_parts"} == a
            f = fit_input(p, _count, 512)
            assert f.text == a["inputs"] and not f.truncated


# ---------------------------------------------------------------------------
# The engine (T5 and LLaMA), evaluation and training.
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def t5():
    from jaxrobust.parallel import partitioning

    spec = inference.ModelSpec(name="t", preset="tiny", tokenizer="byte")
    return inference.load_model(spec, partitioning.single_device_mesh())


def test_engine_scores_the_shortened_input_on_boolq(shared_data_dir, t5):
    exs, parts = _parts_of("jr:boolq:qa:flan_boolq_prompt0", 4)
    eng = t5.engine(batch_size=4, max_input_len=128)
    res = eng.rank_classify(parts, [ex["options"] for ex in exs])
    assert all(r.truncated and not r.protected_cut for r in res)
    for p, ex, r in zip(parts, exs, res, strict=True):
        ids, truncated = eng.encode_input(p, 128)
        text = TOK.decode(ids)
        assert truncated and len(ids) <= 128 and _in_order(text, p.protected)
        assert text.endswith(f"{ex['inputs'].split(chr(10) * 2)[-2]}\n\nOPTIONS:\n- no\n- yes")
        # The same scores as the shortened text given whole (it fits).
        [alone] = eng.rank_classify([text], [ex["options"]])
        assert not alone.truncated
        np.testing.assert_allclose(alone.scores, r.scores, rtol=1e-5, atol=1e-5)
    # Protected text alone beyond the length: cut by T5's rule (start kept) and flagged.
    [r] = eng.rank_classify([parts[0]], [exs[0]["options"]], mode="standard")
    [cut] = t5.engine(batch_size=4, max_input_len=32).rank_classify([parts[0]], [["no", "yes"]])
    assert not r.protected_cut and cut.truncated and cut.protected_cut


def test_llama_keeps_bos_format_and_question_when_the_passage_is_shortened(
    shared_data_dir, tmp_path
):
    import transformers
    from parity_helpers import make_hf_llama
    from tokenizers import SentencePieceBPETokenizer

    from jaxrobust import checkpoints
    from jaxrobust.inference.tokenizer import HFTokenizer
    from jaxrobust.parallel import partitioning

    exs, parts = _parts_of("jr:boolq:qa:boolq_u01", 3)
    spm = SentencePieceBPETokenizer(unk_token="<unk>")
    spm.train_from_iterator(
        [ex["inputs"] for ex in exs] * 5, vocab_size=200, special_tokens=["<unk>", "<s>", "</s>"]
    )
    hf_tok = transformers.PreTrainedTokenizerFast(
        tokenizer_object=spm, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    hf_tok.save_pretrained(tmp_path / "tok")
    make_hf_llama(tmp_path / "m", vocab_size=200, max_position_embeddings=256)
    config, params = checkpoints.load_hf_llama(tmp_path / "m")
    tok = HFTokenizer(tmp_path / "tok")
    eng = inference.Engine(
        config,
        params,
        tok,
        mesh=partitioning.single_device_mesh(),
        batch_size=4,
        max_input_len=192,
        length_buckets=(32, 192),
        prompt_format="alpaca",
    )
    res = eng.rank_classify(parts, [ex["options"] for ex in exs])
    assert all(r.truncated and not r.protected_cut for r in res)
    fmt = eng.prompt_format
    for p in parts:
        text, truncated = eng.render_input(p, 192)
        ids, _ = eng.encode_input(p, 192)
        assert truncated and ids == eng.adapter.encode_prompt(text) and len(ids) <= 192
        assert ids[0] == tok.bos_id and text.endswith("### Response:")
        # Instruction, question, options and cue (all but the passage) are whole.
        assert _in_order(text, p.protected) and len(text) < len(fmt.apply(p.text))


def test_eval_records_shortened_inputs_and_flag_protected_cuts(shared_data_dir, tmp_path):
    """The runner hands the engine each example's parts: at 576 byte tokens BoolQ's
    passages are shortened with question and options whole; SemEval's relation list
    leaves too little room for some sentences' entity window: flagged, not hidden."""
    spec = inference.ModelSpec(name="tiny-t5", preset="tiny", tokenizer="byte")
    tasks = ["jr:boolq:qa:flan_boolq_prompt0", "jr:semeval:re:re_u03"]
    options = evaluation.EvalOptions(limit=3, batch_size=8, max_input_len=576, progress=False)
    evaluation.run([spec], tasks, str(tmp_path), options)
    flags = []
    for task in tasks:
        rows = records.read_records(records.records_path(tmp_path, "tiny-t5", task)).records
        _, parts = _parts_of(task, 3)
        for row, p in zip(rows, parts, strict=True):
            f = fit_input(p, _count, 576)
            assert (row["truncated"], row["protected_cut"]) == (f.truncated, f.protected_cut)
            flags.append((task, f.truncated, f.protected_cut))
    # BoolQ: two long passages shortened, the third fits as it is.
    assert [f[1:] for f in flags[:3]] == [(True, False), (True, False), (False, False)]
    assert (tasks[1], True, False) in flags and (tasks[1], True, True) in flags


def test_training_shortens_only_the_passage(shared_data_dir):
    from jaxrobust.inference import prompt_formats
    from jaxrobust.training import data as data_lib

    data = data_lib.DataOptions(task="jr:boolq:qa", split="validation", max_input_len=128)
    split = data_lib.split_templates(data)
    tids = ["flan_boolq_prompt0", "boolq_u01"]
    config = inference.get_family("t5").get_preset("tiny")
    adapter = inference.make_adapter(config, TOK, prompt_formats.get_format("none"))
    enc = data_lib.encode_examples(split, tids, adapter, data, "validation", 3)
    for t, tid in enumerate(tids):
        exs, parts = _parts_of(split.task_names[tid], 3)
        for ids, p in zip(enc.inputs[t], parts, strict=True):
            text = TOK.decode(ids)
            assert len(ids) <= 128 and ids[-1] == TOK.eos_id
            assert _in_order(text, p.protected) and text.endswith(p.segments[-1])
            assert len(text) < len(p.text)


def test_score_says_when_a_prompt_was_cut(monkeypatch, capsys):
    """`score`'s prompts are protected whole: one longer than its 128 tokens is cut by
    the model's rule, and the output says so."""
    from jaxrobust import main

    long = ("Read this twice. " * 12) + "Is Paris the capital of France?"
    prompts = [(long, ["yes", "no"])] + main.DEMO_PROMPTS[1:]
    monkeypatch.setattr(main, "DEMO_PROMPTS", prompts)
    assert main.main(["score"]) == 0
    out = capsys.readouterr().out
    assert out.count("(cut to 128 tokens: part of the prompt is lost)") == 1
    assert out.index("(cut to") > out.index(long) > 0
