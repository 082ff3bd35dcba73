"""The option trie of the engine's mode "ni" (QA4RE's constrained greedy decoding).

Options are token tuples ending in EOS; a constrained greedy decode may only
follow the trie of those tuples. `contested_prefixes` lists the trie nodes whose
log-likelihood decides a step (the engine scores them teacher-forced), and
`constrained_greedy` walks the trie with those scores.
"""

from __future__ import annotations

from collections.abc import Sequence


def children(seqs: Sequence[tuple], prefix: tuple) -> list[int]:
    """The tokens that may follow `prefix` in the option trie (sorted ids)."""
    n = len(prefix)
    return sorted({s[n] for s in seqs if len(s) > n and s[:n] == prefix})


def contested_prefixes(seqs: Sequence[tuple]) -> list[tuple]:
    """Trie nodes whose parent has several children: the only ones whose
    log-likelihood a constrained greedy step compares (sorted, unique)."""
    nodes = set()
    for s in seqs:
        for k in range(len(s)):
            if len(children(seqs, s[:k])) > 1:
                nodes.add(s[: k + 1])
    return sorted(nodes) or [seqs[0][:1]]


def constrained_greedy(seqs: Sequence[tuple], total: dict, eos_id: int) -> int:
    """The option a greedy decode restricted to the option trie produces.

    `seqs`: each option's tokens with EOS; `total[prefix]`: the log-likelihood of
    `prefix` (a contested trie node). Each step takes the allowed token of
    highest probability: children of one node share the prefix, so their totals
    differ by the step's log-probabilities; ties go to the lowest token id (the
    first maximum of torch's argmax over masked logits). Decoding stops at EOS or
    after the longest option's tokens (QA4RE's `max_new_tokens`). Returns the
    first option with those tokens.
    """
    longest = max(len(s) - 1 for s in seqs)
    prefix: tuple = ()
    while True:
        options = children(seqs, prefix)
        if len(options) == 1:
            nxt = options[0]
        else:
            nxt = max(options, key=lambda t: (total[prefix + (t,)], -t))
        prefix += (nxt,)
        if nxt == eos_id or len(prefix) == longest:
            break
    label = prefix[:-1] if prefix[-1] == eos_id else prefix
    return next(i for i, s in enumerate(seqs) if s[:-1] == label)
