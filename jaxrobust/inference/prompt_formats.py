"""Prompt formats of instruction-tuned decoder-only models (Alpaca, Vicuna, WizardLM).

A prompt format wraps an already rendered instruction (and its optional input)
in the text a checkpoint family was fine-tuned on; the model then continues
after the format's last character. Exact strings, and where each was checked:

* ``alpaca``: `PROMPT_DICT` in tatsu-lab/stanford_alpaca `train.py` (the
  training prompts); an empty input selects the no-input variant, as there.
* ``vicuna_v1.1``: lm-sys/FastChat `conversation.py`, template
  ``vicuna_v1.1``: system message, then ``sep=" "`` and the roles
  ``USER``/``ASSISTANT`` in the ``ADD_COLON_TWO`` style, the assistant's turn
  left open as ``"ASSISTANT:"``. Vicuna v1.3 and v1.5 use the same template.
* ``wizardlm_7b_v1.0``: `PROMPT_DICT` in nlpxucan/WizardLM
  `WizardLM/src/train_freeform.py` (``"{instruction}\\n\\n### Response:"``).
  The repository's own inference script appends one more ``"\\n"``; we keep
  the training string.
* ``wizardlm_13b_v1.2``: nlpxucan/WizardLM `WizardLM/src/infer_wizardlm13b.py`,
  Vicuna's string with the prompt between ``USER:`` and ``ASSISTANT:``.
* ``chinese_alpaca_2``: ymcui/Chinese-LLaMA-Alpaca-2
  `scripts/inference/inference_hf.py` (`TEMPLATE` with its
  `DEFAULT_SYSTEM_PROMPT`): the Llama-2-chat layout ``[INST] <<SYS>>\n{system}
  \n<</SYS>>\n\n{instruction} [/INST]``, system prompt "You are a helpful
  assistant. 你是一个乐于助人的助手。".
* ``none``: the instruction as it is.

Only Alpaca's format has a slot for an input. Elsewhere a non-empty input is
appended to the instruction after a blank line (``"{instruction}\\n\\n{input}"``,
the separator Alpaca's own template puts between sections); this joining is
our choice, not the model authors'.

The strings hold no BOS: the tokenizer adds it (`PromptFormat.add_bos`), and no
format ends in a space, so SentencePiece sees the answer's leading space as
part of the answer, as in training.
"""

from __future__ import annotations

import dataclasses

_ALPACA_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides "
    "further context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:"
)
_ALPACA_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:"
)
_VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
_VICUNA = _VICUNA_SYSTEM + " USER: {prompt} ASSISTANT:"
_WIZARDLM_7B = "{prompt}\n\n### Response:"
_CHINESE_ALPACA_2_SYSTEM = "You are a helpful assistant. 你是一个乐于助人的助手。"
_LLAMA_2_CHAT = "[INST] <<SYS>>\n" + _CHINESE_ALPACA_2_SYSTEM + "\n<</SYS>>\n\n{prompt} [/INST]"
# Non-Alpaca formats put instruction and input into their one slot like this.
_JOINED = "{instruction}\n\n{input}"


@dataclasses.dataclass(frozen=True)
class PromptFormat:
    """How one checkpoint family wants an instruction (and input) presented."""

    name: str
    # Template with `{instruction}` and `{input}`, used when the input is non-empty.
    with_input: str
    # Template with `{instruction}` only, used when the input is empty.
    without_input: str
    source: str  # Where the exact strings were checked.
    add_bos: bool = True  # Prepend the tokenizer's BOS (LLaMA models were trained with it).

    def apply(self, instruction: str, input: str = "") -> str:
        """The full prompt text for `instruction` and optional `input`.

        Values are substituted once (`str.format` does not re-parse them), so
        braces inside the instruction or input are kept literally.
        """
        if input:
            return self.with_input.format(instruction=instruction, input=input)
        return self.without_input.format(instruction=instruction)


def _single_slot(name: str, template: str, source: str) -> PromptFormat:
    """A format with one prompt slot; a non-empty input is joined to the instruction."""
    with_input = template.replace("{prompt}", _JOINED)
    without_input = template.replace("{prompt}", "{instruction}")
    return PromptFormat(name, with_input, without_input, source)


FORMATS: dict[str, PromptFormat] = {
    "alpaca": PromptFormat(
        "alpaca", _ALPACA_INPUT, _ALPACA_NO_INPUT, "tatsu-lab/stanford_alpaca train.py"
    ),
    "vicuna_v1.1": _single_slot(
        "vicuna_v1.1", _VICUNA, "lm-sys/FastChat fastchat/conversation.py (vicuna_v1.1)"
    ),
    "wizardlm_7b_v1.0": _single_slot(
        "wizardlm_7b_v1.0", _WIZARDLM_7B, "nlpxucan/WizardLM WizardLM/src/train_freeform.py"
    ),
    "wizardlm_13b_v1.2": _single_slot(
        "wizardlm_13b_v1.2", _VICUNA, "nlpxucan/WizardLM WizardLM/src/infer_wizardlm13b.py"
    ),
    "chinese_alpaca_2": _single_slot(
        "chinese_alpaca_2",
        _LLAMA_2_CHAT,
        "ymcui/Chinese-LLaMA-Alpaca-2 scripts/inference/inference_hf.py (TEMPLATE)",
    ),
    "none": PromptFormat("none", _JOINED, "{instruction}", "no wrapping"),
}


def get_format(name: str) -> PromptFormat:
    """The named format; raises KeyError listing the known names."""
    if name not in FORMATS:
        raise KeyError(f"unknown prompt format {name!r}; expected one of {sorted(FORMATS)}")
    return FORMATS[name]
