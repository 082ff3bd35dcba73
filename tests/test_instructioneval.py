"""InstructionEval's config modules read as data (a fixture in their layout with
invented texts: the repository has no license, so none of its text is here), the
templates made from them, and a run compared with a result table by hand."""

import json
import pathlib
import re
import subprocess
import sys

import pytest
from test_report import qa_rows, write_records

from jaxrobust import main
from jaxrobust.analysis import compare, scoring
from jaxrobust.data import instructioneval as ie
from jaxrobust.data import templates as tmpl

REPO = pathlib.Path(__file__).resolve().parents[1]
CHECKOUT = REPO / "tests" / "fixtures" / "instructioneval"


def test_loader_reads_the_modules_as_data():
    """The fixture modules raise SystemExit when run: loading them proves they are not."""
    loaded = ie.load(CHECKOUT, kinds=("Unobserved", "Default"))
    got = {(i.benchmark, i.id): (i.text, i.fields) for i in loaded.instructions}
    letters = ("question", "choiceA", "choiceB", "choiceC", "choiceD")
    assert got == {
        ("MMLU_General", "MMLU/Unobserved/1"): (
            "Quiz time. {question}\nA) {choiceA}\nB) {choiceB}\nC) {choiceC}\nD) {choiceD}"
            "\nYour letter:",
            letters,
        ),
        ("MMLU_General", "MMLU/Unobserved/2"): (
            "{question} Options are A: {choiceA}, B: {choiceB}, C: {choiceC}, D: {choiceD}. "
            'Reply with "A", "B", "C" or "D" and {{nothing}} else.',
            letters,  # '{{nothing}}' is a literal brace pair in str.format, not a field.
        ),
        ("Winowhy", "BBL/Unobserved/1"): (
            "Reasoning: {question}\nIs that reasoning right? Say correct or incorrect.",
            ("question",),
        ),
        ("Winowhy", "BBL/Unobserved/2"): (
            "{question}\nPick one of {options}:",
            ("question", "options"),
        ),
        ("Conceptual_Combinations", "BBL/Unobserved/1"): (
            "Concepts: {question} (A) {choiceA} (B) {choiceB} (C) {choiceC} (D) {choiceD}",
            letters,
        ),
        ("Conceptual_Combinations", "BBL/Unobserved/2"): (
            "Concepts: {question} hint: {hint}",
            ("question", "hint"),
        ),
    }
    assert loaded.counts() == {"MMLU_General": 2, "Winowhy": 2, "Conceptual_Combinations": 2}
    assert [(s.benchmark, s.id, s.reason) for s in loaded.skipped] == [
        ("MMLU_General", "MMLU/Unobserved/3", "method unobserved3's input_template is an f-string"),
        ("MMLU_General", "MMLU/Unobserved/4", "method unobserved4 assigns input_template 2 times"),
        ("MMLU_General", "Alpaca/Unobserved/1", "mapped to a Lambda, not a method of its own"),
        ("Winowhy", "BBL/Default/1", "method default_Classification is not in winowhy.py"),
        ("Winowhy", "Alpaca/Unobserved/1", "winowhy.py maps no method to it"),
    ]
    # The default kind is Unobserved only; Crash_Blossom is not a benchmark of the study.
    assert len(ie.load(CHECKOUT).skipped) == 4


def test_loader_errors_name_what_and_where(tmp_path):
    with pytest.raises(FileNotFoundError, match="jiudingsun01/InstructionEval"):
        ie.load(tmp_path)
    (tmp_path / "instructions.json").write_text(json.dumps({"Winowhy": ["BBL/Unobserved/1"]}))
    with pytest.raises(FileNotFoundError, match="winowhy.py: config module of Winowhy"):
        ie.load(tmp_path)
    module = tmp_path / "configs" / "BBH" / "binary_classification" / "winowhy.py"
    module.parent.mkdir(parents=True)
    module.write_text("class P:\n    def f(self):\n        x = (\n")
    with pytest.raises(ie.InstructionEvalError, match=r"winowhy.py:\d+: not Python"):
        ie.load(tmp_path)


def _render(benchmark, iid, question, choices, gold, variables):
    loaded = ie.load(CHECKOUT)
    ins = next(i for i in loaded.instructions if (i.benchmark, i.id) == (benchmark, iid))
    template = ie.to_template(ins, question=question, choices=choices)
    assert template.provenance == "unobserved" and template.name == iid
    return template, tmpl.validate(
        template, variables, option_labels=list(range(len(variables[choices]))), answer_index=gold
    )


def test_templates_render_by_hand():
    variables = {"question": "Which is prime?", "choices": ["4", "6", "7", "9"], "answer_index": 2}
    template, r = _render("MMLU_General", "MMLU/Unobserved/1", "question", "choices", 2, variables)
    assert template.id == "ie_mmlu_general_mmlu_unobserved_1"
    assert r.inputs == "Quiz time. Which is prime?\nA) 4\nB) 6\nC) 7\nD) 9\nYour letter:"
    assert (r.target, r.options) == ("C", ("A", "B", "C", "D"))
    _, r = _render("MMLU_General", "MMLU/Unobserved/2", "question", "choices", 2, variables)
    assert r.inputs == (
        'Which is prime? Options are A: 4, B: 6, C: 7, D: 9. Reply with "A", "B", "C" or "D" '
        "and {nothing} else."
    )
    bb = {"input": "The cat sat. 'It' is the cat.", "choices": ["correct", "incorrect"]}
    bb["answer_index"] = 1
    _, r = _render("Winowhy", "BBL/Unobserved/2", "input", "choices", 1, bb)
    assert r.inputs == "The cat sat. 'It' is the cat.\nPick one of ['correct', 'incorrect']:"
    assert (r.target, r.options) == ("incorrect", ("correct", "incorrect"))
    ins = next(i for i in ie.load(CHECKOUT).instructions if "{hint}" in i.text)
    with pytest.raises(ie.InstructionEvalError, match=r"uses \['hint'\]"):
        ie.to_template(ins, question="input", choices="choices")


@pytest.mark.heavy  # A subprocess importing every task (~30-80 s).
def test_task_wiring(shared_data_dir):
    """add_instructioneval: MMLU's two on every subject; Winowhy's two; Conceptual
    Combinations' left out (A-D on a task of any option count; an unknown field)."""
    code = (
        "import json\n"
        "from jaxrobust import tasks\n"
        "from jaxrobust.tasks import qa\n"
        f"by_base, skipped = qa.instructioneval_templates({str(CHECKOUT)!r})\n"
        f"names = qa.add_instructioneval({str(CHECKOUT)!r})\n"
        "ex = next(tasks.examples('jr:mmlu_anatomy:qa:ie_mmlu_general_mmlu_unobserved_1',\n"
        "                         'test', limit=1))\n"
        "print(json.dumps([{b: [t.id for t in ts] for b, ts in by_base.items()},\n"
        "                  [s[:2] for s in skipped], len(names), ex['provenance'],\n"
        "                  ex['inputs'].startswith('Quiz time. ')]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    by_base, skipped, n_names, provenance, quiz = json.loads(done.stdout.splitlines()[-1])
    assert by_base == {
        "jr:mmlu:qa": ["ie_mmlu_general_mmlu_unobserved_1", "ie_mmlu_general_mmlu_unobserved_2"],
        "jr:bbl_winowhy:qa": ["ie_winowhy_bbl_unobserved_1", "ie_winowhy_bbl_unobserved_2"],
    }
    assert ["Conceptual_Combinations", "BBL/Unobserved/1"] in skipped
    assert ["Conceptual_Combinations", "BBL/Unobserved/2"] in skipped
    assert n_names == 57 * 2 + 2 and provenance == "unobserved" and quiz


def _write_run(out):
    spec = {"name": "tiny", "observed_collections": []}
    grid = {  # (data set, template) -> (predictions, gold)
        ("mmlu_a", "ie_mmlu_general_mmlu_unobserved_1"): ("ABCA", "ABCD"),  # 3/4
        ("mmlu_b", "ie_mmlu_general_mmlu_unobserved_1"): ("BA", "AB"),  # 0/2 -> 3/6
        ("mmlu_a", "ie_mmlu_general_mmlu_unobserved_2"): ("ABAA", "ABCD"),  # 2/4
        ("mmlu_b", "ie_mmlu_general_mmlu_unobserved_2"): ("AB", "AB"),  # 2/2 -> 4/6
        ("bbl_winowhy", "ie_winowhy_bbl_unobserved_1"): ("ccci", "cccc"),  # 3/4
        ("bbl_winowhy", "ie_winowhy_bbl_unobserved_2"): ("cccc", "cccc"),  # 4/4
    }
    for (dataset, tid), (pred, gold) in grid.items():
        rows = qa_rows(list(pred), list(gold))
        write_records(out, "tiny", f"jr:{dataset}:qa:{tid}", "unobserved", rows, spec=spec)


def test_compare_with_a_result_table_by_hand(tmp_path, capsys):
    """MMLU pooled over two subjects (4 + 2 examples), Winowhy on its own; the fixture
    tables: MMLU 1 (50%), 2 (25%), FLAN/QA/1 (no records), Winowhy 1 (75%), Winowhy 2
    (Include? False: left out)."""
    _write_run(tmp_path)
    results = ie.read_results(CHECKOUT / "result_csv" / "Main" / "MMLU" / "Tiny.csv")
    results += ie.read_results(CHECKOUT / "result_csv" / "Main" / "BBL" / "Tiny.csv")
    _, files = scoring.load(tmp_path)
    rows = compare.compare(files, results, "tiny")
    assert [(r.instruction_id, r.theirs, r.ours, r.n_examples) for r in rows] == [
        ("MMLU/Unobserved/1", 0.5, 0.5, 6),
        ("MMLU/Unobserved/2", 0.25, 4 / 6, 6),
        ("FLAN/QA/1", 0.4, None, 0),
        ("BBL/Unobserved/1", 0.75, 0.75, 4),
    ]
    s = compare.summary(rows)
    assert (s["rows"], s["matched"]) == (4, 3)
    assert s["mean_difference"] == pytest.approx((4 / 6 - 0.25) / 3)
    assert s["mean_abs_difference"] == pytest.approx((4 / 6 - 0.25) / 3)
    # The report command writes the same comparison.
    table = CHECKOUT / "result_csv" / "Main" / "MMLU" / "Tiny.csv"
    argv = ["report", f"--output_dir={tmp_path}", "--n_resamples=20", f"--compare_csv={table}"]
    assert main.main(argv) == 0
    md = (tmp_path / "report" / "instructioneval__Tiny.md").read_text()
    assert "2 of 3 zero-shot instructions matched; mean difference (ours - theirs) 20.8" in md
    assert "| MMLU_General | MMLU/Unobserved/2 | 25.0 | 66.7 | 41.7 | 6 |" in md
    assert "| MMLU_General | FLAN/QA/1 | 40.0 | – | – | 0 |" in md
    csv_text = (tmp_path / "report" / "instructioneval__Tiny.csv").read_text().splitlines()
    assert csv_text[1] == (
        "MMLU_General,MMLU/Unobserved/1,ie_mmlu_general_mmlu_unobserved_1,0.5,0.5,0.0,6"
    )
    assert "matched" in capsys.readouterr().out


def test_result_table_errors_name_file_and_row(tmp_path):
    bad = tmp_path / "x.csv"
    bad.write_text(
        "Model,Dataset,Collection,Type,ID,Shots,Performance\nm,MMLU_General,MMLU,U,1,0,x\n"
    )
    with pytest.raises(ie.InstructionEvalError, match=r"x.csv:2: could not convert"):
        ie.read_results(bad)
    bad.write_text("Model,Dataset\nm,d\n")
    with pytest.raises(ie.InstructionEvalError, match=r"columns \['Collection'"):
        ie.read_results(bad)


def test_readme_command(tmp_path):
    """README's comparison command, on the fixture run and the fixture checkout."""
    readme = (REPO / "README.md").read_text()
    (block,) = [
        b for b in re.findall(r"^```sh\n(.*?)^```", readme, re.M | re.S) if "--compare_csv" in b
    ]
    _write_run(tmp_path)
    command = (
        block.replace("/data/robustness", str(tmp_path))
        .replace("/path/to/InstructionEval", str(CHECKOUT))
        .replace("Flan-T5-XXL.csv", "Tiny.csv")
        .replace("python ", f"{sys.executable} ", 1)
    )
    done = subprocess.run(command, shell=True, cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 of 3 zero-shot instructions matched" in done.stdout
    assert (tmp_path / "report" / "instructioneval__Tiny.csv").is_file()
