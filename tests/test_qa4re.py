"""QA4RE's re_templates.py read as data (jaxrobust.data.qa4re), on a fixture in its layout
(tests/fixtures/qa4re/re_templates.py: invented sentences, QA4RE's names and shapes),
and the MC-QA tasks built from it (tasks.relation_extraction.qa4re_mcqa_specs)."""

import pathlib

import pytest
from jaxrobust.tasks import relation_extraction as rex
from jaxrobust.tasks import relation_schemas as schemas

from jaxrobust.data import qa4re

FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures"
FILE = FIXTURES / "qa4re" / "re_templates.py"


@pytest.fixture(scope="module")
def loaded():
    return qa4re.load(FILE)


def test_counts_and_sources(loaded):
    assert sorted(loaded) == ["retacred", "semeval", "tacred", "tacrev"]
    counts = {k: (len(s.labels), len(s.valid), s.negative) for k, s in loaded.items()}
    assert counts == {
        "tacred": (42, 5, "no_relation"),
        "tacrev": (42, 5, "no_relation"),
        "retacred": (40, 3, "no_relation"),
        "semeval": (19, 1, "Other"),
    }
    assert set(loaded["tacred"].labels) == set(schemas.TACRED_LABELS)
    assert set(loaded["retacred"].labels) == set(schemas.RETACRED_LABELS)
    assert "SURE_TACRED_LABEL_TEMPLATES" in loaded["tacrev"].source
    # The earlier template set in the file is not what QA4RE uses: never read.
    assert loaded["tacred"].templates["no_relation"] == (
        "{subj} and {obj} stand in no listed relation",
    )


def test_options_in_qa4re_order(loaded):
    """The pair's relations in the file's order, one option per sentence, then the
    negative relation; an unlisted pair gets the negative alone."""
    tac = loaded["tacred"]
    assert tac.options("PERSON", "CITY") == [
        ("per:city_of_birth", "{subj} relates as person city of birth to {obj}"),
        ("per:city_of_birth", "{subj} is linked by person city of birth with {obj}"),
        ("per:city_of_death", "{subj} relates as person city of death to {obj}"),
        ("per:cities_of_residence", "{subj} relates as person cities of residence to {obj}"),
        ("no_relation", "{subj} and {obj} stand in no listed relation"),
    ]
    assert tac.options("PERSON", "URL") == [
        ("no_relation", "{subj} and {obj} stand in no listed relation")
    ]
    sem = loaded["semeval"].options(*qa4re.SEMEVAL_TYPES)
    assert len(sem) == 19 and sem[-1][0] == "Other"
    assert sem[1] == ("Cause-Effect(e2,e1)", "{obj} relates as cause to effect to {subj}")


def test_prepared_examples_on_the_tacred_fixture(loaded, monkeypatch):
    monkeypatch.setenv("JAXROBUST_TACRED_DIR", str(FIXTURES / "tacred"))
    specs = {s.dataset: s for s in rex.qa4re_mcqa_specs(loaded)}
    assert sorted(specs) == ["retacred", "semeval", "tacred", "tacrev"]
    assert all(s.format == "mcqa" for s in specs.values())
    records = {r["relation"]: r for r in specs["tacred"].read("test")}
    r = records["per:city_of_birth"]
    p = specs["tacred"].prepare(r)
    assert p.option_labels == [
        "per:city_of_birth",
        "per:city_of_birth",
        "per:city_of_death",
        "per:cities_of_residence",
        "no_relation",
    ]
    assert p.variables["letters"] == ["A", "B", "C", "D", "E"]
    assert p.variables["answer_index"] == 0  # The first option of the gold relation.
    assert p.variables["options"][0] == (
        f"{r['head']} relates as person city of birth to {r['tail']}"
    )
    assert p.label == "per:city_of_birth" and tuple(p.label_space) == schemas.TACRED_LABELS
    # The gold relation outside the types' options: answer_index -1, label kept.
    odd = dict(r, tail_type="URL")
    q = specs["tacred"].prepare(odd)
    assert q.option_labels == ["no_relation"] and q.variables["answer_index"] == -1
    # SemEval: every relation, in the file's order, the entities as subject and object.
    sem = specs["semeval"].prepare(rex.SEMEVAL_SAMPLE)
    assert len(sem.option_labels) == 19 and sem.option_labels[-1] == "Other"
    gold = sem.option_labels.index("Cause-Effect(e1,e2)")
    assert sem.variables["answer_index"] == gold
    assert sem.variables["options"][gold] == "storm relates as cause to effect to flood"


def _write(tmp_path, text):
    path = tmp_path / "re_templates.py"
    path.write_text(text)
    return path


def test_bad_files_are_named(tmp_path, loaded):
    text = FILE.read_text()
    with pytest.raises(qa4re.QA4REFormatError, match=r"no top-level assignment of SEMEVAL_LABELS"):
        qa4re.load(_write(tmp_path, text.replace("SEMEVAL_LABELS = [", "SEMEVAL_NAMES = [")))
    broken = text.replace(
        '"per:age": ["{subj} relates as person age to {obj}"]', '"per:age": ["{subj} is old"]'
    )
    with pytest.raises(qa4re.QA4REFormatError, match=r"line \d+: .*'per:age'.*lacks"):
        qa4re.load(_write(tmp_path, broken), ["tacred"])
    unknown = text.replace('"PERSON:NUMBER": ["per:age"]', '"PERSON:NUMBER": ["per:height"]')
    with pytest.raises(qa4re.QA4REFormatError, match=r"TACRED_VALID_CONDITIONS_REV.*per:height"):
        qa4re.load(_write(tmp_path, unknown), ["tacred"])
    comprehension = text.replace("SEMEVAL_LABELS = [", "SEMEVAL_LABELS = [x for x in []] + [", 1)
    with pytest.raises(qa4re.QA4REFormatError, match=r"line \d+: SEMEVAL_LABELS must be a list"):
        qa4re.load(_write(tmp_path, comprehension), ["semeval"])
    with pytest.raises(qa4re.QA4REFormatError, match=r"line 1: not Python syntax"):
        qa4re.load(_write(tmp_path, "TACRED_LABELS = [\n"))
    # A label set that is not the data set's is refused when the tasks are built.
    fewer = dict(loaded)
    fewer["tacred"] = qa4re.Schema(
        "tacred", loaded["tacred"].labels[:-1], {}, {}, "no_relation", "test"
    )
    with pytest.raises(ValueError, match=r"only here \['per:title'\]"):
        rex.qa4re_mcqa_specs(fewer)
