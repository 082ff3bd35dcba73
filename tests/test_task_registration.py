"""Registration refuses what would go wrong later (issues 19.5 and 15).

Every rendered example is checked (options one per label, none empty or
repeated, gold label in the label set) with an error naming task, template and
example; template ids that give one record file are refused; Python-style
``{variable}`` placeholders are refused; templates added to a registered data
set extend its mixtures; each data set has a standard evaluation split.
"""

import jaxrobust.tasks as tasks
import pytest
import seqio
from jaxrobust.tasks import extending, qa, registry, relation_extraction
from registry_helpers import restore_registries  # noqa: F401  (a fixture)

from jaxrobust.data import templates as tmpl


def _template(tid, jinja, choices, **kw):
    return tmpl.Template(
        id=tid, jinja=jinja, answer_choices=choices, provenance="unobserved", source="test",
        author="test", bank="test_bank.yaml", **kw,
    )  # fmt: skip


def _prepare(record):
    labels = record.get("labels", ["no", "yes"])
    variables = {**record, "answer_index": labels.index(record["gold"])}
    return registry.Prepared(variables, labels, record["gold"], ["no", "yes"], record["id"])


def _spec(records):
    return registry.TaskSpec(
        dataset="checked", format="qa", splits=("test",), read=lambda split: records,
        prepare=_prepare, sample=records[0],
    )  # fmt: skip


GOOD = {"id": "r0", "q": "Is ice cold?", "a": "no", "b": "yes", "gold": "yes"}
CHOICES = "{{ a }} ||| {{ b }}"
TARGET = "{{ q }} ||| {{ answer_choices[answer_index] }}"


@pytest.mark.parametrize(
    "bad, problem",
    [
        ({"b": " "}, "option 1 (label 'yes') renders empty"),
        ({"b": "no", "gold": "no"}, "renders the option 'no' more than once"),
        (
            {"labels": ["no", "yes", "maybe"]},
            "renders 2 options ['no', 'yes'] but the example has 3",
        ),
        (
            {"gold": "maybe", "labels": ["no", "maybe"]},
            "gold label 'maybe' is not in the label set",
        ),
    ],
)
def test_every_rendered_example_is_checked(bad, problem):
    # The problem is in the fourth record, not in the sample registration renders.
    records = [{**GOOD, "id": f"r{i}"} for i in range(3)] + [{**GOOD, "id": "r3", **bad}]
    spec = _spec(records)
    template = _template("chk_u01", TARGET, CHOICES)
    with pytest.raises(registry.ExampleError) as e:
        list(registry.examples(spec, template, "test"))
    assert str(e.value).startswith(
        f"test_bank.yaml: template 'chk_u01': task jr:checked:qa:chk_u01, example r3: {problem}"
    )
    assert (e.value.task, e.value.template_id, e.value.example_id) == (
        "jr:checked:qa:chk_u01",
        "chk_u01",
        "r3",
    )


def test_repeated_choices_of_the_data_itself_are_allowed(shared_data_dir):
    # 9 MMLU questions list one answer text twice; templates rendering the
    # texts render equal options, which rank scoring handles.
    spec = qa.mmlu_spec("business_ethics")
    record = next(r for r in spec.read("test") if len(set(r["choices"])) < 4)
    features = registry.to_features(spec, qa.bank("mmlu").get("mmlu_flan_style1"), record)
    assert len(set(features["options"])) < 4


@pytest.mark.usefixtures("restore_registries")
def test_ids_that_share_a_record_file_are_refused():
    spec = _spec([GOOD])
    first = _template("chk-u01", TARGET, CHOICES)
    assert registry.register(spec, first) == "jr:checked:qa:chk_u01"
    assert registry.register(spec, first) == "jr:checked:qa:chk_u01"  # again: harmless
    with pytest.raises(registry.RegistrationError) as e:
        registry.register(spec, _template("chk_u01", TARGET, CHOICES))
    assert "template ids 'chk-u01' (test_bank.yaml) and 'chk_u01' (test_bank.yaml)" in str(e.value)
    assert "jr__checked__qa__chk_u01.jsonl" in str(e.value)
    with pytest.raises(registry.RegistrationError) as e:
        registry.register(spec, _template("CHK_u01", TARGET, CHOICES))
    assert "tasks jr:checked:qa:chk_u01 (template 'chk-u01') and jr:checked:qa:CHK_u01" in str(
        e.value
    )
    assert registry.REGISTERED["jr:checked:qa:chk_u01"][1] is first


@pytest.mark.usefixtures("restore_registries")
def test_python_placeholders_for_task_variables_are_refused():
    spec = _spec([GOOD])
    with pytest.raises(tmpl.TemplateError) as e:
        registry.register(spec, _template("chk_u02", "Q: {q} ||| {{ answer_choices[0] }}", CHOICES))
    assert "template 'chk_u02'" in str(e.value) and "{q}" in str(e.value)
    assert "write {{ q }} for the variable" in str(e.value)
    # Braces around a word that is no variable of the task are literal text.
    literal = _template("chk_u03", "{note} {{ q }} ||| {{ answer_choices[answer_index] }}", CHOICES)
    assert registry.to_features(spec, literal, GOOD)["inputs"] == "{note} Is ice cold?"


# ---------------------------------------------------------------- adding templates


def _members(mixture):
    return sorted(t.name for t in seqio.get_mixture_or_task(mixture).tasks)


RE_TARGET = "{{ sentence }} {{ head }} / {{ tail }}: ||| {{ answer_choices[answer_index] }}"
RE_CHOICES = "{{ relations | join(' ||| ') }}"


@pytest.mark.usefixtures("restore_registries")
def test_add_templates_extends_semeval_mixtures():
    before = {g: _members(f"jr:semeval:re#{g}") for g in ("all", "unobserved")}
    new = [
        _template("re_mine1", RE_TARGET, RE_CHOICES),
        _template("re_mine2", RE_TARGET, RE_CHOICES),
    ]
    names = extending.add_templates("jr:semeval:re", new)
    assert names == ["jr:semeval:re:re_mine1", "jr:semeval:re:re_mine2"]
    for group in ("all", "unobserved"):
        assert _members(f"jr:semeval:re#{group}") == sorted(before[group] + names)
    extending.add_templates("jr:semeval:re", new)  # again: harmless
    assert _members("jr:semeval:re#all") == sorted(before["all"] + names)
    # Nothing replaced: an id already taken by another template is refused.
    taken = _template("re_u01", RE_TARGET, RE_CHOICES)
    with pytest.raises(registry.RegistrationError, match="already has a template 're_u01'"):
        extending.add_templates("jr:semeval:re", [taken])
    assert registry.REGISTERED["jr:semeval:re:re_u01"][1] == relation_extraction.bank("re").get(
        "re_u01"
    )
    with pytest.raises(KeyError, match="close names: \\['jr:semeval:re'"):
        extending.add_templates("jr:semevl:re", new)


@pytest.mark.usefixtures("restore_registries")
def test_register_with_mixtures_never_drops_members():
    # A second bank registered for a registered data set used to replace its
    # '#unobserved' and '#all' mixtures (SemEval's '#all' went from 20 to 8).
    spec = tasks.lookup("jr:semeval:re:re_u01")[0]
    before = _members("jr:semeval:re#all")
    names = registry.register_with_mixtures(spec, [_template("re_mine3", RE_TARGET, RE_CHOICES)])
    assert _members("jr:semeval:re#all") == sorted(before + names)


@pytest.mark.usefixtures("restore_registries")
def test_add_templates_to_every_mmlu_subject():
    before = _members("jr:mmlu:qa#all")
    mine = _template(
        "mmlu_mine1",
        "{{ question }} {% for c in choices %}({{ letters[loop.index0] }}) {{ c }} {% endfor %}"
        "||| {{ answer_choices[answer_index] }}",
        "{{ letters | join(' ||| ') }}",
    )
    names = extending.add_templates("jr:mmlu:qa", [mine])
    assert len(names) == 57 and names[0] == "jr:mmlu_abstract_algebra:qa:mmlu_mine1"
    assert _members("jr:mmlu:qa#all") == sorted(before + names)
    assert _members("jr:mmlu:qa#unobserved") == sorted(
        n for n in before + names if registry.REGISTERED[n][1].kind == "unobserved"
    )
    assert _members("jr:mmlu:qa:mmlu_mine1") == sorted(names)


# ---------------------------------------------------------------- evaluation split


def test_split_for_gives_each_data_set_its_standard_split():
    standard = {
        "jr:semeval:re:re_u01": "test",
        "jr:semeval:mcqa:mcqa_u01": "test",
        "jr:tacred:re:re_u01": "test",
        "jr:fewrel:re:re_u01": "validation",
        "jr:boolq:qa:boolq_u01": "validation",
        "jr:mmlu_anatomy:qa:mmlu_u01": "test",
        "jr:bbl_winowhy:qa:bb_default": "test",
        "jr:world_yn:qa:yn_h1": "test",
    }
    for task, split in standard.items():
        assert registry.split_for(task, None) == split, task
    assert registry.split_for("jr:semeval:re:re_u01", "train") == "train"
    with pytest.raises(registry.SplitError) as e:
        registry.split_for("jr:boolq:qa:boolq_u01", "test")
    assert str(e.value) == (
        "task jr:boolq:qa:boolq_u01: data set boolq has no split 'test'; it has ['validation'] "
        "(standard evaluation split 'validation', used when no split is given)"
    )
    with pytest.raises(ValueError, match="eval_split 'dev' is not one of its splits"):
        registry.TaskSpec("x", "qa", ("test",), list, _prepare, GOOD, eval_split="dev")
