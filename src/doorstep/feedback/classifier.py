"""Classifies a feedback comment's topic offline: delivery, returns, product, service, price or other.

Two parts, both measured (`doorstep feedback evaluate-classifier`):
- keyword rules (regular expressions) that are precise when exactly one topic's words appear;
- a small multinomial naive Bayes model on word unigrams and bigrams, trained on our own labelled examples
  (feedback/data/labelled_comments.csv), for everything the rules cannot settle.
No network, no downloaded model: the training data ships in the package and trains in milliseconds.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import pairwise
from pathlib import Path

TOPICS = ("delivery", "returns", "product", "service", "price", "other")
DATA = Path(__file__).parent / "data" / "labelled_comments.csv"
HELD_OUT_SHARE = 0.25  # evaluation split
SPLIT_SEED = 20261123

KEYWORDS: dict[str, re.Pattern[str]] = {
    "delivery": re.compile(
        r"\b(deliver\w*|courier|driver|parcel|package|tracking|shipp\w*|dispatch\w*|arriv\w*|"
        r"late|depot|carrier|van|post office|transit)\b"
    ),
    "returns": re.compile(
        r"\b(return\w*|refund\w*|exchange\w*|money back|store credit|label|drop off|send it back|"
        r"sent it back|swapp\w*)\b"
    ),
    "product": re.compile(
        r"\b(size|sizing|fit\w*|quality|colou?r|material|fabric|zip|seam|stitch\w*|broken|"
        r"faulty|wrong (item|size)|comfortable|leather|strap|described|picture|photos?)\b"
    ),
    "service": re.compile(
        r"\b(agent|support|service|staff|team|chat\w*|assistant|repl\w*|answer\w*|help\w*|"
        r"rude|phone|call|ticket|complaint|emails?|messages?)\b"
    ),
    "price": re.compile(
        r"\b(price\w*|expensive|cheap\w*|cost\w*|value|discount|coupon|promo|charged|fees?|"
        r"overpriced|bargain|money|billed|penny|afford\w*)\b"
    ),
}
_WORD = re.compile(r"[a-z']+")


def tokens(text: str) -> list[str]:
    words = _WORD.findall(text.lower())
    return words + [f"{a}_{b}" for a, b in pairwise(words)]


def rule_topic(text: str) -> str | None:
    """The topic when exactly one topic's keywords appear, else None (ambiguous or no keyword)."""
    lowered = text.lower()
    hits = [topic for topic, pattern in KEYWORDS.items() if pattern.search(lowered)]
    return hits[0] if len(hits) == 1 else None


@dataclass
class NaiveBayes:
    """Multinomial naive Bayes with Laplace smoothing."""

    alpha: float = 1.0
    priors: dict[str, float] = field(default_factory=dict)
    counts: dict[str, Counter[str]] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=dict)
    vocabulary: set[str] = field(default_factory=set)

    def fit(self, examples: list[tuple[str, str]]) -> NaiveBayes:
        labels = Counter(label for _, label in examples)
        self.priors = {t: math.log(labels[t] / len(examples)) for t in labels}
        self.counts = {t: Counter() for t in labels}
        for text, label in examples:
            toks = tokens(text)
            self.counts[label].update(toks)
            self.vocabulary.update(toks)
        self.totals = {t: sum(c.values()) for t, c in self.counts.items()}
        return self

    def scores(self, text: str) -> dict[str, float]:
        v = len(self.vocabulary) or 1
        toks = [t for t in tokens(text) if t in self.vocabulary]
        return {
            label: prior
            + sum(
                math.log((self.counts[label][t] + self.alpha) / (self.totals[label] + self.alpha * v))
                for t in toks
            )
            for label, prior in self.priors.items()
        }

    def predict(self, text: str) -> str:
        if not any(t in self.vocabulary for t in tokens(text)):
            return "other"
        s = self.scores(text)
        return max(s, key=lambda k: s[k])


def load_examples(path: Path = DATA) -> list[tuple[str, str]]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines()[1:]:
        if line.strip():
            topic, _, comment = line.partition(",")
            rows.append((comment.strip(), topic.strip()))
    return rows


def split(examples: list[tuple[str, str]]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """A fixed stratified split: the same held-out set on every run."""
    rng = random.Random(SPLIT_SEED)
    train, test = [], []
    for topic in TOPICS:
        group = [e for e in examples if e[1] == topic]
        rng.shuffle(group)
        cut = round(len(group) * HELD_OUT_SHARE)
        test += group[:cut]
        train += group[cut:]
    return train, test


@dataclass
class TopicClassifier:
    model: NaiveBayes

    def classify(self, text: str | None) -> str | None:
        if text is None or not text.strip():
            return None
        return rule_topic(text) or self.model.predict(text)


@lru_cache(maxsize=1)
def default_classifier() -> TopicClassifier:
    return TopicClassifier(NaiveBayes().fit(load_examples()))


def classify(text: str | None) -> str | None:
    """The topic of a comment (None for an empty comment)."""
    return default_classifier().classify(text)


def evaluate() -> dict[str, float | int]:
    """Accuracy on the held-out examples of: the rules alone (undecided counts as wrong), the model alone,
    and both together, the model trained on the rest only."""
    train, test = split(load_examples())
    model = NaiveBayes().fit(train)
    combined = TopicClassifier(model)
    n = len(test)
    rules = sum(rule_topic(text) == label for text, label in test)
    nb = sum(model.predict(text) == label for text, label in test)
    both = sum(combined.classify(text) == label for text, label in test)
    decided = sum(rule_topic(text) is not None for text, _ in test)
    return {
        "train": len(train),
        "held_out": n,
        "rules_accuracy": rules / n,
        "rules_coverage": decided / n,
        "model_accuracy": nb / n,
        "combined_accuracy": both / n,
    }
