"""The machinery that turns (data set, answer format, template) into a SeqIO task.

A `TaskSpec` is a data set in one answer format: how to read its records (at
read time, never at import), and how to `prepare` a record into template
variables, the labels its options stand for and its gold label. `register`
pairs a spec with one template and adds the SeqIO task; `examples` yields the
same feature dicts in plain Python for code that does not want TensorFlow.

Every task emits the text features in `FEATURES`; tokenisation and chat
formats belong to the inference code, so one task serves every model.

Validation: `register` renders the template on the spec's `sample`, a
hand-written record bundled with the spec, so a broken template fails at
import naming bank file, template id and problem without reading any data
(reading, e.g., BIG-bench's 54,668 vitaminc examples at import would cost
seconds). When the data is read, the first real example is rendered and
checked the same way before the dataset is built, and the test suite renders
every template on the first 20 real examples of every task it serves.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import seqio  # noqa: E402
import tensorflow as tf  # noqa: E402

from jaxrobust.data import templates as tmpl  # noqa: E402

# Data loading runs on the host; keep TensorFlow off any accelerator JAX uses.
tf.config.set_visible_devices([], "GPU")

# name -> (dtype, rank) of every feature a task yields.
FEATURES = {
    "inputs": (tf.string, 0),  # the instruction-rendered model input
    "targets": (tf.string, 0),  # the rendered gold answer ('' when not among the options)
    "options": (tf.string, 1),  # the answer choices as the model should produce them
    "option_labels": (tf.string, 1),  # the data set label each option stands for
    "answer_index": (tf.int32, 0),  # index of the gold option; -1 when not among them
    "label": (tf.string, 0),  # the gold label in the data set's label space
    "label_space": (tf.string, 1),  # every label of the data set (of the example for BIG-bench)
    "negative_label": (tf.string, 0),  # e.g. 'Other' / 'no_relation'; '' when none
    "example_id": (tf.string, 0),  # stable id of the record
    "template_id": (tf.string, 0),  # the template's id in its bank
    "provenance": (tf.string, 0),  # observed:<collection> / style:<c> / unobserved / default
    "dataset": (tf.string, 0),  # the spec's dataset name
}
_VOCAB = seqio.PassThroughVocabulary(size=0)
OUTPUT_FEATURES = {
    name: seqio.Feature(_VOCAB, add_eos=False, required=True, dtype=dtype, rank=rank)
    for name, (dtype, rank) in FEATURES.items()
}
NAME_RE = re.compile(r"^[\w\d.:_#]+$")
PREFIX = "jr"


@dataclasses.dataclass(frozen=True)
class Prepared:
    """One record made ready for a template.

    Attributes:
      variables: what the template may reference.
      option_labels: the labels the options stand for, in option order.
      label: the gold label.
      label_space: every label the record could have.
      example_id: stable id.
    """

    variables: dict[str, Any]
    option_labels: list[str]
    label: str
    label_space: Sequence[str]
    example_id: str


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """A data set in one answer format.

    Attributes:
      dataset: name part of the task, e.g. 'semeval', 'mmlu_anatomy'.
      format: 're' (plain relation extraction), 'mcqa' (relation extraction as
        multiple-choice QA) or 'qa'.
      splits: SeqIO split names.
      read: split -> records; opens the data when called.
      prepare: record -> Prepared.
      sample: a hand-written record, rendered at registration.
      negative_label: the 'no relation' label, '' when there is none.
      family: the template family (bank) the spec takes templates from.
      adapters: schema name (``hf:<dataset>``) -> record -> the variables a
        template written against that schema expects.
    """

    dataset: str
    format: str
    splits: tuple[str, ...]
    read: Callable[[str], list[dict]]
    prepare: Callable[[dict], Prepared]
    sample: dict
    negative_label: str = ""
    family: str = ""
    adapters: Mapping[str, Callable[[dict], dict]] = dataclasses.field(default_factory=dict)


# task name -> (spec, template), for everything registered through this module.
REGISTERED: dict[str, tuple[TaskSpec, tmpl.Template]] = {}


_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def template_key(template: tmpl.Template) -> str:
    """The template part of a task name.

    PromptSource's UUID ids become ``<collection>_<first 8 hex digits>``; other
    ids keep their letters, digits, '_' and '.', anything else becoming '_'.
    """
    if _UUID_RE.match(template.id):
        return f"{template.collection or 'x'}_{template.id[:8]}"
    return re.sub(r"[^\w.]", "_", template.id)


def task_name(spec: TaskSpec, template: tmpl.Template) -> str:
    return f"{PREFIX}:{spec.dataset}:{spec.format}:{template_key(template)}"


def to_features(
    spec: TaskSpec, template: tmpl.Template, record: dict, *, seed: int = 0, check: bool = False
) -> dict[str, Any]:
    """Renders one record into the `FEATURES` dict (Python values)."""
    prepared = spec.prepare(record)
    variables = prepared.variables
    if template.schema:
        if template.schema not in spec.adapters:
            template.error(
                f"written for records of schema {template.schema!r}, but {spec.dataset} "
                f"has adapters only for {sorted(spec.adapters)}"
            )
        variables = spec.adapters[template.schema](record)
    answer_index = (
        prepared.option_labels.index(prepared.label)
        if prepared.label in prepared.option_labels
        else -1
    )
    if check:
        rendered = tmpl.validate(
            template,
            variables,
            option_labels=prepared.option_labels,
            answer_index=answer_index,
            example_key=prepared.example_id,
        )
    else:
        rendered = tmpl.render(template, variables, seed=seed, example_key=prepared.example_id)
    return {
        "inputs": rendered.inputs,
        "targets": rendered.target if answer_index >= 0 else "",
        "options": list(rendered.options),
        "option_labels": list(prepared.option_labels),
        "answer_index": answer_index,
        "label": prepared.label,
        "label_space": list(prepared.label_space),
        "negative_label": spec.negative_label,
        "example_id": prepared.example_id,
        "template_id": template.id,
        "provenance": template.provenance,
        "dataset": spec.dataset,
    }


def examples(
    spec: TaskSpec,
    template: tmpl.Template,
    split: str,
    *,
    seed: int = 0,
    limit: int | None = None,
    check: bool = False,
) -> Iterator[dict[str, Any]]:
    """Yields feature dicts of one split in file order (reads the data now)."""
    records = spec.read(split)
    for record in records[:limit] if limit is not None else records:
        yield to_features(spec, template, record, seed=seed, check=check)


def _dataset_fn(spec: TaskSpec, template: tmpl.Template, render_seed: int):
    signature = {
        name: tf.TensorSpec([None] * rank, dtype) for name, (dtype, rank) in FEATURES.items()
    }

    def dataset_fn(split: str, shuffle_files: bool = False, seed: int | None = None):
        # One file per split and renders seeded by `render_seed`: nothing here to
        # shuffle or seed; SeqIO shuffles the examples itself when asked.
        del shuffle_files, seed
        records = spec.read(split)  # raises DataFileNotFoundError here, not inside TF
        if records:  # a broken template fails here as a TemplateError, not inside TF
            to_features(spec, template, records[0], seed=render_seed, check=True)

        def generate():
            for record in records:
                yield to_features(spec, template, record, seed=render_seed)

        return tf.data.Dataset.from_generator(generate, output_signature=signature)

    return dataset_fn


def register(spec: TaskSpec, template: tmpl.Template, *, seed: int = 0) -> str:
    """Validates `template` on `spec.sample` and adds the SeqIO task.

    Registering the same name again replaces the earlier task, so importing or
    running registration twice is harmless.

    Returns:
      The task name.
    """
    name = task_name(spec, template)
    if not NAME_RE.match(name):
        raise ValueError(f"task name {name!r} does not match {NAME_RE.pattern}")
    to_features(spec, template, spec.sample, seed=seed, check=True)
    if name in seqio.TaskRegistry.names():
        seqio.TaskRegistry.remove(name)
    seqio.TaskRegistry.add(
        name,
        source=seqio.FunctionDataSource(_dataset_fn(spec, template, seed), splits=spec.splits),
        preprocessors=[],
        output_features=OUTPUT_FEATURES,
        metric_fns=[],
    )
    REGISTERED[name] = (spec, template)
    return name


def group_of(template: tmpl.Template) -> str:
    """The provenance group a template's tasks are mixed under."""
    return template.provenance.replace(":", "_")


def add_mixture(name: str, task_names: Sequence[str]) -> str:
    """Adds (or replaces) an equal-rate mixture of the given tasks."""
    if not NAME_RE.match(name):
        raise ValueError(f"mixture name {name!r} does not match {NAME_RE.pattern}")
    if name in seqio.MixtureRegistry.names():
        seqio.MixtureRegistry.remove(name)
    seqio.MixtureRegistry.add(name, list(task_names), default_rate=1.0)
    return name


def register_with_mixtures(
    spec: TaskSpec, bank: Sequence[tmpl.Template], *, seed: int = 0
) -> list[str]:
    """Registers a spec with every template of a bank, plus one mixture per group.

    Mixtures are named ``jr:<dataset>:<format>#<group>`` (groups: observed_p3,
    observed_flan, style_flan, ..., unobserved, default) and ``...#all``.
    """
    names, groups = [], {}
    for template in bank:
        name = register(spec, template, seed=seed)
        names.append(name)
        groups.setdefault(group_of(template), []).append(name)
    base = f"{PREFIX}:{spec.dataset}:{spec.format}"
    for group, members in groups.items():
        add_mixture(f"{base}#{group}", members)
    add_mixture(f"{base}#all", names)
    return names
