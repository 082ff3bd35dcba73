"""A seeded generator of small worlds: people, places, organisations and their relations.

Every passage is its own little world: two people, two places and two
organisations with freshly drawn invented names, three or four facts between
them (``born_in``, ``lives_in``, ``works_for``, ``founded``, ``located_in``),
each stated by one of several sentence patterns, in random order. Nothing can
be memorised across passages, so a model has to read the passage.

Four tasks ask about the *same* passages; only the instruction says which
question is being asked (`TASKS`):

* ``rel``: which relation the passage states between a head and a tail entity
  (five relations or ``no_relation``);
* ``yn``: whether a claim about two entities is true (false claims swap the
  relation for a type-compatible one or the tail for another entity of the
  passage, so the passage must be read);
* ``mc``: which of four entities of the passage answers a question
  ("Where was X born?");
* ``type``: whether an entity is a person, a place or an organisation.

`records(task, split, seed)` is a pure function of its arguments (Python's
`random.Random` seeded with a string, stable across runs and platforms), and
the splits are disjoint draws of one seed.
"""

from __future__ import annotations

import dataclasses
import functools
import random

# Passages per split. Train is large enough that the study's instruction tuning (tasks
# interleaved) draws each record only a few times: on one task's 4,000 passages for 12
# epochs, the study's model scored 0.9 on its training batches and 0.6-0.7 on new
# passages. A split's first passages do not depend on its size (one seeded stream each).
SPLITS = {"train": 16000, "validation": 200, "test": 200}
CORPUS_PASSAGES = 4000  # Train passages `corpus` reads (the tokenizer's world text).
TASKS = ("rel", "yn", "mc", "type")
TYPES = ("person", "place", "organisation")

# Invented name parts (so no real-world knowledge helps or hurts).
_FIRST = (
    "Ada Bram Cora Dov Elin Faro Gita Hale Ines Jorn Kira Lamin Mira Nilo Oska Pell "
    "Quin Rhea Sami Tova Ulla Vero Wim Yara Zeno Alba Bodo Cleo Dara Emre"
).split()
_LAST = (
    "Arnell Brask Corvin Dalby Eskin Falk Garrow Holm Ivers Jessup Korda Lind Marsh "
    "Norrow Okafor Pelt Quill Rusk Sorel Tamm Ulvin Vance Wray Yelm Zorn"
).split()
_PLACE_STEM = (
    "Ash Bel Cal Dun Elm Fen Glen Har Kel Lor Mar Nor Ost Pen Rav Sel Tor Val Wen Yar"
).split()
_PLACE_END = "ford holm mere wick bury dale port haven stead ton".split()
_ORG_STEM = (
    "Apex Birch Cobalt Delta Ember Flint Granite Harbor Indigo Juniper Kestrel Lumen "
    "Meridian Nimbus Onyx Pinnacle Quartz Raven Summit Tidal"
).split()
_ORG_END = "Labs Group Works Bank Press Foods Motors Institute Systems Partners".split()


@dataclasses.dataclass(frozen=True)
class Relation:
    """One relation: its argument types, how passages state it, how questions ask it."""

    head: str  # Type of the head entity.
    tail: str  # Type of the tail entity.
    patterns: tuple[str, ...]  # Passage sentences stating it ({h}, {t}).
    claim: str  # A declarative claim, for yes/no questions.
    question: str  # A question whose answer is the tail, for multiple choice.


RELATIONS = {
    "born_in": Relation(
        "person",
        "place",
        ("{h} was born in {t}.", "{h} is a native of {t}."),
        "{h} was born in {t}",
        "Where was {h} born?",
    ),
    "lives_in": Relation(
        "person",
        "place",
        ("{h} lives in {t}.", "{h} has a home in {t}."),
        "{h} lives in {t}",
        "Where does {h} live?",
    ),
    "works_for": Relation(
        "person",
        "organisation",
        ("{h} works for {t}.", "{h} is employed by {t}."),
        "{h} works for {t}",
        "Which organisation does {h} work for?",
    ),
    "founded": Relation(
        "person",
        "organisation",
        ("{h} founded {t}.", "{h} is the founder of {t}."),
        "{h} founded {t}",
        "Which organisation did {h} found?",
    ),
    "located_in": Relation(
        "organisation",
        "place",
        ("{h} is based in {t}.", "{h} has its offices in {t}."),
        "{h} is located in {t}",
        "Where is {h} located?",
    ),
}
NO_RELATION = "no_relation"
RELATION_LABELS = (*RELATIONS, NO_RELATION)
# Type-compatible relations a false claim may swap in.
_CONFUSABLE = {
    "born_in": "lives_in",
    "lives_in": "born_in",
    "works_for": "founded",
    "founded": "works_for",
}
_FILLER = (
    "{p} is known for its old market.",
    "{o} was in the news last year.",
    "{p} gets a lot of rain.",
    "{o} recently hired new staff.",
)


@dataclasses.dataclass(frozen=True)
class Passage:
    """One generated world.

    Attributes:
      id: ``<split>-<index>``.
      text: the passage.
      entities: name -> type, for every entity the passage mentions.
      facts: (head, relation, tail) triples the passage states.
    """

    id: str
    text: str
    entities: dict[str, str]
    facts: tuple[tuple[str, str, str], ...]


def _names(rng: random.Random) -> dict[str, list[str]]:
    def two(first, second, sep):
        return [
            f"{a}{sep}{b}" for a, b in zip(rng.sample(first, 2), rng.sample(second, 2), strict=True)
        ]

    return {
        "person": two(_FIRST, _LAST, " "),
        "place": two(_PLACE_STEM, _PLACE_END, ""),
        "organisation": two(_ORG_STEM, _ORG_END, " "),
    }


def names(rng: random.Random) -> dict[str, list[str]]:
    """Two fresh invented names per type (person, place, organisation), drawn from `rng`."""
    return _names(rng)


def draw_facts(rng: random.Random, names: dict[str, list[str]]) -> list[tuple[str, str, str]]:
    """Two or three (head, relation, tail) facts among `names`, each answer unique."""
    candidates = [
        (h, rel, t)
        for rel, spec in RELATIONS.items()
        for h in names[spec.head]
        for t in names[spec.tail]
    ]
    rng.shuffle(candidates)
    facts, used = [], set()
    n_facts = rng.choice((2, 3))
    for h, rel, t in candidates:
        # One fact per (head, relation) and per entity pair keeps every answer unique.
        if (h, rel) in used or (h, t) in used or (t, h) in used:
            continue
        if rel == "founded" and any(f[1] == "founded" and f[2] == t for f in facts):
            continue
        facts.append((h, rel, t))
        used |= {(h, rel), (h, t)}
        if len(facts) == n_facts:
            break
    return facts


def _passage(rng: random.Random, pid: str) -> Passage:
    names = _names(rng)
    facts = draw_facts(rng, names)
    sentences = [rng.choice(RELATIONS[rel].patterns).format(h=h, t=t) for h, rel, t in facts]
    if rng.random() < 0.3:
        filler = rng.choice(_FILLER)
        sentences.append(
            filler.format(p=rng.choice(names["place"]), o=rng.choice(names["organisation"]))
        )
    rng.shuffle(sentences)
    mentioned = {name for s in sentences for kind in names.values() for name in kind if name in s}
    entities = {n: kind for kind, ns in names.items() for n in ns if n in mentioned}
    return Passage(pid, " ".join(sentences), entities, tuple(facts))


@functools.lru_cache(maxsize=32)
def passages(split: str, seed: int = 0) -> tuple[Passage, ...]:
    """The passages of one split (cached; a pure function of its arguments)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {list(SPLITS)}")
    rng = random.Random(f"jaxrobust-world:{seed}:{split}")
    return tuple(_passage(rng, f"{split}-{i}") for i in range(SPLITS[split]))


def _relation_between(p: Passage, h: str, t: str) -> str:
    for fh, rel, ft in p.facts:
        if (fh, ft) == (h, t):
            return rel
    return NO_RELATION


def _rel(p: Passage, rng: random.Random) -> dict:
    if rng.random() < 0.2:
        pairs = [
            (h, t)
            for h, ht in p.entities.items()
            for t, tt in p.entities.items()
            if h != t
            and any(r.head == ht and r.tail == tt for r in RELATIONS.values())
            and _relation_between(p, h, t) == NO_RELATION
            and _relation_between(p, t, h) == NO_RELATION
        ]
        if pairs:
            h, t = rng.choice(pairs)
            return {"head": h, "tail": t, "relation": NO_RELATION}
    h, rel, t = rng.choice(p.facts)
    return {"head": h, "tail": t, "relation": rel}


def _yn(p: Passage, rng: random.Random) -> dict:
    h, rel, t = rng.choice(p.facts)
    answer = rng.random() < 0.5
    if not answer:
        # Both falsifications contradict the passage rather than add to it: one
        # fact per entity pair rules out (h, swapped, t), one per (head, relation)
        # rules out (h, rel, other).
        falsified = [
            (h, rel, o)
            for o, kind in p.entities.items()
            if kind == RELATIONS[rel].tail and o not in (h, t)
        ]
        if rel in _CONFUSABLE:
            falsified += [(h, _CONFUSABLE[rel], t)] * max(1, len(falsified))
        if falsified:
            h, rel, t = rng.choice(falsified)
        answer = (h, rel, t) in p.facts
    claim = RELATIONS[rel].claim.format(h=h, t=t)
    return {"head": h, "tail": t, "relation": rel, "claim": claim, "answer": answer}


def _mc(p: Passage, rng: random.Random) -> dict:
    h, rel, t = rng.choice(p.facts)
    pool = sorted(e for e in p.entities if e not in (h, t))
    # Same-type distractors first: a type alone must not give the answer away.
    same = [e for e in pool if p.entities[e] == p.entities[t]]
    rest = [e for e in pool if e not in same]
    rng.shuffle(same)
    rng.shuffle(rest)
    choices = ([t] + same + rest)[:4]
    while len(choices) < 4:  # Few entities mentioned: invent extra ones of the tail's type.
        extra = rng.choice(_names(rng)[p.entities[t]])
        if extra not in choices and extra != h:
            choices.append(extra)
    rng.shuffle(choices)
    question = RELATIONS[rel].question.format(h=h)
    return {"head": h, "relation": rel, "question": question, "choices": choices,
            "answer_index": choices.index(t)}  # fmt: skip


def _type(p: Passage, rng: random.Random) -> dict:
    entity = rng.choice(sorted(p.entities))
    return {"entity": entity, "entity_type": p.entities[entity]}


_MAKERS = {"rel": _rel, "yn": _yn, "mc": _mc, "type": _type}


@functools.lru_cache(maxsize=64)
def _records(task: str, split: str, seed: int) -> tuple[dict, ...]:
    if task not in _MAKERS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    out = []
    for p in passages(split, seed):
        rng = random.Random(f"jaxrobust-world:{seed}:{task}:{p.id}")
        out.append({"id": f"{task}-{p.id}", "passage": p.text, **_MAKERS[task](p, rng)})
    return tuple(out)


def records(task: str, split: str, seed: int = 0) -> list[dict]:
    """One task's records of a split, one per passage: ``id``, ``passage`` and the task's fields.

    Fields: ``rel``: head, tail, relation; ``yn``: head, tail, relation, claim,
    answer (bool); ``mc``: head, relation, question, choices (4 names),
    answer_index; ``type``: entity, entity_type.
    """
    return [dict(r) for r in _records(task, split, seed)]


def corpus(seed: int = 0) -> list[str]:
    """The world's text a tokenizer is trained on: passages and task fields of the first
    `CORPUS_PASSAGES` train passages."""
    out = []
    for task in TASKS:
        for r in _records(task, "train", seed)[:CORPUS_PASSAGES]:
            out.append(r["passage"])
            out += [r[k] for k in ("claim", "question") if k in r]
            out += r.get("choices", [])
    return out
