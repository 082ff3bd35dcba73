"""Relation-extraction tasks: SemEval-2010 Task 8, FewRel 1.0, TACRED, TACREV, Re-TACRED.

Each data set comes in the two formats of the RE robustness study:

* ``re`` (plain RE): the template lists the relation names; the target is
  the gold relation's name, e.g. ``Cause-Effect(e2,e1)`` or ``per:title``.
* ``mcqa`` (multiple-choice QA, QA4RE style): options are relations
  verbalized as statements about the two entities plus a "none of these"
  statement for the negative label; the target is the option's letter and
  ``option_labels`` maps letters back to relations. TACRED-format candidates
  are type-constrained (`relation_schemas.type_candidates`); FewRel is N-way
  among the gold and N-1 relations drawn with a seed per example.

Negative labels: SemEval ``Other``, TACRED / TACREV / Re-TACRED
``no_relation``, FewRel none.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
import random
import string

from etils import epath
from jaxrobust.tasks import extending, registry
from jaxrobust.tasks import relation_schemas as schemas

from jaxrobust.data import datasets, flan, parts, qa4re
from jaxrobust.data import templates as tmpl

BANKS = pathlib.Path(__file__).parent / "banks"
LETTERS = string.ascii_uppercase
FEWREL_WAYS = 5
FEWREL_SEED = 0


def entity_window(record: dict, field: str) -> tuple[int, int]:
    """The words of `record[field]` (``sentence`` or ``tagged``) from the first entity
    mention to the last, which a shortened sentence keeps (`parts.tagged_window`).

    The plain sentence is the tagged one without its tags, word for word; where
    the word counts differ the whole sentence is kept.
    """
    window = parts.tagged_window(record["tagged"])
    n = len(record[field].split(" "))
    return window if n == len(record["tagged"].split(" ")) else (0, n)


# A too-long input loses words of its sentence only, around both entity mentions.
SHORTENING = registry.Shortening(("sentence", "tagged"), keep=entity_window)


def _base_variables(record: dict) -> dict:
    keys = ("sentence", "tagged", "head", "tail", "head_type", "tail_type")
    return {k: record[k] for k in keys}


def _plain(record: dict, relations: list[str], label_space) -> registry.Prepared:
    variables = _base_variables(record)
    variables["relations"] = relations
    variables["answer_index"] = (
        relations.index(record["relation"]) if record["relation"] in relations else -1
    )
    return registry.Prepared(variables, relations, record["relation"], label_space, record["id"])


def _mcqa(record: dict, candidates: list[str], verbalize, label_space) -> registry.Prepared:
    if len(candidates) > len(LETTERS):
        raise ValueError(f"{record['id']}: {len(candidates)} options exceed {len(LETTERS)} letters")
    variables = _base_variables(record)
    variables["options"] = [
        verbalize(label).format(head=record["head"], tail=record["tail"]) for label in candidates
    ]
    variables["letters"] = list(LETTERS[: len(candidates)])
    variables["answer_index"] = (
        candidates.index(record["relation"]) if record["relation"] in candidates else -1
    )
    return registry.Prepared(variables, candidates, record["relation"], label_space, record["id"])


# ---------------------------------------------------------------- SemEval-2010 Task 8


def semeval_to_hf(record: dict) -> dict:
    """A SemEval record in the HF ``sem_eval_2010_task_8`` schema PromptSource uses.

    ``sentence`` keeps the <e1>/<e2> tags and ``relation`` is the class index
    in `relation_schemas.SEMEVAL_LABELS` order.
    """
    return {
        "sentence": record["tagged"],
        "relation": schemas.SEMEVAL_LABELS.index(record["relation"]),
    }


SEMEVAL_SAMPLE = {  # hand-written, in the reader's schema
    "id": "semeval-sample",
    "sentence": "The storm caused a flood in the valley.",
    "tagged": "The <e1>storm</e1> caused a <e2>flood</e2> in the valley.",
    "head": "storm",
    "tail": "flood",
    "head_type": "",
    "tail_type": "",
    "relation": "Cause-Effect(e1,e2)",
}


def semeval_specs() -> list[registry.TaskSpec]:
    labels = list(schemas.SEMEVAL_LABELS)
    common = dict(
        dataset="semeval",
        splits=("train", "test"),
        eval_split="test",
        read=datasets.read_semeval,
        sample=SEMEVAL_SAMPLE,
        negative_label="Other",
        shortening=SHORTENING,
    )
    return [
        registry.TaskSpec(
            format="re",
            prepare=lambda r: _plain(r, labels, labels),
            family="re",
            adapters={"hf:sem_eval_2010_task_8": semeval_to_hf},
            **common,
        ),
        registry.TaskSpec(
            format="mcqa",
            prepare=lambda r: _mcqa(r, labels, schemas.SEMEVAL_VERBALIZATIONS.get, labels),
            family="re_mcqa",
            **common,
        ),
    ]


# ---------------------------------------------------------------- TACRED format

TACRED_VARIANTS = {
    "tacred": schemas.TACRED_LABELS,
    "tacrev": schemas.TACRED_LABELS,
    "retacred": schemas.RETACRED_LABELS,
}
TACRED_SAMPLE = {  # hand-written, in the reader's schema
    "id": "tacred-sample",
    "sentence": "Anna Berg , 52 , was born in Oslo .",
    "tagged": "<e1>Anna Berg</e1> , 52 , was born in <e2>Oslo</e2> .",
    "head": "Anna Berg",
    "tail": "Oslo",
    "head_type": "PERSON",
    "tail_type": "CITY",
    "relation": "per:city_of_birth",
}


def tacred_specs(variant: str) -> list[registry.TaskSpec]:
    """Specs of one TACRED-format data set ('tacred', 'tacrev' or 'retacred')."""
    labels = TACRED_VARIANTS[variant]

    def candidates(record: dict) -> list[str]:
        types = (record["head_type"], record["tail_type"])
        return schemas.type_candidates(labels, *types) + ["no_relation"]

    common = dict(
        dataset=variant,
        splits=("train", "validation", "test"),
        eval_split="test",
        read=functools.partial(datasets.read_tacred, variant),
        sample=TACRED_SAMPLE,
        negative_label="no_relation",
        shortening=SHORTENING,
    )
    return [
        registry.TaskSpec(
            format="re",
            prepare=lambda r: _plain(r, list(labels), labels),
            family="re",
            **common,
        ),
        registry.TaskSpec(
            format="mcqa",
            prepare=lambda r: _mcqa(r, candidates(r), schemas.TACRED_VERBALIZATIONS.get, labels),
            family="re_mcqa",
            **common,
        ),
    ]


# ---------------------------------------------------------------- FewRel 1.0


def read_fewrel_named(split: str) -> list[dict]:
    """FewRel records with ``relation`` the pid2name name, ``pid`` the property id,
    and ``pool`` the names of every relation in the split."""
    names = datasets.read_fewrel_relations()
    records = datasets.read_fewrel(split)
    unnamed = sorted({r["relation"] for r in records} - set(names))
    if unnamed:
        raise datasets.DataFormatError(
            f"{datasets.data_file('fewrel', 'pid2name.json')}: no name for the relations "
            f"{unnamed} of {datasets.data_file('fewrel', 'val_wiki.json')}"
        )
    pool = sorted({names[r["relation"]][0] for r in records})
    return [
        {**r, "pid": r["relation"], "relation": names[r["relation"]][0], "pool": pool}
        for r in records
    ]


FEWREL_SAMPLE = {  # hand-written, in the schema of read_fewrel_named
    "id": "fewrel-sample",
    "sentence": "The Old Mill Bridge carries the road over the River Avon .",
    "tagged": "The <e1>Old Mill Bridge</e1> carries the road over the <e2>River Avon</e2> .",
    "head": "Old Mill Bridge",
    "tail": "River Avon",
    "head_type": "",
    "tail_type": "",
    "relation": "crosses",
    "pid": "P177",
    "pool": ["crosses", "part of", "sport", "spouse", "mother", "child"],
}


def fewrel_candidates(record: dict, ways: int, seed: int) -> list[str]:
    """The gold relation and ways-1 others from the pool, shuffled; seeded per example."""
    rng = random.Random(f"{seed}:{record['id']}")
    others = [n for n in record["pool"] if n != record["relation"]]
    chosen = rng.sample(others, ways - 1) + [record["relation"]]
    rng.shuffle(chosen)
    return chosen


def fewrel_specs(ways: int = FEWREL_WAYS, seed: int = FEWREL_SEED) -> list[registry.TaskSpec]:
    """Specs of FewRel validation as an N-way task (N = `ways`, candidates seeded)."""

    def verbalize(name: str) -> str:
        generic = "{head} has the property '" + name + "' with value {tail}"
        return _FEWREL_BY_NAME.get(name, generic)

    def plain(r):
        return _plain(r, fewrel_candidates(r, ways, seed), r["pool"])

    def mcqa(r):
        return _mcqa(r, fewrel_candidates(r, ways, seed), verbalize, r["pool"])

    common = dict(
        dataset=f"fewrel_{ways}way" if (ways, seed) != (FEWREL_WAYS, FEWREL_SEED) else "fewrel",
        splits=("validation",),  # FewRel's test set is not public
        eval_split="validation",
        read=read_fewrel_named,
        sample=FEWREL_SAMPLE,
        negative_label="",
        shortening=SHORTENING,
    )
    return [
        registry.TaskSpec(format="re", prepare=plain, family="re", **common),
        registry.TaskSpec(format="mcqa", prepare=mcqa, family="re_mcqa", **common),
    ]


# Names of FewRel validation's 16 properties (pid2name.json) -> verbalization.
_FEWREL_NAMES = {
    "P177": "crosses",
    "P364": "original language of film or TV show",
    "P2094": "competition class",
    "P361": "part of",
    "P641": "sport",
    "P59": "constellation",
    "P413": "position played on team / speciality",
    "P206": "located in or next to body of water",
    "P412": "voice type",
    "P155": "follows",
    "P26": "spouse",
    "P410": "military rank",
    "P25": "mother",
    "P463": "member of",
    "P40": "child",
    "P921": "main subject",
}
_FEWREL_BY_NAME = {name: schemas.FEWREL_VERBALIZATIONS[pid] for pid, name in _FEWREL_NAMES.items()}


# ---------------------------------------------------------------- QA4RE's option sentences


def _qa4re_prepare(record: dict, schema: qa4re.Schema, label_space) -> registry.Prepared:
    """An MC-QA example with QA4RE's options: its type-admitted relations' sentences,
    then the negative relation's (`qa4re.Schema.options`); the gold option is the
    first of its relation (-1 when the types exclude it)."""
    if schema.dataset == "semeval":
        types = qa4re.SEMEVAL_TYPES
    else:
        types = (record["head_type"], record["tail_type"])
    pairs = schema.options(*types)
    if len(pairs) > len(LETTERS):
        raise ValueError(f"{record['id']}: {len(pairs)} options exceed {len(LETTERS)} letters")
    relations = [rel for rel, _ in pairs]
    variables = _base_variables(record)
    variables["options"] = [s.format(subj=record["head"], obj=record["tail"]) for _, s in pairs]
    variables["letters"] = list(LETTERS[: len(pairs)])
    gold = record["relation"]
    variables["answer_index"] = relations.index(gold) if gold in relations else -1
    return registry.Prepared(variables, relations, gold, label_space, record["id"])


def qa4re_mcqa_specs(loaded: dict[str, qa4re.Schema]) -> list[registry.TaskSpec]:
    """The ``mcqa`` specs of the data sets in `loaded`, with QA4RE's options.

    Raises:
      ValueError: a schema's relations are not the data set's label set.
    """
    specs = semeval_specs() + [s for v in TACRED_VARIANTS for s in tacred_specs(v)]
    out = []
    for spec in specs:
        if spec.format != "mcqa" or spec.dataset not in loaded:
            continue
        schema = loaded[spec.dataset]
        ours = (
            schemas.SEMEVAL_LABELS if spec.dataset == "semeval" else TACRED_VARIANTS[spec.dataset]
        )
        if set(schema.labels) != set(ours):
            raise ValueError(
                f"{schema.source}: {spec.dataset}'s relations differ from the data set's: "
                f"only there {sorted(set(schema.labels) - set(ours))}, "
                f"only here {sorted(set(ours) - set(schema.labels))}"
            )
        prepare = functools.partial(_qa4re_prepare, schema=schema, label_space=tuple(ours))
        out.append(dataclasses.replace(spec, prepare=prepare))
    return out


def use_qa4re_options(path, datasets_=("semeval", "tacred", "tacrev", "retacred")) -> list[str]:
    """Re-registers the MC-QA tasks of these data sets with the option sentences and
    type constraints of QA4RE's ``re_templates.py`` at `path` (`jaxrobust.data.qa4re`).

    An explicit call (e.g. from a module in ``TASK_MODULES``); without it the
    project's own sentences (`relation_schemas`) stay. Every template of the
    ``re_mcqa`` bank is registered again under the same task names.

    Returns:
      The task names (re)registered.
    """
    loaded = qa4re.load(path, datasets_)
    names = []
    for spec in qa4re_mcqa_specs(loaded):
        names += registry.register_with_mixtures(spec, list(bank(spec.family)))
    return names


# Flan 2022's multiple-choice QA templates over the MC-QA format's variables (the
# sentence in the question's role; the options are the statements): the "seen kind
# of task" of Ni et al.
FLAN_MCQA_BINDING = flan.Binding(roles={"question": "sentence"}, choices="options")


def add_flan_observed(*, style: str = "dash", path=None) -> list[str]:
    """Adds Flan 2022's multiple-choice observed set (`jaxrobust.data.flan`) to the
    MC-QA format of SemEval, FewRel and the TACRED family (``#observed_flan``).

    With ``dash`` options the answers are the statements themselves; `style`
    ``letters`` renders Flan's (A) ... options. Not done at import.
    """
    loaded = flan.category_templates("multiple_choice", FLAN_MCQA_BINDING, path=path, style=style)
    names = []
    for dataset in ["semeval", "fewrel", *TACRED_VARIANTS]:
        names += extending.add_templates(f"{registry.PREFIX}:{dataset}:mcqa", loaded.templates)
    return names


# ---------------------------------------------------------------- registration


@functools.cache
def bank(family: str) -> tmpl.Bank:
    return tmpl.load_bank(BANKS / f"{family}.yaml")


def promptsource_semeval_path() -> epath.Path:
    """Where the data directory holds PromptSource's SemEval templates."""
    return datasets.data_dir() / "promptsource" / "sem_eval_2010_task_8" / "templates.yaml"


def promptsource_semeval() -> tmpl.Bank | None:
    """PromptSource's SemEval templates, read from the data directory if present."""
    path = promptsource_semeval_path()
    if not path.is_file():
        return None
    return tmpl.load_promptsource(
        path, source="PromptSource @ 7dab96a3, templates/sem_eval_2010_task_8/templates.yaml"
    )


def register_all() -> list[str]:
    """Registers every RE task and mixture; returns the task names."""
    names = []
    ps = promptsource_semeval()
    specs = semeval_specs() + fewrel_specs()
    for variant in TACRED_VARIANTS:
        specs += tacred_specs(variant)
    for spec in specs:
        templates, missing = list(bank(spec.family)), []
        if spec.dataset == "semeval" and spec.format == "re":
            templates += list(ps or [])
            missing = [] if ps is not None else [str(promptsource_semeval_path())]
        names += registry.register_with_mixtures(spec, templates, missing=missing)
    return names
