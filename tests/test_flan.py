"""Flan 2022's template file read as data, and its observed sets by task category.

The fixture (tests/fixtures/flan/v2/templates.py) checks the parsing rules on a
file we wrote in Flan's layout; the real file (shared data, google-research/FLAN
flan/v2/templates.py) is checked for its counts per data set, for ten renderings
written out by hand, and against lm-evaluation-harness's Flan entries for ARC
and RTE, which render the same Flan patterns with code we did not write.
"""

import json
import pathlib
import re
import subprocess
import sys
import textwrap

import jaxrobust.tasks as tasks
import pytest
from jaxrobust.tasks import qa, registry

from jaxrobust.data import flan
from jaxrobust.data import templates as tmpl

REPO = pathlib.Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "flan" / "v2" / "templates.py"
MMLU = flan.Binding(roles={"question": "question"}, choices="choices")
BOOLQ = flan.Binding(roles={"question": "question", "passage": "passage"}, labels=("no", "yes"))
PRIME = {"question": "Which of these numbers is prime?", "choices": ["4", "6", "7", "9"]}


@pytest.fixture(scope="module")
def flan_file(shared_data_dir):
    return shared_data_dir / "flan" / "v2" / "templates.py"


# ---------------------------------------------------------------- parsing (fixture)


def test_fixture_is_read_never_run():
    # The fixture raises SystemExit at its top and imports Flan's package.
    patterns = flan.read_patterns(FIXTURE)
    assert not {"flan", "flan.v2", "flan.v2.templates", "templates"} & set(sys.modules)
    assert list(patterns) == ["arc", "bool_q", "braces", "arc_easy", "arc_challenge", "extra"]
    assert [len(v) for v in patterns.values()] == [3, 3, 3, 3, 3, 1]


def test_fixture_concatenation_and_aliases():
    patterns = flan.read_patterns(FIXTURE)
    arc = patterns["arc"]
    assert arc[0].inputs == "{question}\n\n{options_}"  # implicit, across lines
    assert arc[1].inputs == "Question: {question}\n{options_}\nAnswer:"
    assert (
        patterns["bool_q"][0].inputs == "{text}\n\nCan we conclude that {question}?\n\n{options_}"
    )
    assert patterns["extra"][0].inputs == "Q: {question}\n{options_}\nA:"
    assert patterns["bool_q"][1].fields() == ("title", "text", "options_", "question", "answer")
    for alias in ("arc_easy", "arc_challenge"):  # one line; several lines, alias of an alias
        assert [(p.inputs, p.targets) for p in patterns[alias]] == [
            (p.inputs, p.targets) for p in arc
        ]
        assert {p.alias_of for p in patterns[alias]} == {"arc"}
        assert {p.dataset for p in patterns[alias]} == {alias}
    assert arc[0].alias_of == "" and arc[0].line == 22


@pytest.mark.parametrize(
    "tail, problem",
    [
        ('PATTERNS.update({"b": []})', "changes PATTERNS"),
        ('del PATTERNS["a"]', "changes PATTERNS"),
        ('PATTERNS["a"].append(("x", "{answer}"))', "changes PATTERNS"),
        ('PATTERNS["b"] = PATTERNS["nope"]', "alias of 'nope'"),
        ('PATTERNS["b"] = [(f"{x}", "{answer}")]', "expected a string literal"),
        ('PATTERNS["b"] = [("only one",)]', "not an (input, target) pair"),
    ],
)
def test_unread_forms_fail_naming_the_line(tmp_path, tail, problem):
    path = tmp_path / "templates.py"
    path.write_text(f'x = 1\nPATTERNS = {{"a": [("{{question}}", "{{answer}}")]}}\n{tail}\n')
    with pytest.raises(flan.FlanFileError, match=r"templates\.py, line 3: .*" + re.escape(problem)):
        flan.read_patterns(path)


def test_fixture_skips_say_why():
    patterns = flan.read_patterns(FIXTURE)
    options = flan.Options(variable="choices")
    fields = {"question": "question", "text": "passage"}
    made = [
        flan.to_template(p, fields=fields, options=options) for v in patterns.values() for p in v
    ]
    reasons = {(m.dataset, m.index): m.reason for m in made if isinstance(m, flan.Skipped)}
    assert reasons == {
        **{(d, 2): "generates" for d in ("arc", "arc_easy", "arc_challenge")},
        ("bool_q", 1): "unmapped_field",  # {title}
        ("bool_q", 2): "no_options",
        ("braces", 1): "generates",
        ("braces", 2): "separator",
    }
    kept = [m for m in made if isinstance(m, tmpl.Template)]
    assert [t.id for t in kept][:3] == ["flan2_arc_0", "flan2_arc_1", "flan2_bool_q_0"]
    braces = next(t for t in kept if t.name == "braces[0]")
    r = tmpl.render(braces, {**PRIME, "answer_index": 2})
    # Braces that are not Flan fields print as they are, Jinja-looking ones too.
    assert r.inputs == (
        'Reply as JSON like {"answer": 1} or {{ answer }}: Which of these numbers is prime?\n'
        "OPTIONS:\n- 4\n- 6\n- 7\n- 9"
    )
    assert (r.target, r.options) == ("7", ("4", "6", "7", "9"))
    easy = next(t for t in kept if t.name == "arc_easy[0]")
    assert "PATTERNS['arc_easy'][0] (= PATTERNS['arc'][0])" in easy.source


def test_format_options_as_flan():
    assert flan.format_options(["a", "b"]) == "OPTIONS:\n- a\n- b"
    assert flan.format_options(["a", "b"], "letters") == "OPTIONS:\n(A) a\n(B) b"


# ---------------------------------------------------------------- the real file


def test_counts_per_flan_data_set(flan_file):
    patterns = flan.read_patterns(flan_file)
    assert "flan" not in sys.modules
    assert len(patterns) == 120 and sum(map(len, patterns.values())) == 1290
    aliases = {k: v[0].alias_of for k, v in patterns.items() if v[0].alias_of}
    assert len(aliases) == 23
    assert aliases["t0_multiple_choice"] == "t0_question_answer"
    assert aliases["qrecc_input_inversion"] == "predict_next_turn_dialog_input_inversion"
    inversion = "cot_stream_general_input_inversion"
    assert sum(source == inversion for source in aliases.values()) == 9
    not_ten = {k: len(v) for k, v in patterns.items() if len(v) != 10}
    assert not_ten == {
        "stream_aqua": 15,
        "stream_qed": 15,
        inversion: 18,
        **{k: 18 for k, source in aliases.items() if source == inversion},
    }
    for name in ("arc", "openbookqa", "cosmos_qa", "piqa", "hellaswag", "copa"):
        assert len(patterns[name]) == 10
    for name in ("winogrande", "story_cloze", "bool_q", "rte", "anli"):
        assert len(patterns[name]) == 10
    # Flan 2021's file, which Flan 2022's imports, has the same layout.
    branched = flan.read_patterns(flan_file.parent / "flan_templates_branched.py")
    assert len(branched) == 61 and {len(v) for v in branched.values()} == {10}


def test_category_counts(flan_file):
    mc = flan.category_templates("multiple_choice", MMLU, path=flan_file)
    assert mc.counts() == {
        "arc": 7,
        "openbookqa": 0,  # every answer pattern needs {fact}
        "cosmos_qa": 0,  # every answer pattern needs a {context} passage
        "piqa": 8,
        "hellaswag": 10,
        "copa": 0,  # every answer pattern asks for the {question} 'cause'/'effect'
        "winogrande": 10,
        "story_cloze": 8,
    }
    assert len(mc.templates) == 43
    assert mc.summary() == "kept 43 of 80 patterns; skipped 24 unmapped_field, 13 generates"
    letters = flan.category_templates("multiple_choice", MMLU, path=flan_file, style="letters")
    assert [t.id for t in letters.templates] == [t.id + "_letters" for t in mc.templates]
    yes_no = flan.category_templates("yes_no", BOOLQ, path=flan_file)
    assert yes_no.counts() == {"bool_q": 9, "rte": 9, "anli": 9}
    assert {(s.dataset, s.index, s.reason, s.detail[:7]) for s in yes_no.skipped} == {
        ("bool_q", 8, "unmapped_field", "title"),
        ("rte", 9, "generates", "target "),
        ("anli", 9, "generates", "target "),
    }
    # A task with no passage (BIG-bench Lite's binary tasks) gets no yes/no set.
    bigbench = flan.Binding(roles={"question": "input"}, choices="choices")
    assert flan.category_templates("yes_no", bigbench, path=flan_file).templates == ()
    for t in mc.templates + yes_no.templates:
        dataset, index = t.name.rstrip("]").split("[")
        assert (t.provenance, t.strip_parts) == (f"observed:flan:{dataset}", False)
        assert t.source.startswith(flan.SOURCE) and f"PATTERNS[{dataset!r}][{index}]" in t.source


TOMATO_PASSAGE = (
    "Botanically, a tomato is a fruit: it develops from the ovary of a flower and contains "
    "seeds. Cooks nevertheless treat it as a vegetable."
)
LETTERS4 = ("(A)", "(B)", "(C)", "(D)")
# (family, template id, input, target, options), written out by hand.
BY_HAND = [
    (
        "mmlu",
        "flan2_arc_0",
        "Which of these numbers is prime?\n\nOPTIONS:\n- 4\n- 6\n- 7\n- 9",
        "7",
        ("4", "6", "7", "9"),
    ),
    (
        "mmlu",
        "flan2_arc_3",
        "Q: Which of these numbers is prime?\nWhat is the correct answer to this question?\n"
        "OPTIONS:\n- 4\n- 6\n- 7\n- 9...A:",
        "7",
        ("4", "6", "7", "9"),
    ),
    (
        "mmlu",
        "flan2_arc_1_letters",
        "Question: Which of these numbers is prime?\nOPTIONS:\n(A) 4\n(B) 6\n(C) 7\n(D) 9\nAnswer:",
        "(C)",
        LETTERS4,
    ),
    (
        "mmlu",
        "flan2_piqa_0",
        "Here is a goal: Which of these numbers is prime?\n\nHow would you accomplish this goal?"
        "\n\nOPTIONS:\n- 4\n- 6\n- 7\n- 9",
        "7",
        ("4", "6", "7", "9"),
    ),
    (
        "mmlu",
        "flan2_hellaswag_6_letters",
        "OPTIONS:\n(A) 4\n(B) 6\n(C) 7\n(D) 9Choose from options above and answer: What most "
        "naturally follows?\n\nWhich of these numbers is prime?\nAnswer:",
        "(C)",
        LETTERS4,
    ),
    (
        "mmlu",
        "flan2_winogrande_3",
        "OPTIONS:\n- 4\n- 6\n- 7\n- 9\nComplete the following sentence.\n\n"
        "Which of these numbers is prime?\n\n",
        "7",
        ("4", "6", "7", "9"),
    ),
    (
        "bigbench",
        "flan2_story_cloze_0",
        "Is the sky green on a clear day?\nOPTIONS:\n- Yes\n- No\n"
        "Which option is the next sentence?",
        "No",
        ("Yes", "No"),
    ),
    (
        "boolq",
        "flan2_bool_q_0",
        f"{TOMATO_PASSAGE}\n\nSee options at the end. Can we conclude that is a tomato a fruit?"
        "\n\nOPTIONS:\n- no\n- yes",
        "yes",
        ("no", "yes"),
    ),
    (
        "boolq",
        "flan2_rte_4_letters",
        f"{TOMATO_PASSAGE}\nOPTIONS:\n(A) yes\n(B) no\nQuestion: Can we infer the following?\n"
        "is a tomato a fruit",
        "(A)",
        ("(B)", "(A)"),  # in label order: no, yes
    ),
    (
        "boolq",
        "flan2_anli_0",
        f"{TOMATO_PASSAGE}\n\nChoose your answer: based on the paragraph above can we conclude "
        'that "is a tomato a fruit"?\n\nOPTIONS:\n- yes\n- no\nI think the answer is',
        "yes",
        ("no", "yes"),
    ),
]
SPECS = {
    "mmlu": qa.mmlu_spec("anatomy"),
    "bigbench": qa.bigbench_spec("winowhy"),
    "boolq": qa.BOOLQ,
}


@pytest.mark.parametrize("family, tid, inputs, target, options", BY_HAND, ids=lambda x: str(x)[:30])
def test_ten_renderings_by_hand(flan_file, family, tid, inputs, target, options):
    style = "letters" if tid.endswith("_letters") else "dash"
    loaded = qa.flan_observed(family, style=style, path=flan_file)
    template = next(t for t in loaded.templates if t.id == tid)
    spec = SPECS[family]
    features = registry.to_features(spec, template, spec.sample, check=True)
    assert features["inputs"] == inputs
    assert (features["targets"], tuple(features["options"])) == (target, options)
    assert features["provenance"] == f"observed:flan:{template.name.split('[')[0]}"


ARC_RECORD = {
    "id": "Mercury_7081655",
    "question": "Which tool should be used to measure the stem length of a plant?",
    "choices": {
        "text": ["a balance", "a metric ruler", "a graduated cylinder", "a thermometer"],
        "label": ["A", "B", "C", "D"],
    },
    "answerKey": "B",
}
RTE_RECORD = {
    "sentence1": "Dana Reeve, the widow of the actor Christopher Reeve, has died of lung cancer.",
    "sentence2": "Christopher Reeve had an accident.",
    "label": 1,
}


def test_same_text_as_lm_evaluation_harness(flan_file, shared_data_dir):
    """lm-eval's Flan ARC and RTE entries render Flan's patterns; ours must render the same."""
    held_in = shared_data_dir / "flan" / "flan_held_in.yaml"
    arc = tmpl.load_lm_eval(held_in, task_prefix="arc_easy_", schema="hf:ai2_arc")
    ours = flan.category_templates("multiple_choice", MMLU, path=flan_file).templates
    variables = {"question": ARC_RECORD["question"], "choices": ARC_RECORD["choices"]["text"]}
    for i, theirs in enumerate(arc):  # prompt-0 .. prompt-6: Flan's arc[0] .. arc[6]
        mine = next(t for t in ours if t.name == f"arc[{i}]")
        rendered, expected = (
            tmpl.render(mine, {**variables, "answer_index": 1}),
            tmpl.render(theirs, ARC_RECORD),
        )
        assert rendered.inputs == expected.inputs, i
        assert rendered.target == expected.target == "a metric ruler", i
    assert len(arc) == 7
    rte = tmpl.load_lm_eval(held_in, task_prefix="rte_", schema="hf:glue/rte")
    ours = flan.category_templates("yes_no", BOOLQ, path=flan_file).templates
    variables = {"passage": RTE_RECORD["sentence1"], "question": RTE_RECORD["sentence2"]}
    for i, theirs in enumerate(rte):  # Flan's rte[0] .. rte[8], in file order
        mine = next(t for t in ours if t.name == f"rte[{i}]")
        rendered, expected = (
            tmpl.render(mine, {**variables, "answer_index": 0}),
            tmpl.render(theirs, RTE_RECORD),
        )
        assert rendered.inputs == expected.inputs, i
        assert rendered.target == expected.target == "no", i  # RTE label 1, BoolQ index 0
    assert len(rte) == 9


# ---------------------------------------------------------------- wiring into the mixtures


def test_default_mixtures_have_no_flan2022_templates():
    assert not [n for n in tasks.TASK_NAMES if ":flan2_" in n]


ADD = textwrap.dedent(
    """
    import json, seqio
    import jaxrobust.tasks as tasks
    from jaxrobust.tasks import qa

    def size(name):
        return len(seqio.get_mixture_or_task(name).tasks)

    groups = ["jr:mmlu:qa#all", "jr:bbl_winowhy:qa#all", "jr:boolq:qa#all",
              "jr:boolq:qa#observed_flan"]
    before = {g: size(g) for g in groups}
    names = qa.add_flan_observed(path=FLAN_PATH)
    after = {g: size(g) for g in groups + ["jr:mmlu:qa#observed_flan",
                                            "jr:bbl_winowhy:qa#observed_flan"]}
    print(json.dumps({"n": len(names), "before": before, "after": after}))
    """
)


def test_add_flan_observed_extends_the_mixtures(flan_file):
    # In a subprocess: the registries of this test session stay as registered.
    code = ADD.replace("FLAN_PATH", repr(str(flan_file)))
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=REPO
    ).stdout
    result = json.loads(out.splitlines()[-1])
    before, after = result["before"], result["after"]
    assert result["n"] == 57 * 43 + 14 * 43 + 27
    assert after["jr:mmlu:qa#observed_flan"] == 57 * 43
    assert after["jr:mmlu:qa#all"] == before["jr:mmlu:qa#all"] + 57 * 43
    assert after["jr:bbl_winowhy:qa#observed_flan"] == 43
    assert after["jr:bbl_winowhy:qa#all"] == before["jr:bbl_winowhy:qa#all"] + 43
    assert after["jr:boolq:qa#observed_flan"] == before["jr:boolq:qa#observed_flan"] + 27
    assert after["jr:boolq:qa#all"] == before["jr:boolq:qa#all"] + 27
