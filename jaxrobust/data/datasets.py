"""Readers for the evaluation data, and where the data lives.

Every reader returns plain records (dicts of str / list / int / bool) in one
schema per kind of data, documented on the reader. Nothing is read at import
time: the data directory is resolved each time a file is opened, in this order:

1. the `DataConfig` set with `set_data_config` (gin can set it, see below);
2. the environment variable ``JAXROBUST_DATA_DIR``;
3. ``../shared/data`` next to the repository (or the working directory),
   when it exists.

TACRED, TACREV and Re-TACRED are LDC-licensed and are never in the shared
folder: their folders (``train.json``, ``dev.json``, ``test.json`` in the TACRED
JSON format) come from `DataConfig.tacred_dir` etc., the environment variables
``JAXROBUST_TACRED_DIR`` / ``JAXROBUST_TACREV_DIR`` / ``JAXROBUST_RETACRED_DIR``,
or ``<data dir>/tacred`` / ``tacrev`` / ``retacred``.

A gin file sets the directory without this module importing gin::

    from __gin__ import dynamic_registration
    from jaxrobust.data import datasets
    datasets.set_data_config.config = @datasets.DataConfig()
    datasets.DataConfig.data_dir = '/data/jaxrobust'

and the entry point calls ``gin.get_configurable(datasets.set_data_config)()``.

Paths are `etils.epath` paths (SeqIO's and Orbax's file-system layer), so the
data directory may be a `gs://` bucket on a TPU pod.

Damaged data fails loudly: a file that is not valid UTF-8 or JSON, a record
cut short or missing a field, a short CSV row or a label outside the data
set's label set raises `DataFormatError` naming the file and the line or
record. Record counts are checked against each data set's published size
(`KNOWN_SIZES`): an error for the official files, a logged warning for the
LDC data the user supplies (TACRED and its revisions, which users may filter).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import logging
import os
import pathlib
import re
from typing import Any

from etils import epath

from jaxrobust.data import semeval_labels

log = logging.getLogger(__name__)

# Where each data set officially comes from, quoted in missing-file errors.
OFFICIAL_SOURCES = {
    "semeval2010_task8": "SemEval-2010 Task 8 (Hendrickx et al. 2010), "
    "http://semeval2.fbk.eu/semeval2.php?location=data (mirror: github.com/roomylee/"
    "cnn-relation-extraction, SemEval2010_task8_all_data/)",
    "fewrel": "FewRel 1.0 (Han et al. 2018), github.com/thunlp/FewRel, data/val_wiki.json "
    "and data/pid2name.json",
    "tacred": "TACRED (Zhang et al. 2017), LDC2018T24, https://catalog.ldc.upenn.edu/LDC2018T24",
    "tacrev": "TACREV (Alt et al. 2020): TACRED (LDC2018T24) patched with "
    "github.com/DFKI-NLP/tacrev",
    "retacred": "Re-TACRED (Stoica et al. 2021): TACRED (LDC2018T24) patched with "
    "github.com/gstoica27/Re-TACRED",
    "boolq": "BoolQ (Clark et al. 2019), github.com/google-research-datasets/boolean-questions "
    "(here the validation split as a JSON list of {question, passage, answer})",
    "mmlu": "MMLU (Hendrycks et al. 2021), https://people.eecs.berkeley.edu/~hendrycks/data.tar, "
    "test/<subject>_test.csv",
    "bigbench_lite": "BIG-bench (Srivastava et al. 2022), github.com/google/BIG-bench, "
    "bigbench/benchmark_tasks/<task>/task.json",
    "promptsource": "PromptSource (Bach et al. 2022), github.com/bigscience-workshop/promptsource, "
    "promptsource/templates/",
    "flan": "lm-evaluation-harness, github.com/EleutherAI/lm-evaluation-harness, "
    "lm_eval/tasks/benchmarks/flan/",
}


# (dataset, split) -> number of records of the published data set. The MMLU
# entries are the 57 subjects' test sizes (14,042 in all).
_MMLU_TEST_SIZES = {
    "abstract_algebra": 100, "anatomy": 135, "astronomy": 152, "business_ethics": 100,
    "clinical_knowledge": 265, "college_biology": 144, "college_chemistry": 100,
    "college_computer_science": 100, "college_mathematics": 100, "college_medicine": 173,
    "college_physics": 102, "computer_security": 100, "conceptual_physics": 235,
    "econometrics": 114, "electrical_engineering": 145, "elementary_mathematics": 378,
    "formal_logic": 126, "global_facts": 100, "high_school_biology": 310,
    "high_school_chemistry": 203, "high_school_computer_science": 100,
    "high_school_european_history": 165, "high_school_geography": 198,
    "high_school_government_and_politics": 193, "high_school_macroeconomics": 390,
    "high_school_mathematics": 270, "high_school_microeconomics": 238,
    "high_school_physics": 151, "high_school_psychology": 545, "high_school_statistics": 216,
    "high_school_us_history": 204, "high_school_world_history": 237, "human_aging": 223,
    "human_sexuality": 131, "international_law": 121, "jurisprudence": 108,
    "logical_fallacies": 163, "machine_learning": 112, "management": 103, "marketing": 234,
    "medical_genetics": 100, "miscellaneous": 783, "moral_disputes": 346,
    "moral_scenarios": 895, "nutrition": 306, "philosophy": 311, "prehistory": 324,
    "professional_accounting": 282, "professional_law": 1534, "professional_medicine": 272,
    "professional_psychology": 612, "public_relations": 110, "security_studies": 245,
    "sociology": 201, "us_foreign_policy": 100, "virology": 166, "world_religions": 171,
}  # fmt: skip
KNOWN_SIZES = {
    ("semeval2010_task8", "train"): 8000,
    ("semeval2010_task8", "test"): 2717,
    ("fewrel", "validation"): 11200,  # 16 relations x 700
    ("boolq", "validation"): 3270,
    **{(f"mmlu/{subject}", "test"): n for subject, n in _MMLU_TEST_SIZES.items()},
    # User-supplied (LDC); a mismatch is a warning. TACREV relabels TACRED's dev
    # and test examples (Alt et al. 2020); Re-TACRED drops some (Stoica et al. 2021).
    ("tacred", "train"): 68124,
    ("tacred", "validation"): 22631,
    ("tacred", "test"): 15509,
    ("tacrev", "train"): 68124,
    ("tacrev", "validation"): 22631,
    ("tacrev", "test"): 15509,
    ("retacred", "train"): 58465,
    ("retacred", "validation"): 19584,
    ("retacred", "test"): 13418,
}
USER_SUPPLIED = ("tacred", "tacrev", "retacred")


class DataFileNotFoundError(FileNotFoundError):
    """A data file is missing; the message names the file and the official source."""


class DataFormatError(ValueError):
    """A data file that does not hold what its format promises.

    The message names the file, the line or record where possible, and the problem.
    """


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the evaluation data lives; None fields fall back as the module says."""

    # Folder holding semeval2010_task8/, fewrel/, boolq/, mmlu/, bigbench_lite/, ...
    data_dir: str | None = None
    # Folders holding train.json / dev.json / test.json in the TACRED JSON format.
    tacred_dir: str | None = None
    tacrev_dir: str | None = None
    retacred_dir: str | None = None


_config = DataConfig()


def set_data_config(config: DataConfig) -> DataConfig:
    """Sets the data locations for every later read; returns the previous config."""
    global _config
    previous, _config = _config, config
    return previous


def get_data_config() -> DataConfig:
    return _config


def data_dir() -> epath.Path:
    """The data directory, resolved now (see the module docstring for the order)."""
    if _config.data_dir:
        return epath.Path(_config.data_dir)
    if os.environ.get("JAXROBUST_DATA_DIR"):
        return epath.Path(os.environ["JAXROBUST_DATA_DIR"])
    repo = pathlib.Path(__file__).resolve().parents[1]
    for base in (repo, pathlib.Path.cwd()):
        candidate = base.parent / "shared" / "data"
        if candidate.is_dir():
            return epath.Path(candidate)
    return epath.Path(repo.parent / "shared" / "data")


def tacred_dir(variant: str) -> epath.Path:
    """The folder of one TACRED-format data set: 'tacred', 'tacrev' or 'retacred'."""
    configured = getattr(_config, f"{variant}_dir")
    env = os.environ.get(f"JAXROBUST_{variant.upper()}_DIR")
    return epath.Path(configured or env or data_dir() / variant)


def _read_text(path: epath.Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise DataFormatError(
            f"{path}, line {line}: not valid UTF-8 ({e.reason}: byte {e.start} "
            f"{data[e.start : e.start + 4]!r})"
        ) from None


def _read_json(path: epath.Path) -> Any:
    try:
        return json.loads(_read_text(path))
    except json.JSONDecodeError as e:
        raise DataFormatError(
            f"{path}, line {e.lineno}, column {e.colno}: not valid JSON ({e.msg})"
        ) from None


def _field(row: Any, key: str, path: epath.Path, where: str, kind: type | tuple = object) -> Any:
    """``row[key]``, or a `DataFormatError` naming file, record and field."""
    if not isinstance(row, dict):
        raise DataFormatError(f"{path}, {where}: expected a JSON object, found {row!r:.80}")
    if key not in row:
        raise DataFormatError(f"{path}, {where}: missing field {key!r} (has {sorted(row)})")
    if not isinstance(row[key], kind):
        raise DataFormatError(
            f"{path}, {where}: field {key!r} is {row[key]!r:.80}, not of type "
            f"{getattr(kind, '__name__', kind)}"
        )
    return row[key]


def check_count(dataset: str, split: str, path: epath.Path, n: int) -> None:
    """Checks a file's record count against the data set's published size.

    Raises:
      DataFormatError: the count differs for an official file (`KNOWN_SIZES`);
        for a user-supplied data set (`USER_SUPPLIED`) a warning is logged.
    """
    expected = KNOWN_SIZES.get((dataset, split))
    if expected is None or n == expected:
        return
    message = (
        f"{path}: {n} records, but {dataset}'s {split} split has {expected}; is the file "
        "cut short or another version?"
    )
    if dataset in USER_SUPPLIED:
        log.warning("%s (kept: a file you supply may be filtered on purpose)", message)
        return
    raise DataFormatError(message)


def data_file(dataset: str, relative: str, base: epath.Path | None = None) -> epath.Path:
    """Path of one data file, checked to exist.

    Raises:
      DataFileNotFoundError: naming the expected file and the official source.
    """
    path = (base if base is not None else data_dir() / dataset) / relative
    if not path.is_file():
        raise DataFileNotFoundError(
            f"{dataset}: expected data file {path} (not found). Get it from "
            f"{OFFICIAL_SOURCES[dataset]}, and point JAXROBUST_DATA_DIR (or "
            "jaxrobust.data.datasets.DataConfig) at the folder that holds it."
        )
    return path


# ---------------------------------------------------------------- relation extraction
# RE records: id, sentence (plain text), tagged (with <e1>..</e1> <e2>..</e2>
# around head and tail), head, tail, head_type, tail_type ('' when unknown),
# relation (the data set's label).

_TAG_RE = re.compile(r"</?e[12]>")
SEMEVAL_LABELS = semeval_labels.LABELS
SEMEVAL_FILES = {"train": "TRAIN_FILE.TXT", "test": "TEST_FILE_FULL.TXT"}


_SEMEVAL_SENTENCE_RE = re.compile(r'^(\d+)\t"(.*)"\s*$')


def read_semeval(split: str) -> list[dict]:
    """SemEval-2010 Task 8, 'train' (8,000) or 'test' (2,717); head is e1, tail e2.

    Each record is four lines: ``<id>\t"<tagged sentence>"``, the relation,
    ``Comment: ...`` and a blank line.

    Raises:
      DataFormatError: a record cut short or malformed, a relation that is not
        one of the 19 labels, or not the published number of records; the
        message names file and line.
    """
    path = data_file("semeval2010_task8", SEMEVAL_FILES[split])
    lines = _read_text(path).replace("\r\n", "\n").split("\n")
    while lines and not lines[-1].strip():
        lines.pop()

    def fail(index: int, problem: str):
        raise DataFormatError(f"{path}, line {index + 1}: {problem}")

    records = []
    for i in range(0, len(lines), 4):
        relation = lines[i + 1].strip() if i + 1 < len(lines) else None
        if relation is not None and relation not in SEMEVAL_LABELS:
            cut = ", and the file ends there (cut short?)" if i + 2 == len(lines) else ""
            fail(
                i + 1,
                f"relation {relation!r} is not a SemEval label{cut}; the labels: "
                f"{', '.join(SEMEVAL_LABELS)}",
            )
        if len(lines) - i < 3:
            fail(
                i,
                f"record cut short: {len(lines) - i} of its lines (sentence, relation, "
                "comment) before the end of the file",
            )
        m = _SEMEVAL_SENTENCE_RE.match(lines[i])
        if not m:
            fail(i, f'expected <id><TAB>"<sentence>", found {lines[i]!r:.80}')
        tagged = m.group(2)
        head = re.search(r"<e1>(.*?)</e1>", tagged)
        tail = re.search(r"<e2>(.*?)</e2>", tagged)
        if not (head and tail):
            fail(i, f"the sentence lacks its <e1>..</e1> or <e2>..</e2> tags: {tagged!r:.80}")
        if not lines[i + 2].startswith("Comment"):
            fail(i + 2, f"expected the record's 'Comment:' line, found {lines[i + 2]!r:.80}")
        if i + 3 < len(lines) and lines[i + 3].strip():
            fail(i + 3, f"expected a blank line after the record, found {lines[i + 3]!r:.80}")
        records.append(
            {
                "id": f"semeval-{m.group(1)}",
                "sentence": _TAG_RE.sub("", tagged),
                "tagged": tagged,
                "head": head.group(1),
                "tail": tail.group(1),
                "head_type": "",
                "tail_type": "",
                "relation": relation,
            }
        )
    check_count("semeval2010_task8", split, path, len(records))
    return records


_PTB = {"-LRB-": "(", "-RRB-": ")", "-LSB-": "[", "-RSB-": "]", "-LCB-": "{", "-RCB-": "}"}


def _tagged(tokens: list[str], head: tuple[int, int], tail: tuple[int, int]) -> str:
    """Tokens joined by spaces with e1/e2 tags around inclusive spans."""
    out = []
    for i, tok in enumerate(tokens):
        for tag, (start, _) in (("<e1>", head), ("<e2>", tail)):
            if i == start:
                tok = tag + tok
        for tag, (_, end) in (("</e1>", head), ("</e2>", tail)):
            if i == end:
                tok = tok + tag
        out.append(tok)
    return " ".join(out)


def _span(tokens: list[str], start: int, end: int) -> str:
    return " ".join(tokens[start : end + 1])


def read_tacred(variant: str, split: str) -> list[dict]:
    """TACRED, TACREV or Re-TACRED from the user's folder; split train/validation/test."""
    filename = {"train": "train.json", "validation": "dev.json", "test": "test.json"}[split]
    path = data_file(variant, filename, base=tacred_dir(variant))
    rows = _read_json(path)
    if not isinstance(rows, list):
        raise DataFormatError(f"{path}: expected a JSON list of examples, found {type(rows)}")
    records = []
    for i, row in enumerate(rows):
        where = f"example {i} (id {row.get('id') if isinstance(row, dict) else None})"
        tokens = [_PTB.get(t, t) for t in _field(row, "token", path, where, list)]
        spans = [
            _field(row, k, path, where, int)
            for k in ("subj_start", "subj_end", "obj_start", "obj_end")
        ]
        if not all(0 <= start <= end < len(tokens) for start, end in (spans[:2], spans[2:])):
            raise DataFormatError(
                f"{path}, {where}: spans {spans} outside its {len(tokens)} tokens"
            )
        head, tail = tuple(spans[:2]), tuple(spans[2:])
        records.append(
            {
                "id": f"{variant}-{_field(row, 'id', path, where)}",
                "sentence": " ".join(tokens),
                "tagged": _tagged(tokens, head, tail),
                "head": _span(tokens, *head),
                "tail": _span(tokens, *tail),
                "head_type": row.get("subj_type", ""),
                "tail_type": row.get("obj_type", ""),
                "relation": _field(row, "relation", path, where, str),
            }
        )
    check_count(variant, split, path, len(records))
    return records


def read_fewrel_relations() -> dict[str, tuple[str, str]]:
    """Wikidata property id -> (name, description), from pid2name.json."""
    path = data_file("fewrel", "pid2name.json")
    data = _read_json(path)
    if not isinstance(data, dict):
        raise DataFormatError(f"{path}: expected a JSON object pid -> [name, description]")
    out = {}
    for pid, value in data.items():
        if not (isinstance(value, list) and len(value) >= 2):
            raise DataFormatError(
                f"{path}, {pid}: expected [name, description], found {value!r:.80}"
            )
        out[pid] = (value[0], value[1])
    return out


def _fewrel_span(row: dict, key: str, path: epath.Path, where: str, n: int) -> tuple[int, int]:
    entity = _field(row, key, path, where, list)
    try:
        positions = entity[2][0]
        span = (int(positions[0]), int(positions[-1]))
    except (IndexError, TypeError, ValueError):
        raise DataFormatError(
            f"{path}, {where}: field {key!r} is not [name, id, [[positions]]]: {entity!r:.80}"
        ) from None
    if not 0 <= span[0] <= span[1] < n:
        raise DataFormatError(f"{path}, {where}: {key!r} span {span} outside its {n} tokens")
    return span


def read_fewrel(split: str = "validation") -> list[dict]:
    """FewRel 1.0 validation (11,200 = 16 x 700); relation is the Wikidata pid."""
    if split != "validation":
        raise ValueError(f"only FewRel's validation split is supported, not {split!r}")
    path = data_file("fewrel", "val_wiki.json")
    data = _read_json(path)
    if not isinstance(data, dict):
        raise DataFormatError(f"{path}: expected a JSON object pid -> examples, found {type(data)}")
    records = []
    for pid, rows in data.items():
        for i, row in enumerate(rows):
            where = f"relation {pid}, example {i}"
            tokens = _field(row, "tokens", path, where, list)
            head = _fewrel_span(row, "h", path, where, len(tokens))
            tail = _fewrel_span(row, "t", path, where, len(tokens))
            records.append(
                {
                    "id": f"fewrel-{pid}-{i}",
                    "sentence": " ".join(tokens),
                    "tagged": _tagged(tokens, head, tail),
                    "head": _span(tokens, *head),
                    "tail": _span(tokens, *tail),
                    "head_type": "",
                    "tail_type": "",
                    "relation": pid,
                }
            )
    check_count("fewrel", split, path, len(records))
    return records


# ---------------------------------------------------------------- question answering


def read_boolq(split: str = "validation") -> list[dict]:
    """BoolQ validation (3,270): id, question, passage, answer (bool)."""
    if split != "validation":
        raise ValueError(f"only BoolQ's validation split is held, not {split!r}")
    path = data_file("boolq", "boolq_validation.json")
    rows = _read_json(path)
    if not isinstance(rows, list):
        raise DataFormatError(f"{path}: expected a JSON list of examples, found {type(rows)}")
    records = []
    for i, row in enumerate(rows):
        where = f"example {i}"
        for key, kind in (("question", str), ("passage", str), ("answer", bool)):
            _field(row, key, path, where, kind)
        records.append({"id": f"boolq-{i}", **row})
    check_count("boolq", split, path, len(records))
    return records


def read_mmlu(subject: str, split: str = "test") -> list[dict]:
    """One MMLU subject: id, subject, question, choices (4 strings), answer ('A'-'D')."""
    path = data_file("mmlu", f"{subject}_{split}.csv")
    # Bytes decoded as `open(newline="")` would: quoted fields keep their line ends.
    reader = csv.reader(io.StringIO(_read_text(path), newline=""))
    records = []
    try:
        for row in reader:
            if len(row) != 6 or row[5].strip() not in ("A", "B", "C", "D"):
                raise DataFormatError(
                    f"{path}, line {reader.line_num}: expected 6 fields (question, A, B, C, D, "
                    f"answer letter A-D), found {len(row)}: {row!r:.120}"
                )
            records.append(
                {
                    "id": f"mmlu-{subject}-{len(records)}",
                    "subject": subject,
                    "question": row[0],
                    "choices": row[1:5],
                    "answer": row[5].strip(),
                }
            )
    except csv.Error as e:
        raise DataFormatError(f"{path}, line {reader.line_num}: not valid CSV ({e})") from None
    check_count(f"mmlu/{subject}", split, path, len(records))
    return records


def _flag(value) -> bool:
    # Some task.json files write the flag as the string "false".
    return value.lower() == "true" if isinstance(value, str) else bool(value)


def read_bigbench(task: str) -> list[dict]:
    """A BIG-bench multiple-choice task, subtasks concatenated in name order.

    Records: id, task, subtask, input, choices (target_scores keys in file
    order), answer_index (the first highest-scored choice), and the task's
    native prompt pieces (task_prefix, example_input_prefix,
    example_output_prefix, choice_prefix, append_choices_to_input) with
    BIG-bench's defaults filled in.
    """
    root = data_dir() / "bigbench_lite" / task
    path = data_file("bigbench_lite", f"{task}/task.json")
    files = [path] + sorted(root.glob("*/task.json"))
    records = []
    for file in files:
        spec = _read_json(file)
        if not isinstance(spec, dict):
            raise DataFormatError(f"{file}: expected a BIG-bench task object, found {type(spec)}")
        subtask = file.parent.name if file != path else ""
        for i, ex in enumerate(spec.get("examples", [])):
            if not isinstance(ex, dict) or "target_scores" not in ex:
                continue  # a generative example: not multiple choice
            where = f"example {i}"
            scores = _field(ex, "target_scores", file, where, dict)
            if not scores or not all(isinstance(v, int | float) for v in scores.values()):
                raise DataFormatError(
                    f"{file}, {where}: target_scores {scores!r:.80} is not choice -> score"
                )
            choices = list(scores)
            best = max(scores.values())
            records.append(
                {
                    "id": f"{task}-{subtask or 'main'}-{i}",
                    "task": task,
                    "subtask": subtask,
                    "input": _field(ex, "input", file, where, str),
                    "choices": choices,
                    "answer_index": next(j for j, c in enumerate(choices) if scores[c] == best),
                    "task_prefix": spec.get("task_prefix", ""),
                    "example_input_prefix": spec.get("example_input_prefix", "\nQ: "),
                    "example_output_prefix": spec.get("example_output_prefix", "\nA: "),
                    "choice_prefix": spec.get("choice_prefix", "\n  choice: "),
                    "append_choices_to_input": _flag(spec.get("append_choices_to_input", True)),
                }
            )
    return records
