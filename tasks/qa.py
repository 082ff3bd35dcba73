"""Question-answering tasks: BoolQ, MMLU (per subject and mixed), BIG-bench Lite.

All are in the ``qa`` format: the options are whatever the template's answer
choices render (letters, numbers, "no"/"yes", or the answer texts), and
``option_labels`` / ``label`` / ``label_space`` are the data set's labels:

* BoolQ: ``no`` / ``yes`` (index 0 is a false answer, as HF's ``label``);
* MMLU: the letters ``A``-``D``;
* BIG-bench: the example's own choice texts (``target_scores`` keys).

Flan 2022's observed sets by task category (`jaxrobust.data.flan`: its
multiple-choice QA templates for MMLU and BIG-bench Lite, its yes/no and NLI
templates for BoolQ) are `flan_observed(family)`; `add_flan_observed()` adds
them to the registered mixtures, only when called.
"""

from __future__ import annotations

import dataclasses
import functools
import pathlib
import string

from jaxrobust.tasks import extending, registry

from jaxrobust.data import datasets, flan, instructioneval, misapplied
from jaxrobust.data import promptsource_observed as p3
from jaxrobust.data import templates as tmpl

BANKS = pathlib.Path(__file__).parent / "banks"
LETTERS = string.ascii_uppercase

# ---------------------------------------------------------------- BoolQ

BOOLQ_LABELS = ("no", "yes")


def boolq_to_hf(record: dict) -> dict:
    """A BoolQ record in HF ``super_glue/boolq``'s schema (``label`` 0/1, not a bool)."""
    return {
        "question": record["question"],
        "passage": record["passage"],
        "idx": int(record["id"].rsplit("-", 1)[1]),
        "label": int(record["answer"]),
    }


def _boolq_prepare(record: dict) -> registry.Prepared:
    variables = {k: record[k] for k in ("question", "passage", "answer")}
    variables["answer_index"] = int(record["answer"])
    label = BOOLQ_LABELS[int(record["answer"])]
    return registry.Prepared(variables, list(BOOLQ_LABELS), label, BOOLQ_LABELS, record["id"])


BOOLQ_SAMPLE = {  # hand-written, in the reader's schema
    "id": "boolq-0",
    "question": "is a tomato a fruit",
    "passage": "Botanically, a tomato is a fruit: it develops from the ovary of a flower "
    "and contains seeds. Cooks nevertheless treat it as a vegetable.",
    "answer": True,
}

BOOLQ = registry.TaskSpec(
    dataset="boolq",
    format="qa",
    splits=("validation",),
    eval_split="validation",
    read=datasets.read_boolq,
    prepare=_boolq_prepare,
    sample=BOOLQ_SAMPLE,
    family="boolq",
    adapters={"hf:super_glue/boolq": boolq_to_hf},
    shortening=registry.Shortening(("passage",)),  # question and options stay whole
)

# ---------------------------------------------------------------- MMLU

# The 57 subjects of MMLU's test split (Hendrycks et al. 2021).
MMLU_SUBJECTS = (
    "abstract_algebra anatomy astronomy business_ethics clinical_knowledge college_biology "
    "college_chemistry college_computer_science college_mathematics college_medicine "
    "college_physics computer_security conceptual_physics econometrics electrical_engineering "
    "elementary_mathematics formal_logic global_facts high_school_biology "
    "high_school_chemistry high_school_computer_science high_school_european_history "
    "high_school_geography high_school_government_and_politics high_school_macroeconomics "
    "high_school_mathematics high_school_microeconomics high_school_physics "
    "high_school_psychology high_school_statistics high_school_us_history "
    "high_school_world_history human_aging human_sexuality international_law jurisprudence "
    "logical_fallacies machine_learning management marketing medical_genetics miscellaneous "
    "moral_disputes moral_scenarios nutrition philosophy prehistory professional_accounting "
    "professional_law professional_medicine professional_psychology public_relations "
    "security_studies sociology us_foreign_policy virology world_religions"
).split()
MMLU_LABELS = ("A", "B", "C", "D")
# The 57 subjects pooled into one data set (`extending.add_pool`), as in Sun et al.
MMLU_POOL = f"{registry.PREFIX}:mmlu:qa"


def _mmlu_prepare(record: dict) -> registry.Prepared:
    variables = {
        "subject": record["subject"],
        "subject_name": record["subject"].replace("_", " "),
        "question": record["question"],
        "choices": list(record["choices"]),
        "letters": list(MMLU_LABELS),
        "answer_index": MMLU_LABELS.index(record["answer"]),
    }
    repeated = len(set(record["choices"])) < len(record["choices"])  # 9 questions do
    return registry.Prepared(
        variables, list(MMLU_LABELS), record["answer"], MMLU_LABELS, record["id"], repeated
    )


def p3_adapters(prepare, question: str, choices: str) -> dict:
    """Schema adapters for P3's multiple-choice prompts (`promptsource_observed`): each
    P3 data set's record built from the prepared variables `question` and `choices`
    and the gold index."""

    def adapter(dataset):
        def to_record(record: dict) -> dict:
            variables = prepare(record).variables
            return p3.record(
                dataset, variables[question], variables[choices], variables["answer_index"]
            )

        return to_record

    return {f"hf:{d}": adapter(d) for d in p3.ADAPTERS}


def mmlu_spec(subject: str) -> registry.TaskSpec:
    return registry.TaskSpec(
        dataset=f"mmlu_{subject}",
        format="qa",
        splits=("test",),
        eval_split="test",
        read=functools.partial(_read_mmlu, subject),
        prepare=_mmlu_prepare,
        sample={
            "id": f"mmlu-{subject}-sample",
            "subject": subject,
            "question": "Which of these numbers is prime?",
            "choices": ["4", "6", "7", "9"],
            "answer": "C",
        },
        family="mmlu",
        adapters=p3_adapters(_mmlu_prepare, "question", "choices"),
    )


def _read_mmlu(subject: str, split: str) -> list[dict]:
    return datasets.read_mmlu(subject, split)


# ---------------------------------------------------------------- BIG-bench Lite

# The multiple-choice / binary BIG-bench Lite tasks of the zero-shot robustness study.
BIGBENCH_TASKS = (
    "bbq_lite_json",
    "code_line_description",
    "conceptual_combinations",
    "hindu_knowledge",
    "known_unknowns",
    "language_identification",
    "logic_grid_puzzle",
    "logical_deduction",
    "novel_concepts",
    "play_dialog_same_or_different",
    "strange_stories",
    "strategyqa",
    "vitaminc_fact_verification",
    "winowhy",
)
_BB_KEYS = (
    "input",
    "choices",
    "answer_index",
    "task",
    "subtask",
    "task_prefix",
    "example_input_prefix",
    "example_output_prefix",
    "choice_prefix",
    "append_choices_to_input",
)


def _bigbench_prepare(record: dict) -> registry.Prepared:
    variables = {k: record[k] for k in _BB_KEYS}
    variables["letters"] = list(LETTERS[: len(record["choices"])])
    label = record["choices"][record["answer_index"]]
    return registry.Prepared(
        variables, list(record["choices"]), label, record["choices"], record["id"]
    )


def bigbench_spec(task: str) -> registry.TaskSpec:
    return registry.TaskSpec(
        dataset=f"bbl_{task}",
        format="qa",
        splits=("test",),  # task.json holds one pool of examples
        eval_split="test",
        read=functools.partial(_read_bigbench, task),
        prepare=_bigbench_prepare,
        sample={
            "id": f"{task}-sample",
            "task": task,
            "subtask": "",
            "input": "Is the sky green on a clear day?",
            "choices": ["Yes", "No"],
            "answer_index": 1,
            "task_prefix": "",
            "example_input_prefix": "\nQ: ",
            "example_output_prefix": "\nA: ",
            "choice_prefix": "\n  choice: ",
            "append_choices_to_input": True,
        },
        family="bigbench",
        adapters=p3_adapters(_bigbench_prepare, "input", "choices"),
    )


def _read_bigbench(task: str, split: str) -> list[dict]:
    del split  # task.json has one pool of examples; it is our 'test' split
    return datasets.read_bigbench(task)


# ---------------------------------------------------------------- registration


@functools.cache
def bank(family: str) -> tmpl.Bank:
    return tmpl.load_bank(BANKS / f"{family}.yaml")


def observed_boolq() -> tuple[list[tmpl.Template], list[str]]:
    """BoolQ's PromptSource (P3) and Flan templates, read from the data directory.

    Returns:
      The templates found, and the paths of the collection files not found.
    """
    out = []
    root = datasets.data_dir()
    ps = root / "promptsource" / "super_glue" / "boolq" / "templates.yaml"
    flan = root / "flan" / "flan_held_in.yaml"
    missing = [str(path) for path in (ps, flan) if not path.is_file()]
    if ps.is_file():
        out += tmpl.load_promptsource(
            ps, source="PromptSource @ 7dab96a3, templates/super_glue/boolq/templates.yaml"
        )
    if flan.is_file():
        flan_bank = tmpl.load_lm_eval(
            flan,
            task_prefix="boolq_",
            schema="hf:super_glue/boolq",
            provenance="observed:flan:bool_q",
            source="FLAN BoolQ templates via lm-evaluation-harness @ 4e7e0d47, "
            "lm_eval/tasks/benchmarks/flan/flan_held_in.yaml",
        )
        # Ids 'prompt-N' are unique only within the group; make them say so.
        out += [_renamed(t, f"flan_boolq_{t.id.replace('-', '')}") for t in flan_bank]
    return out, missing


def _renamed(template: tmpl.Template, new_id: str) -> tmpl.Template:
    return dataclasses.replace(template, id=new_id)


# ---------------------------------------------------------------- Flan 2022 observed sets

# How each benchmark's variables fill the roles of Flan's fields
# (`jaxrobust.data.flan`): family -> (category, binding).
FLAN_BINDINGS = {
    "mmlu": ("multiple_choice", flan.Binding(roles={"question": "question"}, choices="choices")),
    "bigbench": ("multiple_choice", flan.Binding(roles={"question": "input"}, choices="choices")),
    "boolq": (
        "yes_no",
        flan.Binding(roles={"question": "question", "passage": "passage"}, labels=BOOLQ_LABELS),
    ),
}


def flan_observed(family: str, *, style: str = "dash", path=None) -> flan.Loaded:
    """Flan 2022's observed set for a family (``mmlu``, ``bigbench``, ``boolq``).

    The templates of the family's category (multiple-choice QA for MMLU and
    BIG-bench Lite, yes/no and NLI for BoolQ) over the family's variables;
    `flan.Loaded.skipped` says which patterns were left out and why.
    """
    category, binding = FLAN_BINDINGS[family]
    return flan.category_templates(category, binding, style=style, path=path)


def add_flan_observed(*, style: str = "dash", path=None) -> list[str]:
    """Adds Flan 2022's observed sets to MMLU (every subject and the pool), BIG-bench Lite, BoolQ.

    Not done at import: the registered mixtures stay as they are unless this is
    called (after ``import jaxrobust.tasks``, e.g. from a module in
    ``TASK_MODULES``). The templates join each data set's ``#all`` and
    ``#observed_flan`` mixtures (``jr:mmlu:qa#observed_flan``, ...).

    Args:
      style: ``dash`` or ``letters`` (`jaxrobust.data.flan`).
      path: the Flan template file (default: ``<data dir>/flan/v2/templates.py``).

    Returns:
      The new task names.
    """
    mmlu = flan_observed("mmlu", style=style, path=path).templates
    names = extending.add_templates(MMLU_POOL, mmlu)
    bigbench = flan_observed("bigbench", style=style, path=path).templates
    for task in BIGBENCH_TASKS:
        names += extending.add_templates(registry.base_name(bigbench_spec(task)), bigbench)
    boolq = flan_observed("boolq", style=style, path=path).templates
    return names + extending.add_templates(registry.base_name(BOOLQ), boolq)


# ---------------------------------------------------------------- P3 observed sets (T0, T0++)

# The option counts of the 14 BIG-bench Lite tasks' examples (tests/test_observed.py
# reads them from the data); a P3 prompt joins their set only if it renders each.
BIGBENCH_OPTION_COUNTS = (2, 3, 4, 5, 6, 7, 10, 11)
# RE as multiple-choice QA: letters A-Z bound the candidates (FewRel 5-way, SemEval
# 19, TACRED's type-constrained subsets).
MCQA_OPTION_COUNTS = tuple(range(2, 27))
# family -> (question variable, options variable, option counts).
P3_BINDINGS = {
    "mmlu": ("question", "choices", (4,)),
    "bigbench": ("input", "choices", BIGBENCH_OPTION_COUNTS),
    "re_mcqa": ("sentence", "options", MCQA_OPTION_COUNTS),
}


def p3_observed(family: str, *, root=None) -> p3.Loaded:
    """P3's multiple-choice observed set for a family (``mmlu``, ``bigbench``,
    ``re_mcqa``): the prompts of the T0 mixtures' multiple-choice QA data sets that
    render the family's examples; `p3.Loaded.skipped` says which were left out, why."""
    _, _, counts = P3_BINDINGS[family]
    return p3.multiple_choice(option_counts=counts, root=root)


def add_p3_observed(*, root=None) -> list[str]:
    """Adds P3's multiple-choice observed sets to MMLU (every subject and the pool), the
    BIG-bench Lite tasks and relation extraction as multiple-choice QA (SemEval,
    FewRel, the TACRED family: Ni et al.'s "seen kind of task").

    Not done at import (call it from a ``TASK_MODULES`` module); the prompts join
    each data set's ``#all`` and ``#observed_p3`` mixtures. Which of them a model
    saw is the report's business (`jaxrobust.data.tuning`: T0 the CommonsenseQA
    and Cosmos QA prompts, T0+ and T0++ also ARC's, OpenBookQA's and HellaSwag's).

    Returns:
      The new task names.
    """
    names = extending.add_templates(MMLU_POOL, p3_observed("mmlu", root=root).templates)
    bigbench = p3_observed("bigbench", root=root).templates
    for task in BIGBENCH_TASKS:
        names += extending.add_templates(registry.base_name(bigbench_spec(task)), bigbench)
    mcqa = p3_observed("re_mcqa", root=root).templates
    question, choices, _ = P3_BINDINGS["re_mcqa"]
    for base, spec in sorted(registry.SPECS.items()):
        if spec.format == "mcqa" and spec.family == "re_mcqa":
            adapters = {**spec.adapters, **p3_adapters(spec.prepare, question, choices)}
            registry.SPECS[base] = dataclasses.replace(spec, adapters=adapters)
            names += extending.add_templates(base, mcqa)
    return names


# ---------------------------------------------------------------- observed but incorrect


def add_flan_incorrect(*, style: str = "dash", path=None) -> list[str]:
    """Adds Flan's instructions of other tasks (`misapplied.SOURCES`: sentiment, topic,
    acceptability) to MMLU (every subject and the pool) and the BIG-bench Lite tasks, in
    their ``#all`` and ``#incorrect_flan`` mixtures (Sun et al.'s observed but incorrect
    instructions; the report shows them apart). An explicit call; returns the task names.
    """
    mmlu = misapplied.flan_incorrect("question", "choices", path=path, style=style)
    names = extending.add_templates(MMLU_POOL, mmlu.templates)
    bigbench = misapplied.flan_incorrect("input", "choices", path=path, style=style)
    for task in BIGBENCH_TASKS:
        names += extending.add_templates(
            registry.base_name(bigbench_spec(task)), bigbench.templates
        )
    return names


# ---------------------------------------------------------------- InstructionEval


def instructioneval_templates(checkout) -> tuple[dict[str, list[tmpl.Template]], list]:
    """Sun et al.'s unobserved instructions (`jaxrobust.data.instructioneval`) as
    templates per data-set base (``jr:mmlu:qa``, ``jr:bbl_winowhy:qa``), and what
    was left out: (benchmark, id, reason) for ids the loader skipped and for
    instructions that show options A-D on a BIG-bench Lite task (their code assumes
    four options; the project's BIG-bench tasks take any count)."""
    loaded = instructioneval.load(checkout)
    skipped = [(s.benchmark, s.id, s.reason) for s in loaded.skipped]
    out: dict[str, list[tmpl.Template]] = {}
    for ins in loaded.instructions:
        (dataset,) = instructioneval.BENCHMARKS[ins.benchmark][1]
        if dataset == "mmlu":
            base, question = MMLU_POOL, "question"
        elif ins.letters:
            skipped.append((ins.benchmark, ins.id, "options A-D on a task of any option count"))
            continue
        else:
            base, question = f"{registry.PREFIX}:{dataset}:qa", "input"
        try:
            template = instructioneval.to_template(ins, question=question, choices="choices")
        except instructioneval.InstructionEvalError as e:
            skipped.append((ins.benchmark, ins.id, str(e)))
            continue
        out.setdefault(base, []).append(template)
    return out, skipped


def add_instructioneval(checkout) -> list[str]:
    """Adds Sun et al.'s unobserved instructions from an InstructionEval checkout to
    MMLU (every subject and the pool) and the BIG-bench Lite tasks, in their ``#all``
    and ``#unobserved`` mixtures; an explicit call, e.g. from a ``TASK_MODULES``
    module. Returns the new task names."""
    by_base, _ = instructioneval_templates(checkout)
    return [n for base, ts in sorted(by_base.items()) for n in extending.add_templates(base, ts)]


def register_all() -> list[str]:
    """Registers BoolQ, every MMLU subject and the BIG-bench Lite tasks, and mixtures."""
    observed, missing = observed_boolq()
    names = registry.register_with_mixtures(BOOLQ, list(bank("boolq")) + observed, missing=missing)
    subjects = [mmlu_spec(subject) for subject in MMLU_SUBJECTS]
    by_subject = [registry.register_with_mixtures(spec, bank("mmlu")) for spec in subjects]
    names += [name for row in zip(*by_subject, strict=True) for name in row]
    extending.add_pool(MMLU_POOL, [registry.base_name(spec) for spec in subjects])
    for task in BIGBENCH_TASKS:
        names += registry.register_with_mixtures(bigbench_spec(task), bank("bigbench"))
    return names
