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
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import pathlib
import re
from typing import Any

from etils import epath

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


class DataFileNotFoundError(FileNotFoundError):
    """A data file is missing; the message names the file and the official source."""


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


def _read_json(path: epath.Path) -> Any:
    return json.loads(path.read_bytes().decode("utf-8"))


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
SEMEVAL_FILES = {"train": "TRAIN_FILE.TXT", "test": "TEST_FILE_FULL.TXT"}


def read_semeval(split: str) -> list[dict]:
    """SemEval-2010 Task 8, 'train' (8,000) or 'test' (2,717); head is e1, tail e2."""
    path = data_file("semeval2010_task8", SEMEVAL_FILES[split])
    lines = path.read_text(encoding="utf-8").replace("\r\n", "\n").split("\n")
    records = []
    for i in range(0, len(lines) - 1, 4):
        if not lines[i].strip():
            break
        sid, quoted = lines[i].split("\t", 1)
        tagged = quoted.strip()[1:-1]
        records.append(
            {
                "id": f"semeval-{sid}",
                "sentence": _TAG_RE.sub("", tagged),
                "tagged": tagged,
                "head": re.search(r"<e1>(.*?)</e1>", tagged).group(1),
                "tail": re.search(r"<e2>(.*?)</e2>", tagged).group(1),
                "head_type": "",
                "tail_type": "",
                "relation": lines[i + 1].strip(),
            }
        )
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
    records = []
    for row in rows:
        tokens = [_PTB.get(t, t) for t in row["token"]]
        head = (row["subj_start"], row["subj_end"])
        tail = (row["obj_start"], row["obj_end"])
        records.append(
            {
                "id": f"{variant}-{row['id']}",
                "sentence": " ".join(tokens),
                "tagged": _tagged(tokens, head, tail),
                "head": _span(tokens, *head),
                "tail": _span(tokens, *tail),
                "head_type": row.get("subj_type", ""),
                "tail_type": row.get("obj_type", ""),
                "relation": row["relation"],
            }
        )
    return records


def read_fewrel_relations() -> dict[str, tuple[str, str]]:
    """Wikidata property id -> (name, description), from pid2name.json."""
    return {
        pid: (v[0], v[1]) for pid, v in _read_json(data_file("fewrel", "pid2name.json")).items()
    }


def read_fewrel(split: str = "validation") -> list[dict]:
    """FewRel 1.0 validation (11,200 = 16 x 700); relation is the Wikidata pid."""
    if split != "validation":
        raise ValueError(f"only FewRel's validation split is supported, not {split!r}")
    data = _read_json(data_file("fewrel", "val_wiki.json"))
    records = []
    for pid, rows in data.items():
        for i, row in enumerate(rows):
            tokens = row["tokens"]
            h, t = row["h"][2][0], row["t"][2][0]
            head, tail = (h[0], h[-1]), (t[0], t[-1])
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
    return records


# ---------------------------------------------------------------- question answering


def read_boolq(split: str = "validation") -> list[dict]:
    """BoolQ validation (3,270): id, question, passage, answer (bool)."""
    if split != "validation":
        raise ValueError(f"only BoolQ's validation split is held, not {split!r}")
    rows = _read_json(data_file("boolq", "boolq_validation.json"))
    return [{"id": f"boolq-{i}", **row} for i, row in enumerate(rows)]


def read_mmlu(subject: str, split: str = "test") -> list[dict]:
    """One MMLU subject: id, subject, question, choices (4 strings), answer ('A'-'D')."""
    path = data_file("mmlu", f"{subject}_{split}.csv")
    # Bytes decoded as `open(newline="")` would: quoted fields keep their line ends.
    rows = list(csv.reader(io.StringIO(path.read_bytes().decode("utf-8"), newline="")))
    return [
        {
            "id": f"mmlu-{subject}-{i}",
            "subject": subject,
            "question": row[0],
            "choices": row[1:5],
            "answer": row[5].strip(),
        }
        for i, row in enumerate(rows)
    ]


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
        subtask = file.parent.name if file != path else ""
        for i, ex in enumerate(spec.get("examples", [])):
            if "target_scores" not in ex:
                continue
            scores = ex["target_scores"]
            choices = list(scores)
            best = max(scores.values())
            records.append(
                {
                    "id": f"{task}-{subtask or 'main'}-{i}",
                    "task": task,
                    "subtask": subtask,
                    "input": ex["input"],
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
