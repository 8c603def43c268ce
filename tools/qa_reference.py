"""transformers 4's extractive question-answering decoding, reimplemented (transformers 5 removed
the pipeline): the reference tests/read.rs compares `densa read` with, through the goldens that
tools/make_fixtures.py writes.

What transformers 4's `QuestionAnsweringPipeline` did, step by step:
1. The (question, context) pair is tokenized with `truncation="only_second"`, `max_length`
   = max_seq_len and `stride` = doc_stride, with overflowing tokens: the context is cut into
   windows that overlap by doc_stride tokens; the question is repeated in each.
2. Per window, tokens that cannot be part of an answer (the question, special tokens) get
   start and end logits of -10000, except the first token ([CLS] / <s>).
3. Softmax of the start logits and of the end logits over the window; then the first token's
   probabilities are set to 0.
4. A span (s, e) scores start[s] * end[e], for s <= e < s + max_answer_len, s and e both allowed;
   the window's top_k spans are kept.
5. The span's text is the context from the first character of the word holding token s to the
   last character of the word holding token e (`align_to_words`).
6. All windows' spans are sorted by score; the top_k are the answers.
"""
import numpy as np


def windows(tokenizer, question, context, max_seq_len, doc_stride):
    """The windows of a pair: `tokenizers.Encoding`s (the first and its overflowing ones)."""
    tokenizer.enable_truncation(max_seq_len, stride=doc_stride, strategy="only_second")
    first = tokenizer.encode(question, context)
    return [first] + list(first.overflowing)


def decode(window, start_logits, end_logits, context, max_answer_len, top_k):
    """The top_k spans of one window: dicts with score, start, end (characters) and answer."""
    seq = window.sequence_ids
    allowed = np.array([s == 1 for s in seq])
    allowed[0] = True  # the first token stays unmasked (it stands for "no answer")
    start = np.where(allowed, np.asarray(start_logits, dtype=np.float64), -10000.0)
    end = np.where(allowed, np.asarray(end_logits, dtype=np.float64), -10000.0)
    start = np.exp(start - start.max())
    start /= start.sum()
    end = np.exp(end - end.max())
    end /= end.sum()
    start[0] = end[0] = 0.0
    outer = np.triu(np.outer(start, end))
    outer = np.tril(outer, max_answer_len - 1)
    candidates = []
    n = len(seq)
    for s in range(n):
        for e in range(s, min(n, s + max_answer_len)):
            if allowed[s] and allowed[e]:
                candidates.append((outer[s, e], s, e))
    candidates.sort(key=lambda c: -c[0])
    answers = []
    for score, s, e in candidates[:top_k]:
        start_char, end_char = word_chars(window, s)[0], word_chars(window, e)[1]
        answers.append({"score": float(score), "start": start_char, "end": end_char,
                        "answer": context[start_char:end_char]})
    return answers


def word_chars(window, token):
    """(first, last + 1) character of the context word holding `token` within this window."""
    if window.sequence_ids[token] != 1:
        return (0, 0)
    word = window.word_ids[token]
    spans = [window.offsets[t] for t in range(len(window.ids))
             if window.sequence_ids[t] == 1 and window.word_ids[t] == word]
    return (min(a for a, _ in spans), max(b for _, b in spans))


def answer(tokenizer, logits_fn, question, context, max_seq_len=384, doc_stride=128, max_answer_len=15, top_k=1):
    """The pipeline end to end. `logits_fn(window)` gives (start_logits, end_logits)."""
    found = []
    for i, window in enumerate(windows(tokenizer, question, context, max_seq_len, doc_stride)):
        start_logits, end_logits = logits_fn(window)
        for a in decode(window, start_logits, end_logits, context, max_answer_len, top_k):
            found.append(dict(a, window=i))
    found.sort(key=lambda a: -a["score"])
    return found[:top_k]
