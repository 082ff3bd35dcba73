"""Damaged or incomplete data fails loudly, naming the file and where (issue 19, items 6 and 10).

Each test writes a small data folder, points `datasets.DataConfig` at it and
checks the reader's error: a SemEval file cut mid-record or inside a label,
bad JSON, bad UTF-8, a missing field, a short CSV row, a count that is not the
published size, a lone surrogate, and a data folder without the observed
template collections.
"""

import json
import logging
import shutil

import jaxrobust.tasks as tasks
import pytest
from jaxrobust.tasks import qa, registry, relation_extraction, relation_schemas
from registry_helpers import restore_registries  # noqa: F401  (a fixture)

from jaxrobust.analysis import semeval_scorer
from jaxrobust.data import datasets

SEMEVAL = (
    '1\t"The <e1>storm</e1> caused a <e2>flood</e2>."\n'
    "Cause-Effect(e1,e2)\n"
    "Comment:\n"
    "\n"
    '2\t"A <e1>key</e1> in the <e2>box</e2>."\n'
    "Content-Container(e1,e2)\n"
    "Comment: the key is inside\n"
    "\n"
    '3\t"The <e1>author</e1> wrote the <e2>book</e2>."\n'
    "Product-Producer(e2,e1)\n"
    "Comment:\n"
    "\n"
)


@pytest.fixture
def data_dir(tmp_path):
    """An empty data folder the readers read from, for the test's duration."""
    previous = datasets.set_data_config(datasets.DataConfig(data_dir=str(tmp_path)))
    yield tmp_path
    datasets.set_data_config(previous)


def _write(root, relative, content):
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def _boolq_rows(n):
    return [{"question": f"is {i} even", "passage": f"{i} is a number.", "answer": i % 2 == 0}
            for i in range(n)]  # fmt: skip


# ---------------------------------------------------------------- SemEval


def test_semeval_file_cut_mid_record_raises(data_dir):
    # Cut inside the third record's sentence: the reader used to drop the record.
    cut = SEMEVAL[: SEMEVAL.index("wrote")]
    path = _write(data_dir, "semeval2010_task8/TEST_FILE_FULL.TXT", cut)
    with pytest.raises(datasets.DataFormatError, match=r"line 9: record cut short") as e:
        datasets.read_semeval("test")
    assert str(path) in str(e.value)
    # Cut after the relation line, before the comment: also a cut record.
    _write(data_dir, "semeval2010_task8/TEST_FILE_FULL.TXT", SEMEVAL[: SEMEVAL.rindex("Comment")])
    with pytest.raises(datasets.DataFormatError, match=r"line 9: record cut short"):
        datasets.read_semeval("test")


def test_semeval_file_cut_inside_a_label_names_file_and_line(data_dir):
    # The reader used to return gold label 'Produ' for the last record.
    cut = SEMEVAL[: SEMEVAL.index("ct-Producer")]
    path = _write(data_dir, "semeval2010_task8/TEST_FILE_FULL.TXT", cut)
    with pytest.raises(datasets.DataFormatError) as e:
        datasets.read_semeval("test")
    assert f"{path}, line 10: relation 'Produ' is not a SemEval label, and the file ends" in str(
        e.value
    )
    # A label damaged inside the file, its record complete.
    _write(data_dir, "semeval2010_task8/TEST_FILE_FULL.TXT", SEMEVAL.replace("Content-", "Instr"))
    with pytest.raises(datasets.DataFormatError) as e:
        datasets.read_semeval("test")
    assert f"{path}, line 6: relation 'InstrContainer(e1,e2)' is not a SemEval label;" in str(
        e.value
    )


def test_semeval_label_set_agrees_with_scorer_and_tasks():
    assert set(datasets.SEMEVAL_LABELS) == set(semeval_scorer.LABELS)
    assert datasets.SEMEVAL_LABELS == relation_schemas.SEMEVAL_LABELS


def test_semeval_count_must_be_the_official_size(data_dir):
    path = _write(data_dir, "semeval2010_task8/TEST_FILE_FULL.TXT", SEMEVAL)
    with pytest.raises(datasets.DataFormatError) as e:
        datasets.read_semeval("test")
    assert f"{path}: 3 records, but semeval2010_task8's test split has 2717" in str(e.value)


def test_real_semeval_cut_at_the_last_record(shared_data_dir, data_dir):
    real = (shared_data_dir / "semeval2010_task8/TEST_FILE_FULL.TXT").read_bytes()
    cut = real[: real.rindex(b"Entity-Destination(e2,e1)") + len(b"Entity-Dest")]
    _write(data_dir, "semeval2010_task8/TEST_FILE_FULL.TXT", cut)
    with pytest.raises(datasets.DataFormatError, match=r"line 10866: relation 'Entity-Dest'"):
        datasets.read_semeval("test")
    _write(data_dir, "semeval2010_task8/TEST_FILE_FULL.TXT", real[: real.rindex(b"ring</e2>")])
    with pytest.raises(datasets.DataFormatError, match=r"line 10865: record cut short"):
        datasets.read_semeval("test")  # used to return 2,716 records


# ---------------------------------------------------------------- JSON, UTF-8, CSV, fields


def test_bad_json_names_file_line_and_column(data_dir):
    path = _write(data_dir, "boolq/boolq_validation.json", '[{"question": "q",\n "passage": }]')
    with pytest.raises(datasets.DataFormatError) as e:
        datasets.read_boolq()
    assert f"{path}, line 2, column 13: not valid JSON" in str(e.value)


def test_bad_utf8_names_file_and_line(data_dir):
    body = json.dumps(_boolq_rows(2), indent=1).encode()
    body = body.replace(b"1 is a number", b"1 is a \xff number")
    path = _write(data_dir, "boolq/boolq_validation.json", body)
    with pytest.raises(datasets.DataFormatError) as e:
        datasets.read_boolq()
    line = body[: body.index(b"\xff")].count(b"\n") + 1
    assert f"{path}, line {line}: not valid UTF-8" in str(e.value)


def test_missing_field_names_file_record_and_field(data_dir):
    rows = _boolq_rows(3)
    del rows[2]["passage"]
    path = _write(data_dir, "boolq/boolq_validation.json", json.dumps(rows))
    with pytest.raises(datasets.DataFormatError) as e:
        datasets.read_boolq()
    assert f"{path}, example 2: missing field 'passage'" in str(e.value)
    rows[2]["passage"], rows[1]["answer"] = "p", "yes"
    _write(data_dir, "boolq/boolq_validation.json", json.dumps(rows))
    with pytest.raises(datasets.DataFormatError, match=r"example 1: field 'answer' is 'yes'"):
        datasets.read_boolq()


def test_boolq_count_must_be_the_official_size(data_dir):
    path = _write(data_dir, "boolq/boolq_validation.json", json.dumps(_boolq_rows(4)))
    with pytest.raises(datasets.DataFormatError, match="4 records, but boolq's validation") as e:
        datasets.read_boolq()
    assert str(path) in str(e.value)


def test_short_csv_row_names_file_and_line(data_dir):
    rows = ['"What is 2+2?",3,4,5,6,B\n'] * 99 + ['"What is 1+1?",1,2,3\n']
    path = _write(data_dir, "mmlu/abstract_algebra_test.csv", "".join(rows))
    with pytest.raises(datasets.DataFormatError) as e:
        datasets.read_mmlu("abstract_algebra")
    assert f"{path}, line 100: expected 6 fields" in str(e.value)
    _write(data_dir, "mmlu/abstract_algebra_test.csv", "".join(rows[:99]))
    with pytest.raises(datasets.DataFormatError, match="99 records, but mmlu/abstract_algebra"):
        datasets.read_mmlu("abstract_algebra")


def test_fewrel_and_bigbench_fields(data_dir):
    example = {"tokens": ["A", "crosses", "B"], "h": ["a", "Q1", [[0]]], "t": ["b", "Q2", [[2]]]}
    broken = {"tokens": ["A"], "h": ["a", "Q1"], "t": ["b", "Q2", [[0]]]}
    path = _write(data_dir, "fewrel/val_wiki.json", json.dumps({"P177": [example, broken]}))
    with pytest.raises(datasets.DataFormatError) as e:
        datasets.read_fewrel()
    assert f"{path}, relation P177, example 1: field 'h' is not [name, id" in str(e.value)
    task = {"examples": [{"input": "x", "target_scores": {"a": 1, "b": 0}}, {"target_scores": {}}]}
    path = _write(data_dir, "bigbench_lite/winowhy/task.json", json.dumps(task))
    with pytest.raises(datasets.DataFormatError) as e:
        datasets.read_bigbench("winowhy")
    assert f"{path}, example 1: target_scores {{}} is not choice -> score" in str(e.value)


def test_user_supplied_tacred_count_is_a_warning(tmp_path, caplog):
    rows = [
        {"id": "x1", "token": ["Anna", "was", "born", "in", "Oslo"], "subj_start": 0,
         "subj_end": 0, "obj_start": 4, "obj_end": 4, "relation": "per:city_of_birth"}
    ]  # fmt: skip
    _write(tmp_path, "test.json", json.dumps(rows))
    previous = datasets.set_data_config(datasets.DataConfig(tacred_dir=str(tmp_path)))
    try:
        with caplog.at_level(logging.WARNING, logger=datasets.__name__):
            assert len(datasets.read_tacred("tacred", "test")) == 1
        assert "1 records, but tacred's test split has 15509" in caplog.text
        del rows[0]["relation"]
        _write(tmp_path, "test.json", json.dumps(rows))
        with pytest.raises(datasets.DataFormatError, match=r"example 0 \(id x1\): missing field"):
            datasets.read_tacred("tacred", "test")
    finally:
        datasets.set_data_config(previous)


# ---------------------------------------------------------------- lone surrogate (19.10)


def test_lone_surrogate_names_data_set_and_example(data_dir, monkeypatch):
    # JSON may escape a lone surrogate; Python decodes it, and no encoder can
    # write it back, so it used to fail far later naming no example.
    monkeypatch.delitem(datasets.KNOWN_SIZES, ("boolq", "validation"))
    rows = _boolq_rows(3)
    body = json.dumps(rows).replace("2 is a number", "2 is a \\ud800 number")
    _write(data_dir, "boolq/boolq_validation.json", body)
    name = "jr:boolq:qa:boolq_u01"
    with pytest.raises(registry.ExampleError) as e:
        list(tasks.examples(name, "validation"))
    message = str(e.value)
    assert f"task {name}, example boolq-2" in message and "data set boolq" in message
    assert "lone surrogate '\\ud800'" in message and "'boolq_u01'" in message


# ---------------------------------------------------------------- missing template collections


@pytest.mark.usefixtures("restore_registries")
def test_missing_collections_are_named_with_the_mixture(data_dir, caplog):
    with caplog.at_level(logging.WARNING, logger=registry.__name__):
        relation_extraction.register_all()
        qa.register_all()
    ps_semeval = data_dir / "promptsource/sem_eval_2010_task_8/templates.yaml"
    ps_boolq = data_dir / "promptsource/super_glue/boolq/templates.yaml"
    flan = data_dir / "flan/flan_held_in.yaml"
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("jr:semeval:re#all") and str(ps_semeval) in m for m in messages)
    assert any(
        m.startswith("jr:boolq:qa#all") and str(ps_boolq) in m and str(flan) in m for m in messages
    ), messages
    assert not any("jr:semeval:mcqa" in m or "jr:mmlu" in m for m in messages)


@pytest.mark.usefixtures("restore_registries")
def test_no_warning_when_the_collections_are_there(shared_data_dir, data_dir, caplog):
    for folder in ("promptsource/sem_eval_2010_task_8", "promptsource/super_glue/boolq", "flan"):
        shutil.copytree(shared_data_dir / folder, data_dir / folder)
    with caplog.at_level(logging.WARNING, logger=registry.__name__):
        relation_extraction.register_all()
        observed, missing = qa.observed_boolq()
    assert not caplog.records and not missing and len(observed) == 20
