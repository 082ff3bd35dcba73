"""Instruction templates: what they are, where they come from, how they render.

A `Template` is one instruction wording for one task family: Jinja source for
the model input and the gold target, optional Jinja for the answer choices, and
a *provenance* saying where the wording comes from:

* ``observed:<collection>``: text loaded verbatim from an instruction-tuning
  collection's own files (``p3``: PromptSource, the prompts of P3 used by
  T0 / T0+ / T0++; ``flan``: the FLAN templates used by Flan 2021 and reused in
  the Flan 2022 collection; ``alpaca``: Alpaca's prompt format). Whether a given
  model actually trained on the task is a separate fact, recorded per model in
  `jaxrobust.tasks.training_mixtures` (SemEval's PromptSource prompts, say, are
  observed text that no T0 model was trained on).
* ``style:<collection>``: written in this project in a collection's style;
  never counted as observed.
* ``incorrect:<collection>:<origin>``: a collection's instruction for another
  task (its origin) applied to this one (`jaxrobust.data.misapplied`); never
  counted as observed or unobserved, reported apart.
* ``unobserved``: written in this project, new wording.
* ``default``: the data set's own native prompt (a BIG-bench task prefix, the
  MMLU header).

Three loaders read the three formats we hold: `load_bank` (this project's YAML
banks, `tasks/banks/*.yaml`), `load_promptsource` (PromptSource
``templates.yaml`` as published: ``!Template`` tags, ``|||`` between input and
target, ``answer_choices`` joined by ``|||``) and `load_lm_eval` (an
lm-evaluation-harness task YAML such as ``flan_held_in.yaml``, ``include``
resolved).

Rendering follows PromptSource's semantics: the whole Jinja source renders
once, then splits on ``|||`` into input and target, so ``{% set %}`` in the
input is visible in the target. Jinja runs sandboxed with `StrictUndefined`
(an unknown variable is an error, never an empty string), and PromptSource's
random ``choice`` filter draws from a generator seeded by (seed, template id,
example key), so a render is a pure function of its arguments.
"""

from __future__ import annotations

import ast
import collections
import dataclasses
import functools
import pathlib
import random
import re
from collections.abc import Mapping, Sequence
from typing import Any

import jinja2
import jinja2.sandbox
import yaml

# ``observed:<collection>[:<origin>]``: the origin is the collection's own data
# set the text was written for (``observed:p3:super_glue/boolq``; see
# `jaxrobust.data.tuning`, which decides whether a model saw it).
PROVENANCE_RE = re.compile(
    r"^(observed|style|incorrect):([a-z0-9_+]+)(:[A-Za-z0-9_./+-]+)?$|^(unobserved|default)$"
)
# Collections whose text a template may claim as observed or imitate in style.
COLLECTIONS = {
    "p3": "PromptSource templates (P3), bigscience-workshop/promptsource",
    "flan": "FLAN templates, google-research/FLAN (Flan 2021; reused in Flan 2022)",
    "alpaca": "Alpaca prompt format, tatsu-lab/stanford_alpaca",
    # Our own tuning collection: the templates the built-in study tunes its T5 on.
    "study": "jaxrobust's built-in study (tasks/banks/builtin_*.yaml, jaxrobust/study)",
}


def declare_collection(name: str, description: str) -> None:
    """Declares a template collection, so that ``observed:<name>`` templates load.

    For a model tuned on one's own templates (`jaxrobust.data.tuning.declare`;
    a model spec's ``observed_collections`` declares its names this way before
    the task modules load). Declaring a known name again keeps it as it is.
    """
    if not re.fullmatch(r"[a-z0-9_+]+", name):
        raise ValueError(f"collection name {name!r}: expected lower-case letters, digits, _ or +")
    COLLECTIONS.setdefault(name, description)


# PromptSource's guard for '|||' occurring inside data values.
_PIPE_PROTECTOR = "3ed2dface8203c4c9dfb1a5dc58e41e0"
_RNG_VAR = "_jaxrobust_rng"


class TemplateError(ValueError):
    """A template that cannot be loaded or rendered.

    The message always names the bank file, the template id and the problem.
    """

    def __init__(self, bank: str, template_id: str, problem: str):
        self.bank, self.template_id, self.problem = bank, template_id, problem
        super().__init__(f"{bank or '<no bank file>'}: template {template_id!r}: {problem}")


@dataclasses.dataclass(frozen=True)
class Template:
    """One instruction wording.

    Attributes:
      id: unique within its bank; used in SeqIO task names after sanitising.
      jinja: Jinja source, ``<input> ||| <target>`` as in PromptSource.
      answer_choices: Jinja source of the options joined by ``|||``, or None.
      provenance: ``observed:<collection>``, ``style:<collection>``,
        ``unobserved`` or ``default``.
      source: citation: where the text was taken from or who wrote it where.
      author: who wrote the wording.
      name: a human-readable name (PromptSource's ``name``).
      bank: the file it was loaded from, for error messages.
      strip_parts: strip whitespace around the input and target after the split
        (PromptSource does; lm-evaluation-harness does not).
      schema: the record schema the template was written against: '' for this
        project's, ``hf:<dataset>`` for a Hugging Face data set's (PromptSource,
        lm-evaluation-harness); a task maps its records to it with an adapter.
      parent: for a format variant (`jaxrobust.data.formats`), the id of the
        format description it was generated from; '' otherwise.
      rules: a format variant's grammar rules applied (``field_sep="\\n\\n"``, ...).
    """

    id: str
    jinja: str
    answer_choices: str | None
    provenance: str
    source: str
    author: str
    name: str = ""
    bank: str = ""
    strip_parts: bool = True
    schema: str = ""
    parent: str = ""
    rules: tuple[str, ...] = ()

    def __post_init__(self):
        if not PROVENANCE_RE.match(self.provenance):
            self.error(
                f"provenance {self.provenance!r} is not observed:<collection>[:<origin>], "
                "incorrect:<collection>:<origin>, "
                "style:<collection>, unobserved or default"
            )
        collection = self.collection
        if collection is not None and collection not in COLLECTIONS:
            self.error(
                f"unknown collection {collection!r}; known: {sorted(COLLECTIONS)}; declare "
                "your own with templates.declare_collection(name, description) or by naming "
                "it in the model spec's observed_collections"
            )
        _compile(self, self.jinja)
        if self.answer_choices is not None:
            _compile(self, self.answer_choices)

    @property
    def kind(self) -> str:
        """``observed``, ``style``, ``unobserved`` or ``default``."""
        return self.provenance.split(":")[0]

    @property
    def collection(self) -> str | None:
        """The collection of an observed or style template, else None."""
        return self.provenance.split(":")[1] if ":" in self.provenance else None

    @property
    def origin(self) -> str | None:
        """The collection's data set the text was written for (``arc``), else None."""
        parts = self.provenance.split(":", 2)
        return parts[2] if len(parts) == 3 else None

    def error(self, problem: str) -> TemplateError:
        raise TemplateError(self.bank, self.id, problem)


@dataclasses.dataclass(frozen=True)
class Rendered:
    """A template applied to one example.

    Attributes:
      inputs: the instruction-rendered model input.
      target: the rendered gold target ('' when the template renders none).
      options: the rendered answer choices, () when the template has none.
    """

    inputs: str
    target: str
    options: tuple[str, ...]


# ---------------------------------------------------------------- rendering


def _choice(context, seq):
    """PromptSource's ``choice`` filter, drawn from the render's seeded generator."""
    return context[_RNG_VAR].choice(list(seq))


def _most_frequent(items):
    """PromptSource's ``most_frequent`` filter: the items of maximal count."""
    if not items:
        return None
    counts = collections.Counter(items).most_common()
    return [item for item, count in counts if count == counts[0][1]]


_ENV = jinja2.sandbox.SandboxedEnvironment(
    undefined=jinja2.StrictUndefined, keep_trailing_newline=True
)
_ENV.filters["choice"] = jinja2.pass_context(_choice)
_ENV.filters["most_frequent"] = _most_frequent
_ENV.globals.update(zip=zip, enumerate=enumerate)


@functools.lru_cache(maxsize=8192)
def _compile_source(source: str) -> jinja2.Template:
    return _ENV.from_string(source)


def _compile(template: Template, source: str) -> jinja2.Template:
    try:
        return _compile_source(source)
    except jinja2.TemplateSyntaxError as e:
        template.error(f"bad Jinja at line {e.lineno}: {e.message}")


# A Python ``str.format`` field as it would appear in literal text: ``{name}``,
# ``{name!r}``, ``{name:>5}``. Jinja's own ``{{ name }}`` never reaches this
# pattern, since only the template's literal text (Jinja's "data" tokens) is
# searched.
_FORMAT_FIELD_RE = re.compile(r"\{([A-Za-z_]\w*)(?:[!:][^{}]*)?\}")


@functools.lru_cache(maxsize=8192)
def python_placeholders(source: str) -> tuple[tuple[int, str], ...]:
    """The ``{name}`` fields in a Jinja source's literal text, as (line, field).

    ``{name}`` is Python's ``str.format`` syntax; Jinja prints it as it is, so a
    bank author who meant the variable gets the braces in every rendered input.
    Text inside ``{{ ... }}`` and ``{% ... %}`` is not literal text and is never
    reported, so ``{{ '{name}' }}`` is how a template prints those characters.
    Unparsable sources report nothing (their error comes from compiling).
    """
    try:
        tokens = list(_ENV.lex(source))
    except jinja2.TemplateSyntaxError:
        return ()
    out = []
    for lineno, kind, value in tokens:
        if kind == "data":
            for m in _FORMAT_FIELD_RE.finditer(value):
                out.append((lineno + value[: m.start()].count("\n"), m.group(0)))
    return tuple(out)


def _protect(value):
    if isinstance(value, str):
        return value.replace("|||", _PIPE_PROTECTOR)
    if isinstance(value, list | tuple):
        return type(value)(_protect(v) for v in value)
    if isinstance(value, dict):
        return {k: _protect(v) for k, v in value.items()}
    return value


def _render_source(template: Template, source: str, variables: Mapping[str, Any]) -> str:
    try:
        return _compile(template, source).render(variables)
    except jinja2.UndefinedError as e:
        template.error(f"{e.message} (variables available: {sorted(_public(variables))})")
    except jinja2.TemplateError as e:
        template.error(f"rendering failed: {type(e).__name__}: {e}")
    except (IndexError, KeyError, TypeError, ValueError, AttributeError) as e:
        template.error(f"rendering failed: {type(e).__name__}: {e}")


def _public(variables: Mapping[str, Any]) -> list[str]:
    return [k for k in variables if not k.startswith("_")]


def render(
    template: Template,
    example: Mapping[str, Any],
    *,
    seed: int = 0,
    example_key: str = "",
) -> Rendered:
    """Applies a template to one example.

    Args:
      template: the template.
      example: the template variables (a record in the schema the template was
        written against; see the schema adapters in `jaxrobust.tasks`).
      seed: seeds the ``choice`` filter together with the template id and
        `example_key`, so equal arguments give equal strings in every run.
      example_key: a stable id of the example.

    Returns:
      The rendered input, target and answer choices.

    Raises:
      TemplateError: unknown variable, failed expression, or more than one
        ``|||`` in the output.
    """
    variables = _protect(dict(example))
    if "answer_choices" in variables:
        template.error("the example has a field named 'answer_choices', which templates reserve")
    variables[_RNG_VAR] = random.Random(f"{seed}:{template.id}:{example_key}")
    options: tuple[str, ...] = ()
    if template.answer_choices is not None:
        text = _render_source(template, template.answer_choices, variables)
        options = tuple(_unprotect(o.strip()) for o in text.split("|||"))
        variables["answer_choices"] = [o.replace("|||", _PIPE_PROTECTOR) for o in options]
    parts = _render_source(template, template.jinja, variables).split("|||")
    if len(parts) > 2:
        template.error(f"rendered to {len(parts)} parts separated by '|||'; expected 1 or 2")
    if template.strip_parts:
        parts = [p.strip() for p in parts]
    inputs = _unprotect(parts[0])
    target = _unprotect(parts[1]) if len(parts) == 2 else ""
    return Rendered(inputs=inputs, target=target, options=options)


def _unprotect(text: str) -> str:
    return text.replace(_PIPE_PROTECTOR, "|||")


def validate(
    template: Template,
    example: Mapping[str, Any],
    *,
    option_labels: Sequence[str] | None = None,
    answer_index: int | None = None,
    example_key: str = "validation",
) -> Rendered:
    """Renders a template on a real example and checks the result is usable.

    Args:
      template: the template.
      example: template variables of one real (or hand-written) example.
      option_labels: the labels the task's options stand for; when given, the
        template must render exactly that many answer choices.
      answer_index: index of the gold option; when given (>= 0), the rendered
        target must equal that option.
      example_key: passed to `render`.

    Returns:
      The rendering.

    Raises:
      TemplateError: naming bank file, template id and the problem.
    """
    rendered = render(template, example, example_key=example_key)
    if not rendered.inputs.strip():
        template.error("renders an empty input")
    if option_labels is not None:
        if template.answer_choices is None:
            template.error("no answer choices, but the task is multiple choice")
        if len(rendered.options) != len(option_labels):
            template.error(
                f"renders {len(rendered.options)} answer choices {list(rendered.options)[:6]}..."
                f" but the task has {len(option_labels)} options {list(option_labels)[:6]}..."
            )
        # Equal options are allowed: data sets have them (an MMLU question lists
        # 'Employee rights' twice), and rank scoring handles the tie.
    if answer_index is not None and answer_index >= 0 and rendered.options:
        expected = rendered.options[answer_index]
        if rendered.target != expected:
            template.error(
                f"target renders {rendered.target!r} but the gold option is {expected!r}"
            )
    return rendered


# ---------------------------------------------------------------- loaders


@dataclasses.dataclass(frozen=True)
class Bank:
    """The templates of one bank file.

    Attributes:
      path: the file.
      family: the task family the templates are written for (project banks).
      templates: in file order.
    """

    path: str
    family: str
    templates: tuple[Template, ...]

    def __iter__(self):
        return iter(self.templates)

    def __len__(self):
        return len(self.templates)

    def get(self, template_id: str) -> Template:
        for t in self.templates:
            if t.id == template_id:
                return t
        raise TemplateError(self.path, template_id, f"not in bank; ids: {self.ids()}")

    def ids(self) -> list[str]:
        return [t.id for t in self.templates]


_BANK_KEYS = {"id", "name", "input", "target", "answer_choices", "provenance", "source", "author"}


def load_bank(path: str | pathlib.Path) -> Bank:
    """Loads one of this project's YAML instruction banks.

    The file holds ``family``, optional ``defaults`` (fields every template
    inherits) and ``templates``, a list of mappings with ``id``, ``input``,
    ``target``, ``answer_choices``, ``provenance``, ``source``, ``author`` and
    optional ``name``. ``input`` and ``target`` are Jinja; the template's source
    is ``input ||| target``.

    A project bank never holds a Python-style field ``{name}`` (also
    ``{name!r}``, ``{name:fmt}``) in its literal text: Jinja would print it as
    it is (see `python_placeholders`). Other literal braces (``{ x }``,
    ``{"a": 1}``) are kept. PromptSource and Flan files are published text and
    are loaded as they are.

    Raises:
      TemplateError: unknown keys, missing fields, duplicate ids, bad Jinja, a
        Python-style ``{name}`` field, or a malformed provenance.
    """
    path = str(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise TemplateError(path, "-", f"not valid YAML: {e}") from None
    if not isinstance(data, dict) or "templates" not in data or "family" not in data:
        raise TemplateError(path, "-", "expected a mapping with 'family' and 'templates'")
    defaults = data.get("defaults") or {}
    templates, seen = [], set()
    for i, entry in enumerate(data["templates"]):
        entry = {**defaults, **entry}
        tid = str(entry.get("id", f"#{i}"))
        unknown = set(entry) - _BANK_KEYS
        if unknown:
            raise TemplateError(path, tid, f"unknown keys {sorted(unknown)}; allowed {_BANK_KEYS}")
        missing = {"id", "input", "target", "provenance", "source", "author"} - set(entry)
        if missing:
            raise TemplateError(path, tid, f"missing keys {sorted(missing)}")
        if tid in seen:
            raise TemplateError(path, tid, "duplicate template id")
        seen.add(tid)
        for key in ("input", "target", "answer_choices"):
            found = python_placeholders(str(entry.get(key) or ""))
            if found:
                line, field = found[0]
                name = _FORMAT_FIELD_RE.match(field).group(1)
                raise TemplateError(
                    path,
                    tid,
                    f"{key} (line {line}) holds the Python-style placeholder {field}, which "
                    f"Jinja prints literally; write {{{{ {name} }}}} for the variable, or "
                    f"{{{{ '{field}' }}}} for the literal text",
                )
        templates.append(
            Template(
                id=tid,
                jinja=f"{entry['input']}|||{entry['target']}",
                answer_choices=entry.get("answer_choices"),
                provenance=entry["provenance"],
                source=entry["source"],
                author=entry["author"],
                name=entry.get("name", tid),
                bank=path,
                strip_parts=False,
            )
        )
    return Bank(path=path, family=data["family"], templates=tuple(templates))


class _PromptSourceLoader(yaml.SafeLoader):
    """Safe YAML loader that reads PromptSource's ``!Template`` tags as mappings."""


for _tag in ("!Template", "!TemplateMetadata"):
    _PromptSourceLoader.add_constructor(
        _tag, lambda loader, node: loader.construct_mapping(node, deep=True)
    )


def load_promptsource(path: str | pathlib.Path, *, source: str = "") -> Bank:
    """Loads a PromptSource ``templates.yaml`` as published.

    Args:
      path: ``<promptsource>/<dataset>[/<subset>]/templates.yaml``.
      source: citation recorded on each template (default: the path).

    Returns:
      A bank whose family is ``<dataset>[/<subset>]`` and whose templates have
      provenance ``observed:p3:<family>`` (the origin says which data set's P3
      prompts they are), ids the PromptSource UUIDs.
    """
    path = str(path)
    with open(path, encoding="utf-8") as f:
        data = yaml.load(f, Loader=_PromptSourceLoader)  # noqa: S506 (safe loader subclass)
    family = data["dataset"] + (f"/{data['subset']}" if data.get("subset") else "")
    templates = []
    for tid, entry in data["templates"].items():
        templates.append(
            Template(
                id=str(tid),
                jinja=entry["jinja"],
                answer_choices=entry.get("answer_choices"),
                provenance=f"observed:p3:{family}",
                source=source or f"PromptSource {path}",
                author="PromptSource contributors",
                name=entry.get("name", str(tid)),
                bank=path,
                strip_parts=True,
                schema=f"hf:{family}",
            )
        )
    return Bank(path=path, family=family, templates=tuple(templates))


_LIST_INDEX_RE = re.compile(r"^\{\{\s*(\[.*\])\s*\[\s*([A-Za-z_]\w*)\s*\]\s*\}\}$", re.S)


def _lm_eval_entries(path: pathlib.Path) -> list[dict]:
    """Flattens an lm-eval YAML into its task entries, ``include`` applied."""
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f)

    def walk(node) -> list[dict]:
        if isinstance(node, dict) and "task" in node and isinstance(node["task"], list):
            return [e for child in node["task"] for e in walk(child)]
        if isinstance(node, dict):
            entry = dict(node)
            if "include" in entry:
                with open(path.parent / entry.pop("include"), encoding="utf-8") as f:
                    entry = {**(yaml.safe_load(f) or {}), **entry}
            return [entry]
        return []

    return walk(data)


def load_lm_eval(
    path: str | pathlib.Path,
    *,
    task_prefix: str,
    schema: str,
    provenance: str = "observed:flan",
    source: str = "",
) -> Bank:
    """Loads the templates of one task group from an lm-evaluation-harness YAML.

    ``include`` files are read relative to `path`. Answer choices come from
    ``doc_to_choice``; when it is null and ``doc_to_target`` indexes a literal
    list (``{{['no', 'yes'][label]}}``, as in the Flan entries) that list is
    the answer choices.

    Args:
      path: e.g. ``flan/flan_held_in.yaml``.
      task_prefix: keep task entries whose name starts with it, e.g. ``boolq_``.
      schema: the record schema the entries use, e.g. ``hf:super_glue/boolq``.
      provenance: recorded on each template.
      source: citation (default: the path).

    Returns:
      A bank whose template ids are the entries' ``task_alias`` (``prompt-0``).
    """
    path = pathlib.Path(path)
    templates = []
    for entry in _lm_eval_entries(path):
        if not str(entry.get("task", "")).startswith(task_prefix):
            continue
        tid = str(entry.get("task_alias") or entry["task"])
        target = entry["doc_to_target"]
        choices = entry.get("doc_to_choice")
        if isinstance(choices, list):
            choices = " ||| ".join(str(c) for c in choices)
        elif choices is None:
            m = _LIST_INDEX_RE.match(str(target))
            if m:
                literal = ast.literal_eval(m.group(1))
                choices = " ||| ".join(str(c) for c in literal)
        templates.append(
            Template(
                id=tid,
                jinja=f"{entry['doc_to_text']}|||{target}",
                answer_choices=choices,
                provenance=provenance,
                source=source or f"lm-evaluation-harness {path.name}, task {entry['task']}",
                author="FLAN authors (Wei et al. 2021), via lm-evaluation-harness",
                name=str(entry["task"]),
                bank=str(path),
                strip_parts=False,
                schema=schema,
            )
        )
    if not templates:
        raise TemplateError(str(path), task_prefix + "*", "no task entries with that prefix")
    return Bank(path=str(path), family=task_prefix.rstrip("_"), templates=tuple(templates))
