"""Label sets, verbalizations and type constraints of the relation-extraction data.

Verbalizations turn a relation into a statement about the two entities
("{head} is the cause of {tail}"), the options of the multiple-choice QA format
(QA4RE, Zhang et al. 2023, "Aligning Instruction Tasks Unlocks Large Language
Models as Zero-Shot Relation Extractors"). They are written in this project.

TACRED's 41 relations are too many options for one question, so, as QA4RE
does, a TACRED-format example's candidates are the relations whose argument
types admit the example's subject and object NER types (`OBJECT_TYPES` below,
from the TAC KBP slot definitions: per:* slots take a PERSON subject, org:*
an ORGANIZATION), plus no_relation. A gold relation whose types do not match
(annotation noise) is then not among the options; such examples keep their
gold label and get answer_index -1.
"""

from jaxrobust.data import semeval_labels

# Each SemEval-2010 Task 8 relation as a statement about its first and second
# argument, in the task's order (`data/semeval_labels.py`).
_SEMEVAL_STATEMENTS = {
    "Cause-Effect": "{a} causes {b}",
    "Component-Whole": "{a} is a component of {b}",
    "Content-Container": "{a} is kept inside {b}",
    "Entity-Destination": "{a} is moved into {b}",
    "Entity-Origin": "{a} originates from {b}",
    "Instrument-Agency": "{a} is the tool used by {b}",
    "Member-Collection": "{a} is a member of {b}",
    "Message-Topic": "{a} is about {b}",
    "Product-Producer": "{a} is made by {b}",
}
SEMEVAL_RELATIONS = semeval_labels.RELATIONS
SEMEVAL_LABELS = semeval_labels.LABELS


def _semeval_verbalizations() -> dict[str, str]:
    out = {}
    for label in SEMEVAL_LABELS[:-1]:
        rel, args = label[:-7], label[-6:-1]
        a, b = ("{head}", "{tail}") if args == "e1,e2" else ("{tail}", "{head}")
        out[label] = _SEMEVAL_STATEMENTS[rel].format(a=a, b=b)
    out["Other"] = "{head} and {tail} are related in none of these ways"
    return out


SEMEVAL_VERBALIZATIONS = _semeval_verbalizations()

# TACRED relations (Zhang et al. 2017), in the usual sorted order.
TACRED_LABELS = (
    "no_relation",
    "org:alternate_names",
    "org:city_of_headquarters",
    "org:country_of_headquarters",
    "org:dissolved",
    "org:founded",
    "org:founded_by",
    "org:member_of",
    "org:members",
    "org:number_of_employees/members",
    "org:parents",
    "org:political/religious_affiliation",
    "org:shareholders",
    "org:stateorprovince_of_headquarters",
    "org:subsidiaries",
    "org:top_members/employees",
    "org:website",
    "per:age",
    "per:alternate_names",
    "per:cause_of_death",
    "per:charges",
    "per:children",
    "per:cities_of_residence",
    "per:city_of_birth",
    "per:city_of_death",
    "per:countries_of_residence",
    "per:country_of_birth",
    "per:country_of_death",
    "per:date_of_birth",
    "per:date_of_death",
    "per:employee_of",
    "per:origin",
    "per:other_family",
    "per:parents",
    "per:religion",
    "per:schools_attended",
    "per:siblings",
    "per:spouse",
    "per:stateorprovince_of_birth",
    "per:stateorprovince_of_death",
    "per:stateorprovinces_of_residence",
    "per:title",
)
# Re-TACRED (Stoica et al. 2021) renames per:alternate_names to per:identity and
# *_of_headquarters to *_of_branch, and folds org:parents / org:subsidiaries
# into org:member_of / org:members: 40 labels.
_RETACRED_RENAMES = {
    "per:alternate_names": "per:identity",
    "org:city_of_headquarters": "org:city_of_branch",
    "org:country_of_headquarters": "org:country_of_branch",
    "org:stateorprovince_of_headquarters": "org:stateorprovince_of_branch",
}
RETACRED_LABELS = tuple(
    _RETACRED_RENAMES.get(label, label)
    for label in TACRED_LABELS
    if label not in ("org:parents", "org:subsidiaries")
)

_GEO = ("LOCATION", "CITY", "STATE_OR_PROVINCE", "COUNTRY")
# Object NER types each relation admits (TAC KBP slot fillers); the subject
# type is PERSON for per:* and ORGANIZATION for org:*.
OBJECT_TYPES = {
    "org:alternate_names": ("ORGANIZATION", "MISC"),
    "org:city_of_headquarters": ("CITY", "LOCATION"),
    "org:country_of_headquarters": ("COUNTRY", "LOCATION", "NATIONALITY"),
    "org:stateorprovince_of_headquarters": ("STATE_OR_PROVINCE", "LOCATION"),
    "org:dissolved": ("DATE",),
    "org:founded": ("DATE",),
    "org:founded_by": ("PERSON", "ORGANIZATION"),
    "org:member_of": ("ORGANIZATION",) + _GEO,
    "org:members": ("ORGANIZATION",) + _GEO,
    "org:number_of_employees/members": ("NUMBER",),
    "org:parents": ("ORGANIZATION",) + _GEO,
    "org:political/religious_affiliation": ("RELIGION", "IDEOLOGY", "ORGANIZATION"),
    "org:shareholders": ("PERSON", "ORGANIZATION"),
    "org:subsidiaries": ("ORGANIZATION",) + _GEO,
    "org:top_members/employees": ("PERSON",),
    "org:website": ("URL",),
    "per:age": ("NUMBER", "DURATION"),
    "per:alternate_names": ("PERSON", "MISC"),
    "per:cause_of_death": ("CAUSE_OF_DEATH",),
    "per:charges": ("CRIMINAL_CHARGE",),
    "per:children": ("PERSON",),
    "per:cities_of_residence": ("CITY", "LOCATION"),
    "per:city_of_birth": ("CITY", "LOCATION"),
    "per:city_of_death": ("CITY", "LOCATION"),
    "per:countries_of_residence": ("COUNTRY", "LOCATION", "NATIONALITY"),
    "per:country_of_birth": ("COUNTRY", "LOCATION", "NATIONALITY"),
    "per:country_of_death": ("COUNTRY", "LOCATION", "NATIONALITY"),
    "per:date_of_birth": ("DATE",),
    "per:date_of_death": ("DATE",),
    "per:employee_of": ("ORGANIZATION",) + _GEO,
    "per:origin": ("NATIONALITY",) + _GEO,
    "per:other_family": ("PERSON",),
    "per:parents": ("PERSON",),
    "per:religion": ("RELIGION",),
    "per:schools_attended": ("ORGANIZATION",),
    "per:siblings": ("PERSON",),
    "per:spouse": ("PERSON",),
    "per:stateorprovince_of_birth": ("STATE_OR_PROVINCE", "LOCATION"),
    "per:stateorprovince_of_death": ("STATE_OR_PROVINCE", "LOCATION"),
    "per:stateorprovinces_of_residence": ("STATE_OR_PROVINCE", "LOCATION"),
    "per:title": ("TITLE",),
}
for _old, _new in _RETACRED_RENAMES.items():
    OBJECT_TYPES[_new] = OBJECT_TYPES[_old]
OBJECT_TYPES["per:identity"] = ("PERSON", "MISC")

TACRED_VERBALIZATIONS = {
    "no_relation": "{head} and {tail} are related in none of these ways",
    "org:alternate_names": "{tail} is another name of the organization {head}",
    "org:city_of_headquarters": "the organization {head} has its headquarters in the city {tail}",
    "org:country_of_headquarters": "the organization {head} has its headquarters in the "
    "country {tail}",
    "org:stateorprovince_of_headquarters": "the organization {head} has its headquarters in "
    "the state or province {tail}",
    "org:city_of_branch": "the organization {head} has an office in the city {tail}",
    "org:country_of_branch": "the organization {head} has an office in the country {tail}",
    "org:stateorprovince_of_branch": "the organization {head} has an office in the state or "
    "province {tail}",
    "org:dissolved": "the organization {head} was dissolved on {tail}",
    "org:founded": "the organization {head} was founded on {tail}",
    "org:founded_by": "the organization {head} was founded by {tail}",
    "org:member_of": "the organization {head} belongs to {tail}",
    "org:members": "{tail} belongs to the organization {head}",
    "org:number_of_employees/members": "the organization {head} has {tail} employees or members",
    "org:parents": "the organization {head} is owned by {tail}",
    "org:political/religious_affiliation": "the organization {head} is affiliated with the "
    "creed {tail}",
    "org:shareholders": "{tail} holds shares in the organization {head}",
    "org:subsidiaries": "the organization {head} owns {tail}",
    "org:top_members/employees": "{tail} is a leader of the organization {head}",
    "org:website": "{tail} is the website of the organization {head}",
    "per:age": "{head} is {tail} years old",
    "per:alternate_names": "{tail} is another name of {head}",
    "per:identity": "{head} and {tail} are the same person",
    "per:cause_of_death": "{head} died of {tail}",
    "per:charges": "{head} was charged with {tail}",
    "per:children": "{tail} is a child of {head}",
    "per:cities_of_residence": "{head} lives or lived in the city {tail}",
    "per:city_of_birth": "{head} was born in the city {tail}",
    "per:city_of_death": "{head} died in the city {tail}",
    "per:countries_of_residence": "{head} lives or lived in the country {tail}",
    "per:country_of_birth": "{head} was born in the country {tail}",
    "per:country_of_death": "{head} died in the country {tail}",
    "per:date_of_birth": "{head} was born on {tail}",
    "per:date_of_death": "{head} died on {tail}",
    "per:employee_of": "{head} works or worked for {tail}",
    "per:origin": "{head} comes from {tail}",
    "per:other_family": "{head} and {tail} are relatives",
    "per:parents": "{tail} is a parent of {head}",
    "per:religion": "{head} follows the religion {tail}",
    "per:schools_attended": "{head} studied at {tail}",
    "per:siblings": "{head} and {tail} are siblings",
    "per:spouse": "{head} and {tail} are married",
    "per:stateorprovince_of_birth": "{head} was born in the state or province {tail}",
    "per:stateorprovince_of_death": "{head} died in the state or province {tail}",
    "per:stateorprovinces_of_residence": "{head} lives or lived in the state or province {tail}",
    "per:title": "{head} holds the position {tail}",
}

# FewRel 1.0 validation relations (Wikidata properties; subject head, object tail).
FEWREL_VERBALIZATIONS = {
    "P177": "{head} crosses {tail}",
    "P364": "{tail} is the original language of {head}",
    "P2094": "{head} competes in the class {tail}",
    "P361": "{head} is part of {tail}",
    "P641": "{head} is associated with the sport {tail}",
    "P59": "{head} lies in the constellation {tail}",
    "P413": "{head} plays in the position {tail}",
    "P206": "{head} lies in or next to the body of water {tail}",
    "P412": "{head} has the voice type {tail}",
    "P155": "{head} comes right after {tail}",
    "P26": "{head} is married to {tail}",
    "P410": "{head} holds the military rank {tail}",
    "P25": "{tail} is the mother of {head}",
    "P463": "{head} is a member of {tail}",
    "P40": "{tail} is a child of {head}",
    "P921": "{tail} is the main subject of {head}",
}


def type_candidates(labels: tuple[str, ...], head_type: str, tail_type: str) -> list[str]:
    """Relations of `labels` whose argument types admit (head_type, tail_type).

    The negative label is not included. Unknown types admit every relation.
    """
    out = []
    for label in labels:
        if label == "no_relation":
            continue
        subject = "PERSON" if label.startswith("per:") else "ORGANIZATION"
        if head_type and head_type != subject:
            continue
        if tail_type and tail_type not in OBJECT_TYPES[label]:
            continue
        out.append(label)
    return out
