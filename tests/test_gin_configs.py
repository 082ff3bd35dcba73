"""Every checked-in gin file parses, and every model gin names a real preset."""

import pathlib
import re

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
    assert options.batch_size == 32 and options.split == "test"


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
