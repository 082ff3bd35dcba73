"""Format variants: meaning-preserving format changes of a structured template.

A bank may describe some of its prompts structurally, in a top-level
``formats:`` list next to ``templates:`` (`load_formats`): an optional
instruction line, the fields (each with its descriptor wordings and the Jinja
of its value), an options block (a Jinja expression giving the option texts,
with its descriptor wordings) and the answer cue wordings::

    formats:
      - id: mc_f1
        instruction: Answer the question about the passage.
        fields:
          - {descriptors: [Passage, Text, Context], value: "{{ passage }}"}
          - {descriptors: [Question, Q], value: "{{ question }}"}
        options: choices
        options_descriptors: [Options, Choices]
        cues: [Answer, A]

A `Format` is one point of the grammar (`RULES` lists every rule and its
values; the first value of each is the description as written). `to_template`
builds the Jinja of input, answer choices and target from the description and
a format by joining pieces, never by editing free text, so every variant keeps
the template's variables and meaning. When the enumerator is the answer
(``answer: label``: ``A``, ``a``, ``1``, ``I``), the answer choices become the
enumerator labels and the target follows them; option order never changes.

`variants` draws N distinct formats, deterministic from a seed, and returns
the base template (the description as written, id = the description's id) and
N variants (``<id>_v01`` ...), each recording its ``parent`` (the description's
id) and the ``rules`` it applied (``field_sep=' || '``, ...). Variants carry
provenance ``unobserved``; `jaxrobust.tasks.variants` registers them in the
``#variants`` group, which the report keeps out of its headline.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import random
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from jaxrobust.data import templates as tmpl

# Enough labels for the largest label set shipped (TACRED: 42 relations) and more.
_MAX_LABELS = 100


def _roman(n: int) -> str:
    out = ""
    for value, numeral in ((100, "C"), (90, "XC"), (50, "L"), (40, "XL"), (10, "X")):
        while n >= value:
            out, n = out + numeral, n - value
    return out + ["", "I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX"][n]


def _letters(i: int) -> str:
    """A, B, ..., Z, AA, AB, ... (spreadsheet columns)."""
    out = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        out = chr(ord("A") + r) + out
    return out


_UPPER = [_letters(i) for i in range(_MAX_LABELS)]
_LOWER = [c.lower() for c in _UPPER]
_NUMBERS = [str(i + 1) for i in range(_MAX_LABELS)]
_ROMAN = [_roman(i + 1) for i in range(_MAX_LABELS)]

# enumerator name -> (labels, how a label is shown before an option text).
ENUMERATORS: dict[str, tuple[list[str] | None, str]] = {
    "inline": (None, ""),  # options joined on one line with ', ' (no labels)
    "A.": (_UPPER, "{}. "),
    "(a)": (_LOWER, "({}) "),
    "1)": (_NUMBERS, "{}) "),
    "-": (None, "- "),
    "I.": (_ROMAN, "{}. "),
}

# The grammar: rule -> its values, the first being the description as written.
RULES: dict[str, tuple[Any, ...]] = {
    "casing": ("as_written", "upper", "lower", "title"),  # descriptors and cue
    "descriptor": (0, 1, 2),  # which wording of each descriptor (modulo how many it has)
    "value_sep": (": ", ":\n", " - ", " = "),  # between a descriptor and its value
    "field_sep": ("\n", "\n\n", " || ", " "),  # between fields (and blocks)
    "enumerator": tuple(ENUMERATORS),  # how options are listed
    "answer": ("text", "label"),  # the option text or its enumerator label is the answer
    "options_position": ("after", "before"),  # options block after or before the fields
    "cue": (0, 1, 2, None),  # which cue wording ends the input (None: no cue)
}


class FormatError(ValueError):
    """A format description that cannot be used; names the bank, the id and the problem."""


@dataclasses.dataclass(frozen=True)
class Field:
    """One field of a prompt: descriptor wordings (first = as written) and its value's Jinja."""

    descriptors: tuple[str, ...]
    value: str


@dataclasses.dataclass(frozen=True)
class Description:
    """The structure of one prompt format of a bank (see the module docstring).

    Attributes:
      id: the base template's id; variants are ``<id>_vNN``.
      family: the bank's family.
      fields: in order.
      instruction: a first line, '' for none.
      options: Jinja expression giving the option texts (a list), '' when the
        prompt lists no options.
      options_descriptors: wordings of the options block's descriptor.
      cues: wordings of the answer cue (the text before the answer).
      answer_choices: Jinja of the answer choices when the answer is the text
        (default: the options joined by ' ||| ').
      target: Jinja of the target (default ``{{ answer_choices[answer_index] }}``).
      source, author: citation of the description.
      bank: the file it was read from.
    """

    id: str
    family: str
    fields: tuple[Field, ...]
    instruction: str = ""
    options: str = ""
    options_descriptors: tuple[str, ...] = ("Options",)
    cues: tuple[str, ...] = ("Answer",)
    answer_choices: str | None = None
    target: str = "{{ answer_choices[answer_index] }}"
    source: str = ""
    author: str = ""
    bank: str = ""


@dataclasses.dataclass(frozen=True)
class Format:
    """One point of the grammar: a value for every rule of `RULES`."""

    casing: str = "as_written"
    descriptor: int = 0
    value_sep: str = ": "
    field_sep: str = "\n"
    enumerator: str = "inline"
    answer: str = "text"
    options_position: str = "after"
    cue: int | None = 0

    def __post_init__(self):
        for rule, allowed in RULES.items():
            if getattr(self, rule) not in allowed:
                raise FormatError(
                    f"Format.{rule}={getattr(self, rule)!r}: expected one of {list(allowed)}"
                )

    def rules(self) -> tuple[str, ...]:
        """The rules that differ from the description as written, ``name=value`` each."""
        base = Format()
        return tuple(
            f"{r}={json.dumps(getattr(self, r))}"
            for r in RULES
            if getattr(self, r) != getattr(base, r)
        )


def applicable(description: Description, fmt: Format) -> bool:
    """Whether a format makes sense for a description: enumerator and answer rules need
    an options block; the answer is a label only for labelled enumerators."""
    if not description.options:
        if fmt.enumerator != "inline" or fmt.options_position != "after":
            return False
    labels = ENUMERATORS[fmt.enumerator][0]
    return fmt.answer == "text" or labels is not None


def _case(text: str, casing: str) -> str:
    if casing == "upper":
        return text.upper()
    if casing == "lower":
        return text.lower()
    if casing == "title":
        return text.title()
    return text


def _descriptor(words: Sequence[str], fmt: Format) -> str:
    return _case(words[fmt.descriptor % len(words)], fmt.casing)


def sources(description: Description, fmt: Format) -> tuple[str, str, str]:
    """The Jinja of (input, answer choices, target) of a description under a format."""
    if not applicable(description, fmt):
        raise FormatError(f"{description.bank}: {description.id}: format {fmt} does not apply")
    sep = fmt.field_sep
    blocks = []
    for field in description.fields:
        blocks.append(_descriptor(field.descriptors, fmt) + fmt.value_sep + field.value)
    choices = description.answer_choices or f"{{{{ {description.options} | join(' ||| ') }}}}"
    if description.options:
        opts = description.options
        labels, shown = ENUMERATORS[fmt.enumerator]
        head = _descriptor(description.options_descriptors, fmt)
        if fmt.enumerator == "inline":
            body = f"{{{{ {opts} | join(', ') }}}}"
        else:
            # One option per line, joined with the field separator's line break
            # when it has one (an inline separator keeps them on one line).
            join = "\n" if "\n" in sep else " "
            before, _, after = shown.partition("{}")
            label = (
                f"{before}{{{{ {json.dumps(labels)}[loop.index0] }}}}{after}" if labels else shown
            )
            body = (
                f"{{% for o in {opts} %}}{label}{{{{ o }}}}"
                f"{{% if not loop.last %}}{join}{{% endif %}}{{% endfor %}}"
            )
        value_sep = fmt.value_sep if fmt.enumerator == "inline" else fmt.value_sep.rstrip(" ")
        if fmt.enumerator != "inline" and "\n" in sep and "\n" not in value_sep:
            value_sep += "\n"
        elif fmt.enumerator != "inline" and "\n" not in value_sep:
            value_sep += " "
        block = head + value_sep + body
        blocks = [block] + blocks if fmt.options_position == "before" else blocks + [block]
        if fmt.answer == "label":
            choices = (
                f"{{% for o in {opts} %}}{{{{ {json.dumps(labels)}[loop.index0] }}}}"
                "{% if not loop.last %} ||| {% endif %}{% endfor %}"
            )
    if description.instruction:
        blocks = [description.instruction] + blocks
    text = sep.join(blocks)
    if fmt.cue is not None:
        cues = description.cues
        text += sep + _case(cues[fmt.cue % len(cues)], fmt.casing) + ":"
    return text, choices, description.target


def to_template(description: Description, fmt: Format, template_id: str) -> tmpl.Template:
    """The template of a description under a format (parent: the description's id)."""
    text, choices, target = sources(description, fmt)
    rules = fmt.rules()
    return tmpl.Template(
        id=template_id,
        jinja=f"{text}|||{target}",
        answer_choices=choices,
        provenance="unobserved",
        source=description.source or f"format variant of {description.id} ({description.bank})",
        author=description.author or "jaxrobust format grammar",
        name=f"{description.id} [{', '.join(rules) or 'as written'}]",
        bank=description.bank,
        strip_parts=False,
        parent=description.id,
        rules=rules,
    )


def sample_formats(description: Description, n: int, seed: int) -> list[Format]:
    """`n` distinct formats other than the description as written, drawn uniformly from
    the applicable points of the grammar by a generator seeded with (seed, id)."""
    rng = random.Random(f"formats:{seed}:{description.id}")
    space = _space(description)
    if n > len(space):
        raise FormatError(
            f"{description.bank}: {description.id}: {n} variants asked for, the grammar "
            f"gives {len(space)} distinct ones"
        )
    return rng.sample(space, n)


@functools.lru_cache(maxsize=64)
def _space(description: Description) -> list[Format]:
    """The applicable formats other than the description as written, in grammar order;
    formats that render the same text (a descriptor with fewer wordings) count once."""
    unique: dict[tuple[str, str, str], Format] = {}
    for values in _product(list(RULES.values())):
        f = Format(**dict(zip(RULES, values, strict=True)))
        if f != Format() and applicable(description, f):
            unique.setdefault(sources(description, f), f)
    return list(unique.values())


def _product(lists):
    if not lists:
        yield ()
        return
    for head in lists[0]:
        for rest in _product(lists[1:]):
            yield (head, *rest)


def variants(description: Description, n: int, *, seed: int = 0) -> list[tmpl.Template]:
    """The base template (rules: none) and `n` variants, deterministic from `seed`."""
    out = [to_template(description, Format(), description.id)]
    for i, fmt in enumerate(sample_formats(description, n, seed)):
        out.append(to_template(description, fmt, f"{description.id}_v{i + 1:02d}"))
    return out


# ---------------------------------------------------------------- loading

_KEYS = {
    "id",
    "instruction",
    "fields",
    "options",
    "options_descriptors",
    "cues",
    "answer_choices",
    "target",
    "source",
    "author",
}


def _strings(value, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise FormatError(
            f"{where}: expected a string or a non-empty list of strings, got {value!r}"
        )
    return tuple(value)


def descriptions_from(data: Mapping, path: str) -> list[Description]:
    """The ``formats:`` of a loaded bank mapping (empty when it has none)."""
    out, family = [], data.get("family", "")
    defaults = data.get("defaults") or {}
    for i, entry in enumerate(data.get("formats") or []):
        fid = str(entry.get("id", f"#{i}")) if isinstance(entry, Mapping) else f"#{i}"
        where = f"{path}: format {fid!r}"
        if not isinstance(entry, Mapping):
            raise FormatError(f"{where}: expected a mapping, got {entry!r}")
        unknown = set(entry) - _KEYS
        if unknown:
            raise FormatError(f"{where}: unknown keys {sorted(unknown)}; allowed {sorted(_KEYS)}")
        if "id" not in entry or not entry.get("fields"):
            raise FormatError(f"{where}: needs 'id' and a non-empty 'fields' list")
        fields = []
        for j, f in enumerate(entry["fields"]):
            if not isinstance(f, Mapping) or set(f) != {"descriptors", "value"}:
                raise FormatError(
                    f"{where}: field {j}: expected a mapping with 'descriptors' and 'value', "
                    f"got {f!r}"
                )
            fields.append(Field(_strings(f["descriptors"], f"{where}: field {j}"), f["value"]))
        kwargs = {}
        for key in ("options_descriptors", "cues"):
            if key in entry:
                kwargs[key] = _strings(entry[key], f"{where}: {key}")
        if "target" in entry or "target" in defaults:
            kwargs["target"] = entry.get("target", defaults.get("target"))
        out.append(
            Description(
                id=fid,
                family=family,
                fields=tuple(fields),
                instruction=entry.get("instruction", ""),
                options=entry.get("options", ""),
                answer_choices=entry.get("answer_choices"),
                source=entry.get("source", ""),
                author=entry.get("author", defaults.get("author", "")),
                bank=path,
                **kwargs,
            )
        )
        if not out[-1].options and not out[-1].answer_choices:
            raise FormatError(f"{where}: needs 'options' or 'answer_choices'")
    return out


def load_formats(path) -> list[Description]:
    """The format descriptions of a bank file (`templates.load_bank` reads its templates)."""
    path = str(path)
    with open(path, encoding="utf-8") as f:
        data = yaml.safe_load(f)
    return descriptions_from(data, path)
