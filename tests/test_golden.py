"""Behaviour preservation: an `eval` + `report` run and the reduced study give the
same bytes as the committed golden files (tests/golden/, see regenerate.py there).

Record files are compared byte for byte (run folder and footer checksum
normalised) and so are the report tables. XLA compiles for the host CPU, so the
bytes are pinned to the machine kind in tests/golden/machine.json; on another
kind the records are compared with a tolerance instead (same predictions,
scores within 1e-4), which is what the numbers can promise there.
"""

import json
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "golden"))
import regenerate  # noqa: E402

pytestmark = pytest.mark.heavy


def _same_machine() -> bool:
    golden = json.loads((regenerate.HERE / "machine.json").read_text())
    return golden == regenerate.machine()


def _compare(name: str, got: dict[str, bytes]) -> None:
    want = regenerate.read_golden(name)
    assert sorted(got) == sorted(want), name
    if _same_machine():
        for rel in want:
            assert got[rel] == want[rel], f"{name}/{rel} differs from tests/golden/{name}/{rel}"
        return
    for rel in (r for r in want if r.endswith(".jsonl")):
        g = [json.loads(x) for x in got[rel].splitlines()]
        w = [json.loads(x) for x in want[rel].splitlines()]
        assert len(g) == len(w), rel
        for a, b in zip(g, w, strict=True):
            if a.get("kind") == "record":
                assert a["scores"] == pytest.approx(b["scores"], abs=1e-4), rel
                assert {k: v for k, v in a.items() if k != "scores"} == {
                    k: v for k, v in b.items() if k != "scores"
                }, rel


def test_eval_and_report_match_golden(tmp_path):
    out = tmp_path / "eval"
    regenerate.run_eval(out)
    _compare("eval", regenerate.collect_eval(out))


def test_reduced_study_matches_golden(tmp_path):
    if not _same_machine():
        pytest.skip("the study trains; its bytes are pinned to tests/golden/machine.json's CPU")
    out = tmp_path / "study"
    regenerate.run_study(out)
    _compare("study", regenerate.collect_study(out))
