"""Span F1 equal to seqeval's default mode, and scoring models on encoded splits.

from xlcl.evaluate import span_f1
span_f1([["B-time", "I-time", "O"]], [["B-time", "I-time", "O"]])["f1"]  # 1.0
"""

from xlcl.evaluate.spans import SentenceSpans, SpanCounts, count_sentences, count_spans, span_f1

__all__ = ["SentenceSpans", "SpanCounts", "count_sentences", "count_spans", "span_f1"]
