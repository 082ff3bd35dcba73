"""Which instruction-tuning mixture trained on which of our data sets.

A template's provenance says where its *text* comes from; whether a model saw
that text in training depends on the model's mixture. This table records it
for the mixtures the two studies compare.

| data set        | T0  | T0+ | T0++ | FLAN 2021 | Flan 2022 (Flan-T5) | Alpaca |
|-----------------|-----|-----|------|-----------|---------------------|--------|
| BoolQ           | no  | no  | yes  | yes       | yes                 | no     |
| MMLU            | no  | no  | no   | no        | held out            | no     |
| BIG-bench Lite  | held out | held out | held out | no | held out (BBH)    | no     |
| SemEval-2010 T8 | no  | no  | no   | no        | not audited (NIv2)  | no     |
| FewRel 1.0      | no  | no  | no   | no        | not audited (NIv2)  | no     |
| TACRED family   | no  | no  | no   | no        | not audited (NIv2)  | no     |

Sources:

* T0 / T0+ / T0++: Sanh et al. 2022, "Multitask Prompted Training Enables
  Zero-Shot Task Generalization" (ICLR), Sec. 3 and Fig. 2: T0 trains on the
  P3 prompts of its training clusters (no BoolQ, no SemEval); T0+ adds the
  GPT-3 evaluation sets; T0++ adds SuperGLUE (BoolQ). BIG-bench is their
  held-out evaluation. PromptSource holds SemEval prompts that no T0 trained
  on (the shared data README says the same).
* FLAN 2021: Wei et al. 2022, "Finetuned Language Models Are Zero-Shot
  Learners" (ICLR), Fig. 3: BoolQ in the reading-comprehension cluster; no
  MMLU, BIG-bench or relation extraction.
* Flan 2022: Longpre et al. 2023, "The Flan Collection" (ICML) and Chung et
  al. 2022, "Scaling Instruction-Finetuned Language Models": Muffin (FLAN 2021,
  with BoolQ), T0-SF, NIv2, CoT; MMLU and BBH are held out. The ~1,600 NIv2
  tasks were not audited here for relation extraction sources: "not audited".
* Alpaca: Taori et al. 2023, 52K self-instruct demonstrations; none of ours.

BoolQ's Flan templates we load (`flan_held_in.yaml`) are FLAN's own, so they
are observed for FLAN 2021 and Flan 2022; its PromptSource templates are
observed for T0++ only.

Which template *texts* each mixture held (T0's P3 data sets, Flan's patterns)
is `jaxrobust.data.tuning` (the report reads it there, without the task
registry); `observed_by` combines both.
"""

from __future__ import annotations

from jaxrobust.data import templates as tmpl
from jaxrobust.data import tuning

TRAINED, HELD_OUT, ABSENT, NOT_AUDITED = "trained", "held_out", "absent", "not_audited"

# model -> the collection whose templates it was tuned on.
MODEL_COLLECTION = {
    "t0": "p3",
    "t0+": "p3",
    "t0++": "p3",
    "flan2021": "flan",
    "flan2022": "flan",
    "alpaca": "alpaca",
}

_RE = ("semeval", "fewrel", "tacred", "tacrev", "retacred")
MIXTURES: dict[str, dict[str, str]] = {
    "t0": {"boolq": ABSENT, "mmlu": ABSENT, "bigbench_lite": HELD_OUT},
    "t0+": {"boolq": ABSENT, "mmlu": ABSENT, "bigbench_lite": HELD_OUT},
    "t0++": {"boolq": TRAINED, "mmlu": ABSENT, "bigbench_lite": HELD_OUT},
    "flan2021": {"boolq": TRAINED, "mmlu": ABSENT, "bigbench_lite": ABSENT},
    "flan2022": {"boolq": TRAINED, "mmlu": HELD_OUT, "bigbench_lite": HELD_OUT},
    "alpaca": {"boolq": ABSENT, "mmlu": ABSENT, "bigbench_lite": ABSENT},
}
for _model, _row in MIXTURES.items():
    for _dataset in _RE:
        _row[_dataset] = NOT_AUDITED if _model == "flan2022" else ABSENT

dataset_key = tuning.dataset_key


def status(model: str, dataset: str) -> str:
    """'trained', 'held_out', 'absent' or 'not_audited' for a model and data set."""
    return MIXTURES[model].get(dataset_key(dataset), ABSENT)


def observed_wording(template: tmpl.Template, model: str) -> bool:
    """Whether `model`'s tuning collection holds this template's text (Sun et al.'s
    "observed": T0++ saw Flan's nothing and SemEval's P3 prompts never)."""
    if model not in tuning.TUNINGS:
        return template.kind == "observed" and template.collection == MODEL_COLLECTION[model]
    return tuning.TUNINGS[model].observes_wording(template.provenance)


def observed_by(template: tmpl.Template, dataset: str, model: str) -> bool:
    """Whether `model` was tuned on this template's exact text for this data set
    (observed wording and data set)."""
    if not observed_wording(template, model) or status(model, dataset) != TRAINED:
        return False
    return model not in tuning.TUNINGS or tuning.TUNINGS[model].observes_dataset(
        template.provenance, dataset
    )
