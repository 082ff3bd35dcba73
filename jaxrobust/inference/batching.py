"""Host-side input preparation: truncation that only shortens the passage, and buckets.

`truncate_to_fit` / `truncate_passage` shorten only the passage of an input
(never its instruction, options or answer cue) until its tokens fit; a task
hands the engine a `Truncatable` for that. `bucket` rounds a size up to the
next of a fixed set of padded sizes, so a run compiles a bounded set of
programs; `power_of_two_buckets` is the default set of input lengths.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

# ---------------------------------------------------------------------------
# Truncation that only shortens the passage.
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Truncatable:
    """An input whose passage may be shortened: `render(k)` keeps its first k words.

    `render` must keep everything else (instruction, options, answer cue) whole
    for every k; tasks build it from their template.
    """

    render: Callable[[int], str]
    num_words: int  # Words in the full passage; render(num_words) is the full input.


def truncate_to_fit(
    render: Callable[[int], str],
    num_words: int,
    count_tokens: Callable[[str], int],
    max_tokens: int,
) -> tuple[str, int]:
    """The longest passage prefix whose rendered input fits `max_tokens`.

    Binary search over k in [0, num_words] (token counts grow with k).

    Returns:
      (rendered text, words kept); `words kept < num_words` means truncated.

    Raises:
      ValueError: the input does not fit even with the passage removed.
    """
    if count_tokens(render(num_words)) <= max_tokens:
        return render(num_words), num_words
    empty = render(0)
    if count_tokens(empty) > max_tokens:
        raise ValueError(
            f"input has {count_tokens(empty)} tokens with the passage removed, more than "
            f"max_tokens={max_tokens}; shorten the instruction or options, or raise "
            f"max_input_len. Input starts: {empty[:200]!r}"
        )
    lo, hi = 0, num_words  # render(lo) fits; render(hi) does not.
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if count_tokens(render(mid)) <= max_tokens:
            lo = mid
        else:
            hi = mid
    return render(lo), lo


def truncate_passage(
    before: str,
    passage: str,
    after: str,
    count_tokens: Callable[[str], int],
    max_tokens: int,
) -> tuple[str, bool]:
    """`before + passage + after`, the passage cut at a word boundary to fit.

    The segment form of `truncate_to_fit`: `before` (e.g. the instruction) and
    `after` (options, answer cue) are never cut. Returns (text, truncated).
    """
    words = passage.split(" ")
    text, kept = truncate_to_fit(
        lambda k: before + " ".join(words[:k]) + after, len(words), count_tokens, max_tokens
    )
    return text, kept < len(words)


# ---------------------------------------------------------------------------
# Buckets.
# ---------------------------------------------------------------------------


def bucket(n: int, buckets: Sequence[int]) -> int:
    """The smallest bucket >= n."""
    for b in buckets:
        if n <= b:
            return b
    raise ValueError(f"size {n} exceeds the largest bucket {buckets[-1]} (buckets {buckets})")


def power_of_two_buckets(lo: int, hi: int) -> tuple[int, ...]:
    """lo, 2lo, 4lo, ... below hi, then hi itself."""
    out, b = [], lo
    while b < hi:
        out.append(b)
        b *= 2
    return tuple(out) + (hi,)
