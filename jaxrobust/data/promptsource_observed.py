"""P3 (PromptSource) observed sets by task category, for T0 / T0+ / T0++.

Sun et al. (2023) took a benchmark's observed instructions from the tuning
collection's templates of the same task category. For the T0 models that
collection is P3: the PromptSource prompts of the data sets in T0's, T0+'s or
T0++'s training mixture (`jaxrobust.data.tuning`). This module turns the
multiple-choice QA prompts of those data sets into templates a benchmark with a
question and a list of options (MMLU, BIG-bench Lite, relation extraction as
multiple-choice QA) can render. The yes/no category is BoolQ's own P3 prompts
(``super_glue/boolq``, T0++ only), which `jaxrobust.tasks.qa` registers for
BoolQ already; no other yes/no data set of the mixtures asks a question about a
passage.

A PromptSource template is Jinja over its data set's Hugging Face record
(``question``, ``choices.text``, ``answerKey`` for ARC). The template text is
kept as it is (provenance ``observed:p3:<data set>``); an *adapter* builds that
record from the benchmark's question, options and gold index (`record`), and
fields with no counterpart (a passage, a dialogue, supporting facts) are left
out. Each template is then tried on hand-made examples with every option count
the benchmark has (`option_counts`) and every gold position, and kept only if
it renders, lists as many options as the example has, and its target is the
option at the gold position each time. Left out, with the reason
(`REASONS`; `Loaded.summary` counts them, and the loader logs it):

* ``generates``: no answer choices: the prompt generates (a question, an
  answer without options, ...), and the task is scored over options;
* ``unmapped_field``: it needs a field the benchmark has no counterpart for;
* ``options``: it lists a fixed number of options (PIQA's two, Social IQa's
  three) that is not the benchmark's, or its target is not the gold option;
* ``no_adapter``: the data set's records have no counterpart at all (SciQ's
  distractors are shuffled by the template; COPA asks for a cause or effect).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import string
from collections.abc import Callable, Sequence

from etils import epath

from jaxrobust.data import templates as tmpl
from jaxrobust.data import tuning

log = logging.getLogger(__name__)

LETTERS = string.ascii_uppercase
SOURCE = "PromptSource @ 7dab96a3 (the P3 prompts), promptsource/templates/"


def _labelled(q, choices, gold, question_key="question"):
    return {
        question_key: q,
        "choices": {"text": list(choices), "label": list(LETTERS[: len(choices)])},
        "answerKey": LETTERS[gold],
    }


# P3 data set -> (question, options, gold index) -> its HF record, the fields that
# have no counterpart left out. None: no adapter (the reason is in NO_ADAPTER).
ADAPTERS: dict[str, Callable[[str, Sequence[str], int], dict]] = {
    "cos_e/v1.11": lambda q, c, g: {"question": q, "choices": list(c), "answer": c[g]},
    "ai2_arc/ARC-Challenge": _labelled,
    "ai2_arc/ARC-Easy": _labelled,
    "openbookqa/main": lambda q, c, g: _labelled(q, c, g, "question_stem"),
    "qasc": _labelled,
    "quartz": _labelled,
    "cosmos_qa": lambda q, c, g: {
        "question": q,
        "label": g,
        **{f"answer{i}": o for i, o in enumerate(c)},
    },
    "quail": lambda q, c, g: {"question": q, "answers": list(c), "correct_answer_id": g},
    "dream": lambda q, c, g: {"question": q, "choice": list(c), "answer": c[g]},
    "social_i_qa": lambda q, c, g: {
        "question": q,
        "label": str(g + 1),
        **{f"answer{LETTERS[i]}": o for i, o in enumerate(c)},
    },
    "race/high": lambda q, c, g: {"question": q, "options": list(c), "answer": LETTERS[g]},
    "race/middle": lambda q, c, g: {"question": q, "options": list(c), "answer": LETTERS[g]},
    "wiki_hop/original": lambda q, c, g: {"question": q, "candidates": list(c), "answer": c[g]},
    "piqa": lambda q, c, g: {"goal": q, "label": g, **{f"sol{i + 1}": o for i, o in enumerate(c)}},
    "hellaswag": lambda q, c, g: {"ctx": q, "endings": list(c), "label": str(g)},
}
NO_ADAPTER = {
    "sciq": "the template shuffles the distractors and the answer itself",
    "quarel": "its options are the two 'worlds' of a comparison",
    "wiqa": "its questions are about the effects of a perturbed process",
    "super_glue/copa": "it asks for the cause or effect of a premise",
}
# The multiple-choice QA data sets of the T0 mixtures (T0's cluster, with
# CommonsenseQA as CoS-E, T0+'s GPT-3 evaluation sets, T0++'s COPA), in that order.
MULTIPLE_CHOICE = (
    "cos_e/v1.11 dream quail quartz social_i_qa wiqa cosmos_qa qasc quarel sciq "
    "wiki_hop/original ai2_arc/ARC-Challenge ai2_arc/ARC-Easy openbookqa/main piqa "
    "race/high race/middle hellaswag super_glue/copa"
).split()
REASONS = {
    "generates": "no answer choices: the prompt generates, and the task is scored over options",
    "unmapped_field": "it needs a field the benchmark has no counterpart for",
    "options": "its options are not the example's (a fixed count) or its target is not the gold",
    "no_adapter": "the data set's records have no counterpart in a question with options",
}


@dataclasses.dataclass(frozen=True)
class Skipped:
    """A prompt left out: its data set, PromptSource id and name, reason and detail."""

    dataset: str
    template_id: str
    name: str
    reason: str
    detail: str


@dataclasses.dataclass(frozen=True)
class Loaded:
    """The templates of a P3 observed set and the prompts left out."""

    templates: tuple[tmpl.Template, ...]
    skipped: tuple[Skipped, ...]

    def counts(self) -> dict[str, int]:
        """P3 data set -> templates kept from it (0 where all were left out)."""
        out = collections.Counter(t.origin for t in self.templates)
        for s in self.skipped:
            out.setdefault(s.dataset, 0)
        return dict(out)

    def summary(self) -> str:
        """E.g. ``kept 23 of 110 prompts; skipped 40 unmapped_field, ...``."""
        reasons = collections.Counter(s.reason for s in self.skipped)
        total = len(self.templates) + len(self.skipped)
        why = ", ".join(f"{n} {r}" for r, n in reasons.most_common())
        return f"kept {len(self.templates)} of {total} prompts; skipped {why or 'none'}"


def default_root() -> epath.Path:
    """``<data dir>/promptsource`` (`jaxrobust.data.datasets.data_dir`)."""
    from jaxrobust.data import datasets

    return datasets.data_dir() / "promptsource"


def record(dataset: str, question: str, options: Sequence[str], gold: int) -> dict:
    """The HF record of a P3 data set that an example with these parts becomes.

    A gold index below 0 (a relation outside an example's candidates) renders as
    0: the runner drops the target of such an example.
    """
    return ADAPTERS[dataset](question, list(options), max(gold, 0))


def _examples(n: int) -> list[tuple[str, list[str], int]]:
    question = "Which of these is a colour?"
    options = [f"option {LETTERS[i]} text" for i in range(n)]
    return [(question, options, g) for g in range(n)]


def _check(template: tmpl.Template, dataset: str, counts: Sequence[int]) -> str | None:
    """None if the template scores every example of `counts` options, else the reason
    and detail as ``reason: detail``."""
    for n in counts:
        for question, options, gold in _examples(n):
            try:
                rendered = tmpl.render(template, record(dataset, question, options, gold))
            except tmpl.TemplateError as e:
                problem = e.problem
                undefined = "undefined" in problem or "has no attribute" in problem
                return f"{'unmapped_field' if undefined else 'options'}: {problem[:200]}"
            if len(rendered.options) != n:
                return f"options: renders {len(rendered.options)} options for {n}"
            if rendered.target != rendered.options[gold]:
                return f"options: target {rendered.target!r} is not option {gold}"
    return None


def multiple_choice(
    *,
    option_counts: Sequence[int],
    datasets: Sequence[str] | None = None,
    tunings: Sequence[str] = ("t0", "t0+", "t0++"),
    root: str | epath.Path | None = None,
) -> Loaded:
    """P3's multiple-choice QA prompts that a question-with-options benchmark can render.

    Args:
      option_counts: the numbers of options the benchmark's examples have (MMLU:
        ``(4,)``); a prompt is kept only if it works for each.
      datasets: the P3 data sets to take (default `MULTIPLE_CHOICE`).
      tunings: only data sets in one of these tunings' mixtures count.
      root: the PromptSource ``templates`` folder (default: the data directory's
        ``promptsource/``).

    Returns:
      The templates (provenance ``observed:p3:<data set>``, schema
      ``hf:<data set>``, ids PromptSource's) and the prompts left out.
    """
    root = epath.Path(root) if root is not None else default_root()
    in_mixture = set().union(*(tuning.TUNINGS[t].origins for t in tunings))
    kept, skipped = [], []
    for dataset in datasets or MULTIPLE_CHOICE:
        if dataset not in in_mixture:
            raise ValueError(f"P3 data set {dataset!r} is in none of the mixtures {list(tunings)}")
        path = root / dataset / "templates.yaml"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no PromptSource templates for {dataset!r}")
        bank = tmpl.load_promptsource(path, source=f"{SOURCE}{dataset}/templates.yaml")
        for template in bank:
            if dataset not in ADAPTERS:
                reason = f"no_adapter: {NO_ADAPTER[dataset]}"
            elif template.answer_choices is None:
                reason = "generates: no answer_choices"
            else:
                reason = _check(template, dataset, option_counts)
            if reason is None:
                kept.append(template)
            else:
                why, _, detail = reason.partition(": ")
                skipped.append(Skipped(dataset, template.id, template.name, why, detail))
    loaded = Loaded(tuple(kept), tuple(skipped))
    log.info("P3 multiple-choice templates from %s: %s", root, loaded.summary())
    return loaded
