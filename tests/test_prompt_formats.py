"""Each prompt format renders one example, with and without input, to the exact string."""

import pytest

from jaxrobust.inference import prompt_formats

INSTRUCTION = "Classify the relation between {e1} and {e2}."  # Braces stay literal.
INPUT = "The <e1>fire</e1> was caused by a <e2>spark</e2>."

VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant "
    "gives helpful, detailed, and polite answers to the user's questions."
)
EXPECTED = {
    "alpaca": (
        "Below is an instruction that describes a task, paired with an input that provides "
        "further context. Write a response that appropriately completes the request.\n\n"
        "### Instruction:\nClassify the relation between {e1} and {e2}.\n\n"
        "### Input:\nThe <e1>fire</e1> was caused by a <e2>spark</e2>.\n\n### Response:",
        "Below is an instruction that describes a task. Write a response that appropriately "
        "completes the request.\n\n"
        "### Instruction:\nClassify the relation between {e1} and {e2}.\n\n### Response:",
    ),
    "vicuna_v1.1": (
        VICUNA_SYSTEM + " USER: Classify the relation between {e1} and {e2}.\n\n"
        "The <e1>fire</e1> was caused by a <e2>spark</e2>. ASSISTANT:",
        VICUNA_SYSTEM + " USER: Classify the relation between {e1} and {e2}. ASSISTANT:",
    ),
    "wizardlm_7b_v1.0": (
        "Classify the relation between {e1} and {e2}.\n\n"
        "The <e1>fire</e1> was caused by a <e2>spark</e2>.\n\n### Response:",
        "Classify the relation between {e1} and {e2}.\n\n### Response:",
    ),
    "wizardlm_13b_v1.2": (
        VICUNA_SYSTEM + " USER: Classify the relation between {e1} and {e2}.\n\n"
        "The <e1>fire</e1> was caused by a <e2>spark</e2>. ASSISTANT:",
        VICUNA_SYSTEM + " USER: Classify the relation between {e1} and {e2}. ASSISTANT:",
    ),
    "chinese_alpaca_2": (
        "[INST] <<SYS>>\nYou are a helpful assistant. 你是一个乐于助人的助手。\n<</SYS>>\n\n"
        "Classify the relation between {e1} and {e2}.\n\n"
        "The <e1>fire</e1> was caused by a <e2>spark</e2>. [/INST]",
        "[INST] <<SYS>>\nYou are a helpful assistant. 你是一个乐于助人的助手。\n<</SYS>>\n\n"
        "Classify the relation between {e1} and {e2}. [/INST]",
    ),
    "none": (
        "Classify the relation between {e1} and {e2}.\n\n"
        "The <e1>fire</e1> was caused by a <e2>spark</e2>.",
        "Classify the relation between {e1} and {e2}.",
    ),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_renders_exact_strings(name):
    fmt = prompt_formats.get_format(name)
    with_input, without_input = EXPECTED[name]
    assert fmt.apply(INSTRUCTION, INPUT) == with_input
    assert fmt.apply(INSTRUCTION) == without_input
    assert fmt.apply(INSTRUCTION, "") == without_input
    assert fmt.add_bos and not with_input.endswith(" ")


def test_every_format_is_tested_and_unknown_names_fail():
    assert set(prompt_formats.FORMATS) == set(EXPECTED)
    with pytest.raises(KeyError, match="unknown prompt format 'alpaca-v2'.*'vicuna_v1.1'"):
        prompt_formats.get_format("alpaca-v2")
