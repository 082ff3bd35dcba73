"""The built-in study's tasks: four questions over generated worlds, as SeqIO tasks.

The data comes from `jaxrobust.tasks.world` (generated, seeded, nothing to
download); the templates from ``tasks/banks/builtin_{rel,yn,mc,type}.yaml``.
Tasks and mixtures follow the package's naming grammar::

    jr:world_rel:re:rel_o1         relation classification, template rel_o1
    jr:world_yn:qa#observed_study  yes/no questions, the observed templates
    jr:world_mc:qa#heldout         multiple choice, the held-out templates
    jr:world#paraphrase            every task's paraphrase templates

Each template has one of four roles, written in its id (``<task>_o1``,
``_p1``, ``_h1``, ``_d1``) and listed by `ROLES`:

* ``observed`` (provenance ``observed:study``): the study instruction-tunes
  its T5 on these, and soft prompts are trained on them;
* ``paraphrase`` (``unobserved``): the paraphrases soft-prompt alignment (the
  KL term) may train on;
* ``heldout`` (``unobserved``): never used in any training; the study's
  robustness numbers after alignment are measured on these;
* ``dev`` (``unobserved``, ids ``<task>_d1``): never used in any training and
  never reported as held out; scored on validation passages, they are what
  the study's settings were chosen on (README, "The built-in study").

Splits ``train``, ``validation`` and ``test`` (`world.SPLITS` passages each),
generated from `SEED`.
"""

from __future__ import annotations

import dataclasses
import pathlib

from jaxrobust.tasks import registry, world

from jaxrobust.data import templates as tmpl

BANKS = pathlib.Path(__file__).parent / "banks"
SEED = 0
# task -> (dataset, format); the format picks the metric (re: micro-F1, qa: accuracy).
TASKS = {
    "rel": ("world_rel", "re"),
    "yn": ("world_yn", "qa"),
    "mc": ("world_mc", "qa"),
    "type": ("world_type", "qa"),
}
ROLES = {"o": "observed", "p": "paraphrase", "h": "heldout", "d": "dev"}
MIXTURE = f"{registry.PREFIX}:world"


def role(template_id: str) -> str:
    """``observed``, ``paraphrase``, ``heldout`` or ``dev``, from an id like ``rel_h2``."""
    code = template_id.rsplit("_", 1)[-1][:1]
    if code not in ROLES:
        raise ValueError(
            f"template id {template_id!r} does not end in _o<N>, _p<N>, _h<N> or _d<N> "
            "(observed, paraphrase, held out, dev)"
        )
    return ROLES[code]


def _prepare(task: str):
    def rel(r: dict) -> registry.Prepared:
        labels = list(world.RELATION_LABELS)
        variables = {**r, "answer_index": labels.index(r["relation"])}
        return registry.Prepared(variables, labels, r["relation"], labels, r["id"])

    def yn(r: dict) -> registry.Prepared:
        label = ["no", "yes"][int(r["answer"])]
        variables = {**r, "answer_index": int(r["answer"])}
        return registry.Prepared(variables, ["no", "yes"], label, ["no", "yes"], r["id"])

    def mc(r: dict) -> registry.Prepared:
        choices = list(r["choices"])
        return registry.Prepared(dict(r), choices, choices[r["answer_index"]], choices, r["id"])

    def typ(r: dict) -> registry.Prepared:
        labels = list(world.TYPES)
        variables = {**r, "answer_index": labels.index(r["entity_type"])}
        return registry.Prepared(variables, labels, r["entity_type"], labels, r["id"])

    return {"rel": rel, "yn": yn, "mc": mc, "type": typ}[task]


def spec(task: str, seed: int = SEED) -> registry.TaskSpec:
    """The `TaskSpec` of one world task."""
    dataset, fmt = TASKS[task]
    return registry.TaskSpec(
        dataset=dataset,
        format=fmt,
        splits=tuple(world.SPLITS),
        read=lambda split: world.records(task, split, seed),
        prepare=_prepare(task),
        sample=world.records(task, "validation", seed)[0],
        negative_label=world.NO_RELATION if task == "rel" else "",
        family=f"builtin_{task}",
        shortening=registry.Shortening(("passage",)),
    )


def bank(task: str) -> tmpl.Bank:
    """The task's template bank; every id must carry a role."""
    b = tmpl.load_bank(BANKS / f"builtin_{task}.yaml")
    for t in b:
        try:
            r = role(t.id)
        except ValueError as e:
            t.error(str(e))
        if (r == "observed") != (t.provenance == "observed:study"):
            t.error(f"role {r!r} but provenance {t.provenance!r}")
    return b


def task_names(role_name: str, tasks: tuple[str, ...] = tuple(TASKS)) -> list[str]:
    """The registered task names of one role, in bank order."""
    out = []
    for task in tasks:
        s = spec(task)
        out += [registry.task_name(s, t) for t in bank(task) if role(t.id) == role_name]
    return out


# ---------------------------------------------------------------- all tasks at once
#
# Instruction tuning trains on every task at once, and `jaxrobust.training`
# takes one task: `jr:world_all:qa` is that training view. Its records are the
# four tasks' records interleaved (rel 0, yn 0, mc 0, type 0, rel 1, ...), so
# any prefix is balanced; its template ``all_<slot>`` renders, for a record of
# task t, template ``<t>_<slot>`` of t's bank (same role, same slot), so the
# roles carry over: ``all_o*`` observed, ``all_p*`` paraphrases, ``all_h*``
# held out. Evaluation uses the per-task tasks.

ALL_DATASET = "world_all"


def _all_records(split: str, seed: int) -> list[dict]:
    per_task = [[{**r, "task": t} for r in world.records(t, split, seed)] for t in TASKS]
    return [r for group in zip(*per_task, strict=True) for r in group]


def _all_prepare(record: dict) -> registry.Prepared:
    prepared = _prepare(record["task"])(record)
    return dataclasses.replace(prepared, variables={**prepared.variables, "task": record["task"]})


def _dispatch(sources: dict[str, str | None]) -> str | None:
    """Jinja that renders `sources[task]` for the record's task."""
    if all(v is None for v in sources.values()):
        return None
    parts = [
        f"{{% {'if' if i == 0 else 'elif'} task == '{task}' %}}{source}"
        for i, (task, source) in enumerate(sources.items())
    ]
    return "".join(parts) + "{% endif %}"


def all_bank() -> list[tmpl.Template]:
    """The ``all_<slot>`` templates of `jr:world_all:qa` (see above)."""
    banks = {task: {t.id.split("_", 1)[1]: t for t in bank(task)} for task in TASKS}
    slots = list(banks["rel"])
    for task, by_slot in banks.items():
        if list(by_slot) != slots:
            raise ValueError(f"builtin_{task}.yaml has slots {list(by_slot)}, rel has {slots}")
    out = []
    for slot in slots:
        members = {task: banks[task][slot] for task in TASKS}
        out.append(
            tmpl.Template(
                id=f"all_{slot}",
                jinja=_dispatch({t: m.jinja for t, m in members.items()}),
                answer_choices=_dispatch({t: m.answer_choices for t, m in members.items()}),
                provenance=members["rel"].provenance,
                source=f"tasks/builtin.py: templates {', '.join(m.id for m in members.values())}",
                author="jaxrobust",
                name=f"all_{slot}",
                bank=str(BANKS / "builtin_*.yaml"),
                strip_parts=False,
            )
        )
    return out


def all_spec(seed: int = SEED) -> registry.TaskSpec:
    """`jr:world_all:qa`: the four tasks' records interleaved (training view)."""
    return registry.TaskSpec(
        dataset=ALL_DATASET,
        format="qa",
        splits=tuple(world.SPLITS),
        read=lambda split: _all_records(split, seed),
        prepare=_all_prepare,
        sample=_all_records("validation", seed)[0],
        family="builtin_all",
        shortening=registry.Shortening(("passage",)),
    )


def register_all(seed: int = SEED) -> list[str]:
    """Registers every world task and template, with per-role mixtures."""
    names, by_role = [], {r: [] for r in ROLES.values()}
    for task in TASKS:
        s = spec(task, seed)
        b = bank(task)
        task_names_ = registry.register_with_mixtures(s, b, seed=seed)
        names += task_names_
        base = f"{registry.PREFIX}:{s.dataset}:{s.format}"
        for r in ROLES.values():
            members = [n for n, t in zip(task_names_, b, strict=True) if role(t.id) == r]
            registry.add_mixture(f"{base}#{r}", members)
            by_role[r] += members
    for r, members in by_role.items():
        registry.add_mixture(f"{MIXTURE}#{r}", members)
    registry.add_mixture(f"{MIXTURE}#all", names)
    names += registry.register_with_mixtures(all_spec(seed), all_bank(), seed=seed)
    return names
