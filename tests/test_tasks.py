"""SeqIO task registry: names, features, counts, every template on real data, README example."""

import collections
import os
import pathlib
import re

import jaxrobust.tasks as tasks
import numpy as np
import pytest
import seqio  # noqa: E402  (after jaxrobust.tasks, which quiets TensorFlow)
from conftest import data_required
from jaxrobust.tasks import qa, registry, relation_extraction, relation_schemas, training_mixtures

from jaxrobust.data import datasets
from jaxrobust.data import templates as tmpl

REPO = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"


@pytest.fixture
def tacred_fixtures():
    """Points the TACRED-format readers at the hand-written fixtures."""
    previous = datasets.set_data_config(
        datasets.DataConfig(
            tacred_dir=str(FIXTURES / "tacred"),
            tacrev_dir=str(FIXTURES / "tacred"),
            retacred_dir=str(FIXTURES / "retacred"),
        )
    )
    yield
    datasets.set_data_config(previous)


def _first(name, split=None, n=1):
    spec, _ = tasks.lookup(name)
    ds = seqio.get_mixture_or_task(name).get_dataset(
        sequence_length=None, split=split or spec.splits[-1], shuffle=False
    )
    return list(ds.take(n).as_numpy_iterator())


# ---------------------------------------------------------------- registration


def test_names_follow_the_grammar():
    observed = (datasets.data_dir() / "promptsource").is_dir()
    grammar = re.compile(r"^jr:[a-z0-9_]+:(re|mcqa|qa):[\w.]+$")
    assert len(tasks.TASK_NAMES) == len(set(tasks.TASK_NAMES)) > 1000
    for name in tasks.TASK_NAMES:
        assert registry.NAME_RE.match(name) and grammar.match(name), name
    datasets_formats = {tuple(n.split(":")[1:3]) for n in tasks.TASK_NAMES}
    for ds in ("semeval", "fewrel", "tacred", "tacrev", "retacred"):
        assert {(ds, "re"), (ds, "mcqa")} <= datasets_formats
    assert {("boolq", "qa"), ("mmlu_anatomy", "qa"), ("bbl_winowhy", "qa")} <= datasets_formats
    assert len({d for d, _ in datasets_formats if d.startswith("mmlu_")}) == 57
    assert len({d for d, _ in datasets_formats if d.startswith("bbl_")}) == 14
    mixtures = set(seqio.MixtureRegistry.names())
    for m in (
        "jr:semeval:re#unobserved",
        "jr:tacred:mcqa#all",
        "jr:boolq:qa#style_alpaca",
        "jr:mmlu:qa:mmlu_default",
        "jr:mmlu:qa#unobserved",
        "jr:bbl_winowhy:qa#default",
    ):
        assert m in mixtures, m
    if observed:  # read from the data directory at import
        assert {"jr:semeval:re#observed_p3", "jr:boolq:qa#observed_flan"} <= mixtures
    else:  # Those mixtures are left unchecked without the data, except where it is required.
        assert not data_required(), f"no promptsource/ under {datasets.data_dir()}"


def test_registering_twice_is_harmless():
    before = sorted(seqio.TaskRegistry.names())
    again = tasks.register_all()
    assert sorted(again) == sorted(tasks.TASK_NAMES)
    assert sorted(seqio.TaskRegistry.names()) == before
    assert len(seqio.get_mixture_or_task("jr:boolq:qa#all").tasks) == len(
        [n for n in again if n.startswith("jr:boolq:")]
    )


def test_banks_have_ten_varied_unobserved_templates_per_family():
    for family in ("re", "re_mcqa"):
        bank = relation_extraction.bank(family)
        assert sum(t.kind == "unobserved" for t in bank) >= 10, family
    for family in ("boolq", "mmlu", "bigbench"):
        bank = qa.bank(family)
        unobserved = [t for t in bank if t.kind == "unobserved"]
        assert len(unobserved) >= 10, family
        cues = {t.jinja.split("|||")[0].rstrip().split()[-1] for t in unobserved}
        assert len(cues) >= 6, (family, cues)  # answer cues differ


def test_broken_template_fails_at_registration():
    spec = qa.BOOLQ
    bad = tmpl.Template(
        id="broken",
        jinja="{{ pasage }} ||| {{ answer_choices[answer_index] }}",
        answer_choices="no ||| yes",
        provenance="unobserved",
        source="t",
        author="t",
        bank="tasks/banks/boolq.yaml",
    )
    with pytest.raises(tmpl.TemplateError, match=r"boolq.yaml: template 'broken': .*'pasage'"):
        registry.register(spec, bad)
    assert "jr:boolq:qa:broken" not in seqio.TaskRegistry.names()


# ---------------------------------------------------------------- data


def test_counts(shared_data_dir):
    assert len(datasets.read_semeval("test")) == 2717
    assert len(datasets.read_semeval("train")) == 8000
    assert len(datasets.read_boolq()) == 3270
    mmlu = [r for s in qa.MMLU_SUBJECTS for r in datasets.read_mmlu(s)]
    assert len(mmlu) == 14042 and len({r["subject"] for r in mmlu}) == 57
    fewrel = datasets.read_fewrel()
    assert len(fewrel) == 11200 and len({r["relation"] for r in fewrel}) == 16
    files = (shared_data_dir / "mmlu").glob("*_test.csv")
    assert sorted(p.name[: -len("_test.csv")] for p in files) == sorted(qa.MMLU_SUBJECTS)


def test_semeval_reader_and_adapter(shared_data_dir):
    first = datasets.read_semeval("test")[0]
    assert first["id"] == "semeval-8001" and first["relation"] == "Message-Topic(e1,e2)"
    assert (first["head"], first["tail"]) == ("audits", "waste")
    assert first["sentence"] == "The most common audits were about waste and recycling."
    hf = relation_extraction.semeval_to_hf(first)
    assert hf == {"sentence": first["tagged"], "relation": 14}
    assert relation_schemas.SEMEVAL_LABELS[14] == "Message-Topic(e1,e2)"
    labels = {r["relation"] for r in datasets.read_semeval("train")}
    assert labels == set(relation_schemas.SEMEVAL_LABELS)


def test_boolq_adapter(shared_data_dir):
    first = datasets.read_boolq()[0]
    assert first["answer"] is False
    assert qa.boolq_to_hf(first) == {
        "question": first["question"],
        "passage": first["passage"],
        "idx": 0,
        "label": 0,
    }


def test_fewrel_names_and_seeded_candidates(shared_data_dir):
    names = datasets.read_fewrel_relations()
    assert {pid: names[pid][0] for pid in relation_extraction._FEWREL_NAMES} == (
        relation_extraction._FEWREL_NAMES
    )
    records = relation_extraction.read_fewrel_named("validation")
    for r in records[:50]:
        a = relation_extraction.fewrel_candidates(r, 5, seed=0)
        assert a == relation_extraction.fewrel_candidates(r, 5, seed=0)
        assert len(set(a)) == 5 and r["relation"] in a
    positions = collections.Counter(
        relation_extraction.fewrel_candidates(r, 5, 0).index(r["relation"]) for r in records[:500]
    )
    assert len(positions) == 5 and min(positions.values()) > 50  # gold is not always first


def test_bigbench_tasks_read(shared_data_dir):
    for task in qa.BIGBENCH_TASKS:
        records = datasets.read_bigbench(task)
        assert records, task
        assert all(2 <= len(r["choices"]) <= 26 for r in records), task
    assert len(datasets.read_bigbench("logical_deduction")) == 1500  # 3 subtasks
    assert datasets.read_bigbench("logic_grid_puzzle")[0]["append_choices_to_input"] is False


def test_missing_file_names_file_and_source(tmp_path):
    previous = datasets.set_data_config(datasets.DataConfig(data_dir=str(tmp_path)))
    try:
        with pytest.raises(datasets.DataFileNotFoundError) as e:
            datasets.read_semeval("test")
        assert str(tmp_path / "semeval2010_task8" / "TEST_FILE_FULL.TXT") in str(e.value)
        assert "SemEval-2010 Task 8" in str(e.value)
        with pytest.raises(datasets.DataFileNotFoundError, match="LDC2018T24"):
            list(tasks.examples("jr:tacred:re:re_u01", "test"))
        with pytest.raises(datasets.DataFileNotFoundError, match=r"mmlu_test|anatomy_test.csv"):
            _first("jr:mmlu_anatomy:qa:mmlu_u01")
    finally:
        datasets.set_data_config(previous)


def test_data_dir_resolution_order(tmp_path, monkeypatch):
    previous = datasets.set_data_config(datasets.DataConfig())
    try:
        monkeypatch.setenv("JAXROBUST_DATA_DIR", str(tmp_path / "env"))
        assert datasets.data_dir() == tmp_path / "env"
        assert datasets.tacred_dir("tacrev") == tmp_path / "env" / "tacrev"
        monkeypatch.setenv("JAXROBUST_TACREV_DIR", str(tmp_path / "rev"))
        assert datasets.tacred_dir("tacrev") == tmp_path / "rev"
        datasets.set_data_config(datasets.DataConfig(data_dir=str(tmp_path / "cfg")))
        assert datasets.data_dir() == tmp_path / "cfg"
    finally:
        datasets.set_data_config(previous)


def test_gin_sets_the_data_dir_without_gin_in_the_library(tmp_path):
    import gin

    source = (REPO / "jaxrobust" / "data" / "datasets.py").read_text()
    assert "import gin" not in source
    gin.clear_config()
    gin.parse_config(
        "from __gin__ import dynamic_registration\n"
        "from jaxrobust.data import datasets\n"
        "datasets.set_data_config.config = @datasets.DataConfig()\n"
        f"datasets.DataConfig.data_dir = '{tmp_path}'\n"
    )
    previous = datasets.get_data_config()
    try:
        gin.get_configurable(datasets.set_data_config)()
        assert datasets.data_dir() == tmp_path
    finally:
        datasets.set_data_config(previous)
        gin.clear_config()


# ---------------------------------------------------------------- TACRED format (fixtures)


def test_tacred_fixture_plain_and_mcqa(tacred_fixtures):
    plain = list(tasks.examples("jr:tacred:re:re_u09", "test"))
    assert len(plain) == 6
    assert plain[0]["label"] == "per:city_of_birth" and plain[0]["targets"] == "per:city_of_birth"
    assert len(plain[0]["options"]) == 42 and plain[0]["negative_label"] == "no_relation"
    assert "Subject: Anna Berg\nObject: Oslo" in plain[0]["inputs"]
    assert plain[2]["inputs"].startswith("Input: Tom Reyes met reporters ( mostly local ) in Lima")
    mc = list(tasks.examples("jr:tacred:mcqa:mcqa_u01", "test"))
    # PERSON/CITY admits the city relations, employee_of (governments) and origin.
    assert mc[0]["option_labels"] == [
        "per:cities_of_residence",
        "per:city_of_birth",
        "per:city_of_death",
        "per:employee_of",
        "per:origin",
        "no_relation",
    ]
    assert mc[0]["options"] == ["A", "B", "C", "D", "E", "F"] and mc[0]["targets"] == "B"
    assert "B. Anna Berg was born in the city Oslo\n" in mc[0]["inputs"]
    assert "F. Anna Berg and Oslo are related in none of these ways\n" in mc[0]["inputs"]
    # ORGANIZATION/PERSON: founded_by, shareholders, top_members/employees.
    assert mc[1]["option_labels"][-1] == "no_relation" and mc[1]["targets"] == "C"
    assert mc[4]["option_labels"][:6] == [
        "per:alternate_names",
        "per:children",
        "per:other_family",
        "per:parents",
        "per:siblings",
        "per:spouse",
    ]
    dev = list(tasks.examples("jr:tacrev:mcqa:mcqa_u01", "validation"))
    assert [e["label"] for e in dev] == ["per:employee_of", "org:city_of_headquarters"]


def test_retacred_label_set(tacred_fixtures):
    assert len(relation_schemas.RETACRED_LABELS) == 40
    assert len(relation_schemas.TACRED_LABELS) == 42
    first = next(tasks.examples("jr:retacred:mcqa:mcqa_u10", "test"))
    # ORGANIZATION/CITY; Re-TACRED has no org:parents / org:subsidiaries.
    assert first["option_labels"] == [
        "org:city_of_branch",
        "org:member_of",
        "org:members",
        "no_relation",
    ]
    assert first["option_labels"][first["answer_index"]] == "org:city_of_branch"
    ident = list(tasks.examples("jr:retacred:re:re_u01", "test"))[1]
    assert ident["label"] == "per:identity" and "per:alternate_names" not in ident["options"]


def test_type_mismatch_gives_answer_index_minus_one():
    record = dict(relation_extraction.TACRED_SAMPLE, tail_type="DATE")
    spec = relation_extraction.tacred_specs("tacred")[1]
    features = registry.to_features(
        spec, relation_extraction.bank("re_mcqa").get("mcqa_u01"), record
    )
    assert features["answer_index"] == -1 and features["targets"] == ""
    assert "per:date_of_birth" in features["option_labels"]


# ---------------------------------------------------------------- every template on real data


@pytest.mark.heavy
def test_every_template_renders_on_first_20_examples(shared_data_dir, tacred_fixtures):
    by_spec = collections.defaultdict(list)
    # The project's tasks only: other tests register toy tasks in the same process.
    for name in tasks.TASK_NAMES:
        spec, template = registry.REGISTERED[name]
        by_spec[id(spec)].append((spec, template))
    checked = 0
    for pairs in by_spec.values():
        spec = pairs[0][0]
        records = spec.read(spec.splits[-1])[:20]
        assert len(records) == 20 or spec.dataset in ("tacred", "tacrev", "retacred")
        for _, template in pairs:
            for record in records:
                features = registry.to_features(spec, template, record, check=True)
                assert features["inputs"].strip()
                if features["answer_index"] >= 0:
                    assert features["targets"] == features["options"][features["answer_index"]]
                checked += 1
    assert checked > 20_000


def test_promptsource_renders_identically_across_runs(shared_data_dir):
    for prefix in ("jr:semeval:re:p3_", "jr:boolq:qa:p3_"):
        names = [n for n in tasks.TASK_NAMES if n.startswith(prefix)]
        assert len(names) in (5, 10)
        for name in names:
            runs = [
                list(tasks.examples(name, tasks.lookup(name)[0].splits[-1], limit=20))
                for _ in range(2)
            ]
            assert runs[0] == runs[1]
            assert all(e["targets"] for e in runs[0])


# ---------------------------------------------------------------- SeqIO datasets


def _check_features(example):
    assert set(example) == set(registry.FEATURES)
    for name, (_, rank) in registry.FEATURES.items():
        assert np.ndim(example[name]) == rank, name
    assert example["options"][example["answer_index"]] == example["targets"]
    assert len(example["options"]) == len(example["option_labels"])


def test_seqio_get_dataset_one_task_per_family(shared_data_dir, tacred_fixtures):
    semeval = _first("jr:semeval:re:re_u01")[0]
    _check_features(semeval)
    assert (
        semeval["inputs"]
        .decode()
        .startswith(
            "The most common audits were about waste and recycling.\naudits -> waste: which of ["
        )
    )
    assert semeval["targets"] == b"Message-Topic(e1,e2)" and semeval["label_space"].shape == (19,)
    mcqa = _first("jr:semeval:mcqa:mcqa_u02")[0]
    _check_features(mcqa)
    assert mcqa["targets"] == b"O" and mcqa["option_labels"][14] == b"Message-Topic(e1,e2)"
    assert b"(O) audits is about waste; (P) waste is about audits;" in mcqa["inputs"]
    fewrel = _first("jr:fewrel:mcqa:mcqa_u04")[0]
    _check_features(fewrel)
    assert fewrel["negative_label"] == b"" and len(fewrel["options"]) == 5
    assert fewrel["options"].tolist() == [b"1", b"2", b"3", b"4", b"5"]
    tacred = _first("jr:tacred:mcqa:mcqa_u07")[0]
    _check_features(tacred)
    assert tacred["example_id"] == b"tacred-fx0001" and tacred["provenance"] == b"unobserved"
    boolq = _first("jr:boolq:qa:p3_9f4c6b0a")[0]
    _check_features(boolq)
    assert boolq["targets"] == b"False" and boolq["label"] == b"no"
    assert boolq["provenance"] == b"observed:p3:super_glue/boolq"
    assert boolq["template_id"] == b"9f4c6b0a-437b-40c0-b467-db4b7218d38d"
    mmlu = _first("jr:mmlu_anatomy:qa:mmlu_flan_style1")[0]
    _check_features(mmlu)
    assert mmlu["targets"] == b"paralysis of the facial muscles." and mmlu["label"] == b"A"
    bb = _first("jr:bbl_code_line_description:qa:bb_default")[0]
    _check_features(bb)
    assert bb["inputs"] == (
        b"\nPython code:\nfor i in range(23):\n    print(i)\n\n  choice: prints values from 0 to 22"
        b"\n  choice: computes first 10 prime numbers\n  choice: prints values from 1 to 10"
        b"\n  choice: prints 'hello world' to the terminal\n\nEnglish language description:\n"
    )
    assert bb["provenance"] == b"default"
    mix = seqio.get_mixture_or_task("jr:mmlu:qa:mmlu_u01").get_dataset(
        sequence_length=None, split="test", shuffle=False
    )
    _check_features(next(mix.as_numpy_iterator()))
    shuffled = seqio.get_mixture_or_task("jr:semeval:re:re_u01").get_dataset(
        sequence_length=None, split="test", shuffle=True, seed=3
    )
    ids = [e["example_id"] for e in shuffled.take(5).as_numpy_iterator()]
    assert len(set(ids)) == 5 and ids != [f"semeval-{i}".encode() for i in range(8001, 8006)]


# ---------------------------------------------------------------- unobserved vs observed


def _words(template):
    text = re.sub(r"\{\{.*?\}\}|\{%.*?%\}", " | ", template.jinja.split("|||")[0])
    return re.findall(r"[a-z0-9']+|\|", text.lower())


def _longest_common_run(a, b):
    best = 0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b):
            if x == y and x != "|":
                cur[j + 1] = prev[j] + 1
                best = max(best, cur[j + 1])
        prev = cur
    return best


def test_unobserved_share_few_ngrams_with_observed(shared_data_dir):
    families = {
        "semeval:re": ("jr:semeval:re:",),
        "boolq": ("jr:boolq:qa:",),
    }
    report = {}
    for family, prefixes in families.items():
        pairs = [tasks.lookup(n)[1] for n in tasks.TASK_NAMES if n.startswith(prefixes)]
        observed = [t for t in pairs if t.kind == "observed"]
        unobserved = [t for t in pairs if t.kind == "unobserved"]
        assert observed and len(unobserved) >= 10
        report[family] = max(
            _longest_common_run(_words(u), _words(o)) for u in unobserved for o in observed
        )
    print("largest word n-gram shared by an unobserved and an observed template:", report)
    assert max(report.values()) <= 3, report


# ---------------------------------------------------------------- provenance table


def test_training_mixture_table(shared_data_dir):
    boolq = [tasks.lookup(n)[1] for n in tasks.TASK_NAMES if n.startswith("jr:boolq:qa:")]
    ps = next(t for t in boolq if t.provenance == "observed:p3:super_glue/boolq")
    flan = next(t for t in boolq if t.provenance == "observed:flan:bool_q")
    unobserved = next(t for t in boolq if t.kind == "unobserved")
    assert training_mixtures.observed_by(ps, "boolq", "t0++")
    assert not training_mixtures.observed_by(ps, "boolq", "t0")
    assert not training_mixtures.observed_by(ps, "boolq", "flan2022")
    assert training_mixtures.observed_by(flan, "boolq", "flan2021")
    assert not training_mixtures.observed_by(unobserved, "boolq", "t0++")
    assert training_mixtures.status("t0++", "semeval") == "absent"
    assert training_mixtures.status("flan2022", "mmlu_anatomy") == "held_out"


# ---------------------------------------------------------------- README


def test_readme_example_runs_verbatim(tmp_path, monkeypatch):
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Register your own task", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    for _ in range(2):  # running it twice is harmless
        exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    assert (tmp_path / "animals_bank.yaml").is_file()
    assert os.path.exists(tmp_path / "my_data" / "animals.jsonl")
