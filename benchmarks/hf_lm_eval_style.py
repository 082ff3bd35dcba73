"""The HF PyTorch baseline of `bench_eval.py`: rank classification the way
lm-evaluation-harness scores a seq2seq model.

Every (template, example, option) request is its own row: the context (the
rendered input, tokenised with EOS, cut to `--max-input-len` as T5 does: the
first tokens and EOS) goes through the encoder, the continuation (the option
tokens and EOS, as jaxrobust's standard mode scores them) is teacher-forced
through the decoder, and the request's score is the sum of its tokens'
log-probabilities. Rows are sorted by length, longest first, and batched
(lm-evaluation-harness's `Collator`), then the prediction per example is the
highest-scoring option (lowest index on ties) and the data set's metric is
computed: accuracy, or micro-F1 over the positive relations for relation
extraction (the negative label is not a relation).

The requests are the rendered examples `bench_eval.py` writes once (JSON lines:
task, example_id, input, options, gold, negative); rendering is not charged to
this script (lm-evaluation-harness renders its own), which only helps it.

    python benchmarks/hf_lm_eval_style.py --model DIR --requests R.jsonl --out S.json
    python benchmarks/hf_lm_eval_style.py ... --serve    # worker: RUN lines on stdin
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import interleave  # noqa: E402


def read_requests(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def metric(requests: list[dict], predictions: list[int]) -> dict:
    """Accuracy, and micro-F1 over the positive labels (requests with a negative label)."""
    correct = sum(p == r["gold"] for r, p in zip(requests, predictions, strict=True))
    out = {"accuracy": correct / len(requests)}
    if any(r["negative"] for r in requests):
        tp = fp = fn = 0
        for r, p in zip(requests, predictions, strict=True):
            gold, pred = r["options"][r["gold"]], r["options"][p]
            if pred == gold and gold != r["negative"]:
                tp += 1
                continue
            fp += pred != r["negative"]
            fn += gold != r["negative"]
        out["micro_f1"] = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return out


class Scorer:
    """The model and tokenizer, loaded once."""

    def __init__(self, model_dir: str, batch_size: int, max_input_len: int):
        import torch
        import transformers

        torch.set_num_threads(interleave.pin_threads())
        self.torch = torch
        self.tok = transformers.AutoTokenizer.from_pretrained(model_dir)
        self.model = transformers.T5ForConditionalGeneration.from_pretrained(model_dir).eval()
        self.batch_size = batch_size
        self.max_input_len = max_input_len
        # Encoder tokens: the rows' own, and what the forwards ran (batch-padded).
        self.input_tokens = {"real": 0, "padded": 0}

    def encode(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"] + [self.tok.eos_token_id]

    def score(self, requests: list[dict]) -> list[list[float]]:
        """Every option's summed log-probability, one forward row per (example, option)."""
        torch, pad = self.torch, self.tok.pad_token_id
        rows = []  # (request index, option index, context ids, continuation ids)
        for i, r in enumerate(requests):
            ctx = self.encode(r["input"])
            if len(ctx) > self.max_input_len:
                ctx = ctx[: self.max_input_len - 1] + [self.tok.eos_token_id]
            for j, option in enumerate(r["options"]):
                rows.append((i, j, ctx, self.encode(option)))
        rows.sort(key=lambda row: -(len(row[2]) + len(row[3])))
        scores = [[0.0] * len(r["options"]) for r in requests]
        with torch.inference_mode():
            for k in range(0, len(rows), self.batch_size):
                chunk = rows[k : k + self.batch_size]
                s = max(len(c[2]) for c in chunk)
                t = max(len(c[3]) for c in chunk)
                self.input_tokens["real"] += sum(len(c[2]) for c in chunk)
                self.input_tokens["padded"] += s * len(chunk)
                ids = torch.full((len(chunk), s), pad, dtype=torch.long)
                labels = torch.full((len(chunk), t), -100, dtype=torch.long)
                for n, (_, _, ctx, cont) in enumerate(chunk):
                    ids[n, : len(ctx)] = torch.tensor(ctx)
                    labels[n, : len(cont)] = torch.tensor(cont)
                logits = self.model(input_ids=ids, attention_mask=ids != pad, labels=labels).logits
                lp = torch.log_softmax(logits.float(), -1)
                picked = lp.gather(-1, labels.clamp(min=0)[..., None])[..., 0]
                totals = (picked * (labels != -100)).sum(-1).tolist()
                for (i, j, _, _), v in zip(chunk, totals, strict=True):
                    scores[i][j] = v
        return scores

    def run(self, requests: list[dict]) -> dict:
        """Scores, predictions and each data set's metric."""
        scores = self.score(requests)
        preds = [max(range(len(s)), key=lambda j, s=s: (s[j], -j)) for s in scores]
        by_set: dict[str, list[int]] = {}
        for n, r in enumerate(requests):
            by_set.setdefault(r["task"].split(":")[1], []).append(n)
        metrics = {
            name: metric([requests[n] for n in idx], [preds[n] for n in idx])
            for name, idx in by_set.items()
        }
        keys = [f"{r['task']}|{r['example_id']}" for r in requests]
        return {
            "scores": dict(zip(keys, scores, strict=True)),
            "predictions": dict(zip(keys, preds, strict=True)),
            "metrics": metrics,
        }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", required=True, help="HF directory: weights and tokenizer")
    p.add_argument("--requests", required=True, help="JSON lines written by bench_eval.py")
    p.add_argument("--out", default="", help="where to write scores, predictions, metrics")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-input-len", type=int, default=512)
    p.add_argument("--serve", action="store_true", help="worker mode (interleave's protocol)")
    args = p.parse_args()
    if args.serve:
        state = {}

        def setup():
            state["scorer"] = Scorer(args.model, args.batch_size, args.max_input_len)
            state["scorer"].run(read_requests(args.requests)[:2])  # Warm-up.
            return {"threads": state["scorer"].torch.get_num_threads()}

        def work(request):
            scorer = state["scorer"]
            before = dict(scorer.input_tokens)
            t0 = time.perf_counter()
            scorer.run(read_requests(request.get("requests", args.requests)))
            seconds = time.perf_counter() - t0
            tokens = {k: v - before[k] for k, v in scorer.input_tokens.items()}
            return {"seconds": seconds, "input_tokens": tokens}

        interleave.serve(setup, work)
        return
    result = Scorer(args.model, args.batch_size, args.max_input_len).run(
        read_requests(args.requests)
    )
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(result, f)
    print(json.dumps(result["metrics"]))


if __name__ == "__main__":
    main()
