"""The SemEval-2010 Task 8 scorer against the official scorer's published outputs.

The shared-data tests compare with `result_scores{1,2,3,5}.txt`, written by
the official Perl scorer v1.2; the fixture tests (tests/fixtures/semeval_*.txt,
hand-scored below) run without the shared data.
"""

import pathlib
import re

import pytest
from conftest import data_missing

from jaxrobust.analysis import semeval_scorer

FIXTURES = pathlib.Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def vectors(shared_data_dir):
    path = shared_data_dir / "semeval2010_task8" / "scorer_vectors"
    if not path.is_dir():
        data_missing(f"SemEval-2010 Task 8 scorer vectors not found at {path}")
    return path


def _expected(vectors, k):
    # The published outputs have CRLF line endings (written on Windows).
    return (vectors / f"result_scores{k}.txt").read_bytes().decode().replace("\r\n", "\n")


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_report_reproduces_official_output(vectors, k):
    result = semeval_scorer.score_files(
        vectors / f"proposed_answer{k}.txt", vectors / f"answer_key{k}.txt"
    )
    got = semeval_scorer.format_report(result).splitlines()
    want = _expected(vectors, k).splitlines()
    for number, (g, w) in enumerate(zip(got, want, strict=False), start=1):
        assert g == w, f"result_scores{k}.txt line {number}"
    assert len(got) == len(want)


_REL = re.compile(
    r"^\s*(\S+) :\s+P =\s+(\d+)/\(?\s*(\d+)(?: \+\s*(\d+)\))? =\s+([\d.]+)%\s+"
    r"R =\s+(\d+)/\s*(\d+) =\s+([\d.]+)%\s+F1 =\s+([\d.]+)%$"
)


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_structured_scores_match_printed_numbers(vectors, k):
    """The dataclass fields (not just the text) carry the printed numbers."""
    result = semeval_scorer.score_files(
        vectors / f"proposed_answer{k}.txt", vectors / f"answer_key{k}.txt"
    )
    blocks = re.split(r"^<<< ", _expected(vectors, k), flags=re.M)[1:4]
    for view, block in zip(result.views, blocks, strict=True):
        printed = [_REL.match(line).groups() for line in block.splitlines() if _REL.match(line)]
        assert [p[0] for p in printed] == [s.label for s in view.relations]
        for p, s in zip(printed, view.relations, strict=True):
            assert int(p[1]) == s.correct and int(p[5]) == s.correct
            assert int(p[2]) == (s.proposed if view.use_wrong_dir else s.proposed + s.wrong_dir)
            assert int(p[3] or 0) == (s.wrong_dir if view.use_wrong_dir else 0)
            assert int(p[6]) == s.actual
            assert [f"{x:.2f}" for x in (s.precision, s.recall, s.f1)] == list(p[4:5] + p[7:9])
        macro = re.search(r"P =\s+([\d.]+)%\tR =\s+([\d.]+)%\tF1 =\s+([\d.]+)%", block).groups()
        assert [f"{x:.2f}" for x in view.macro] == list(macro)
    official = re.search(r"macro-averaged F1 = ([\d.]+)%", _expected(vectors, k)).group(1)
    assert f"{result.official_score:.2f}" == official


def test_malformed_file_rejected_with_line_numbers(vectors):
    path = vectors / "proposed_answer4.txt"
    with pytest.raises(semeval_scorer.SemEvalFormatError) as info:
        semeval_scorer.score_files(path, vectors / "answer_key3.txt")
    # The README: "the last one contains four errors".
    assert [n for n, _ in info.value.errors] == [2, 3, 5, 7]
    assert "Message-Topc(e1,e2)" in info.value.errors[0][1]
    assert "already defined on line 4" in info.value.errors[3][1]
    assert str(path) in str(info.value) and f"{path}:5:" in str(info.value)


def test_fixture_scores_by_hand():
    """Key 6 ids; 5 predicted: 1 correct, 1 wrong direction, 1 Other for a
    relation, 1 correct Other, 1 relation absent from the key; id 6 skipped."""
    result = semeval_scorer.score_files(
        FIXTURES / "semeval_proposed.txt", FIXTURES / "semeval_key.txt"
    )
    assert result.warnings == (
        "!!!WARNING!!! The proposed file contains 1 label(s) of type 'Entity-Origin(e1,e2)', "
        "which is NOT present in the key file.",
    )
    full, nodir, official = result.views
    # (iii): C-E P = 1/(1 + 1 wrong direction), R = 1/2; C-W and M-T 0; Other 1/2, 1/2.
    by_label = {s.label: s for s in official.relations}
    assert official.key_labels == ("Cause-Effect", "Component-Whole", "Message-Topic", "_Other")
    assert official.short_names == ("C-E", "C-W", "M-T", "_O_", "*EO")
    assert (by_label["Cause-Effect"].precision, by_label["Cause-Effect"].recall) == (50.0, 50.0)
    assert by_label["Cause-Effect"].wrong_dir == 1
    assert by_label["Message-Topic"].f1 == 0 and by_label["_Other"].f1 == 50.0
    assert official.skipped == (0, 0, 1, 0)
    assert official.micro[:3] == (1, 2, 4)  # Entity-Origin is in no denominator.
    assert official.macro == pytest.approx((50 / 3, 50 / 3, 50 / 3), abs=1e-12)
    assert result.official_score == pytest.approx(50 / 3, abs=1e-12)
    assert (official.coverage, official.accuracy) == pytest.approx((500 / 6, 40.0))
    # (i): C-E(e1,e2) P = 1/2, R = 1/1; macro over 4 directed labels present in the key.
    assert full.short_names == ("C-E1", "C-E2", "C-W1", "M-T1", "_O_", "*EO1")
    assert full.relations[0].f1 == pytest.approx(200 / 3)
    assert full.macro == pytest.approx((12.5, 25.0, 50 / 3))
    # (ii): direction ignored, both Cause-Effect predictions are right.
    assert nodir.relations[0].precision == 100.0 and nodir.relations[0].recall == 100.0
    assert nodir.micro == pytest.approx((2, 2, 4, 100.0, 50.0, 200 / 3))
    text = semeval_scorer.format_report(result)
    assert text.endswith("macro-averaged F1 = 16.67% >>>\n")
    assert "  C-E |   1    0    0    0    0 |    1     1     0      2" in text


def test_in_memory_equals_files():
    key = dict(
        line.split("\t") for line in (FIXTURES / "semeval_key.txt").read_text().split("\n")[:-1]
    )
    proposed = {"3": "Other", "1": "Cause-Effect(e1,e2)", "2": "Cause-Effect(e1,e2)",
                "5": "Other", "4": "Entity-Origin(e1,e2)"}  # fmt: skip
    from_files = semeval_scorer.score_files(
        FIXTURES / "semeval_proposed.txt", FIXTURES / "semeval_key.txt"
    )
    assert semeval_scorer.score(proposed, key) == from_files


def test_format_errors(tmp_path):
    key = tmp_path / "key.txt"
    key.write_text("1\tOther\n2\tCause-Effect(e1,e2)")  # No final newline: accepted.
    assert semeval_scorer.read_answer_file(key) == {
        "1": ("Other", 1),
        "2": ("Cause-Effect(e1,e2)", 2),
    }
    bad = tmp_path / "bad.txt"
    bad.write_text("1 Other\n\n2\tOther\t\n3\tOther\n4\tCause-Effect\n")
    with pytest.raises(semeval_scorer.SemEvalFormatError) as info:
        semeval_scorer.read_answer_file(bad)
    assert [n for n, _ in info.value.errors] == [1, 2, 3, 5]
    assert "needs its direction" in info.value.errors[3][1]
    many = tmp_path / "many.txt"
    many.write_text("".join(f"{i}\tNone\n" for i in range(30)))
    with pytest.raises(semeval_scorer.SemEvalFormatError, match="and 10 more") as info:
        semeval_scorer.read_answer_file(many)
    assert len(info.value.errors) == 30
    unknown = tmp_path / "unknown.txt"
    unknown.write_text("2\tOther\n7\tOther\n")
    with pytest.raises(semeval_scorer.SemEvalFormatError, match=r"unknown.txt:2: ID 7 is not"):
        semeval_scorer.score_files(unknown, key)


def test_degenerate_inputs_raise():
    key = {"1": "Other", "2": "Cause-Effect(e1,e2)"}
    with pytest.raises(ValueError, match="no predictions"):
        semeval_scorer.score({}, key)
    with pytest.raises(ValueError, match="no relation but Other"):
        semeval_scorer.score({"1": "Other"}, {"1": "Other"})
    with pytest.raises(ValueError, match="not SemEval-2010 Task 8 labels"):
        semeval_scorer.score({"1": "invalid"}, key)
    with pytest.raises(ValueError, match="not in the key"):
        semeval_scorer.score({"3": "Other"}, key)


def test_task_labels_are_the_scorers():
    """tasks/relation_schemas.py names the relations itself (the tasks do not import the
    scorer); they must be the scorer's, in its order, and give its 19 labels."""
    from jaxrobust.tasks import relation_schemas

    assert relation_schemas.SEMEVAL_RELATIONS == semeval_scorer.RELATIONS
    # One statement per relation, in the label set's order.
    assert tuple(relation_schemas._SEMEVAL_STATEMENTS) == semeval_scorer.RELATIONS
    assert sorted(relation_schemas.SEMEVAL_LABELS) == sorted(semeval_scorer.LABELS)
    assert len(set(relation_schemas.SEMEVAL_LABELS)) == 19
