"""The built-in study's pretraining corpus: generated text about the world, in many wordings.

The real instruction-tuned models were pretrained on web text before they saw
an instruction, so a held-out instruction's words meant something to them. The
study's model gets the same chance: before instruction tuning it is pretrained
by span corruption (`training.pretrain`) on this corpus, which is built from
word lists and sentence patterns of its own:

* facts about fresh invented entities (`tasks.world`'s names), each stated in
  one of several equivalent wordings used interchangeably ("X was born in Y",
  "the birthplace of X is Y", "Y is where X was born");
* what the entities are, in each type's synonyms (person / human /
  individual, place / location / town, organisation / company / institution);
* statements checked against the facts, answered in every answer word pair
  (yes / no, true / false, right / wrong, correct / accurate);
* lists of names with letters (A-D) and numbers (1-4), and which one fits;
* short exchanges that use the instruction vocabulary (question, answer,
  passage, text, context, claim, hypothesis, category, relation, ...) the way
  people talk, never in the templates' sentences.

Every word of every template of the study's banks (all roles) and every answer
word occurs in it (`template_words`, checked by tests/test_study_corpus.py),
while no 4-token sequence of a held-out template does (`ngrams`, same test):
the model can know what "institution" means without having seen an
instruction that asks for it.

`documents(n, seed)` is a pure function of its arguments (`random.Random`
seeded with a string).
"""

from __future__ import annotations

import functools
import random
import re

from jaxrobust.tasks import world

TOKEN_RE = re.compile(r"\w+|[^\w\s]")
# Equivalent wordings of each relation ({h} head, {t} tail), used interchangeably.
FACTS = {
    "born_in": (
        "{h} was born in {t}.",
        "{h} is a native of {t}.",
        "The birthplace of {h} is {t}.",
        "{t} is the birthplace of {h}.",
        "{t} is where {h} was born.",
    ),
    "lives_in": (
        "{h} lives in {t}.",
        "{h} has a home in {t}.",
        "The residence of {h} is in {t}.",
        "{h} has a residence in {t}.",
        "{t} is where {h} lives now.",
    ),
    "works_for": (
        "{h} works for {t}.",
        "{h} is employed by {t}.",
        "The employer of {h} is {t}.",
        "{t} is the employer of {h}.",
        "{t} employs {h}.",
    ),
    "founded": (
        "{h} founded {t}.",
        "{h} is the founder of {t}.",
        "The founder of {t} is {h}.",
        "{t} was founded by {h}.",
        "{h} started {t} years ago.",
    ),
    "located_in": (
        "{h} is based in {t}.",
        "{h} has its offices in {t}.",
        "{h} is located in {t}.",
        "The location of {h} is {t}.",
        "{t} is the location of {h}.",
    ),
}
# How a relation is named in running text (the answer words of every bank).
RELATION_NOUNS = {
    "born_in": ("born in", "was born in", "birthplace"),
    "lives_in": ("lives in", "residence"),
    "works_for": ("works for", "employer"),
    "founded": ("founded", "founder"),
    "located_in": ("located in", "is located in", "location"),
}
NO_LINK = (
    "{h} and {t} are unrelated.",
    "{h} has no relation to {t}.",
    "Nothing links {h} with {t}.",
    "There is none: {h} is not connected to {t}.",
)
TYPE_WORDS = {
    "person": ("person", "human", "individual"),
    "place": ("place", "location", "town"),
    "organisation": ("organisation", "company", "institution"),
}
TYPE_SENTENCES = (
    "{e} is a {w}.",
    "{e} is {a} {w}.",
    "The category of {e} is {w}.",
    "{e} belongs to the {w} category.",
    "As for its kind, {e} is {a} {w}.",
    "We know {e} as {a} {w}.",
    "In type, {e} is {a} {w}.",
)
# Claims checked against the facts: {c} the claim, answered true or false.
CHECKS_TRUE = (
    "Someone said that {c}. That is true.",
    "{C}: yes, that is right.",
    "The statement that {c} is correct.",
    "The claim that {c} is accurate, so the answer is yes.",
    "If we ask whether {c}, we must reply yes.",
    "We can say that {c}; the fact is true.",
    "My friend told us {c}, and my friend was right.",
    "It does follow from the facts that {c}.",
    "The hypothesis that {c} holds: true.",
    "The source supports this claim: {c}.",
)
CHECKS_FALSE = (
    "Someone said that {c}. That is false.",
    "{C}: no, that is wrong.",
    "The statement that {c} is not correct.",
    "The claim that {c} is not accurate, so the answer is no.",
    "If we ask whether {c}, we must reply no.",
    "We cannot conclude that {c}; the fact is false.",
    "My friend told us {c}, but my friend was wrong.",
    "It does not follow from the facts that {c}.",
    "The hypothesis that {c} fails: false.",
    "The source does not support this claim: {c}.",
)
LETTERS = "ABCD"
LISTS = (
    "There are four names here. {listing} The one that fits is {key}, {answer}.",
    "{question} We look at four candidates: {listing} The right choice is {key}.",
    "Pick the correct one for this: {question} {listing} It is {key}: {answer}.",
)
# Everyday uses of the instruction vocabulary.
TALK = (
    "Here is what we read in some text about {o}.",
    "Now, a question about {p}: {q} The answer is {t}.",
    "A short passage can hold many facts, and each sentence may name an entity.",
    "To classify a mention, we name its type.",
    "Consider the facts above; each one describes a relation between two entities.",
    "Tell me more about {p}, said a friend, and I did.",
    "The text below says more about {l}.",
    "Read each sentence, then decide which facts it states.",
    "One relation holds between {h} and {t}: {rel}.",
    "In relation extraction, we identify the link that connects a head entity to a tail entity.",
    "The head of this fact is {h} and the tail is {t}.",
    "Named entity typing gives each mention a type.",
    "Given the context, the possible answers are few.",
    "With respect to {t}, {h} is related by {rel}.",
    "The relationship of {h} to {t} is {rel}.",
    "We use the passage as our source and check each claim against it.",
    "Complete facts make a complete story about {l}.",
    "In this story, {p} and {l} appear together.",
    "Based on the facts, {e} is {a} {w}.",
    "What kind of thing is {l}? It is {a} {w2}.",
    "Options are what we choose from; we pick one of them.",
    "A letter like A or B can stand for an option, and so can a number like 1 or 2.",
    "Which entity fits the question best? We look at each one.",
    "I say yes when a statement is true and no when it is false.",
    "Following the facts, we answer with care.",
    "Support for a claim comes from the text.",
    "Look at the context before you reply.",
    "{p} and {o} are mentioned in the same text.",
    "Say what you know about {o}.",
    "Entity 1 is {h}, entity 2 is {t}.",
    "Q: {q} A: {t}.",
    "This is a sentence about {p}: it says {c}.",
    "Thing by thing, we categorise every name we see.",
    "Given this story, how is {h} linked to {t}? By {rel}.",
    "The type of a mention can be person, place, or organisation.",
    "Here we identify what {e} is.",
    "{h} and {t} share one fact, according to the records.",
    "These two names belong to one story; their link is {rel}.",
    "State the facts and verify each one; true facts give us the answer.",
    "Some names are of one sort, some of another.",
    "Family ties and work ties make up a story about {p}.",
    "We join the choices into one list before we choose.",
    # The same words again, elsewhere in a sentence.
    "Four candidates were named, and {p} was one of the candidates.",
    "{p} met us the following day in {l}.",
    "Out of respect for {o}, {p} kept quiet.",
    "We wonder if {c}; the facts decide.",
    "Every q in our notes marks a question.",
    "A hypothesis about {p} needs support; each hypothesis is checked.",
    "{l} is not related to {o} in any way.",
    "Extraction of facts from text is slow work.",
    "The notes below tell us about {p}.",
    "Typing each name takes time.",
    "{p} looked at {l} on the map and at {o} in the paper.",
    "Check the names twice, then check the facts.",
    "{p} said to me: give me the facts.",
    "No claim stands against the facts.",
    "{p} had choices, and the choices were hard.",
    "Their offices are in {l}.",
    "Use the facts; {p} will use them too.",
    "{p} named a new park in {l}.",
    "Some categorise towns by size; others categorise people by work.",
    "Nothing connects {l} to {p}, but something connects {o} to {t}.",
    "What sort of place is {l}? A quiet sort.",
    "You can conclude little from one fact.",
    "I identify {e} as {a} {w}.",
    "The map above shows {l}.",
    "{o} is mentioned twice, and {p} is mentioned once.",
    "All possible answers are listed; answers come from the facts.",
    "Consider {l}: it is {a} {w2}.",
    "Many consider {o} a fine {w3}.",
    "Is {h} connected to {t}? Yes, by {rel}.",
    "Them and us: {p} and {o} work apart.",
    "Given a name, we tell its type.",
    "{p} was given a gift by a friend.",
    "Classify {e} carefully.",
    "Everything went according to plan for {p}.",
    "Possible links are few here.",
    "{p} chose between two options.",
    "How do we know? The facts show how.",
    "Verify each claim; we verify facts, not guesses.",
    "Two unrelated names can appear together.",
    "In context, {e} is {a} {w}.",
    "{p} wrote a note; it was short.",
    "Based on what we read, the story holds.",
    "{p} describes {l} as small.",
    "Give the answer in one word.",
    "None of the facts is about {o}.",
    "We state facts plainly.",
    "Where do these names belong? In one story.",
    "{p} and {l} belong to one story.",
    "Their relationship is {rel}: {h} and {t}.",
    "These facts are enough.",
    "Can you tell what {e} is?",
    "Choose one name from the list.",
    "Answers differ when questions differ.",
    "Named after its founder, {o} grew fast.",
)


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _claim(h: str, rel: str, t: str) -> str:
    return world.RELATIONS[rel].claim.format(h=h, t=t)


def _document(rng: random.Random) -> str:
    names = world.names(rng)
    facts = world.draw_facts(rng, names)
    entities = {n: kind for kind, ns in names.items() for n in ns}
    out = [rng.choice(FACTS[rel]).format(h=h, t=t) for h, rel, t in facts]
    rng.shuffle(out)
    h, rel, t = rng.choice(facts)
    # An entity pair the facts do not link (type-compatible when possible).
    linked = {(a, b) for a, _, b in facts} | {(b, a) for a, _, b in facts}
    loose = [(a, b) for a in entities for b in entities if a != b and (a, b) not in linked]
    uh, ut = rng.choice(loose)
    e = rng.choice(sorted(entities))
    w = rng.choice(TYPE_WORDS[entities[e]])
    l2 = rng.choice(names["place"])
    w2 = rng.choice(TYPE_WORDS["place"])
    slots = {
        "h": h,
        "t": t,
        "rel": rng.choice(RELATION_NOUNS[rel]),
        "p": rng.choice(names["person"]),
        "l": l2,
        "o": rng.choice(names["organisation"]),
        "e": e,
        "w": w,
        "a": _article(w),
        "w2": w2,
        "w3": rng.choice(TYPE_WORDS["organisation"]),
        "q": world.RELATIONS[rel].question.format(h=h),
        "c": _claim(h, rel, t),
    }
    extra = []
    # Types, in their synonyms.
    for name in rng.sample(sorted(entities), 1):
        word = rng.choice(TYPE_WORDS[entities[name]])
        extra.append(rng.choice(TYPE_SENTENCES).format(e=name, w=word, a=_article(word)))
    # A fact-free pair.
    extra.append(rng.choice(NO_LINK).format(h=uh, t=ut))
    # A claim checked against the facts: half true, half false.
    fh, frel, ft = rng.choice(facts)
    if rng.random() < 0.5:
        claim = _claim(fh, frel, ft)
        extra.append(_check(rng, claim, CHECKS_TRUE))
    else:
        others = [o for o, k in entities.items() if k == world.RELATIONS[frel].tail and o != ft]
        claim = _claim(fh, frel, rng.choice(others)) if others else _claim(uh, frel, ut)
        if (fh, frel, ft) in facts and claim == _claim(fh, frel, ft):
            claim = _claim(uh, frel, ut)
        extra.append(_check(rng, claim, CHECKS_FALSE))
    # A lettered or numbered list and the item that fits.
    extra.append(_listing(rng, facts, entities))
    # Everyday talk.
    for pattern in rng.sample(TALK, 2):
        extra.append(pattern.format(**slots))
    rng.shuffle(extra)
    return " ".join(out + extra)


def _check(rng: random.Random, claim: str, patterns: tuple[str, ...]) -> str:
    pattern = rng.choice(patterns)
    return pattern.format(c=claim, C=claim[0].upper() + claim[1:])


def _listing(rng: random.Random, facts, entities) -> str:
    h, rel, t = rng.choice(facts)
    pool = [e for e, k in entities.items() if k == entities[t] and e != t]
    pool += [e for e, k in entities.items() if k != entities[t] and e not in (h, t)]
    choices = [t, *pool[:3]]
    rng.shuffle(choices)
    i = choices.index(t)
    if rng.random() < 0.5:
        listing = " ".join(f"{k}) {c}." for k, c in zip(LETTERS, choices, strict=False))
        key = f"letter {LETTERS[i]}"
    else:
        listing = " ".join(f"{n}) {c}." for n, c in enumerate(choices, 1))
        key = f"number {i + 1}"
    question = world.RELATIONS[rel].question.format(h=h)
    return rng.choice(LISTS).format(listing=listing, key=key, answer=t, question=question)


@functools.lru_cache(maxsize=4)
def _documents(n: int, seed: int) -> tuple[str, ...]:
    return tuple(_document(random.Random(f"jaxrobust-corpus:{seed}:{i}")) for i in range(n))


def documents(n: int = 4000, seed: int = 0) -> list[str]:
    """`n` generated documents (a pure function of `n` and `seed`)."""
    return list(_documents(n, seed))


def tokens(text: str) -> list[str]:
    """Lower-cased words and punctuation marks: the unit of `ngrams` and `template_words`."""
    return TOKEN_RE.findall(text.lower())


def literal_parts(template) -> list[str]:
    """The template's own text: its input and answer choices without the Jinja."""
    parts = []
    for source in (template.jinja, template.answer_choices or ""):
        for part in re.split(r"\{\{.*?\}\}|\{%.*?%\}", source):
            parts += [p for p in part.split("|||") if p.strip()]
    return parts


def ngrams(texts, n: int = 4) -> set[tuple[str, ...]]:
    """Every run of `n` tokens inside one text (or one literal part of a template)."""
    out = set()
    for text in texts:
        toks = tokens(text)
        out.update(tuple(toks[i : i + n]) for i in range(len(toks) - n + 1))
    return out


def template_words(templates) -> set[str]:
    """The words (not punctuation) of the templates' literal parts, lower-cased."""
    return {w for t in templates for part in literal_parts(t) for w in tokens(part) if w.isalnum()}
