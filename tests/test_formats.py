"""Format variants: the grammar, rendering by hand, answers kept, registration."""

import collections
import pathlib
import re

import pytest
import seqio
from jaxrobust.tasks import registry, variants

from jaxrobust import tasks
from jaxrobust.data import datasets, formats
from jaxrobust.data import templates as tmpl

REPO = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
BANKS = sorted((REPO / "tasks" / "banks").glob("*.yaml"))
EXAMPLE = {
    "passage": "Ann lives in Oslo.",
    "question": "Where does Ann live?",
    "choices": ["Ann", "Oslo", "Acme", "Rome"],
    "answer_index": 1,
    "head": "Ann",
    "relation": "lives_in",
}


def _mc_f1():
    (d,) = [
        d for d in formats.load_formats(REPO / "tasks/banks/builtin_mc.yaml") if d.id == "mc_f1"
    ]
    return d


def test_base_and_a_variant_render_as_written_by_hand():
    d = _mc_f1()
    base = tmpl.render(formats.to_template(d, formats.Format(), "mc_f1"), EXAMPLE)
    assert base.inputs == (
        "Passage: Ann lives in Oslo.\nQuestion: Where does Ann live?\n"
        "Options: Ann, Oslo, Acme, Rome\nAnswer:"
    )
    assert base.options == ("Ann", "Oslo", "Acme", "Rome") and base.target == "Oslo"
    fmt = formats.Format(
        casing="upper",
        descriptor=1,
        value_sep=" - ",
        field_sep=" || ",
        enumerator="(a)",
        answer="label",
        options_position="before",
        cue=2,
    )
    t = formats.to_template(d, fmt, "x")
    r = tmpl.render(t, EXAMPLE)
    assert r.inputs == (
        "CHOICES - (a) Ann (b) Oslo (c) Acme (d) Rome || TEXT - Ann lives in Oslo. || "
        "Q - Where does Ann live? || REPLY:"
    )
    # The enumerator is the answer: choices and target change with it.
    assert r.options == ("a", "b", "c", "d") and r.target == "b"
    assert t.parent == "mc_f1" and t.provenance == "unobserved"
    assert t.rules == (
        'casing="upper"',
        "descriptor=1",
        'value_sep=" - "',
        'field_sep=" || "',
        'enumerator="(a)"',
        'answer="label"',
        'options_position="before"',
        "cue=2",
    )
    lines = tmpl.render(
        formats.to_template(d, formats.Format(enumerator="I.", field_sep="\n\n", cue=None), "y"),
        EXAMPLE,
    ).inputs
    assert lines == (
        "Passage: Ann lives in Oslo.\n\nQuestion: Where does Ann live?\n\n"
        "Options:\nI. Ann\nII. Oslo\nIII. Acme\nIV. Rome"
    )


def test_variants_are_deterministic_distinct_and_record_parent_and_rules():
    d = _mc_f1()
    a, b = formats.variants(d, 12, seed=3), formats.variants(d, 12, seed=3)
    assert a == b
    assert formats.variants(d, 12, seed=4) != a
    assert [t.id for t in a] == ["mc_f1"] + [f"mc_f1_v{i:02d}" for i in range(1, 13)]
    assert a[0].rules == () and all(t.rules for t in a[1:])
    assert {t.parent for t in a} == {"mc_f1"}
    rendered = {tmpl.render(t, EXAMPLE).inputs for t in a}
    assert len(rendered) == 13
    with pytest.raises(formats.FormatError, match="variants asked for"):
        formats.sample_formats(d, 100_000, 0)


def test_bad_grammar_values_and_descriptions_are_named():
    with pytest.raises(formats.FormatError, match=r"Format.enumerator='\*'"):
        formats.Format(enumerator="*")
    bad = {"family": "f", "formats": [{"id": "f1", "fields": [{"descriptor": "X"}]}]}
    with pytest.raises(formats.FormatError, match=r"bank.yaml: format 'f1': field 0"):
        formats.descriptions_from(bad, "bank.yaml")
    bad = {"family": "f", "formats": [{"id": "f1", "fields": [], "colour": 1}]}
    with pytest.raises(formats.FormatError, match=r"unknown keys \['colour'\]"):
        formats.descriptions_from(bad, "bank.yaml")


def test_readme_lists_the_grammar_rules():
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Format variants and estimating from a fraction of the grid")[1]
    section = section.split("\n## ")[0]
    for rule, values in formats.RULES.items():
        line = next(ln for ln in section.splitlines() if ln.startswith(f"| `{rule}` |"))
        line = line.replace("\\|", "|")  # Markdown's escaped pipes
        for v in values:
            shown = "none" if v is None else re.sub(r"\n", r"\\n", str(v))
            assert f"`{shown}`" in line, (rule, shown, line)


def test_register_variants_builds_the_variants_mixture():
    before = {t.name for t in seqio.get_mixture_or_task("jr:world_yn:qa#unobserved").tasks}
    names = variants.register_variants("jr:world_yn:qa", 5, seed=0)
    assert names == ["jr:world_yn:qa:yn_f1"] + [
        f"jr:world_yn:qa:yn_f1_v{i:02d}" for i in range(1, 6)
    ]
    mixture = [t.name for t in seqio.get_mixture_or_task("jr:world_yn:qa#variants").tasks]
    assert mixture == names
    assert all(registry.group_of(tasks.lookup(n)[1]) == "variants" for n in names)
    # The headline groups are unchanged; #all grows.
    after = {t.name for t in seqio.get_mixture_or_task("jr:world_yn:qa#unobserved").tasks}
    assert after == before
    assert set(names) <= {t.name for t in seqio.get_mixture_or_task("jr:world_yn:qa#all").tasks}
    with pytest.raises(KeyError, match="no bank file"):
        variants.descriptions("builtin_all")


@pytest.fixture
def tacred_fixtures():
    """Points the TACRED-format readers at the hand-written fixtures (as test_tasks does)."""
    previous = datasets.set_data_config(
        datasets.DataConfig(
            tacred_dir=str(FIXTURES / "tacred"),
            tacrev_dir=str(FIXTURES / "tacred"),
            retacred_dir=str(FIXTURES / "retacred"),
        )
    )
    yield
    datasets.set_data_config(previous)


@pytest.mark.heavy
def test_variants_render_on_every_bank_and_keep_answers(shared_data_dir, tacred_fixtures):
    by_spec = collections.defaultdict(list)
    for name in tasks.TASK_NAMES:
        spec, template = registry.REGISTERED[name]
        by_spec[id(spec)].append((spec, template))
    families, checked, made_for = set(), 0, {}
    for pairs in by_spec.values():
        spec, reference = pairs[0]
        path = REPO / "tasks" / "banks" / f"{spec.family}.yaml"
        if not path.exists():
            continue  # builtin_all: the four world tasks' templates interleaved
        families.add(spec.family)
        records = spec.read(spec.splits[-1])[:20]
        if spec.family not in made_for:
            made_for[spec.family] = variants.bank_variants(spec.family, 6, seed=0)
            assert made_for[spec.family] == variants.bank_variants(spec.family, 6, seed=0)
        made = made_for[spec.family]
        for record in records:
            gold = registry.to_features(spec, reference, record, check=True)
            for template in made:
                f = registry.to_features(spec, template, record, check=True)
                assert f["inputs"].strip()
                assert f["label"] == gold["label"] and f["option_labels"] == gold["option_labels"]
                assert f["answer_index"] == gold["answer_index"]
                if f["answer_index"] >= 0:
                    assert f["targets"] == f["options"][f["answer_index"]]
                checked += 1
    assert families == {p.stem for p in BANKS}
    assert checked > 5000


def test_readme_registers_variants_as_written():
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Format variants and estimating from a fraction of the grid")[1]
    block = section.split("```python\n")[1].split("```")[0]
    exec(compile(block, "README.md", "exec"), {})
    mixture = seqio.get_mixture_or_task("jr:world_mc:qa#variants")
    assert len(mixture.tasks) >= 50


def test_eval_and_report_keep_variants_out_of_the_headline(tmp_path):
    """A tiny random T5 on two bank templates and three variants: the record headers name
    parent and rules, the report's unobserved mean and gap leave the variants out and a
    'Format variants' table gives their spread (checked by hand against templates.csv)."""
    import json

    import numpy as np

    from jaxrobust import evaluation
    from jaxrobust.analysis import report
    from jaxrobust.storage import records

    names = variants.register_variants("jr:world_type:qa", 2, seed=0)
    evaluation.run(
        [evaluation.ModelSpec(name="tiny", preset="tiny", tokenizer="byte")],
        ["jr:world_type:qa:type_o1", "jr:world_type:qa:type_p1", *names],
        str(tmp_path),
        evaluation.EvalOptions(limit=8, batch_size=8, max_input_len=128, progress=False),
    )
    header = records.read_records(
        records.records_path(tmp_path, "tiny", "jr:world_type:qa:type_f1_v01")
    ).header
    assert header["parent"] == "type_f1" and header["rules"] == list(
        tasks.lookup("jr:world_type:qa:type_f1_v01")[1].rules
    )
    plain = records.read_records(records.records_path(tmp_path, "tiny", "jr:world_type:qa:type_p1"))
    assert "parent" not in plain.header
    out = report.write_report(tmp_path, n_resamples=50)
    summary = json.loads((out / "summary.json").read_text())["summary"]
    (s,) = [s for s in summary if s["benchmark"] == "world_type/qa"]
    rows = [r for r in json.loads((out / "summary.json").read_text())["templates"]]
    score = {r["template_id"]: r["score"] for r in rows}
    group = {r["template_id"]: r["group"] for r in rows}
    assert {t for t, g in group.items() if g == "variants"} == {
        "type_f1",
        "type_f1_v01",
        "type_f1_v02",
    }
    assert s["unobserved_n"] == 1 and s["unobserved_mean"] == score["type_p1"]
    assert s["observed_mean"] == score["type_o1"]
    assert s["gap"] == pytest.approx(score["type_o1"] - score["type_p1"])
    v = [score[t] for t in ("type_f1", "type_f1_v01", "type_f1_v02")]
    spread = s["variants"]["parents"]["type_f1"]
    assert spread["n"] == 3 and spread["min"] == min(v) and spread["max"] == max(v)
    assert spread["std"] == pytest.approx(np.std(v, ddof=1))
    assert s["variants"]["wordings"]["n"] == 2
    assert "## Format variants" in (out / "summary.md").read_text()
    assert "variants" not in (out / "summary.csv").read_text().splitlines()[0]
