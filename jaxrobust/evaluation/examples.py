"""The examples a run scores: task and mixture names resolved, every task's examples
rendered (with their input in parts, `model_input`), and their fingerprints (which
every process checks it shares)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from jaxrobust.data.parts import InputParts
from jaxrobust.evaluation.options import EvalOptions
from jaxrobust.parallel import distributed
from jaxrobust.storage import records


def resolve_tasks(names: Iterable[str]) -> list[str]:
    """Expands mixtures into their tasks (order kept, duplicates dropped)."""
    import difflib

    import seqio

    from jaxrobust.tasks import registry

    out: list[str] = []
    for name in names:
        if name in registry.REGISTERED:
            found = [name]
        elif name in seqio.MixtureRegistry.names():
            found = [t.name for t in seqio.get_mixture_or_task(name).tasks]
        else:
            known = list(registry.REGISTERED) + list(seqio.MixtureRegistry.names())
            close = difflib.get_close_matches(name, known, n=5)
            raise KeyError(f"no task or mixture {name!r}; close names: {close}")
        missing = [t for t in found if t not in registry.REGISTERED]
        if missing:
            raise KeyError(f"{name!r}: tasks {missing[:5]} were not registered by jaxrobust.tasks")
        out += [t for t in found if t not in out]
    return out


def task_split(task: str, options: EvalOptions) -> str:
    """The split `task` is evaluated on: `options.split`, or when None its data set's
    standard evaluation split (`tasks.registry.split_for`, which names the task and
    its splits when the data set lacks the one asked for)."""
    from jaxrobust.tasks import registry

    return registry.split_for(task, options.split)


def task_examples(task: str, options: EvalOptions) -> list[dict]:
    """The task's examples of its split (`task_split`), rendered under its template
    (first `options.limit`, choices seeded by `options.render_seed`), each with its
    ``input_parts`` (`model_input`)."""
    from jaxrobust.tasks import registry

    spec, template = registry.REGISTERED[task]
    split = task_split(task, options)
    if options.shots:
        return with_demonstration(spec, template, split, options)
    return list(
        registry.examples(
            spec, template, split, limit=options.limit, seed=options.render_seed, parts=True
        )
    )


# Between the demonstration's input and its answer, and between it and the input.
DEMO_ANSWER_SEP, DEMO_SEP = "\n", "\n\n"


def demonstration_record(spec, split: str, render_seed: int) -> tuple[dict, str]:
    """(the record of a data set's one-shot demonstration, the split it is from).

    From the data set's ``train`` split when it has one (and that is not the split
    evaluated), else from `split` itself; the same record for every template of the
    data set, drawn with `random.Random` seeded by the seed and the data set's name.
    """
    import random

    source = "train" if "train" in spec.splits and split != "train" else split
    records = spec.read(source)
    if not records:
        raise ValueError(f"{spec.dataset}: split {source!r} has no example to demonstrate")
    index = random.Random(f"{render_seed}:{spec.dataset}:{source}").randrange(len(records))
    return records[index], source


def with_demonstration(spec, template, split: str, options: EvalOptions) -> list[dict]:
    """The task's examples, each input preceded by one demonstration rendered with the
    same template: ``<its input>\n<its answer>\n\n<the input>`` (the demonstration
    is protected text: only the example's own shortenable part is ever cut). A
    demonstration drawn from the evaluated split is left out of the scored examples."""
    from jaxrobust.tasks import registry

    record, source = demonstration_record(spec, split, options.render_seed)
    demo = registry.to_features(spec, template, record, seed=options.render_seed)
    if not demo["targets"]:
        raise ValueError(
            f"{registry.task_name(spec, template)}: the demonstration {demo['example_id']!r} "
            "renders no answer"
        )
    prefix = demo["inputs"] + DEMO_ANSWER_SEP + demo["targets"] + DEMO_SEP
    out = []
    rows = registry.examples(spec, template, split, seed=options.render_seed, parts=True)
    for ex in rows:
        if source == split and ex["example_id"] == demo["example_id"]:
            continue
        if options.limit is not None and len(out) == options.limit:
            break
        ex = {**ex, "inputs": prefix + ex["inputs"]}
        if ex.get("input_parts") is not None:
            parts = InputParts.from_dict(ex["input_parts"])
            segments = (prefix + parts.segments[0], *parts.segments[1:])
            ex["input_parts"] = InputParts(segments, parts.keep).as_dict()
        out.append(ex)
    return out


def model_input(example: dict) -> InputParts | str:
    """What the engine scores: the example's input in parts (only the shortenable
    part, a passage or a sentence, is shortened to fit), else its plain text."""
    parts = example.get("input_parts")
    if parts is None:
        return example["inputs"]
    out = InputParts.from_dict(parts)
    if out.text != example["inputs"]:
        raise ValueError(
            f"example {example.get('example_id')!r}: its input_parts do not join to its "
            f"inputs ({out.text[:80]!r} vs {example['inputs'][:80]!r})"
        )
    return out


def check_not_empty(examples: dict[str, list[dict]], splits: dict[str, str], options) -> None:
    """Refuses tasks without examples before anything is computed, naming them."""
    empty = [t for t, ex in examples.items() if not ex]
    if empty:
        raise ValueError(
            f"{len(empty)} task(s) have no examples: "
            + ", ".join(f"{t} (split {splits[t]!r})" for t in empty[:5])
            + ("" if options.limit is None else f"; LIMIT={options.limit}")
            + ": check the data directory, or leave these tasks out of MIXTURES"
        )


def data_fingerprint(examples: Sequence[dict]) -> str:
    """SHA-256 of the examples' text features (what the model sees and is scored on)."""
    h = hashlib.sha256()
    for ex in examples:
        h.update(
            records.line(
                {
                    k: ex[k]
                    for k in (
                        "example_id",
                        "inputs",
                        "options",
                        "option_labels",
                        "label",
                        "answer_index",
                    )
                }
            )
        )
    return h.hexdigest()


def check_same_data(fingerprints: dict[str, str]) -> None:
    """Every process must have read the same examples (same files, same versions)."""
    every = distributed.gather_json([fingerprints])
    for p, theirs in enumerate(every):
        differ = sorted(t for t in fingerprints if theirs.get(t) != every[0].get(t))
        if differ:
            raise ValueError(
                f"process {p} read other examples than process 0 for tasks {differ[:5]}: "
                "every host needs the same data directory contents"
            )
