"""Sun et al.'s (2023) unobserved instructions, read from a checkout of InstructionEval.

github.com/jiudingsun01/InstructionEval holds the 319 human-written
instructions of "Evaluating the Zero-shot Robustness of Instruction-tuned
Language Models" as Python config modules: ``configs/MMLU/general.py`` and
``configs/BBH/<kind>/<task>.py``, one ``Preprocessor`` subclass each, whose
``add_unobserved_instructions`` maps an instruction id to a method::

    self.instr2preprocessor["MMLU/Unobserved/3"] = self.unobserved3

and whose method holds the instruction as a ``str.format`` template::

    def unobserved3(self, item):
        input_template = "... {question} ... A: {choiceA} ..."
        return self.unobserved_template(item, input_template)

``instructions.json`` lists each benchmark's instruction ids. The repository
has no license, so the project ships none of its text: point `load` at your own
checkout. The modules are read as data with `ast`, never imported or run (they
import ``datasets``, ``pandas``, their package). An id mapped to anything but
a method holding one string constant (a lambda over an Alpaca / NIV2 / FLAN
mapping, an f-string, a method built from several strings) is returned as
`Skipped`, with the reason.

`to_template` turns an instruction into a `Template` over a task's variables:
``{question}`` becomes the question, ``{choiceA}``-``{choiceD}`` the four
options, the answer the letter (as their ``unobserved_template_QA`` scores it);
an instruction with no ``{choiceX}`` (``input_template.format(**item)``, their
binary and classification tasks) answers with the option texts. Provenance
``unobserved``; ids ``ie_<benchmark>_<collection>_<type>_<n>``.

`read_results` reads their per-instruction result tables
(``result_csv/Main/<benchmark>/<model>.csv``: Model, Dataset, Collection, Type,
ID, Shots, Performance, Metric, Include?), which `jaxrobust.analysis.report`
compares with a run, instruction by instruction.
"""

from __future__ import annotations

import ast
import csv
import dataclasses
import io
import json
import re
import string

from etils import epath

from jaxrobust.data import templates as tmpl

SOURCE = "InstructionEval (Sun et al. 2023), github.com/jiudingsun01/InstructionEval, "
AUTHOR = "Sun et al. 2023"
LETTERS = string.ascii_uppercase
_ID_RE = re.compile(r"^[A-Za-z0-9]+/[A-Za-z0-9]+/\d+$")

# instructions.json's benchmark -> (config module, the project's data sets).
BENCHMARKS = {
    "MMLU_General": ("configs/MMLU/general.py", ("mmlu",)),
    "BBQ_Lite": ("configs/BBH/multiple_choice/bbq_lite.py", ("bbl_bbq_lite_json",)),
    "Code_Line_Description": (
        "configs/BBH/multiple_choice/code_line_description.py",
        ("bbl_code_line_description",),
    ),
    "Conceptual_Combinations": (
        "configs/BBH/multiple_choice/conceptual_combinations.py",
        ("bbl_conceptual_combinations",),
    ),
    "Hindu_Knowledge": (
        "configs/BBH/multiple_choice/hindu_knowledge.py",
        ("bbl_hindu_knowledge",),
    ),
    "Known_Unknowns": ("configs/BBH/multiple_choice/known_unknowns.py", ("bbl_known_unknowns",)),
    "Logic_Grid_Puzzle": (
        "configs/BBH/multiple_choice/logic_grid_puzzle.py",
        ("bbl_logic_grid_puzzle",),
    ),
    "Logical_Deduction": (
        "configs/BBH/multiple_choice/logical_deduction.py",
        ("bbl_logical_deduction",),
    ),
    "Novel_Concepts": ("configs/BBH/multiple_choice/novel_concepts.py", ("bbl_novel_concepts",)),
    "Play_Dialog": (
        "configs/BBH/binary_classification/play_dialog_same_or_different.py",
        ("bbl_play_dialog_same_or_different",),
    ),
    "Strange_Stories": (
        "configs/BBH/binary_classification/strange_stories.py",
        ("bbl_strange_stories",),
    ),
    "StrategyQA": ("configs/BBH/binary_classification/strategy_qa.py", ("bbl_strategyqa",)),
    "Winowhy": ("configs/BBH/binary_classification/winowhy.py", ("bbl_winowhy",)),
    "Language_Identification": (
        "configs/BBH/classification/language_identification.py",
        ("bbl_language_identification",),
    ),
    "Vitaminc_Fact_Verification": (
        "configs/BBH/classification/vitaminc_fact_verification.py",
        ("bbl_vitaminc_fact_verification",),
    ),
}


class InstructionEvalError(ValueError):
    """A file this loader cannot read as data; names file, line and problem."""


@dataclasses.dataclass(frozen=True)
class Instruction:
    """One instruction of a benchmark.

    Attributes:
      benchmark: instructions.json's key (``MMLU_General``).
      id: the instruction id (``MMLU/Unobserved/3``).
      text: the ``str.format`` template, as the module holds it.
      fields: its ``{field}`` names in order of first use.
      path, line: where the string is.
    """

    benchmark: str
    id: str
    text: str
    fields: tuple[str, ...]
    path: str
    line: int

    @property
    def letters(self) -> bool:
        """Options shown as A-D and answered with the letter."""
        return any(f.startswith("choice") for f in self.fields)


@dataclasses.dataclass(frozen=True)
class Skipped:
    """An id not read as an instruction, and why."""

    benchmark: str
    id: str
    reason: str


@dataclasses.dataclass(frozen=True)
class Loaded:
    """The instructions found and the ids skipped, in instructions.json's order."""

    instructions: tuple[Instruction, ...]
    skipped: tuple[Skipped, ...]

    def counts(self) -> dict[str, int]:
        out = {}
        for i in self.instructions:
            out[i.benchmark] = out.get(i.benchmark, 0) + 1
        return out


def _method_strings(cls: ast.ClassDef, path: str) -> tuple[dict[str, str], dict]:
    """(id -> method name, or '!' and why not, method name -> its FunctionDef)."""
    methods = {n.name: n for n in cls.body if isinstance(n, ast.FunctionDef)}
    mapped = {}
    for fn in methods.values():
        for node in ast.walk(fn):
            if not isinstance(node, ast.Assign) or len(node.targets) != 1:
                continue
            target = node.targets[0]
            if not (
                isinstance(target, ast.Subscript)
                and isinstance(target.value, ast.Attribute)
                and target.value.attr == "instr2preprocessor"
            ):
                continue  # instr2preprocessor_fs (few-shot) and everything else.
            key = target.slice
            if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
                raise InstructionEvalError(
                    f"{path}:{node.lineno}: instr2preprocessor key is not a string literal"
                )
            value = node.value
            if (
                isinstance(value, ast.Attribute)
                and isinstance(value.value, ast.Name)
                and value.value.id == "self"
            ):
                mapped[key.value] = value.attr
            else:
                mapped[key.value] = f"!mapped to a {type(value).__name__}, not a method of its own"
    return mapped, methods


def _parse(text: str) -> list[tuple[str, str | None, str | None, str | None]]:
    """Python's own reading of a ``str.format`` template: (literal, field, spec,
    conversion) pieces; ``{{`` and ``}}`` are literal braces."""
    return list(string.Formatter().parse(text))


def _instruction_string(fn: ast.FunctionDef) -> tuple[str, int] | str:
    """The method's one ``input_template = "<constant>"``, or why there is none."""
    found = []
    for node in ast.walk(fn):
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "input_template" for t in node.targets
        ):
            found.append(node)
    if len(found) != 1:
        return f"method {fn.name} assigns input_template {len(found)} times"
    value = found[0].value
    if isinstance(value, ast.JoinedStr):
        return f"method {fn.name}'s input_template is an f-string"
    if not (isinstance(value, ast.Constant) and isinstance(value.value, str)):
        return f"method {fn.name}'s input_template is a {type(value).__name__}, not a string"
    return value.value, found[0].lineno


def read_module(path: str | epath.Path, benchmark: str, ids: list[str]) -> Loaded:
    """The instructions `ids` of one config module (parsed, never imported)."""
    path = epath.Path(path)
    try:
        tree = ast.parse(path.read_text(), filename=str(path))
    except SyntaxError as e:
        raise InstructionEvalError(f"{path}:{e.lineno}: not Python: {e.msg}") from e
    mapped, methods = {}, {}
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        m, fns = _method_strings(cls, str(path))
        mapped.update(m)
        methods.update(fns)
    found, skipped = [], []
    for iid in ids:
        target = mapped.get(iid)
        if target is None:
            skipped.append(Skipped(benchmark, iid, f"{path.name} maps no method to it"))
            continue
        if target.startswith("!"):
            skipped.append(Skipped(benchmark, iid, target[1:]))
            continue
        if target not in methods:
            skipped.append(Skipped(benchmark, iid, f"method {target} is not in {path.name}"))
            continue
        text = _instruction_string(methods[target])
        if isinstance(text, str):
            skipped.append(Skipped(benchmark, iid, text))
            continue
        try:
            fields = tuple(dict.fromkeys(f for _, f, _, _ in _parse(text[0]) if f is not None))
        except ValueError as e:
            skipped.append(Skipped(benchmark, iid, f"not a str.format template: {e}"))
            continue
        found.append(Instruction(benchmark, iid, text[0], fields, str(path), text[1]))
    return Loaded(tuple(found), tuple(skipped))


def load(
    checkout: str | epath.Path,
    *,
    benchmarks: list[str] | None = None,
    kinds: tuple[str, ...] = ("Unobserved",),
) -> Loaded:
    """Sun et al.'s instructions from an InstructionEval checkout.

    Args:
      checkout: the repository's root (holding ``instructions.json`` and ``configs/``).
      benchmarks: instructions.json keys to read (default: every one in `BENCHMARKS`).
      kinds: the ids' middle part to take (``Unobserved``; ``Default`` adds the
        benchmark's own prompt).

    Raises:
      FileNotFoundError: no instructions.json or config module where expected.
      InstructionEvalError: a file this loader cannot read (file and line named).
    """
    root = epath.Path(checkout)
    index_path = root / "instructions.json"
    if not index_path.is_file():
        raise FileNotFoundError(
            f"{index_path}: not found; point this at a checkout of "
            "github.com/jiudingsun01/InstructionEval"
        )
    index = json.loads(index_path.read_text())
    instructions, skipped = [], []
    for name in benchmarks or [b for b in index if b in BENCHMARKS]:
        if name not in BENCHMARKS:
            raise KeyError(f"benchmark {name!r}: known {sorted(BENCHMARKS)}")
        if name not in index:
            raise InstructionEvalError(f"{index_path}: no benchmark {name!r}")
        ids = [i for i in index[name] if _ID_RE.match(i) and i.split("/")[1] in kinds]
        module = root / BENCHMARKS[name][0]
        if not module.is_file():
            raise FileNotFoundError(f"{module}: config module of {name} not found")
        loaded = read_module(module, name, ids)
        instructions += loaded.instructions
        skipped += loaded.skipped
    return Loaded(tuple(instructions), tuple(skipped))


def template_id(benchmark: str, instruction_id: str) -> str:
    """``ie_mmlu_general_mmlu_unobserved_3`` for (``MMLU_General``, ``MMLU/Unobserved/3``)."""
    return "ie_" + "_".join([benchmark, *instruction_id.split("/")]).lower()


def _escape(text: str) -> str:
    return text.replace("{", "{{ '{' }}")


def to_template(
    instruction: Instruction, *, question: str, choices: str, answer_index: str = "answer_index"
) -> tmpl.Template:
    """An instruction as a template over a task's variables.

    Args:
      question: the task's variable holding the question (MMLU ``question``,
        BIG-bench ``input``).
      choices: its list variable of option texts.
      answer_index: its gold option index.

    Raises:
      InstructionEvalError: a field other than question, options and choiceA-D.
    """
    known = {"question": question, "options": choices}
    known |= {f"choice{LETTERS[i]}": f"{choices}[{i}]" for i in range(4)}
    unknown = [f for f in instruction.fields if f not in known]
    if unknown:
        raise InstructionEvalError(
            f"{instruction.path}:{instruction.line}: {instruction.id} uses {unknown}; "
            f"known fields {sorted(known)}"
        )
    parts = []
    for literal, field, spec, conversion in _parse(instruction.text):
        parts.append(_escape(literal))
        if field is None:
            continue
        if spec or conversion:
            raise InstructionEvalError(
                f"{instruction.path}:{instruction.line}: {instruction.id}: field {field!r} has "
                f"a format spec or conversion ({spec!r}, {conversion!r})"
            )
        parts.append(f"{{{{ {known[field]} }}}}")
    if instruction.letters:
        # Their unobserved_template_QA: four options, answered by letter.
        choices_jinja = " ||| ".join(LETTERS[:4])
    else:
        choices_jinja = f"{{{{ {choices} | join(' ||| ') }}}}"
    return tmpl.Template(
        id=template_id(instruction.benchmark, instruction.id),
        jinja="".join(parts) + f"|||{{{{ answer_choices[{answer_index}] }}}}",
        answer_choices=choices_jinja,
        provenance="unobserved",
        source=f"{SOURCE}{epath.Path(instruction.path).name}:{instruction.line} {instruction.id}",
        author=AUTHOR,
        name=instruction.id,
        bank=instruction.path,
        strip_parts=False,
    )


@dataclasses.dataclass(frozen=True)
class Result:
    """One row of a result table: a model's score under one instruction."""

    model: str
    benchmark: str
    instruction_id: str  # Collection/Type/ID, as instructions.json names it.
    shots: int
    performance: float
    metric: str
    include: bool


RESULT_COLUMNS = ("Model", "Dataset", "Collection", "Type", "ID", "Shots", "Performance")


def read_results(path: str | epath.Path) -> list[Result]:
    """A ``result_csv/Main/<benchmark>/<model>.csv`` table.

    Raises:
      InstructionEvalError: a missing column or a bad number (file and row named).
    """
    path = epath.Path(path)
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    if not rows:
        raise InstructionEvalError(f"{path}: no rows")
    missing = [c for c in RESULT_COLUMNS if c not in rows[0]]
    if missing:
        raise InstructionEvalError(f"{path}: columns {missing} missing; found {list(rows[0])}")
    out = []
    for n, row in enumerate(rows, start=2):
        try:
            out.append(
                Result(
                    model=row["Model"],
                    benchmark=row["Dataset"],
                    instruction_id=f"{row['Collection']}/{row['Type']}/{int(row['ID'])}",
                    shots=int(row["Shots"]),
                    performance=float(row["Performance"]),
                    metric=row.get("Metric", ""),
                    include=row.get("Include?", "True").strip().lower() != "false",
                )
            )
        except ValueError as e:
            raise InstructionEvalError(f"{path}:{n}: {e}") from e
    return out
