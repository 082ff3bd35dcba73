"""The official SemEval-2010 Task 8 scorer (v1.2), reimplemented in Python.

The rules are those of `semeval2010_task8_scorer-v1.2.pl` (Nakov, 2010); the
scorer's published test vectors (`scorer_vectors/result_scores{1,2,3,5}.txt`)
are reproduced to every printed character by `format_report`
(tests/test_semeval_scorer.py). The rules, as that script applies them:

- Files hold one `<ID>\\t<RELATION>` line each; IDs are digit strings compared
  as strings; a repeated ID is an error. The proposed file may cover a subset
  of the key's IDs (the rest are *skipped*); an ID absent from the key is an
  error. `Other` is renamed `_Other` internally, so it sorts after the nine
  relations and prints as `_Other` / `_O_`.
- Three views are scored: (i) 2*9+1 labels with direction, (ii) 9+1 labels
  with direction stripped, (iii) 9+1 labels where a prediction of the right
  relation in the wrong direction is neither correct nor counted in any
  column: it goes to the row's `xDIRx` cell and is added to that relation's
  precision denominator. (iii)'s macro-F1 is the official score.
- Per relation (rows = labels present in the key): P = correct / (column sum
  [+ xDIRx in (iii)]), 0 when the column sum is 0; R = correct / key count;
  F1 = 2PR/(P+R), 0 when P+R = 0.
- Micro P/R/F1 sum correct, proposed and key counts over the key's labels other
  than `_Other`; so skipped examples, and predictions of labels absent from the
  key, count like `Other` predictions (in no precision denominator).
- Macro P/R/F1 are the means over the key's non-Other labels of the
  per-relation P, R and F1 (macro-F1 is the mean of F1s, not the F1 of the
  means).
- All scores are percentages, computed with the script's floating-point
  operation order, so that `%.2f` prints identical digits.

One deliberate leniency: the script's line pattern needs a newline after every
line, so a file whose last line lacks one is rejected there; here it is read
(it changes no score). Every other format error is reported, all at once, with
line numbers, as `SemEvalFormatError` (the script stops at the first).

Instruction-following models can emit answers outside the label set: map those
to a real label (e.g. `Other`) or leave the ID out (skipped) before scoring;
the two are scored differently (see micro P above).
"""

from __future__ import annotations

import collections
import dataclasses
import os
import re
from collections.abc import Mapping

from jaxrobust.data import semeval_labels

RELATIONS = semeval_labels.RELATIONS
# The 19 labels a file may hold (Other first, as the official script lists them).
LABELS = (semeval_labels.OTHER,) + semeval_labels.LABELS[:-1]

_OTHER = "_Other"  # The script's internal name for Other.
_WRONG_DIR = "WRONG_DIR"
_LINE = re.compile(r"([0-9]+)\t([^\r]+)\r?")
_DIRECTION = re.compile(r"\(e[12],e[12]\)$")


class SemEvalFormatError(ValueError):
    """A scorer input file is malformed or does not match the answer key.

    Attributes:
      path: the offending file.
      errors: `(line_number, message)` pairs, line numbers counting from 1; the
        message shows the first `MAX_SHOWN`.
    """

    MAX_SHOWN = 20

    def __init__(self, path: str | os.PathLike, errors: list[tuple[int, str]]):
        self.path = os.fspath(path)
        self.errors = list(errors)
        shown = [f"  {self.path}:{n}: {msg}" for n, msg in self.errors[: self.MAX_SHOWN]]
        if len(self.errors) > self.MAX_SHOWN:
            shown.append(f"  ... and {len(self.errors) - self.MAX_SHOWN} more (see .errors)")
        lines = "\n".join(shown)
        super().__init__(f"{len(self.errors)} error(s) in SemEval file {self.path}:\n{lines}")


@dataclasses.dataclass(frozen=True)
class RelationScore:
    """Scores of one key label; percentages as the official script computes them."""

    label: str  # Internal name: '_Other' for Other.
    correct: int  # Diagonal cell.
    proposed: int  # Column sum (predictions of this label, wrong-direction ones excluded).
    wrong_dir: int  # xDIRx of this row; added to the precision denominator in view (iii).
    actual: int  # Key count of this label (skipped examples included).
    precision: float  # Percent.
    recall: float  # Percent.
    f1: float  # Percent.


@dataclasses.dataclass(frozen=True)
class SemEvalView:
    """One of the script's three evaluations."""

    title: str  # Heading line, as printed.
    use_wrong_dir: bool  # True for view (iii).
    key_labels: tuple[str, ...]  # Rows: labels in the key, sorted ('_Other' last).
    columns: tuple[str, ...]  # key_labels, then labels proposed but absent from the key.
    short_names: tuple[str, ...]  # Column headings ('C-E1', '_O_', '*MT1', ...).
    matrix: tuple[tuple[int, ...], ...]  # [rows, columns] counts, key label x proposed label.
    column_sums: tuple[int, ...]  # [columns]
    wrong_dir: tuple[int, ...]  # [rows] xDIRx (zeros unless use_wrong_dir).
    skipped: tuple[int, ...]  # [rows] key examples with no prediction.
    total_proposed: int  # Lines in the proposed file.
    total_answer: int  # Lines in the key file.
    correct: int  # Trace of the matrix.
    other_skipped: int  # Skipped examples whose key label is Other.
    coverage: float  # Percent of key examples predicted.
    accuracy: float  # Percent correct of predicted examples.
    accuracy_skipped_wrong: float  # Percent correct of all key examples.
    accuracy_skipped_other: float  # Same, counting skipped Other examples as correct.
    relations: tuple[RelationScore, ...]  # One per row.
    micro: tuple[int, int, int, float, float, float]  # correct, proposed, actual, P, R, F1.
    macro: tuple[float, float, float]  # P, R, F1 (percent), over non-Other key labels.


@dataclasses.dataclass(frozen=True)
class SemEvalResult:
    """The full output of the scorer."""

    warnings: tuple[str, ...]  # Proposed labels absent from the key, as printed.
    views: tuple[SemEvalView, SemEvalView, SemEvalView]  # (i), (ii), (iii).

    @property
    def official_score(self) -> float:
        """Macro-F1 (percent) of view (iii), the task's official score."""
        return self.views[2].macro[2]


def read_answer_file(path: str | os.PathLike) -> dict[str, tuple[str, int]]:
    """Reads a proposed-answer or answer-key file.

    Args:
      path: a file of `<ID>\\t<RELATION>` lines (LF or CRLF endings).

    Returns:
      `{id: (label, line_number)}` with labels as written (`Other`, not `_Other`).

    Raises:
      SemEvalFormatError: listing every bad line (wrong layout, unknown relation,
        repeated ID) with its line number.
      FileNotFoundError: the file does not exist.
    """
    with open(path, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()  # The newline that ends the last line.
    ids: dict[str, tuple[str, int]] = {}
    errors = []
    valid = set(LABELS)
    for number, raw in enumerate(lines, start=1):
        line = raw.decode("utf-8", errors="replace")
        match = _LINE.fullmatch(line)
        shown = line.rstrip("\r")
        if match is None:
            errors.append((number, f"expected '<ID><TAB><RELATION>', got {shown!r}"))
        elif match.group(2) not in valid:
            hint = " (a relation needs its direction, e.g. '(e1,e2)')" * (
                match.group(2) in RELATIONS
            )
            errors.append((number, f"unknown relation {match.group(2)!r} in {shown!r}{hint}"))
        elif match.group(1) in ids:
            first = ids[match.group(1)][1]
            errors.append((number, f"ID {match.group(1)} is already defined on line {first}"))
        else:
            ids[match.group(1)] = (match.group(2), number)
    if errors:
        raise SemEvalFormatError(path, errors)
    return ids


def score_files(proposed_path: str | os.PathLike, key_path: str | os.PathLike) -> SemEvalResult:
    """Scores a proposed-answer file against an answer key, like the Perl script.

    Raises:
      SemEvalFormatError: a malformed file, or proposed IDs absent from the key
        (with their line numbers in the proposed file).
    """
    proposed = read_answer_file(proposed_path)
    key = read_answer_file(key_path)
    unknown = [
        (line, f"ID {i} is not in the answer key {os.fspath(key_path)}")
        for i, (_, line) in proposed.items()
        if i not in key
    ]
    if unknown:
        raise SemEvalFormatError(proposed_path, sorted(unknown))
    return score(
        {i: label for i, (label, _) in proposed.items()},
        {i: label for i, (label, _) in key.items()},
    )


def score(proposed: Mapping[str, str], key: Mapping[str, str]) -> SemEvalResult:
    """Scores predictions against the key by the official scorer's rules.

    Args:
      proposed: example id -> predicted label, for a subset of the key's ids.
      key: example id -> gold label. Labels are the 19 of `LABELS`.

    Returns:
      The three views and the warnings; `result.official_score` is the
      official macro-F1 in percent.

    Raises:
      ValueError: unknown labels, ids absent from the key, an empty proposed
        set (the script divides by zero), or a key with no relation but Other.
    """
    for name, mapping in (("proposed", proposed), ("key", key)):
        bad = sorted({label for label in mapping.values() if label not in LABELS})
        if bad:
            raise ValueError(f"{name} labels {bad} are not SemEval-2010 Task 8 labels {LABELS}")
    unknown = [i for i in proposed if i not in key]
    if unknown:
        raise ValueError(f"proposed ids {unknown[:10]} are not in the key")
    if not proposed:
        raise ValueError("no predictions to score (the official scorer divides by zero)")
    if all(label == "Other" for label in key.values()):
        raise ValueError("the key holds no relation but Other; the macro average is undefined")

    def internal(label: str) -> str:
        return _OTHER if label == "Other" else label

    def undirected(label: str) -> str:
        return _DIRECTION.sub("", label)

    conf = [collections.Counter() for _ in range(3)]  # (proposed, answer) -> count.
    prop_counts = [collections.Counter() for _ in range(3)]
    for i, label in proposed.items():
        p, a = internal(label), internal(key[i])
        p_nodir, a_nodir = undirected(p), undirected(a)
        conf[0][p, a] += 1
        prop_counts[0][p] += 1
        conf[1][p_nodir, a_nodir] += 1
        prop_counts[1][p_nodir] += 1
        column = _WRONG_DIR if (p != a and p_nodir == a_nodir) else p_nodir
        conf[2][column, a_nodir] += 1
        prop_counts[2][column] += 1
    answer19 = collections.Counter(internal(label) for label in key.values())
    answer10 = collections.Counter(undirected(internal(label)) for label in key.values())

    warnings = tuple(
        f"!!!WARNING!!! The proposed file contains {n} label(s) of type '{label}', "
        "which is NOT present in the key file."
        for label, n in sorted(prop_counts[0].items())
        if label not in answer19
    )
    titles = (
        "<<< (2*9+1)-WAY EVALUATION (USING DIRECTIONALITY)>>>:",
        "<<< (9+1)-WAY EVALUATION IGNORING DIRECTIONALITY >>>:",
        "<<< (9+1)-WAY EVALUATION TAKING DIRECTIONALITY INTO ACCOUNT -- OFFICIAL >>>:",
    )
    answers = (answer19, answer10, answer10)
    views = tuple(
        _evaluate(titles[v], conf[v], prop_counts[v], answers[v], len(proposed), len(key), v == 2)
        for v in range(3)
    )
    return SemEvalResult(warnings=warnings, views=views)


def _short_name(label: str, key_labels: Mapping[str, int]) -> str:
    """'Cause-Effect(e1,e2)' -> 'C-E1'; '*CE1' when absent from the key."""
    if label == _OTHER:
        return "_O_"
    head, tail = label.split("-", 1)
    name = f"{head[0]}-{tail[0]}" if label in key_labels else f"*{head[0]}{tail[0]}"
    direction = re.search(r"\(e([12])", label)
    return name + (direction.group(1) if direction else "")


def _evaluate(
    title: str,
    conf: Mapping[tuple[str, str], int],
    prop_counts: Mapping[str, int],
    answer: Mapping[str, int],
    total_proposed: int,
    total_answer: int,
    use_wrong_dir: bool,
) -> SemEvalView:
    """One view of the scorer; the operation order follows the script's."""
    rows = tuple(sorted(answer))
    extra = sorted(k for k in prop_counts if k not in answer and k != _WRONG_DIR)
    columns = rows + tuple(extra)
    matrix = tuple(tuple(conf.get((c, r), 0) for c in columns) for r in rows)
    wrong_dir = tuple(conf.get((_WRONG_DIR, r), 0) if use_wrong_dir else 0 for r in rows)
    skipped = tuple(answer[r] - sum(m) - w for r, m, w in zip(rows, matrix, wrong_dir, strict=True))
    other_skipped = skipped[rows.index(_OTHER)] if _OTHER in rows else 0
    correct = sum(conf.get((r, r), 0) for r in rows)

    relations = []
    macro = [0.0, 0.0, 0.0]
    micro_correct = micro_proposed = micro_answer = 0
    for r, w in zip(rows, wrong_dir, strict=True):
        hit, n_prop, n_ans = conf.get((r, r), 0), prop_counts.get(r, 0), answer[r]
        p = 0 if n_prop == 0 else 100.0 * hit / (n_prop + w)
        rc = 0 if n_ans == 0 else 100.0 * hit / n_ans
        f1 = 0 if p + rc == 0 else 2 * p * rc / (p + rc)
        relations.append(RelationScore(r, hit, n_prop, w, n_ans, float(p), float(rc), float(f1)))
        if r != _OTHER:
            macro = [macro[0] + p, macro[1] + rc, macro[2] + f1]
            micro_correct += hit
            micro_proposed += n_prop + w
            micro_answer += n_ans
    micro_p = 0 if micro_proposed == 0 else 100.0 * micro_correct / micro_proposed
    micro_r = 0 if micro_answer == 0 else 100.0 * micro_correct / micro_answer
    micro_f1 = 0 if micro_p + micro_r == 0 else 2.0 * micro_p * micro_r / (micro_p + micro_r)
    n_labels = len(rows) - (_OTHER in rows)

    return SemEvalView(
        title=title,
        use_wrong_dir=use_wrong_dir,
        key_labels=rows,
        columns=columns,
        short_names=tuple(_short_name(c, answer) for c in columns),
        matrix=matrix,
        column_sums=tuple(prop_counts.get(c, 0) for c in columns),
        wrong_dir=wrong_dir,
        skipped=skipped,
        total_proposed=total_proposed,
        total_answer=total_answer,
        correct=correct,
        other_skipped=other_skipped,
        coverage=100.0 * total_proposed / total_answer,
        accuracy=100.0 * correct / total_proposed,
        accuracy_skipped_wrong=100.0 * correct / total_answer,
        accuracy_skipped_other=100.0 * (correct + other_skipped) / total_answer,
        relations=tuple(relations),
        micro=(
            micro_correct,
            micro_proposed,
            micro_answer,
            float(micro_p),
            float(micro_r),
            float(micro_f1),
        ),
        macro=tuple(float(m / n_labels) for m in macro),
    )


def format_report(result: SemEvalResult) -> str:
    """The scorer's printed report, character for character (LF line endings)."""
    out = [w + "\n\n" for w in result.warnings]
    for v in result.views:
        out.append(v.title + "\n\n")
        out.append(_format_view(v))
    out.append(
        "<<< The official score is (9+1)-way evaluation with directionality taken into "
        f"account: macro-averaged F1 = {result.official_score:0.2f}% >>>\n"
    )
    return "".join(out)


def _format_view(v: SemEvalView) -> str:
    """One view's block; the field widths are the script's printf formats."""
    dashes = "-----" * len(v.columns)
    out = ["Confusion matrix:\n", "       "]
    out += [f" {s:>4}" for s in v.short_names]
    out.append(" <-- classified as\n")
    tail = "+ -SUM- xDIRx skip  ACTUAL\n" if v.use_wrong_dir else "+ -SUM- skip ACTUAL\n"
    out.append("      +" + dashes + tail)
    for r, row, w, s in zip(v.key_labels, v.matrix, v.wrong_dir, v.skipped, strict=True):
        out.append(f" {_short_name(r, v.key_labels):>4} |")
        out += [f"{c:4d} " for c in row]
        n = sum(row)
        if v.use_wrong_dir:
            out.append(f"| {n:4d}  {w:4d}  {s:4d} {n + w + s:6d}\n")
        else:
            out.append(f"| {n:4d} {s:4d} {n + s:4d}\n")
    out.append("      +" + dashes + "+\n")
    out.append(" -SUM- ")
    out += [f"{c:4d} " for c in v.column_sums]
    n_wrong, n_skip = sum(v.wrong_dir), v.total_answer - v.total_proposed
    if v.use_wrong_dir:
        n_cells = v.total_proposed - n_wrong
        out.append(f"  {n_cells:4d}  {n_wrong:4d}  {n_skip:4d} {v.total_answer:6d}\n\n")
    else:
        out.append(f"  {v.total_proposed:4d} {n_skip:4d} {v.total_answer:4d}\n\n")
    n_prop, n_ans, n_hit = v.total_proposed, v.total_answer, v.correct
    out.append(f"Coverage = {n_prop}/{n_ans} = {v.coverage:5.2f}%\n")
    out.append(
        "Accuracy (calculated for the above confusion matrix) = "
        f"{n_hit}/{n_prop} = {v.accuracy:5.2f}%\n"
    )
    out.append(
        "Accuracy (considering all skipped examples as Wrong) = "
        f"{n_hit}/{n_ans} = {v.accuracy_skipped_wrong:5.2f}%\n"
    )
    out.append(
        "Accuracy (considering all skipped examples as Other) = "
        f"{n_hit + v.other_skipped}/{n_ans} = {v.accuracy_skipped_other:5.2f}%\n"
    )
    out.append("\nResults for the individual relations:\n")
    for s in v.relations:
        if v.use_wrong_dir:
            denominator = f"({s.proposed:4d} +{s.wrong_dir:4d})"
        else:
            denominator = f"{s.proposed + s.wrong_dir:4d}"
        out.append(
            f"{s.label:>25} :    P = {s.correct:4d}/{denominator} = {s.precision:6.2f}%"
            f"     R = {s.correct:4d}/{s.actual:4d} = {s.recall:6.2f}%     F1 = {s.f1:6.2f}%\n"
        )
    c, n_p, n_a, mp, mr, mf = v.micro
    out.append("\nMicro-averaged result (excluding Other):\n")
    out.append(
        f"P = {c:4d}/{n_p:4d} = {mp:6.2f}%     R = {c:4d}/{n_a:4d} = {mr:6.2f}%"
        f"     F1 = {mf:6.2f}%\n"
    )
    out.append("\nMACRO-averaged result (excluding Other):\n")
    p, r, f = v.macro
    out.append(f"P = {p:6.2f}%\tR = {r:6.2f}%\tF1 = {f:6.2f}%\n\n\n\n")
    return "".join(out)
