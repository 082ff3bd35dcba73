"""QA4RE's relation option sentences and type constraints, read from its `re_templates.py`.

QA4RE (Zhang et al. 2023, "Aligning Instruction Tasks Unlocks Large Language
Models as Zero-Shot Relation Extractors"; OSU-NLP-Group/QA4RE,
``projs/re_templates.py``), whose multiple-choice QA format Ni et al. evaluate,
turns each relation into option sentences with ``{subj}`` and ``{obj}``
("{subj} was born in the city {obj}") and restricts a TACRED-format example's
options to the relations its (subject type, object type) pair admits. The file
has no license, so the project does not ship it: `load(path)` reads a user's
copy as DATA. It is parsed with `ast` and never imported or run; only
top-level assignments of literals are read (``NAME = {...}`` / ``[...]``),
other statements (comprehensions such as ``TACRED_LABEL_VERBALIZER = {k: k for
k in TACRED_LABELS}``, imports) are passed over.

Which of the file's dicts a data set uses, as QA4RE's runs do (its default
template, ``sure``: "template 2 in paper ... what we use in QA4RE"):

=========  ===============  ==============================  ==============================
data set   labels           option sentences                valid types (pair -> relations)
=========  ===============  ==============================  ==============================
tacred     TACRED_LABELS    SURE_TACRED_LABEL_TEMPLATES     TACRED_VALID_CONDITIONS_REV
tacrev     TACRED_LABELS    SURE_TACRED_LABEL_TEMPLATES     TACRED_VALID_CONDITIONS_REV
retacred   RETACRED_LABELS  SURE_RETACRED_LABEL_TEMPLATES   RETACRED_VALID_CONDITIONS_REV
semeval    SEMEVAL_LABELS   SURE_SEMEVAL_LABEL_TEMPLATES    SEMEVAL_VALID_CONDITIONS_REV
=========  ===============  ==============================  ==============================

`Schema.options(subj_type, obj_type)` lists an example's options in QA4RE's
order (``qa4re_utils.fill_prompt_format_re_df``): the relations of
``VALID_CONDITIONS_REV["SUBJ:OBJ"]`` in the file's order, then the negative
relation, each contributing one option per sentence of its list. SemEval has
no entity types: every example is ``MISC:MISC``. A type pair the file does not
list gives the negative relation alone.
"""

from __future__ import annotations

import ast
import dataclasses
import os

# data set -> (labels, option sentences, valid types by pair, negative relation).
DATASETS = {
    "tacred": (
        "TACRED_LABELS",
        "SURE_TACRED_LABEL_TEMPLATES",
        "TACRED_VALID_CONDITIONS_REV",
        "no_relation",
    ),
    "tacrev": (
        "TACRED_LABELS",
        "SURE_TACRED_LABEL_TEMPLATES",
        "TACRED_VALID_CONDITIONS_REV",
        "no_relation",
    ),
    "retacred": (
        "RETACRED_LABELS",
        "SURE_RETACRED_LABEL_TEMPLATES",
        "RETACRED_VALID_CONDITIONS_REV",
        "no_relation",
    ),
    "semeval": (
        "SEMEVAL_LABELS",
        "SURE_SEMEVAL_LABEL_TEMPLATES",
        "SEMEVAL_VALID_CONDITIONS_REV",
        "Other",
    ),
}
SEMEVAL_TYPES = ("MISC", "MISC")  # SemEval's entities have no types; QA4RE's pair.


class QA4REFormatError(ValueError):
    """A template file that is not in QA4RE's `re_templates.py` layout (names file and line)."""


@dataclasses.dataclass(frozen=True)
class Schema:
    """One data set's QA4RE option sentences and type constraints."""

    dataset: str  # 'tacred', 'tacrev', 'retacred' or 'semeval'.
    labels: tuple[str, ...]  # Every relation, negative included, in the file's order.
    templates: dict[str, tuple[str, ...]]  # relation -> sentences with {subj} and {obj}.
    valid: dict[str, tuple[str, ...]]  # "SUBJ_TYPE:OBJ_TYPE" -> relations, in order.
    negative: str  # The "none of these" relation, always the last option.
    source: str  # The file read and the names used.

    def options(self, subj_type: str, obj_type: str) -> list[tuple[str, str]]:
        """(relation, sentence) options of an example with these entity types."""
        relations = list(self.valid.get(f"{subj_type}:{obj_type}", ())) + [self.negative]
        return [(rel, sentence) for rel in relations for sentence in self.templates[rel]]


def _literals(path: str) -> dict[str, tuple[object, int]]:
    """Top-level `NAME = <literal>` assignments of the file: name -> (value, line)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        tree = ast.parse(text, filename=path)
    except SyntaxError as e:
        raise QA4REFormatError(f"{path}, line {e.lineno}: not Python syntax ({e.msg})") from None
    out: dict[str, tuple[object, int]] = {}
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1):
            continue
        target = node.targets[0]
        if not isinstance(target, ast.Name):
            continue
        try:
            out[target.id] = (ast.literal_eval(node.value), node.lineno)
        except ValueError:
            out[target.id] = (None, node.lineno)  # Not a literal (a comprehension): unread.
    return out


def _need(found: dict, name: str, kind: type, path: str):
    if name not in found:
        raise QA4REFormatError(f"{path}: no top-level assignment of {name}")
    value, line = found[name]
    if not isinstance(value, kind):
        what = "not a literal" if value is None else type(value).__name__
        raise QA4REFormatError(
            f"{path}, line {line}: {name} must be a {kind.__name__} literal; found {what}"
        )
    return value, line


def load(path: str | os.PathLike, datasets=tuple(DATASETS)) -> dict[str, Schema]:
    """Reads QA4RE's `re_templates.py` (a user's checkout) as data; never imports it.

    Args:
      path: the file, e.g. ``<QA4RE checkout>/projs/re_templates.py``.
      datasets: which of `DATASETS` to read.

    Returns:
      data set -> `Schema`.

    Raises:
      QA4REFormatError: a name missing or not a literal of the expected kind, a
        relation without sentences, a sentence without ``{subj}`` and ``{obj}``,
        or a type pair naming an unknown relation (file and line named).
    """
    path = os.fspath(path)
    found = _literals(path)
    out = {}
    for dataset in datasets:
        labels_name, templates_name, valid_name, negative = DATASETS[dataset]
        labels, _ = _need(found, labels_name, list, path)
        templates, t_line = _need(found, templates_name, dict, path)
        valid, v_line = _need(found, valid_name, dict, path)
        where = f"{path}, line {t_line}: {templates_name}"
        for label in labels:
            sentences = templates.get(label)
            if not isinstance(sentences, list) or not sentences:
                raise QA4REFormatError(f"{where}: no sentence list for {label!r}")
            for s in sentences:
                if not isinstance(s, str) or "{subj}" not in s or "{obj}" not in s:
                    raise QA4REFormatError(f"{where}[{label!r}]: {s!r} lacks {{subj}} or {{obj}}")
        if negative not in labels:
            raise QA4REFormatError(f"{path}: {labels_name} lacks the negative {negative!r}")
        for pair, relations in valid.items():
            unknown = [r for r in relations if r not in labels]
            if ":" not in pair or unknown:
                raise QA4REFormatError(
                    f"{path}, line {v_line}: {valid_name}[{pair!r}]: expected 'SUBJ:OBJ' "
                    f"and relations of {labels_name}; unknown {unknown}"
                )
        out[dataset] = Schema(
            dataset=dataset,
            labels=tuple(labels),
            templates={k: tuple(v) for k, v in templates.items() if k in labels},
            valid={k: tuple(v) for k, v in valid.items()},
            negative=negative,
            source=f"{path} ({labels_name}, {templates_name}, {valid_name})",
        )
    return out
