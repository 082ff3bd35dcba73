"""Instruction-tuning collections: which template texts, and which data sets, a model saw.

A template's provenance (`jaxrobust.data.templates`) says where its *text*
comes from: ``observed:<collection>`` optionally followed by ``:<origin>``, the
collection's own data set the text was written for (``observed:p3:super_glue/boolq``,
``observed:flan:arc``). Whether a model was tuned on that text is a fact about
the model's tuning collection, a `Tuning`:

* ``text``: the provenance collection its templates come from (``p3``, ``flan``);
* ``origins``: the data sets of that collection the model was tuned on (T0 saw
  the P3 prompts of its training data sets only; SemEval's P3 prompts are in
  PromptSource but in no T0 mixture), or None for every one;
* ``trained``: this project's data sets (`dataset_key` rows) the model was
  tuned on, with ``origin_dataset`` saying which origin is which of ours.

A model spec names its tunings in ``observed_collections`` (gin:
``ModelSpec.observed_collections = ('t0++',)``). For a model and a template
evaluated on a data set there are then two facts (`classify`):

* **observed wording**: the template's text is in the model's tuning
  collection (its collection is the tuning's ``text`` and, where the tuning
  lists origins, its origin is one of them). This is Sun et al.'s "observed":
  Flan's multiple-choice instructions are observed wording on MMLU, which
  Flan-T5 never trained on.
* **observed wording and data set**: also, the model was tuned on this data set
  with this wording (the data set is in ``trained`` and the template's origin,
  when it has one, is this data set): Flan-T5 on BoolQ with Flan's BoolQ
  templates, T0++ on BoolQ with BoolQ's P3 prompts.

A name in ``observed_collections`` that is not a declared tuning is a plain
collection: every template of that collection is observed wording, and no data
set is declared trained (``*``: every collection). Users declare their own with
`declare` (the API) or by naming them in a model spec's ``observed_collections``
(the ``eval`` and ``train_prompt`` runners declare those as plain collections
before the task modules load, so banks may use ``observed:<name>``).

Sources of the tables below:

* T0 / T0+ / T0++: the ``do_train`` column of T0's own training table,
  github.com/bigscience-workshop/t-zero ``t0/datasets.csv`` @ 4334fee (read by
  its ``t0/seqio_tasks/tasks.py`` to build the mixtures): ``BASE`` (T0: 38
  data sets; CommonsenseQA through ``cos_e/v1.11``, not ``commonsense_qa``),
  ``GPT_EVAL`` (T0+ adds GPT-3's evaluation sets: ARC, OpenBookQA, PIQA, RACE,
  HellaSwag, SQuAD v2, TriviaQA, WebQuestions) and ``SGLUE`` (T0++ adds
  SuperGLUE but RTE and CB). Sanh et al. 2022 (ICLR), Sec. 3 and Fig. 2.
  Names are PromptSource's folders (``<dataset>[/<subset>]``).
* Flan 2022: Longpre et al. 2023 and Chung et al. 2022: every pattern of the
  collection's ``templates.py`` was used; BoolQ is held in; MMLU and BBH held out.
* FLAN 2021: Wei et al. 2022, Fig. 3: BoolQ held in.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence

from jaxrobust.data import templates as tmpl

# P3 (PromptSource) data sets of each T0 mixture, as PromptSource's folder names
# (t-zero's t0/datasets.csv: do_train BASE, GPT_EVAL, SGLUE).
T0_P3 = frozenset(
    """
    cos_e/v1.11 dream quail quartz social_i_qa wiqa cosmos_qa qasc quarel sciq
    wiki_hop/original adversarial_qa/dbidaf adversarial_qa/dbert adversarial_qa/droberta
    quoref duorc/ParaphraseRC duorc/SelfRC ropes kilt_tasks/hotpotqa wiki_qa common_gen
    wiki_bio amazon_polarity app_reviews imdb rotten_tomatoes yelp_review_full
    cnn_dailymail/3.0.0 gigaword multi_news samsum xsum ag_news dbpedia_14 trec
    glue/mrpc paws/labeled_final glue/qqp
    """.split()
)
T0_PLUS_P3 = T0_P3 | frozenset(
    "ai2_arc/ARC-Challenge ai2_arc/ARC-Easy openbookqa/main piqa race/high race/middle "
    "hellaswag squad_v2 trivia_qa/unfiltered web_questions".split()
)
T0_PLUS_PLUS_P3 = T0_PLUS_P3 | frozenset(
    "super_glue/boolq super_glue/copa super_glue/multirc super_glue/record super_glue/wic "
    "super_glue/wsc.fixed".split()
)


@dataclasses.dataclass(frozen=True)
class Tuning:
    """One model's instruction-tuning collection.

    Attributes:
      name: what a model spec's ``observed_collections`` names (``t0++``).
      text: the provenance collection its templates' text comes from (``p3``).
      origins: the collection's data sets the model was tuned on (template
        origins); None: all of them.
      trained: this project's data sets (`dataset_key` rows) the model was tuned on.
      origin_dataset: template origin -> the project's data set it is
        (``super_glue/boolq`` -> ``boolq``).
      description: where the facts come from.
    """

    name: str
    text: str
    origins: frozenset[str] | None = None
    trained: frozenset[str] = frozenset()
    origin_dataset: Mapping[str, str] = dataclasses.field(default_factory=dict)
    description: str = ""

    def observes_wording(self, provenance: str) -> bool:
        """Whether the model was tuned on this template text."""
        kind, collection, origin = split_provenance(provenance)
        if kind != "observed" or collection != self.text:
            return False
        return self.origins is None or origin in self.origins

    def observes_dataset(self, provenance: str, dataset: str) -> bool:
        """Whether the model was tuned on this data set with this template text."""
        if not self.observes_wording(provenance) or dataset_key(dataset) not in self.trained:
            return False
        origin = split_provenance(provenance)[2]
        return origin is None or self.origin_dataset.get(origin) == dataset_key(dataset)


_BOOLQ_ORIGINS = {"super_glue/boolq": "boolq", "bool_q": "boolq"}
TUNINGS: dict[str, Tuning] = {}


def declare(tuning: Tuning | str, *, description: str = "") -> Tuning:
    """Declares a tuning collection (or, given a name, a plain collection of that name).

    A plain name declares the template collection ``observed:<name>`` too, so
    banks may use it; a `Tuning` needs its ``text`` collection declared
    (`templates.declare_collection`). Declaring the same tuning again is a no-op;
    another with a taken name is an error.
    """
    if isinstance(tuning, str):
        tmpl.declare_collection(tuning, description or "declared as a tuning collection")
        tuning = Tuning(name=tuning, text=tuning, description=description)
    if not _NAME_RE.match(tuning.name):
        raise ValueError(f"tuning name {tuning.name!r} does not match {_NAME_RE.pattern}")
    if tuning.text not in tmpl.COLLECTIONS:
        raise ValueError(
            f"tuning {tuning.name!r}: its text collection {tuning.text!r} is not declared; "
            f"known: {sorted(tmpl.COLLECTIONS)} (templates.declare_collection)"
        )
    have = TUNINGS.get(tuning.name)
    if have is not None and have != tuning:
        raise ValueError(f"tuning {tuning.name!r} is already declared as {have}")
    TUNINGS[tuning.name] = tuning
    return tuning


_NAME_RE = re.compile(r"^[a-z0-9_+]+$")

for _t in (
    Tuning("t0", "p3", T0_P3, description="T0 (3B, 11B): Sanh et al. 2022"),
    Tuning("t0+", "p3", T0_PLUS_P3, description="T0+: T0 + GPT-3's evaluation sets"),
    Tuning(
        "t0++",
        "p3",
        T0_PLUS_PLUS_P3,
        frozenset({"boolq"}),
        _BOOLQ_ORIGINS,
        "T0++: T0+ + SuperGLUE without NLI",
    ),
    Tuning("flan2021", "flan", None, frozenset({"boolq"}), _BOOLQ_ORIGINS, "FLAN 2021"),
    Tuning("flan2022", "flan", None, frozenset({"boolq"}), _BOOLQ_ORIGINS, "Flan 2022 (Flan-T5)"),
):
    declare(_t)


def split_provenance(provenance: str) -> tuple[str, str | None, str | None]:
    """(kind, collection, origin) of a provenance string; missing parts are None."""
    kind, _, rest = provenance.partition(":")
    if not rest:
        return kind, None, None
    collection, _, origin = rest.partition(":")
    return kind, collection, origin or None


def dataset_key(dataset: str) -> str:
    """A task's data set name (``mmlu_anatomy``, ``bbl_winowhy``) as a table row."""
    if dataset.startswith("mmlu"):
        return "mmlu"
    if dataset.startswith("bbl_"):
        return "bigbench_lite"
    if dataset.startswith("fewrel"):
        return "fewrel"
    return dataset


def resolve(observed_collections: Sequence[str]) -> list[Tuning]:
    """The tunings a model spec's ``observed_collections`` name.

    A declared tuning by its name; ``*`` matches every collection; any other
    name is a plain collection (its templates are observed wording, no data set
    declared trained).
    """
    out = []
    for name in observed_collections:
        if name == "*":
            out += [Tuning("*", c) for c in sorted(tmpl.COLLECTIONS)]
        else:
            out.append(TUNINGS.get(name) or Tuning(name, name))
    return out


def classify(provenance: str, dataset: str, observed_collections: Sequence[str]) -> str:
    """How a template relates to a model on a data set.

    Returns:
      ``observed_dataset`` (observed wording, and tuned on this data set with
      it), ``observed`` (observed wording only), ``unobserved`` (this project's
      new wording) or ``other`` (style, default, or text of a collection the
      model was not tuned on, such as SemEval's P3 prompts for T0++).
    """
    tunings = resolve(observed_collections)
    if any(t.observes_dataset(provenance, dataset) for t in tunings):
        return "observed_dataset"
    if any(t.observes_wording(provenance) for t in tunings):
        return "observed"
    return "unobserved" if provenance == "unobserved" else "other"


def declare_names(names: Sequence[str]) -> None:
    """Declares each name a model spec's ``observed_collections`` lists that is not yet
    a tuning (``*`` aside) as a plain collection, so ``observed:<name>`` banks load.

    The ``eval`` and ``train_prompt`` runners call this before importing the task
    modules; call it (or `declare`) yourself before loading such a bank elsewhere.
    """
    for name in names:
        if name != "*" and name not in TUNINGS:
            declare(name, description="named in a model spec's observed_collections")
