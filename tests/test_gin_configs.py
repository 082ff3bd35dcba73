"""Every checked-in gin file parses, every model gin names a real preset, and every
command and `--gin.` binding the README (and the gin files' own headers) show parses."""

import pathlib
import re
import shlex

import gin
import pytest

from jaxrobust import evaluation
from jaxrobust.inference import prompt_formats
from jaxrobust.models import llama_config, t5_config

REPO = pathlib.Path(__file__).resolve().parents[1]
GIN_FILES = sorted(REPO.glob("gin_configs/**/*.gin"))
MODEL_GINS = sorted(REPO.glob("gin_configs/models/*.gin"))


def test_gin_files_found():
    names = {p.relative_to(REPO).as_posix() for p in GIN_FILES}
    assert {"gin_configs/runs/eval.gin", "gin_configs/tiny.gin"} <= names
    assert len(MODEL_GINS) >= len(set(t5_config.PRESETS)) + len(set(llama_config.PRESETS))


def _placeholders(text: str) -> list[str]:
    """Bindings for the macros a file requires (`%gin.REQUIRED`) or expects from
    another file (referenced, never defined): what a user or run gin supplies."""
    required = set(re.findall(r"^(\w+) = %gin\.REQUIRED", text, re.M))
    defined = set(re.findall(r"^(\w+) = ", text, re.M)) - required
    referenced = set(re.findall(r"%(\w+)", text)) - {"gin"}
    return [f"{name} = None" for name in sorted(required | (referenced - defined))]


@pytest.mark.parametrize("path", GIN_FILES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_parses(path):
    text = path.read_text()
    assert text.startswith("#"), "a gin file opens with what it is for and how to run it"
    assert "from __gin__ import dynamic_registration" in text
    gin.clear_config()
    gin.parse_config_files_and_bindings([str(path)], _placeholders(text), skip_unknown=False)
    gin.clear_config()


@pytest.mark.parametrize("path", MODEL_GINS, ids=lambda p: p.name)
def test_model_gin_with_eval_gin(path):
    gin.clear_config()
    gin.parse_config_files_and_bindings(
        [str(REPO / "gin_configs/runs/eval.gin"), str(path)],
        ["CHECKPOINT_DIR = '/ckpt'", "MIXTURES = ['jr:semeval:re#all']", "OUTPUT_DIR = '/out'"],
        skip_unknown=False,
    )
    spec = gin.get_configurable(evaluation.ModelSpec)()
    options = gin.get_configurable(evaluation.EvalOptions)()
    gin.clear_config()
    presets = {"t5": t5_config.PRESETS, "llama": llama_config.PRESETS}[spec.family]
    assert spec.preset in presets
    assert spec.checkpoint == "/ckpt"
    prompt_formats.get_format(spec.prompt_format)  # raises for an unknown format
    assert options.batch_size == 32 and options.split is None  # Each data set's own.


def test_every_preset_has_a_model_gin():
    gin.clear_config()
    covered = set()
    for path in MODEL_GINS:
        gin.parse_config_files_and_bindings([str(path)], ["CHECKPOINT_DIR = ''"])
        spec = gin.get_configurable(evaluation.ModelSpec)()
        covered.add((spec.family, spec.preset))
        gin.clear_config()
    wanted = {("t5", p) for p in t5_config.PRESETS} | {("llama", p) for p in llama_config.PRESETS}
    assert wanted <= covered, sorted(wanted - covered)


def test_tiny_overlay_makes_a_cpu_run():
    gin.clear_config()
    gin.parse_config_files_and_bindings(
        [
            str(REPO / f)
            for f in (
                "gin_configs/runs/eval.gin",
                "gin_configs/models/flan_t5_xl.gin",
                "gin_configs/tiny.gin",
            )
        ],
        ["MIXTURES = ['jr:semeval:re#all']", "OUTPUT_DIR = '/out'"],
        skip_unknown=False,
    )
    spec = gin.get_configurable(evaluation.ModelSpec)()
    options = gin.get_configurable(evaluation.EvalOptions)()
    gin.clear_config()
    assert (spec.preset, spec.checkpoint, spec.tokenizer) == ("tiny", "", "byte")
    assert options.limit == 8 and options.batch_size == 8


# ---------------------------------------------------------------------------
# The commands and `--gin.` bindings the documentation shows.
# ---------------------------------------------------------------------------

GIN_COMMANDS = ("eval", "train_prompt", "study")
STUDY_GIN = "gin_configs/runs/study.gin"  # `main study`'s default gin file.


def _shown_commands(text: str) -> list[list[str]]:
    """`python -m jaxrobust.main <command> ...` lines of `text` as argument lists,
    backslash continuations joined (in `#` comment blocks too)."""
    joined = re.sub(r"\\\n[\s#]*", " ", text)
    commands = []
    for line in joined.splitlines():
        if "jaxrobust.main" in line:
            tokens = shlex.split(line.lstrip("# "))
            commands.append(tokens[tokens.index("jaxrobust.main") + 1 :])
    return commands


def _readme_code_blocks() -> list[str]:
    return re.findall(r"^```\w*\n(.*?)^```", (REPO / "README.md").read_text(), re.M | re.S)


def _documented_commands() -> list[tuple[str, list[str]]]:
    """(where, arguments) of every gin-configured command in README.md's code
    blocks and in the gin files' opening comments."""
    shown = [("README.md", c) for block in _readme_code_blocks() for c in _shown_commands(block)]
    for path in GIN_FILES:
        header = "".join(line for line in path.read_text().splitlines(True) if line[:1] == "#")
        where = path.relative_to(REPO).as_posix()
        shown += [(where, c) for c in _shown_commands(header)]
    return [(where, c) for where, c in shown if c and c[0] in GIN_COMMANDS]


DOCUMENTED = _documented_commands()


def _macros_used(files: list[str]) -> set[str]:
    return {m for f in files for m in re.findall(r"%(\w+)", (REPO / f).read_text())} - {"gin"}


def test_documented_commands_found():
    readme = [c for where, c in DOCUMENTED if where == "README.md"]
    assert {c[0] for c in readme} == set(GIN_COMMANDS)
    assert sum(a.startswith("--gin.") for c in readme for a in c) >= 20


@pytest.mark.parametrize(
    "where, args", DOCUMENTED, ids=[f"{w}:{' '.join(a)[:60]}" for w, a in DOCUMENTED]
)
def test_documented_command_parses(where, args):
    """Each shown command's gin files and `--gin.NAME=value` bindings parse as
    `main` parses them (no unknown configurable or parameter, every required
    macro bound), and every bound macro is one its gin files use."""
    files = [a.split("=", 1)[1] for a in args if a.startswith("--gin_file=")]
    files = files or ([STUDY_GIN] if args[0] == "study" else [])
    bindings = [a[len("--gin.") :] for a in args if a.startswith("--gin.")]
    assert files, f"{where}: `{' '.join(args)}` names no gin file"
    gin.clear_config()
    try:
        gin.parse_config_files_and_bindings(
            [str(REPO / f) for f in files], bindings, skip_unknown=False
        )
    finally:
        gin.clear_config()
    used = _macros_used(files)
    for binding in bindings:
        name = binding.split("=", 1)[0].strip()
        assert "." in name or name in used, f"{where}: macro {name} is used by none of {files}"


def test_inline_gin_bindings_name_real_macros_and_parameters():
    """`--gin.NAME=...` written in README.md's prose: a macro some gin file uses,
    or a configurable parameter that parses with one of the run gins."""
    prose = re.sub(r"^```\w*\n.*?^```", "", (REPO / "README.md").read_text(), flags=re.M | re.S)
    names = set(re.findall(r"--gin\.([A-Za-z_][\w.]*)=", prose)) - {"NAME"}
    assert {"RECORD_POOLED", "evaluation.ModelSpec.soft_prompt"} <= names
    every_macro = _macros_used([p.relative_to(REPO).as_posix() for p in GIN_FILES])
    runs = sorted(REPO.glob("gin_configs/runs/*.gin"))

    def parses_with_a_run_gin(name: str) -> bool:
        for run in runs:
            gin.clear_config()
            try:
                gin.parse_config_files_and_bindings(
                    [str(run)],
                    _placeholders(run.read_text()) + [f"{name} = None"],
                    skip_unknown=False,
                )
                return True
            except ValueError:
                continue
            finally:
                gin.clear_config()
        return False

    for name in sorted(names):
        known = name in every_macro if "." not in name else parses_with_a_run_gin(name)
        assert known, f"README.md shows --gin.{name}=..., which no gin file knows"
    assert not parses_with_a_run_gin("evaluation.ModelSpec.no_such_field")
