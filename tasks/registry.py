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
every template on the first 20 real examples of every task it serves. Every
example rendered anywhere (`to_features`: evaluation, training, SeqIO) is
checked by `check_example`: as many options as labels, no empty or repeated
option, the gold label in the label set, text UTF-8 can encode; an
`ExampleError` names task, template and example.

Two templates whose tasks would share a record file are refused at
registration (`register`), and `split_for` resolves a task's evaluation split.
Adding templates to a data set already registered, and pooled data sets
(MMLU's subjects), are in `jaxrobust.tasks.extending`.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import seqio  # noqa: E402
import tensorflow as tf  # noqa: E402

from jaxrobust.data import templates as tmpl  # noqa: E402
from jaxrobust.storage import records  # noqa: E402

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
log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Prepared:
    """One record made ready for a template.

    Attributes:
      variables: what the template may reference.
      option_labels: the labels the options stand for, in option order.
      label: the gold label.
      label_space: every label the record could have.
      example_id: stable id.
      repeated_choices: the record's own answer texts repeat one (an MMLU
        question lists 'Employee rights' twice), so a template that renders
        the texts may render equal options; rank scoring handles the tie.
    """

    variables: dict[str, Any]
    option_labels: list[str]
    label: str
    label_space: Sequence[str]
    example_id: str
    repeated_choices: bool = False


@dataclasses.dataclass(frozen=True)
class Shortening:
    """The record fields a too-long input may lose words of (`input_parts`).

    Everything else a template renders (instruction, question, options, answer
    cue) is protected: the engine and training never cut it to fit.

    Attributes:
      fields: record fields (strings) that may be shortened, e.g. ``passage``.
      keep: (record, field) -> the word window ``(lo, hi)`` of the field's text
        (split on single spaces) that must survive, e.g. both entity mentions of
        a sentence; None: nothing (the field keeps its first words).
    """

    fields: tuple[str, ...]
    keep: Callable[[dict, str], tuple[int, int]] | None = None


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
      eval_split: the data set's standard evaluation split (SemEval 'test',
        BoolQ 'validation'); '' means 'test' when `splits` has it, else the
        last split. `split_for` returns it when no split is asked for.
      shortening: the fields a too-long input may lose words of; None:
        nothing may be shortened (MMLU, BIG-bench: question and options whole).
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
    eval_split: str = ""
    shortening: Shortening | None = None

    def __post_init__(self):
        if self.eval_split and self.eval_split not in self.splits:
            raise ValueError(
                f"{self.dataset}: eval_split {self.eval_split!r} is not one of its splits "
                f"{list(self.splits)}"
            )

    @property
    def default_split(self) -> str:
        """The split evaluation reads when none is asked for."""
        if self.eval_split:
            return self.eval_split
        return "test" if "test" in self.splits else self.splits[-1]


class ExampleError(tmpl.TemplateError):
    """A rendered example that cannot be scored; names task, template and example."""

    def __init__(self, task: str, template: tmpl.Template, example_id: str, problem: str):
        self.task, self.example_id = task, example_id
        problem = f"task {task}, example {example_id}: {problem}"
        super().__init__(template.bank, template.id, problem)


class RegistrationError(ValueError):
    """A template that cannot be registered next to those already registered."""


class SplitError(ValueError):
    """A split the task's data set does not have; names the task and its splits."""


# task name -> (spec, template), for everything registered through this module.
REGISTERED: dict[str, tuple[TaskSpec, tmpl.Template]] = {}
# casefolded record file name -> the task that writes it.
_RECORD_FILES: dict[str, str] = {}


_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def template_key(template: tmpl.Template) -> str:
    """The template part of a task name.

    PromptSource's UUID ids become ``<collection>_<first 8 hex digits>``; other
    ids keep their letters, digits, '_' and '.', anything else becoming '_'.
    """
    if _UUID_RE.match(template.id):
        return f"{template.collection or 'x'}_{template.id[:8]}"
    return re.sub(r"[^\w.]", "_", template.id)


def base_name(spec: TaskSpec) -> str:
    """``jr:<dataset>:<format>``: the spec's tasks and mixtures start with it."""
    return f"{PREFIX}:{spec.dataset}:{spec.format}"


def task_name(spec: TaskSpec, template: tmpl.Template) -> str:
    return f"{base_name(spec)}:{template_key(template)}"


def record_file_name(task: str) -> str:
    """The name of the file evaluation writes the task's records to."""
    return records.records_path("out", "model", task).name


_SURROGATE_RE = re.compile("[\ud800-\udfff]")


def check_example(
    task: str, template: tmpl.Template, prepared: Prepared, features: Mapping[str, Any]
) -> None:
    """Checks one rendered example is scorable.

    Args:
      task: the task name, for the message.
      template: the template that rendered it.
      prepared: the record as the spec prepared it.
      features: the `FEATURES` dict rendered from it.

    Raises:
      ExampleError: the options are not one per label, an option is empty, two
        options are equal (unless `prepared.repeated_choices`), the gold label
        is not in the label set, or a text holds a lone surrogate (which no
        encoding can write, so it would fail later with no example named).
    """

    def fail(problem: str):
        raise ExampleError(task, template, prepared.example_id, problem)

    options, labels = features["options"], prepared.option_labels
    if len(options) != len(labels):
        fail(
            f"renders {len(options)} options {list(options)[:6]} but the example has "
            f"{len(labels)} labels {list(labels)[:6]}"
        )
    empty = [i for i, o in enumerate(options) if not o.strip()]
    if empty:
        fail(f"option {empty[0]} (label {labels[empty[0]]!r}) renders empty: {list(options)}")
    if not prepared.repeated_choices:
        repeated = [o for o, n in collections.Counter(options).items() if n > 1]
        if repeated:
            fail(f"renders the option {repeated[0]!r} more than once: {list(options)}")
    if prepared.label not in prepared.label_space:
        fail(
            f"gold label {prepared.label!r} is not in the label set "
            f"{list(prepared.label_space)[:20]}"
        )
    for name, value in features.items():
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str) and _SURROGATE_RE.search(text):
                at = _SURROGATE_RE.search(text).start()
                fail(
                    f"feature {name!r} holds a lone surrogate {text[at]!r} at character {at} "
                    f"(data set {features['dataset']}: broken text in the data file; "
                    f"...{text[max(0, at - 30) : at]!r})"
                )


def to_features(
    spec: TaskSpec,
    template: tmpl.Template,
    record: dict,
    *,
    seed: int = 0,
    check: bool = False,
    parts: bool = False,
) -> dict[str, Any]:
    """Renders one record into the `FEATURES` dict (Python values); with `parts`,
    plus ``input_parts`` (`input_parts`)."""
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
    features = {
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
    check_example(task_name(spec, template), template, prepared, features)
    if parts:
        features["input_parts"] = input_parts(spec, template, record, rendered.inputs, seed=seed)
    return features


# Marks a shortenable field's place in a render (Unicode private-use characters).
_MARK = "\ue000{}\ue001"
_MARK_RE = re.compile("\ue000(\\d+)\ue001")


def input_parts(
    spec: TaskSpec, template: tmpl.Template, record: dict, inputs: str, *, seed: int = 0
) -> dict:
    """The rendered `inputs` split into protected and shortenable segments.

    The template is rendered once more with each shortenable field
    (`spec.shortening`) replaced by a unique mark; the text between marks is
    protected, each mark's place is the field's text. When that does not give
    `inputs` back exactly (the template transforms the field, say) nothing is
    shortenable. Returns `jaxrobust.data.parts.InputParts.as_dict()`.
    """
    whole = {"segments": [inputs], "keep": []}
    shortening = spec.shortening
    fields = [f for f in (shortening.fields if shortening else ()) if record.get(f)]
    if not fields:
        return whole
    marked = {**record, **{f: _MARK.format(i) for i, f in enumerate(fields)}}
    try:
        text = to_features(spec, template, marked, seed=seed, parts=False)["inputs"]
    except (tmpl.TemplateError, ValueError, KeyError, TypeError):
        return whole
    pieces = _MARK_RE.split(text)
    segments = [record[fields[int(p)]] if i % 2 else p for i, p in enumerate(pieces)]
    if "".join(segments) != inputs:
        return whole
    keep = []
    for i in range(1, len(pieces), 2):
        field = fields[int(pieces[i])]
        keep.append(list(shortening.keep(record, field)) if shortening.keep else [0, 0])
    return {"segments": segments, "keep": keep}


def examples(
    spec: TaskSpec,
    template: tmpl.Template,
    split: str,
    *,
    seed: int = 0,
    limit: int | None = None,
    check: bool = False,
    parts: bool = False,
) -> Iterator[dict[str, Any]]:
    """Yields feature dicts of one split in file order (reads the data now).

    With `parts`, each also holds ``input_parts`` (`input_parts`): what the
    engine and training may shorten to fit.
    """
    records = spec.read(split)
    for record in records[:limit] if limit is not None else records:
        yield to_features(spec, template, record, seed=seed, check=check, parts=parts)


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


def check_registrable(spec: TaskSpec, template: tmpl.Template, name: str, seed: int = 0) -> None:
    """Everything `register` checks (see there) before it changes any registry."""
    if not NAME_RE.match(name):
        raise ValueError(f"task name {name!r} does not match {NAME_RE.pattern}")
    previous = REGISTERED.get(name)
    if previous is not None and previous[1].id != template.id:
        other = previous[1]
        raise RegistrationError(
            f"template ids {other.id!r} ({other.bank or 'no bank file'}) and {template.id!r} "
            f"({template.bank or 'no bank file'}) both give task {name} (record file "
            f"{record_file_name(name)}); rename one of them"
        )
    holder = _RECORD_FILES.get(record_file_name(name).casefold())
    if holder is not None and holder != name:
        raise RegistrationError(
            f"tasks {holder} (template {REGISTERED[holder][1].id!r}) and {name} (template "
            f"{template.id!r}) would write record files {record_file_name(holder)} and "
            f"{record_file_name(name)}, one file where names ignore case (macOS, Windows); "
            "rename one of the templates"
        )
    if template.kind != "observed":  # observed text is published text, kept as it is
        prepared = spec.prepare(spec.sample)
        known = set(prepared.variables)
        if template.schema in spec.adapters:
            known = set(spec.adapters[template.schema](spec.sample))
        for source in (template.jinja, template.answer_choices or ""):
            for line, field in tmpl.python_placeholders(source):
                variable = field[1:-1].split("!")[0].split(":")[0]
                if variable in known:
                    template.error(
                        f"line {line} holds the Python-style placeholder {field}, which Jinja "
                        f"prints literally; write {{{{ {variable} }}}} for the variable"
                    )
    to_features(spec, template, spec.sample, seed=seed, check=True)


def register(spec: TaskSpec, template: tmpl.Template, *, seed: int = 0) -> str:
    """Validates `template` on `spec.sample` and adds the SeqIO task.

    Registering the same template again replaces the earlier task, so importing
    or running registration twice is harmless.

    Returns:
      The task name.

    Raises:
      TemplateError: the template fails on the sample, or (not observed) holds
        a Python-style ``{variable}`` for one of the spec's variables.
      RegistrationError: another template already gives the same task name or
        record file name (``boolq-u01`` and ``boolq_u01`` both give
        ``..:boolq_u01``); the message names both.
    """
    name = task_name(spec, template)
    check_registrable(spec, template, name, seed)
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
    _RECORD_FILES[record_file_name(name).casefold()] = name
    SPECS[base_name(spec)] = spec
    return name


def split_for(task: str, requested: str | None = None) -> str:
    """The split to evaluate `task` on.

    Args:
      task: a registered task name.
      requested: the split asked for, or None for the data set's standard
        evaluation split (`TaskSpec.default_split`).

    Raises:
      KeyError: `task` is not registered.
      SplitError: the data set has no split `requested`; names the task and
        the splits it has.
    """
    if task not in REGISTERED:
        raise KeyError(f"no registered task {task!r}")
    spec = REGISTERED[task][0]
    if requested is None:
        return spec.default_split
    if requested not in spec.splits:
        raise SplitError(
            f"task {task}: data set {spec.dataset} has no split {requested!r}; it has "
            f"{list(spec.splits)} (standard evaluation split {spec.default_split!r}, used "
            "when no split is given)"
        )
    return requested


# ---------------------------------------------------------------- mixtures
#
# SeqIO copies a sub-mixture's tasks when a mixture is built, so `add_mixture`
# keeps each mixture's definition and rebuilds the mixtures that list one it
# changes.

# mixture name -> its members as given (task or mixture names).
MIXTURES: dict[str, list[str]] = {}
# base (``jr:<dataset>:<format>``) -> the spec its latest registration used.
SPECS: dict[str, TaskSpec] = {}


def group_of(template: tmpl.Template) -> str:
    """The provenance group a template's tasks are mixed under (format variants, which
    record a parent: ``variants``)."""
    if template.parent:
        return "variants"
    if template.origin is not None:  # observed:p3:super_glue/boolq is observed_p3
        return f"{template.kind}_{template.collection}"
    return template.provenance.replace(":", "_")


def _exists(name: str) -> bool:
    return name in seqio.TaskRegistry.names() or name in seqio.MixtureRegistry.names()


def add_mixture(name: str, task_names: Sequence[str], *, extend: bool = False) -> str:
    """Adds an equal-rate mixture of the given tasks (or mixtures).

    Args:
      name: the mixture name.
      task_names: its members.
      extend: keep the members the mixture already has (those still
        registered) and append the new ones; otherwise replace the mixture.
    """
    if not NAME_RE.match(name):
        raise ValueError(f"mixture name {name!r} does not match {NAME_RE.pattern}")
    members = list(dict.fromkeys(task_names))
    if extend and name in seqio.MixtureRegistry.names():
        old = MIXTURES.get(name) or [t.name for t in seqio.get_mixture_or_task(name).tasks]
        members = [m for m in old if _exists(m)] + [m for m in members if m not in old]
    if name in seqio.MixtureRegistry.names():
        seqio.MixtureRegistry.remove(name)
    seqio.MixtureRegistry.add(name, members, default_rate=1.0)
    MIXTURES[name] = members
    for parent, its in list(MIXTURES.items()):
        if name in its and parent != name:
            add_mixture(parent, its)
    return name


def register_with_mixtures(
    spec: TaskSpec, bank: Sequence[tmpl.Template], *, seed: int = 0, missing: Sequence[str] = ()
) -> list[str]:
    """Registers a spec with every template of a bank, plus one mixture per group.

    Mixtures are named ``jr:<dataset>:<format>#<group>`` (groups: observed_p3,
    observed_flan, style_flan, ..., unobserved, default) and ``...#all``. A
    mixture that exists already is extended, never shrunk: registering a
    second bank for a data set adds its templates to ``#all`` and the groups.

    Args:
      spec: the data set.
      bank: its templates.
      seed: render seed of the templates' random choices.
      missing: template files the caller looked for and did not find (an
        observed collection absent from the data directory); logged as a
        warning naming them and the mixtures built without them.
    """
    if missing:
        log.warning(
            "%s#all and its groups are built without the templates of %s (not found); "
            "point JAXROBUST_DATA_DIR at a data folder that holds them",
            base_name(spec),
            ", ".join(missing),
        )
    names, groups = [], {}
    for template in bank:
        name = register(spec, template, seed=seed)
        names.append(name)
        groups.setdefault(group_of(template), []).append(name)
    base = base_name(spec)
    for group, members in groups.items():
        add_mixture(f"{base}#{group}", members, extend=True)
    add_mixture(f"{base}#all", names, extend=True)
    return names
