"""SeqIO tasks with swappable instructions; importing registers them all.

Naming grammar (SeqIO names match ``^[\\w\\d.:_#]+$``)::

    task     jr:<dataset>:<format>:<template>
    mixture  jr:<dataset>:<format>#<group>
    mixture  jr:mmlu:qa:<template>       (one template over the 57 subjects)
    mixture  jr:mmlu:qa#<group>

* ``<dataset>``: ``semeval``, ``fewrel`` (5-way, seed 0), ``tacred``,
  ``tacrev``, ``retacred``, ``boolq``, ``mmlu_<subject>``, ``bbl_<task>``
  (BIG-bench Lite), ``world_{rel,yn,mc,type}`` (the built-in study's generated
  data, `jaxrobust.tasks.builtin`).
* ``<format>``: ``re`` (plain relation extraction), ``mcqa`` (relation
  extraction as multiple-choice QA), ``qa``.
* ``<template>``: the template's id in its bank (``re_u03``,
  ``boolq_flan_style1``, ``flan_boolq_prompt0``), PromptSource UUIDs as
  ``p3_<first 8 hex digits>``.
* ``<group>``: the provenance with ':' as '_', its origin left out
  (``observed:p3:super_glue/boolq`` is ``observed_p3``; ``observed_flan``,
  ``style_flan``, ``style_p3``, ``style_alpaca``, ``incorrect_flan``,
  ``unobserved``, ``default``) or ``all``.

Examples: ``jr:semeval:re:re_u03``, ``jr:semeval:re:p3_202246b0``,
``jr:tacred:mcqa#unobserved``, ``jr:boolq:qa:flan_boolq_prompt0``,
``jr:mmlu_anatomy:qa:mmlu_default``, ``jr:bbl_winowhy:qa#all``.

Every task yields the text features of `registry.FEATURES` (inputs, targets,
options, option_labels, answer_index, label, label_space, negative_label,
example_id, template_id, provenance, dataset). Observed templates are read
from the data directory's ``promptsource/`` and ``flan/`` folders at import
(three small YAML files); when they are absent only the project's banks are
registered, and a logged warning names the missing files and the mixtures
built without them. No evaluation data is read at import.

Registering twice is harmless: a template registered again replaces its task,
and a mixture registered again keeps its members. New templates for a data set
registered here go through one call, `extending.add_templates` (e.g.
``add_templates("jr:semeval:re", bank)``, ``add_templates("jr:mmlu:qa", bank)``
for every MMLU subject), which extends ``#all`` and the group mixtures. Each
data set's standard evaluation split (SemEval, TACRED, MMLU, BIG-bench: test;
BoolQ, FewRel: validation) is `registry.split_for(task, None)`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from jaxrobust.tasks import builtin, extending, qa, registry, relation_extraction

from jaxrobust.data import templates

FEATURES = registry.FEATURES
add_templates = extending.add_templates
split_for = registry.split_for


def register_all() -> list[str]:
    """Registers every built-in task and mixture; returns the task names."""
    return relation_extraction.register_all() + qa.register_all() + builtin.register_all()


def lookup(name: str) -> tuple[registry.TaskSpec, templates.Template]:
    """The (spec, template) behind a task registered through this package."""
    return registry.REGISTERED[name]


def examples(
    name: str, split: str, *, limit: int | None = None, seed: int = 0
) -> Iterator[dict[str, Any]]:
    """The task's feature dicts as Python values, without TensorFlow."""
    spec, template = lookup(name)
    return registry.examples(spec, template, split, limit=limit, seed=seed)


TASK_NAMES = register_all()
