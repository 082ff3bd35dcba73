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
