"""Flan 2022's own templates (``flan/v2/templates.py``) as this project's `Template`s.

The Flan Collection keeps its zero-shot instructions in one Python module: a
``PATTERNS`` dict from Flan data set name (``arc``, ``bool_q``, ...) to a list
of ``(input, target)`` pairs of ``{field}`` patterns, then aliases such as
``PATTERNS["t0_multiple_choice"] = PATTERNS["t0_question_answer"]``. These are
the instructions Flan-T5 was tuned on. `read_patterns` reads that file as data
with `ast`; it never imports or executes it (the file imports Flan's package and
could run anything). It reads the forms the file uses: the dict literal (Python
joins its implicitly concatenated strings), ``X["a"] = X["b"]`` aliases and
``X["a"] = [...]`` lists; a top-level statement that changes the dict in any
other way (``X.update(...)``, ``del X["a"]``, ...) is an error naming its line,
never silently left out.

`to_template` turns one pattern into a Jinja `Template` for a task's variables
(provenance ``observed:flan:<data set>``; data set and position are also kept in
``name`` and ``source``). ``{options_}`` renders as Flan's ``format_options``
does (google-research/FLAN, ``flan/v2/preprocessors.py``)::

    dash     OPTIONS:\\n- a\\n- b             the answer is the option text
    letters  OPTIONS:\\n(A) a\\n(B) b         the answer is "(A)", "(B)", ...

Literal text is kept byte for byte (no stripping, as Flan's formatter). A
pattern is skipped, with its reason, when it cannot score the task: its target
is not ``{answer}`` alone (it generates: a question, a fact, a context), its
input holds ``{answer}``, its input shows no ``{options_}``, or it needs a field
the task has no counterpart for (openbookqa's ``fact``, COPA's cause/effect).

`category_templates` builds the observed sets by task category, as Sun et al.
(2023) took them: the same Flan instructions for every task of a category.
``multiple_choice`` (`MULTIPLE_CHOICE`) serves MMLU and the BIG-bench Lite
tasks, ``yes_no`` (`YES_NO`: yes/no reading comprehension and NLI) serves
BoolQ. A `Binding` says which of the task's variables plays each role; the
bindings of the project's benchmarks, and the explicit call that adds these
sets to their ``#observed_flan`` mixtures, are in `jaxrobust.tasks.qa`
(``qa.flan_observed(family)``, ``qa.add_flan_observed()``).
"""

from __future__ import annotations

import ast
import collections
import dataclasses
import functools
import logging
import re
import string
from collections.abc import Mapping, Sequence

from etils import epath

from jaxrobust.data import datasets
from jaxrobust.data import templates as tmpl

log = logging.getLogger(__name__)

SOURCE = "The Flan Collection (Longpre et al. 2023), github.com/google-research/FLAN, flan/v2/"
AUTHOR = "FLAN authors (Wei et al. 2021; Longpre et al. 2023)"
STYLES = ("dash", "letters")
LETTERS = string.ascii_uppercase
# Flan's placeholder: `format_from_feature_dictionary` splits on this pattern.
_FIELD_RE = re.compile(r"(\{\w*\})")
_MUTATORS = {"update", "pop", "popitem", "clear", "setdefault", "append", "extend", "insert"}
_MUTATORS |= {"remove", "sort", "reverse"}


class FlanFileError(ValueError):
    """A template file this loader cannot read as data; names file, line and problem."""


@dataclasses.dataclass(frozen=True)
class Pattern:
    """One ``(input, target)`` pair of a Flan data set.

    Attributes:
      dataset: the ``PATTERNS`` key, e.g. ``arc``.
      index: position in the data set's list (Flan's ``_template_idx``).
      inputs: the input pattern, ``{field}`` placeholders as Flan writes them.
      targets: the target pattern.
      line: line of the pair in the file.
      alias_of: the key this data set's list was assigned from ('' for none).
    """

    dataset: str
    index: int
    inputs: str
    targets: str
    line: int
    alias_of: str = ""

    def fields(self) -> tuple[str, ...]:
        """The placeholders of input and target, in order of appearance."""
        found = _FIELD_RE.findall(self.inputs + self.targets)
        return tuple(dict.fromkeys(f[1:-1] for f in found))


# ---------------------------------------------------------------- reading the file


def default_path() -> epath.Path:
    """``<data dir>/flan/v2/templates.py``, checked to exist (see `datasets.data_dir`)."""
    path = datasets.data_dir() / "flan" / "v2" / "templates.py"
    if not path.is_file():
        raise datasets.DataFileNotFoundError(
            f"flan: expected the Flan 2022 template file {path} (not found). Get it from "
            f"{SOURCE}templates.py, and point JAXROBUST_DATA_DIR (or "
            "jaxrobust.data.datasets.DataConfig) at the folder holding flan/v2/."
        )
    return path


def read_patterns(path: str | epath.Path, *, variable: str = "PATTERNS") -> dict[str, tuple]:
    """Reads the pattern dict of a Flan template file, as data.

    Args:
      path: e.g. ``<data dir>/flan/v2/templates.py`` (also reads Flan 2021's
        ``flan_templates_branched.py``, which has the same layout).
      variable: the dict's name (``PATTERNS``).

    Returns:
      Flan data set -> its `Pattern`s, in file order (aliases after the dict).

    Raises:
      FlanFileError: not Python, no such dict, a form this loader does not
        read (an f-string, ``**`` unpacking, a non-string key, a pair that is
        not two strings), an alias to an unknown key, or a statement changing
        the dict in another way.
    """
    path = epath.Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        tree = ast.parse(text, filename=str(path))
    except SyntaxError as e:
        raise FlanFileError(f"{path}, line {e.lineno}: not valid Python ({e.msg})") from None
    reader = _Reader(str(path), variable)
    for node in tree.body:
        reader.statement(node)
    if reader.patterns is None:
        raise FlanFileError(f"{path}: no top-level assignment {variable} = {{...}}")
    return reader.patterns


class _Reader:
    """Walks the top-level statements of a template file, keeping one dict."""

    def __init__(self, path: str, variable: str):
        self.path, self.variable = path, variable
        self.patterns: dict[str, tuple[Pattern, ...]] | None = None

    def fail(self, node: ast.AST, problem: str):
        raise FlanFileError(f"{self.path}, line {node.lineno}: {problem}")

    def statement(self, node: ast.stmt) -> None:
        if isinstance(node, ast.Assign):
            ours = [t for t in node.targets if self._is_ours(t)]
            if ours:
                for target in ours:
                    self._assign(node, target)
                return
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            return  # bodies do not run when the module is imported
        for sub in ast.walk(node):
            if self._changes(sub):
                self.fail(
                    node,
                    f"changes {self.variable} in a form this loader does not read: "
                    f"{ast.unparse(node)[:120]!r}",
                )

    def _is_ours(self, target: ast.expr) -> bool:
        if isinstance(target, ast.Name):
            return target.id == self.variable
        return isinstance(target, ast.Subscript) and self._root(target) == self.variable

    def _root(self, node: ast.expr) -> str:
        while isinstance(node, ast.Subscript | ast.Attribute):
            node = node.value
        return node.id if isinstance(node, ast.Name) else ""

    def _changes(self, node: ast.AST) -> bool:
        if isinstance(node, ast.Name | ast.Subscript | ast.Attribute) and isinstance(
            getattr(node, "ctx", None), ast.Store | ast.Del
        ):
            return self._root(node) == self.variable
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            return node.func.attr in _MUTATORS and self._root(node.func.value) == self.variable
        return False

    def _assign(self, node: ast.Assign, target: ast.expr) -> None:
        if isinstance(target, ast.Name):
            if not isinstance(node.value, ast.Dict):
                self.fail(node, f"{self.variable} is assigned something other than a dict literal")
            patterns = {}
            for key, value in zip(node.value.keys, node.value.values, strict=True):
                if key is None:
                    self.fail(value, f"'**' unpacking in {self.variable} is not read")
                name = self._key(key)
                patterns[name] = self._pairs(name, value)
            self.patterns = patterns
            return
        if self.patterns is None:
            self.fail(node, f"{self.variable}[...] assigned before {self.variable} itself")
        if not isinstance(target.value, ast.Name):
            self.fail(node, f"nested assignment {ast.unparse(target)!r} is not read")
        name = self._key(target.slice)
        value = node.value
        if isinstance(value, ast.Subscript) and self._root(value) == self.variable:
            if not isinstance(value.value, ast.Name):
                self.fail(node, f"alias {ast.unparse(value)!r} is not a whole data set")
            source = self._key(value.slice)
            if source not in self.patterns:
                self.fail(node, f"alias of {source!r}, which {self.variable} does not hold")
            self.patterns[name] = tuple(
                dataclasses.replace(p, dataset=name, alias_of=p.alias_of or source)
                for p in self.patterns[source]
            )
        else:
            self.patterns[name] = self._pairs(name, value)

    def _key(self, node: ast.expr) -> str:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        self.fail(node, f"key {ast.unparse(node)!r} is not a string literal")

    def _string(self, node: ast.expr) -> str:
        # Implicit concatenation ("a" "b") arrives joined in one Constant; '+' is read too.
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return self._string(node.left) + self._string(node.right)
        self.fail(node, f"expected a string literal, found {ast.unparse(node)[:80]!r}")

    def _pairs(self, name: str, node: ast.expr) -> tuple[Pattern, ...]:
        if not isinstance(node, ast.List | ast.Tuple):
            self.fail(node, f"{self.variable}[{name!r}] is not a list of (input, target) pairs")
        out = []
        for i, pair in enumerate(node.elts):
            if not isinstance(pair, ast.Tuple) or len(pair.elts) != 2:
                self.fail(pair, f"{self.variable}[{name!r}][{i}] is not an (input, target) pair")
            inputs, targets = (self._string(e) for e in pair.elts)
            out.append(Pattern(name, i, inputs, targets, pair.lineno))
        return tuple(out)


@functools.lru_cache(maxsize=8)
def _cached_patterns(path: str, mtime: float) -> dict[str, tuple[Pattern, ...]]:
    del mtime  # part of the cache key: an edited file is read again
    return read_patterns(path)


# ---------------------------------------------------------------- patterns -> templates


def format_options(options: Sequence[str], style: str = "dash") -> str:
    """Flan's ``format_options``: ``OPTIONS:\\n- a\\n- b`` or ``OPTIONS:\\n(A) a\\n(B) b``."""
    if style == "letters":
        return "OPTIONS:" + "".join(f"\n({LETTERS[i]}) {o}" for i, o in enumerate(options))
    return "OPTIONS:\n- " + "\n- ".join(options)


@dataclasses.dataclass(frozen=True)
class Options:
    """What a task puts in ``{options_}``.

    Attributes:
      variable: a list variable of the option texts, listed in its order (MMLU's
        ``choices``); the options stand for the task's labels in that order.
      fixed: or fixed option texts, in the order of the task's labels (BoolQ:
        ``no``, ``yes``).
      shown: the order Flan lists the fixed options in (RTE lists ``yes`` first);
        () lists them in `fixed` order.
    """

    variable: str = ""
    fixed: tuple[str, ...] = ()
    shown: tuple[str, ...] = ()

    def __post_init__(self):
        if bool(self.variable) == bool(self.fixed):
            raise ValueError("Options needs a list variable or fixed option texts, not both")
        if self.shown and sorted(self.shown) != sorted(self.fixed):
            raise ValueError(f"shown {self.shown} is not an order of the options {self.fixed}")


@dataclasses.dataclass(frozen=True)
class Skipped:
    """A pattern left out, and why.

    Attributes:
      dataset, index: the pattern.
      reason: one of `REASONS`.
      detail: what exactly (the target, the fields).
    """

    dataset: str
    index: int
    reason: str
    detail: str


REASONS = {
    "generates": "the target is not {answer} alone: the pattern generates something else",
    "answer_in_input": "the input holds {answer}",
    "no_options": "the input shows no {options_}, and the task is scored over options",
    "unmapped_field": "it needs a field the task has no counterpart for",
    "separator": "its text holds '|||', the separator of input and target",
}


def _escape(text: str) -> str:
    """Literal text as Jinja source: every '{' printed by an expression."""
    return text.replace("{", "{{ '{' }}")


def _options_jinja(options: Options, style: str) -> tuple[str, str]:
    """(Jinja for ``{options_}``, Jinja of the answer choices in label order)."""
    if options.fixed:
        shown = options.shown or options.fixed
        if style == "letters":
            choices = [f"({LETTERS[shown.index(o)]})" for o in options.fixed]
        else:
            choices = [_escape(o) for o in options.fixed]
        return _escape(format_options(shown, style)), " ||| ".join(choices)
    v = options.variable
    if style == "letters":
        letter = f"{{{{ '{LETTERS}'[loop.index0] }}}}"
        listed = f"OPTIONS:{{% for o in {v} %}}\n({letter}) {{{{ o }}}}{{% endfor %}}"
        choices = f"{{% for o in {v} %}}({letter}){{% if not loop.last %}} ||| {{% endif %}}"
        return listed, choices + "{% endfor %}"
    return (
        f"OPTIONS:{{% for o in {v} %}}\n- {{{{ o }}}}{{% endfor %}}",
        f"{{{{ {v} | join(' ||| ') }}}}",
    )


def to_template(
    pattern: Pattern,
    *,
    fields: Mapping[str, str],
    options: Options,
    style: str = "dash",
    answer_index: str = "answer_index",
    bank: str = "",
    id_prefix: str = "flan2",
) -> tmpl.Template | Skipped:
    """One Flan pattern as a template over a task's variables, or why it cannot be.

    Args:
      pattern: from `read_patterns`.
      fields: Flan field -> the task's variable (a Jinja expression) it becomes.
      options: what ``{options_}`` lists.
      style: ``dash`` (answers are the option texts) or ``letters`` (``(A)``...).
      answer_index: the task's variable holding the gold option's index.
      bank: the template file, recorded on the template.
      id_prefix: template ids are ``<prefix>_<dataset>_<index>`` (``_letters``
        appended for that style).

    Returns:
      The template (provenance ``observed:flan:<data set>``), or a `Skipped`.
    """
    if style not in STYLES:
        raise ValueError(f"style {style!r} is not one of {STYLES}")

    def skip(reason: str, detail: str) -> Skipped:
        return Skipped(pattern.dataset, pattern.index, reason, detail)

    if "|||" in pattern.inputs + pattern.targets:
        return skip("separator", repr(pattern.inputs))
    if pattern.targets != "{answer}":
        return skip("generates", f"target {pattern.targets!r}")
    if "{answer}" in pattern.inputs:
        return skip("answer_in_input", repr(pattern.inputs))
    if "{options_}" not in pattern.inputs:
        return skip("no_options", repr(pattern.inputs))
    missing = [f for f in pattern.fields() if f not in fields and f not in ("options_", "answer")]
    if missing:
        return skip("unmapped_field", ", ".join(missing))
    listed, choices = _options_jinja(options, style)
    parts = []
    for part in _FIELD_RE.split(pattern.inputs):
        if _FIELD_RE.fullmatch(part):
            name = part[1:-1]
            parts.append(listed if name == "options_" else f"{{{{ {fields[name]} }}}}")
        else:
            parts.append(_escape(part))
    where = f"PATTERNS[{pattern.dataset!r}][{pattern.index}]"
    if pattern.alias_of:
        where += f" (= PATTERNS[{pattern.alias_of!r}][{pattern.index}])"
    suffix = "_letters" if style == "letters" else ""
    file_name = epath.Path(bank).name if bank else "templates.py"
    return tmpl.Template(
        id=f"{id_prefix}_{pattern.dataset}_{pattern.index}{suffix}",
        jinja="".join(parts) + f"|||{{{{ answer_choices[{answer_index}] }}}}",
        answer_choices=choices,
        provenance=f"observed:flan:{pattern.dataset}",
        source=f"{SOURCE}{file_name} {where}, options as format_options ({style})",
        author=AUTHOR,
        name=f"{pattern.dataset}[{pattern.index}]",
        bank=bank,
        strip_parts=False,
    )


# ---------------------------------------------------------------- observed sets by category

# Flan data set -> role of each of its fields. `question` is the text the task
# asks about (a question, a goal, a context to continue); `passage` a text the
# question is about. Other roles (a supporting fact, COPA's 'cause'/'effect',
# a Wikipedia title) have no counterpart in the project's benchmarks.
MULTIPLE_CHOICE = {
    "arc": {"question": "question"},
    "openbookqa": {"question": "question", "fact": "fact"},
    "cosmos_qa": {"context": "passage", "question": "question"},
    "piqa": {"goal": "question"},
    "hellaswag": {"context": "question"},
    "copa": {"premise": "question", "question": "cause_or_effect"},
    "winogrande": {"context": "question"},
    "story_cloze": {"context": "question"},
}
# Yes/no reading comprehension (BoolQ) and NLI: the Flan 2022 held-in sets
# lm-evaluation-harness's Flan entries also evaluate (BoolQ, RTE, ANLI).
YES_NO = {
    "bool_q": {"text": "passage", "question": "question", "title": "title"},
    "rte": {"premise": "passage", "hypothesis": "question"},
    "anli": {"context": "passage", "hypothesis": "question"},
}
CATEGORIES = {"multiple_choice": MULTIPLE_CHOICE, "yes_no": YES_NO}
# The order Flan lists a data set's fixed options in (preprocessors.py: boolq
# ["no", "yes"]; rte ["yes", "no"]; anli ["yes", "it is not possible to tell",
# "no"], of which a binary task keeps yes and no).
OPTION_ORDER = {
    "bool_q": ("no", "yes"),
    "rte": ("yes", "no"),
    "anli": ("yes", "it is not possible to tell", "no"),
}


@dataclasses.dataclass(frozen=True)
class Binding:
    """How one task's variables fill the roles of a category's Flan fields.

    Attributes:
      roles: role (``question``, ``passage``) -> the task's variable.
      choices: the task's list variable of option texts (MMLU, BIG-bench).
      labels: or the task's fixed option texts in label order (BoolQ: no, yes);
        each must be one of the Flan data set's own options.
      answer_index: the variable holding the gold option's index.
    """

    roles: Mapping[str, str]
    choices: str = ""
    labels: tuple[str, ...] = ()
    answer_index: str = "answer_index"


@dataclasses.dataclass(frozen=True)
class Loaded:
    """Templates of an observed set, and the patterns left out.

    Attributes:
      templates: in category and file order.
      skipped: every pattern of the category's data sets that is not a template.
    """

    templates: tuple[tmpl.Template, ...]
    skipped: tuple[Skipped, ...]

    def counts(self) -> dict[str, int]:
        """Flan data set -> templates kept from it."""
        out = collections.Counter(t.name.split("[")[0] for t in self.templates)
        for s in self.skipped:
            out.setdefault(s.dataset, 0)
        return dict(out)

    def summary(self) -> str:
        """E.g. ``kept 43 of 80 patterns; skipped 21 generates, 16 unmapped_field``."""
        reasons = collections.Counter(s.reason for s in self.skipped)
        total = len(self.templates) + len(self.skipped)
        why = ", ".join(f"{n} {r}" for r, n in reasons.most_common())
        return f"kept {len(self.templates)} of {total} patterns; skipped {why or 'none'}"


def _options(dataset: str, binding: Binding) -> Options | str:
    """The `Options` of a data set's patterns for a task, or why there are none."""
    if binding.choices:
        return Options(variable=binding.choices)
    flan_order = OPTION_ORDER.get(dataset)
    if flan_order is None or not set(binding.labels) <= set(flan_order):
        return f"options {list(binding.labels)} are not among Flan's {dataset} options"
    return Options(fixed=binding.labels, shown=tuple(o for o in flan_order if o in binding.labels))


def category_templates(
    category: str,
    binding: Binding,
    *,
    path: str | epath.Path | None = None,
    style: str = "dash",
    datasets: Sequence[str] | None = None,
) -> Loaded:
    """The observed set of one task category, over one task's variables.

    Args:
      category: ``multiple_choice`` or ``yes_no`` (`CATEGORIES`).
      binding: the task's variables.
      path: the Flan template file (default: `default_path`).
      style: ``dash`` or ``letters`` (see the module docstring).
      datasets: the Flan data sets to take (default: the category's; any
        listed in the category's table). ``t0_multiple_choice_separated_options``
        and ``unified_qa_science_inst`` are further question-plus-options sets
        one may add with a roles entry of their own through `to_template`.

    Returns:
      The templates and the patterns skipped (also logged, with reasons).
    """
    roles_by_dataset = CATEGORIES[category]
    path = epath.Path(path) if path is not None else default_path()
    patterns = _cached_patterns(str(path), path.stat().mtime)
    kept, skipped = [], []
    for dataset in datasets or list(roles_by_dataset):
        if dataset not in roles_by_dataset:
            raise ValueError(f"{dataset!r} is not in {category}'s table {list(roles_by_dataset)}")
        if dataset not in patterns:
            raise FlanFileError(f"{path}: no PATTERNS[{dataset!r}]")
        roles = roles_by_dataset[dataset]
        fields = {f: binding.roles[r] for f, r in roles.items() if r in binding.roles}
        options = _options(dataset, binding)
        for pattern in patterns[dataset]:
            if isinstance(options, str):
                skipped.append(Skipped(dataset, pattern.index, "unmapped_field", options))
                continue
            made = to_template(
                pattern,
                fields=fields,
                options=options,
                style=style,
                answer_index=binding.answer_index,
                bank=str(path),
            )
            (skipped if isinstance(made, Skipped) else kept).append(made)
    loaded = Loaded(tuple(kept), tuple(skipped))
    log.info("Flan %s templates from %s: %s", category, path, loaded.summary())
    return loaded
