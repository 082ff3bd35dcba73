"""README's built-in-study table is the script's output for the committed numbers."""

import json

import pytest

from jaxrobust.study import readme_table


def test_readme_table_is_what_the_script_writes_from_the_committed_results():
    data = json.loads(readme_table.RESULTS.read_text())
    expected = readme_table.render(data)
    assert readme_table.block(readme_table.README.read_text()) == expected
    # The committed numbers are a study's: five models, each with its CIs.
    studies = data.get("studies", [data])
    for study in studies:
        assert len(study["models"]) == 5 and len(study["templates"]) == 48
        for row in study["models"].values():
            assert row["heldout"]["low"] <= row["heldout"]["estimate"] <= row["heldout"]["high"]


def test_write_replaces_only_the_lines_between_the_markers(tmp_path):
    readme = tmp_path / "README.md"
    start, end = readme_table.START, readme_table.END
    readme.write_text(f"# t\n\nbefore\n{start}\nold table\n{end}\nafter\n")
    results = tmp_path / "r.json"
    results.write_text(readme_table.RESULTS.read_text())
    argv = ["--results", str(results), "--readme", str(readme), "--write"]
    assert readme_table.main(argv) == 0
    text = readme.read_text()
    assert text.startswith("# t\n\nbefore\n" + start + "\n") and text.endswith(end + "\nafter\n")
    assert readme_table.block(text) == readme_table.render(json.loads(results.read_text()))
    with pytest.raises(ValueError, match="no study table between"):
        readme_table.block("# no markers\n")


def _ci(estimate, low, high):
    return {"estimate": estimate, "low": low, "high": high}


def test_findings_are_computed_from_the_numbers():
    def study(gap, effect):
        tuned = {"gap": gap, "observed_by_task": {"yn": 0.8, "mc": 0.4}}
        return {
            "tasks": ["yn", "mc"],
            "chance_by_task": {"yn": 0.5, "mc": 0.25},
            "majority_by_task": {"yn": 0.6, "mc": 0.3},
            "models": {"tuned": tuned, "tuned+pt_kl": {"effect_gap": effect}},
        }

    data = {
        "labels": [["tuned", "tuned"], ["tuned+pt_kl", "+ PT+KL"]],
        "studies": [
            study(_ci(0.06, 0.01, 0.11), _ci(-0.03, -0.05, -0.01)),
            study(_ci(0.02, -0.02, 0.07), _ci(-0.01, -0.04, 0.02)),
        ],
    }
    lines = readme_table.findings(data).splitlines()
    assert lines == [
        "- The tuned model scores +4.0 points on observed minus held-out wordings "
        "(95% CI [-0.5, +9.0]; the CI excludes 0 in 1 of 2 seeds).",
        "- Tasks at least 20 points over max(chance, majority class) on observed templates: "
        "1 of 2 (yn 80.0 >= 80.0; mc 40.0 < 50.0).",
        "- PT+KL narrows the gap by 2.0 points (change -2.0, 95% CI [-4.5, +0.5]; the CI "
        "excludes 0 in 1 of 2 seeds).",
    ]
    one = {**data["studies"][0], "labels": data["labels"]}
    assert "the CI excludes 0)." in readme_table.findings(one).splitlines()[0]


def test_readme_states_the_settings_of_the_study_gin_file():
    import re

    from jaxrobust.tasks import world

    gin = (readme_table.REPO / "gin_configs" / "runs" / "study.gin").read_text()

    def value(name: str) -> str:
        return re.search(rf"^\s*{name} = ([^\s#]+)", gin, re.M).group(1)

    text = " ".join(readme_table.README.read_text().split())
    tune = f"{value('TUNE_STEPS')} steps x {value('tune_batch_size')} examples from "
    assert f"{tune}{value('tune_limit')} records" in text
    assert f"`LossOptions.objective = '{value('tune_objective').strip(chr(39))}'`" in text
    pre = f"{value('PRETRAIN_STEPS')} steps x {value('pretrain_batch_size')} documents of "
    assert f"{pre}{value('pretrain_max_len')} tokens" in text
    s = world.SPLITS
    assert f"train/validation/test ({s['train']}/{s['validation']}/{s['test']} passages)" in text
