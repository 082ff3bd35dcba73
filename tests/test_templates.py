"""Templates: loading, sandboxed strict rendering, errors, and the published banks.

The PromptSource (SemEval, BoolQ) and Flan (BoolQ) expectations below were
worked out by hand from the YAML sources in ../shared/data (YAML folding,
PromptSource's strip after the '|||' split, lm-eval's unstripped text).
"""

import pathlib
import textwrap

import pytest

from jaxrobust.data import templates as tmpl

# ---------------------------------------------------------------- rendering and errors


def _t(jinja, choices=None, tid="t1", **kw):
    return tmpl.Template(
        id=tid,
        jinja=jinja,
        answer_choices=choices,
        provenance=kw.pop("provenance", "unobserved"),
        source="test",
        author="test",
        bank="bank.yaml",
        **kw,
    )


def test_render_splits_input_and_target_and_choices():
    t = _t("Q: {{ q }} ||| {{ answer_choices[label] }}", "no ||| yes")
    r = tmpl.render(t, {"q": "is it?", "label": 1})
    assert r == tmpl.Rendered(inputs="Q: is it?", target="yes", options=("no", "yes"))


def test_set_in_input_is_visible_in_target():
    t = _t("{% set x = q | upper %}{{ q }} ||| {{ x }}")
    assert tmpl.render(t, {"q": "abc"}).target == "ABC"


def test_pipes_inside_data_do_not_split():
    t = _t("{{ q }} ||| {{ a }}")
    r = tmpl.render(t, {"q": "a ||| b", "a": "c"})
    assert (r.inputs, r.target) == ("a ||| b", "c")


def test_unknown_variable_names_bank_template_and_variable():
    t = _t("{{ passage }} ||| x", tid="my_id")
    with pytest.raises(tmpl.TemplateError) as e:
        tmpl.render(t, {"question": "q"})
    msg = str(e.value)
    assert "bank.yaml" in msg and "'my_id'" in msg and "'passage' is undefined" in msg
    assert "question" in msg  # lists what is available


def test_bad_jinja_fails_at_construction():
    with pytest.raises(tmpl.TemplateError, match=r"bank.yaml: template 'bad': bad Jinja"):
        _t("{{ q ||| x", tid="bad")


def test_sandbox_blocks_internals():
    t = _t("{{ q.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(tmpl.TemplateError, match="rendering failed"):
        tmpl.render(t, {"q": "x"})


def test_multiple_choice_task_needs_answer_choices():
    t = _t("{{ q }} ||| yes", tid="nochoice")
    with pytest.raises(tmpl.TemplateError, match="'nochoice': no answer choices"):
        tmpl.validate(t, {"q": "x"}, option_labels=["no", "yes"], answer_index=1)


def test_validate_checks_choice_count_and_target():
    t = _t("{{ q }} ||| no", "no ||| yes")
    with pytest.raises(tmpl.TemplateError, match="renders 2 answer choices"):
        tmpl.validate(t, {"q": "x"}, option_labels=["a", "b", "c"])
    with pytest.raises(
        tmpl.TemplateError, match="target renders 'no' but the gold option is 'yes'"
    ):
        tmpl.validate(t, {"q": "x"}, option_labels=["n", "y"], answer_index=1)


@pytest.mark.parametrize("bad", ["observed", "observed:nope", "styled:flan", "Unobserved"])
def test_bad_provenance(bad):
    with pytest.raises(tmpl.TemplateError):
        _t("x", provenance=bad)


def test_provenance_parts():
    t = _t("x", provenance="observed:flan")
    assert (t.kind, t.collection) == ("observed", "flan")
    assert (_t("x").kind, _t("x").collection) == ("unobserved", None)


# ---------------------------------------------------------------- loaders


def test_load_bank_defaults_and_errors(tmp_path):
    path = tmp_path / "b.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            family: f
            defaults: {answer_choices: "no ||| yes", target: "{{ answer_choices[i] }}",
                       author: me, source: here}
            templates:
              - {id: a, provenance: unobserved, input: "{{ q }}?"}
              - {id: b, provenance: "style:flan", input: "{{ q }}!", answer_choices: "n ||| y"}
            """
        )
    )
    bank = tmpl.load_bank(path)
    assert bank.family == "f" and bank.ids() == ["a", "b"]
    assert tmpl.render(bank.get("b"), {"q": "x", "i": 0}) == tmpl.Rendered("x!", "n", ("n", "y"))
    for body, problem in [
        ("- {id: a, provenance: unobserved, input: x, colour: red}", "unknown keys"),
        (
            "- {id: a, provenance: default, input: x}\n  - {id: a, provenance: default, input: y}",
            "duplicate",
        ),
        ("- {id: a, provenance: unobserved, input: '{% if %}'}", "bad Jinja"),
        ("- {id: a, input: x}", "missing keys"),
    ]:
        path.write_text(
            "family: f\ndefaults: {target: t, author: me, source: s}\ntemplates:\n  " + body
        )
        with pytest.raises(tmpl.TemplateError, match=problem) as e:
            tmpl.load_bank(path)
        assert str(path) in str(e.value) and "'a'" in str(e.value)


def test_python_style_placeholders_are_refused_in_banks(tmp_path):
    path = tmp_path / "b.yaml"
    head = "family: f\ndefaults: {target: t, author: me, source: s}\ntemplates:\n"
    path.write_text(
        head + "  - id: pyfmt\n    provenance: unobserved\n    input: |-\n"
        "      Passage: {{ passage }}\n      Question: {question}?\n"
    )
    with pytest.raises(tmpl.TemplateError) as e:
        tmpl.load_bank(path)
    assert str(e.value) == (
        f"{path}: template 'pyfmt': input (line 2) holds the Python-style placeholder "
        "{question}, which Jinja prints literally; write {{ question }} for the variable, "
        "or {{ '{question}' }} for the literal text"
    )
    # Literal braces in any other form are text, and {{ '{x}' }} prints '{x}'.
    path.write_text(
        head + "  - {id: ok, provenance: unobserved, "
        """input: 'JSON {"a": 1}, set { x }, {{ "{x}" }} {{ q }}'}\n"""
    )
    (ok,) = tmpl.load_bank(path)
    assert tmpl.render(ok, {"q": "?"}).inputs == 'JSON {"a": 1}, set { x }, {x} ?'


def test_published_collections_keep_their_literal_braces(tmp_path):
    path = tmp_path / "templates.yaml"
    path.write_text(PS_YAML.replace("Is it {{ pick }}?", "Is it {{ pick }} {text}?"))
    (t,) = tmpl.load_promptsource(path)
    example = {"options": ["a", "b"], "label": 0}
    assert "{text}" in tmpl.render(t, example).inputs


PS_YAML = """\
dataset: toy
subset: sub
templates:
  11111111-2222-3333-4444-555555555555: !Template
    answer_choices: '{{ options | join(" ||| ") }}'
    id: 11111111-2222-3333-4444-555555555555
    jinja: "{% set pick = options | choice %}Is it {{ pick }}? ||| {{ answer_choices[label] }}"
    metadata: !TemplateMetadata
      choices_in_prompt: false
      metrics: [Accuracy]
    name: pick one
    reference: ''
"""


def test_promptsource_loader_and_seeded_choice(tmp_path):
    path = tmp_path / "templates.yaml"
    path.write_text(PS_YAML)
    bank = tmpl.load_promptsource(path)
    (t,) = bank
    assert (bank.family, t.provenance, t.schema, t.name) == (
        "toy/sub",
        "observed:p3:toy/sub",
        "hf:toy/sub",
        "pick one",
    )
    example = {"options": [f"o{i}" for i in range(50)], "label": 3}
    runs = [tmpl.render(t, example, seed=7, example_key="e1") for _ in range(2)]
    assert runs[0] == runs[1] and runs[0].target == "o3"
    assert tmpl.render(t, example, seed=7, example_key="e1") == runs[0]
    # Different seeds (or examples) draw differently: 50 options, 20 seeds.
    picks = {tmpl.render(t, example, seed=s, example_key="e1").inputs for s in range(20)}
    assert len(picks) > 5


def test_lm_eval_loader_resolves_include(tmp_path):
    (tmp_path / "_base").write_text("output_type: generate_until\ndoc_to_choice: null\n")
    (tmp_path / "g.yaml").write_text(
        textwrap.dedent(
            """\
            group: g
            task:
              - group: sub
                task:
                  - task: toy_prompt-0
                    task_alias: prompt-0
                    include: _base
                    doc_to_text: "{{x}}\\n\\nOPTIONS:\\n- no\\n- yes"
                    doc_to_target: "{{['no', 'yes'][label]}}"
                  - task: other_prompt-0
                    include: _base
                    doc_to_text: "{{x}}"
                    doc_to_target: "{{y}}"
            """
        )
    )
    bank = tmpl.load_lm_eval(tmp_path / "g.yaml", task_prefix="toy_", schema="hf:toy")
    (t,) = bank
    assert t.id == "prompt-0" and t.answer_choices == "no ||| yes"
    r = tmpl.render(t, {"x": "Sky.", "label": 1})
    assert r == tmpl.Rendered("Sky.\n\nOPTIONS:\n- no\n- yes", "yes", ("no", "yes"))
    with pytest.raises(tmpl.TemplateError, match="no task entries"):
        tmpl.load_lm_eval(tmp_path / "g.yaml", task_prefix="absent_", schema="hf:toy")


# ---------------------------------------------------------------- published banks, by hand

SEMEVAL_8001 = "The most common <e1>audits</e1> were about <e2>waste</e2> and recycling."
_SEMEVAL_CHOICES = (
    "Cause Effect e1,e2, Cause Effect e2,e1, Component Whole e1,e2, Component Whole e2,e1, "
    "Content Container e1,e2, Content Container e2,e1, Entity Destination e1,e2, "
    "Entity Destination e2,e1, Entity Origin e1,e2, Entity Origin e2,e1, "
    "Instrument Agency e1,e2, Instrument Agency e2,e1, Member Collection e1,e2, "
    "Member Collection e2,e1, Message Topic e1,e2, Message Topic e2,e1, "
    "Product Producer e1,e2, Product Producer e2,e1"
)
SEMEVAL_EXPECTED = {
    "202246b0-3f82-42b9-bc8d-d36997b5f2cb": f"Given the sentence, {SEMEVAL_8001}\n\nOut of the "
    f"options {_SEMEVAL_CHOICES}, Other, \n\nWhat is the semantic relations between the two "
    "nominals (nouns or noun phrases) e1 and e2 in the sentence:",
    "5d7123a8-4ed4-42ce-bcfb-4af415962efc": "How semantically related are the two nominals in "
    f"the sentence, {SEMEVAL_8001}\n\nPlease answer {_SEMEVAL_CHOICES} or Other:",
    "87ca690e-87a7-44d5-b001-a4181482f5c9": "Given the two nominals (nouns or noun phrases) e1 "
    f"and e2 in {SEMEVAL_8001}\n\n===\n\nWhat is the semantic relations between e1 and e2 :",
    "c97e7bbf-b7f0-4cee-ada5-431ce7d606cc": f"Given the sentence, {SEMEVAL_8001}\n\n===\n\nWhat "
    "is the semantic relations between the two nominals (nouns or noun phrases) e1 and e2 in "
    "the sentence:",
    "d7e88599-da89-4cfd-94e2-65e68c7ef141": f"Sentence: {SEMEVAL_8001}\n\nAre the two nominals "
    "(nouns or noun phrases) in the sentence semantically related as "
    f"{_SEMEVAL_CHOICES} or Other?",
}


def test_promptsource_semeval_by_hand(shared_data_dir):
    bank = tmpl.load_promptsource(
        shared_data_dir / "promptsource/sem_eval_2010_task_8/templates.yaml"
    )
    assert sorted(bank.ids()) == sorted(SEMEVAL_EXPECTED)
    # HF schema: tagged sentence, relation = class index (Message-Topic(e1,e2) is 14).
    example = {"sentence": SEMEVAL_8001, "relation": 14}
    for t in bank:
        r = tmpl.render(t, example)
        assert r.inputs == SEMEVAL_EXPECTED[t.id], t.id
        assert r.target == "Message Topic e1,e2" and len(r.options) == 19


TOMATO = {"passage": "A tomato is a fruit.", "question": "is a tomato a fruit", "label": 1}
P, Q = TOMATO["passage"], TOMATO["question"]
BOOLQ_PS_EXPECTED = {
    "after_reading": (
        f"Passage: {P}\n\nAfter reading this passage, I have a question: {Q}? True or False?",
        "True",
    ),
    "GPT-3 Style": (f"{P} \nQuestion: {Q}\nAnswer:", "Yes"),
    "I wonder\u2026": (f"{P} \n\nHaving read that, I wonder {Q}?", "Yes"),
    "yes_no_question": (
        f"Text: {P}\n\nAnswer the following yes/no question: {Q}? Yes or no?",
        "Yes",
    ),
    "could you tell me\u2026": (f"{P} \n\nHaving read that, could you tell me {Q}?", "Yes"),
    "exam": (f"EXAM\n1. Answer by yes or no.\n\nDocument: {P}\nQuestion: {Q}?", "Yes"),
    "based on the following passage": (f"Based on the following passage, {Q}? {P}", "Yes"),
    "exercise": (
        "Exercise: read the text and answer the question by True or False.\n\n"
        f"Text: {P}\nQuestion: {Q}?",
        "True",
    ),
    "based on the previous passage": (f"{P}\nBased on the previous passage, {Q}?", "Yes"),
    "valid_binary": (f"{P}\n\nQ: {Q}? True or False?", "True"),
}
_OPTS = "\n\nOPTIONS:\n- no\n- yes"
BOOLQ_FLAN_EXPECTED = {
    "prompt-0": f"{P}\n\nCan we conclude that {Q}?{_OPTS}",
    "prompt-1": f"{P}\n\nIs it true that {Q}?{_OPTS}",
    "prompt-2": f"{P}\n\n{Q}?{_OPTS}",
    "prompt-3": f"Text: {P}\n\nQuestion: {Q}?{_OPTS}",
    "prompt-4": f"{P}\n\nWhat's the best answer to this question: {Q}?{_OPTS}",
    "prompt-5": f"{P}\nBased on the above text what's the best answer to this question: "
    f"{Q}?{_OPTS}",
    "prompt-6": f"{P}\nAnswer this question making sure that the answer is supposed by the text: "
    f"{Q}?{_OPTS}",
    "prompt-7": f"{P}\n\nIs the following statement correct based on the text\n\n{Q}{_OPTS}",
    "prompt-8": f'{P}\n\nIs this statement correct "{Q}"?{_OPTS}',
    "prompt-9": f"Is it true that {Q} based on the following text?\n\n{P}{_OPTS}",
}


def test_promptsource_boolq_by_hand(shared_data_dir):
    bank = tmpl.load_promptsource(shared_data_dir / "promptsource/super_glue/boolq/templates.yaml")
    assert sorted(t.name for t in bank) == sorted(BOOLQ_PS_EXPECTED)
    for t in bank:
        r = tmpl.render(t, TOMATO)
        assert (r.inputs, r.target) == BOOLQ_PS_EXPECTED[t.name], t.name


def test_flan_boolq_by_hand(shared_data_dir):
    bank = tmpl.load_lm_eval(
        shared_data_dir / "flan/flan_held_in.yaml", task_prefix="boolq_", schema="hf:boolq"
    )
    assert bank.ids() == list(BOOLQ_FLAN_EXPECTED)
    for t in bank:
        r = tmpl.render(t, TOMATO)
        assert r == tmpl.Rendered(BOOLQ_FLAN_EXPECTED[t.id], "yes", ("no", "yes")), t.id
        assert t.provenance == "observed:flan"


def test_flan_yaml_other_groups_load(shared_data_dir):
    path = shared_data_dir / "flan/flan_held_in.yaml"
    anli = tmpl.load_lm_eval(path, task_prefix="anli_r1_", schema="hf:anli")
    assert len(anli) == 9 and anli.get("prompt-0").answer_choices.count("|||") == 2
    rte = tmpl.load_lm_eval(path, task_prefix="rte_", schema="hf:rte")
    assert len(set(rte.ids())) == len(rte)  # ids from task_alias, unique


def test_every_promptsource_file_parses(shared_data_dir):
    files = sorted(pathlib.Path(shared_data_dir, "promptsource").rglob("templates.yaml"))
    assert len(files) == 279
    total = sum(len(tmpl.load_promptsource(f)) for f in files)
    assert total > 2000
