"""Observed but incorrect instructions: a tuning collection's instruction for another
task, applied to this one (Sun et al. 2023's second extra experiment).

Flan-T5 was tuned on Flan's sentiment, topic and acceptability instructions
("What is the sentiment of this review?"); applied to an MMLU question with
MMLU's options, such an instruction is observed wording that asks for the wrong
thing. `flan_incorrect` builds those templates from Flan 2022's own patterns
(`jaxrobust.data.flan`): each pattern of a source data set (`SOURCES`) whose
only field is its text gets the benchmark's question there and the benchmark's
options in ``{options_}``; patterns needing more are skipped with the reason.

Provenance ``incorrect:flan:<source data set>``: the report never counts these
as observed or unobserved (their group is ``other``) and shows them apart, in a
table beside the observed and unobserved means, for a model whose tuning
holds the text (`jaxrobust.data.tuning`).
"""

from __future__ import annotations

import dataclasses

from etils import epath

from jaxrobust.data import flan

# Flan data set -> its one text field: sentiment (SST-2, IMDB), topic (AG News),
# acceptability (CoLA): tasks none of the project's benchmarks is.
SOURCES = {"sst2": "sentence", "imdb_reviews": "text", "ag_news_subset": "text", "cola": "sentence"}


def flan_incorrect(
    question: str,
    choices: str,
    *,
    path: str | epath.Path | None = None,
    sources: dict[str, str] | None = None,
    style: str = "dash",
    answer_index: str = "answer_index",
) -> flan.Loaded:
    """Flan instructions of other tasks over a question-with-options task's variables.

    Args:
      question: the task's variable holding the question (MMLU ``question``).
      choices: its list variable of option texts.
      path: the Flan template file (default `flan.default_path`).
      sources: Flan data set -> its text field (default `SOURCES`).
      style: ``dash`` or ``letters`` (`jaxrobust.data.flan`).

    Returns:
      The templates (ids ``flan2x_<data set>_<index>``) and the patterns skipped.
    """
    path = epath.Path(path) if path is not None else flan.default_path()
    patterns = flan.read_patterns(path)
    kept, skipped = [], []
    for dataset, field in (sources or SOURCES).items():
        if dataset not in patterns:
            raise flan.FlanFileError(f"{path}: no PATTERNS[{dataset!r}]")
        for pattern in patterns[dataset]:
            made = flan.to_template(
                pattern,
                fields={field: question},
                options=flan.Options(variable=choices),
                style=style,
                answer_index=answer_index,
                bank=str(path),
                id_prefix="flan2x",
            )
            if isinstance(made, flan.Skipped):
                skipped.append(made)
            else:
                kept.append(dataclasses.replace(made, provenance=f"incorrect:flan:{dataset}"))
    return flan.Loaded(tuple(kept), tuple(skipped))
