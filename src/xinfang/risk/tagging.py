"""Category tagging of petition text: character n-gram TF-IDF and a linear SVM.

Chinese is written without spaces, so the features are characters and
character pairs (1- and 2-grams) of the normalised text, weighted by
sublinear TF-IDF; a linear SVM with class-balanced weights separates the
categories. Nothing is downloaded: no segmenter dictionary, no pretrained
model. Training is deterministic: the same texts, labels and seed give the
same model and the same predictions.

* `train(texts, labels)` returns a `Tagger`; `Tagger.predict(texts)` tags texts.
* `evaluate(tagger, texts, labels)` gives accuracy, macro-F1 and per-label figures.
* `train_from_warehouse(conn)` learns from the warehouse's labelled history:
  the online platform's petitions (title and content, already scrubbed of
  personal data) labelled with their top-level category (`left(category_code, 6)`),
  named as in `dbt_project/seeds/categories.csv` (城乡建设, 劳动社保, ...).
* `save(tagger, path)` / `load(path)` keep a trained model in a file, by
  default under the data folder (`data/models/`).

**Model files are trusted local artefacts.** They are joblib (pickle) files:
loading one runs whatever code its author put in it. Load only files this
platform wrote itself, from the data folder; never a file received from
elsewhere.
"""

from __future__ import annotations

import csv
import logging
import os
import re
import statistics
import tempfile
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np

from xinfang.risk.labelled_csv import LabelledTexts

log = logging.getLogger(__name__)

MODEL_FORMAT = 1
DEFAULT_SEED = 20250101
MODEL_FILE_NAME = "category_tagger.joblib"
# Below this many training texts every n-gram is kept (min_df=1): pruning would leave too little.
SMALL_TRAINING_SET = 50

_WHITESPACE = re.compile(r"\s+")


def normalize_text(text: str | None) -> str:
    """The text the model sees: NFKC, whitespace runs collapsed, trimmed, Latin letters lower-cased.

    NFKC turns full-width letters, digits and punctuation into their
    half-width forms (`ＡＢＣ１２３，！` → `abc123,!` after lower-casing) and the
    ideographic space U+3000 and no-break space U+00A0 into plain spaces, so
    the tab/newline/全角空格 runs that real exports carry become one space.
    """
    if not text:
        return ""
    text = unicodedata.normalize("NFKC", text)
    return _WHITESPACE.sub(" ", text).strip().lower()


@dataclass(frozen=True)
class TaggerConfig:
    """The model's settings; the defaults were chosen by 5-fold cross-validation on real messages."""

    ngram_min: int = 1
    ngram_max: int = 2
    min_df: int = 2  # an n-gram must occur in two training texts (1 below SMALL_TRAINING_SET texts)
    c: float = 1.0  # the SVM's regularisation: smaller is smoother
    class_weight: str | None = "balanced"  # rare categories weigh as much as common ones

    def describe(self) -> str:
        weights = ", class-balanced" if self.class_weight == "balanced" else ""
        return (
            f"character {self.ngram_min}-{self.ngram_max}-gram TF-IDF (sublinear, min_df {self.min_df}) "
            f"+ linear SVM (C={self.c:g}{weights})"
        )


class Tagger:
    """A trained tagger: `predict(texts)` returns one label per text."""

    def __init__(
        self,
        pipeline: Any,
        *,
        labels: Sequence[str],
        n_train: int,
        config: TaggerConfig,
        seed: int,
        source: str,
    ):
        self.pipeline = pipeline
        self.labels = list(labels)
        self.n_train = n_train
        self.config = config
        self.seed = seed
        self.source = source

    def predict(self, texts: Iterable[str]) -> list[str]:
        normalised = [normalize_text(t) for t in texts]
        if not normalised:
            return []
        return [str(label) for label in self.pipeline.predict(normalised)]

    def __repr__(self) -> str:
        return f"Tagger({len(self.labels)} labels, n_train={self.n_train}, source={self.source!r})"


def train(
    texts: Sequence[str],
    labels: Sequence[str],
    *,
    config: TaggerConfig | None = None,
    seed: int = DEFAULT_SEED,
    source: str = "",
) -> Tagger:
    """Train a tagger on texts and their labels (at least two distinct labels)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import Pipeline
    from sklearn.svm import LinearSVC

    config = config or TaggerConfig()
    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
    distinct = sorted(set(labels))
    if len(distinct) < 2:
        raise ValueError(f"training needs at least two distinct labels, got {distinct}")
    normalised = [normalize_text(t) for t in texts]
    vectorizer = TfidfVectorizer(
        analyzer="char",
        ngram_range=(config.ngram_min, config.ngram_max),
        min_df=config.min_df if len(normalised) >= SMALL_TRAINING_SET else 1,
        sublinear_tf=True,
        lowercase=False,  # normalize_text did it
        dtype=np.float64,
    )
    classifier = LinearSVC(C=config.c, class_weight=config.class_weight, random_state=seed, max_iter=5000)
    pipeline = Pipeline([("tfidf", vectorizer), ("svm", classifier)])
    pipeline.fit(normalised, [str(label) for label in labels])
    return Tagger(pipeline, labels=distinct, n_train=len(texts), config=config, seed=seed, source=source)


# --- measuring -------------------------------------------------------------------------------------


def score(
    true: Sequence[str], predicted: Sequence[str], *, n_train: int, training_labels: Iterable[str] = ()
) -> dict[str, Any]:
    """Accuracy, macro-F1 and per-label precision/recall/F1/support of predictions.

    Macro-F1 is the unweighted mean of the F1 of every label that occurs in
    the truth or in the predictions (scikit-learn's convention), so a label
    that is never predicted counts with F1 0.
    """
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    if len(true) != len(predicted):
        raise ValueError(f"{len(true)} true labels but {len(predicted)} predictions")
    if not true:
        raise ValueError("nothing to score: no test texts")
    labels = sorted(set(true) | set(predicted))
    precision, recall, f1, support = precision_recall_fscore_support(
        true, predicted, labels=labels, zero_division=0
    )
    per_label = {
        label: {
            "precision": float(p),
            "recall": float(r),
            "f1": float(f),
            "support": int(s),
            "predicted": int(sum(1 for x in predicted if x == label)),
        }
        for label, p, r, f, s in zip(labels, precision, recall, f1, support, strict=True)
    }
    seen = set(training_labels)
    return {
        "accuracy": float(accuracy_score(true, predicted)),
        "macro_f1": float(sum(v["f1"] for v in per_label.values()) / len(labels)),
        "per_label": per_label,
        "n_train": n_train,
        "n_test": len(true),
        "labels_not_in_training": sorted(set(true) - seen) if seen else [],
    }


def evaluate(tagger: Tagger, texts: Sequence[str], labels: Sequence[str]) -> dict[str, Any]:
    """Tag `texts` and score the tags against `labels`: {accuracy, macro_f1, per_label, n_train, n_test}."""
    return score(
        [str(label) for label in labels],
        tagger.predict(texts),
        n_train=tagger.n_train,
        training_labels=tagger.labels,
    )


def majority_label(labels: Sequence[str]) -> str:
    """The most frequent label (ties: the first in sort order)."""
    counts = Counter(labels)
    return min(counts, key=lambda label: (-counts[label], label))


def majority_baseline(train_labels: Sequence[str], test_labels: Sequence[str]) -> dict[str, Any]:
    """The figures of always answering the training set's most frequent label."""
    label = majority_label(train_labels)
    result = score(list(test_labels), [label] * len(test_labels), n_train=len(train_labels))
    result["label"] = label
    return result


def stratified_split(
    labels: Sequence[str], *, test_size: float, seed: int = DEFAULT_SEED
) -> tuple[list[int], list[int]]:
    """Row indexes of a stratified train/test split (each label keeps its share on both sides)."""
    from sklearn.model_selection import train_test_split

    if not 0 < test_size < 1:
        raise ValueError(f"the test share must be between 0 and 1, got {test_size}")
    counts = Counter(labels)
    rare = sorted(label for label, n in counts.items() if n < 2)
    if rare:
        raise ValueError(f"a stratified split needs two rows of every label; only one of: {', '.join(rare)}")
    train_idx, test_idx = train_test_split(
        list(range(len(labels))), test_size=test_size, random_state=seed, shuffle=True, stratify=list(labels)
    )
    return sorted(train_idx), sorted(test_idx)


def cross_validate(
    texts: Sequence[str],
    labels: Sequence[str],
    *,
    folds: int = 5,
    seed: int = DEFAULT_SEED,
    config: TaggerConfig | None = None,
) -> dict[str, Any]:
    """Stratified k-fold cross-validation: mean and sample standard deviation (n-1) over the folds."""
    from sklearn.model_selection import StratifiedKFold

    counts = Counter(labels)
    if folds < 2:
        raise ValueError(f"cross-validation needs at least 2 folds, got {folds}")
    if min(counts.values()) < folds:
        rare = sorted(label for label, n in counts.items() if n < folds)
        raise ValueError(f"{folds}-fold cross-validation needs {folds} rows of every label; fewer of: {rare}")
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    per_fold = []
    for train_idx, test_idx in splitter.split(list(range(len(labels))), list(labels)):
        tagger = train(
            [texts[i] for i in train_idx], [labels[i] for i in train_idx], config=config, seed=seed
        )
        result = evaluate(tagger, [texts[i] for i in test_idx], [labels[i] for i in test_idx])
        per_fold.append({"accuracy": result["accuracy"], "macro_f1": result["macro_f1"]})
    accuracy = [f["accuracy"] for f in per_fold]
    macro_f1 = [f["macro_f1"] for f in per_fold]
    return {
        "folds": folds,
        "seed": seed,
        "accuracy_mean": statistics.mean(accuracy),
        "accuracy_sd": statistics.stdev(accuracy),
        "macro_f1_mean": statistics.mean(macro_f1),
        "macro_f1_sd": statistics.stdev(macro_f1),
        "per_fold": per_fold,
    }


# --- model files -----------------------------------------------------------------------------------


def default_model_path() -> Path:
    from xinfang.config import get_settings

    return get_settings().data_dir / "models" / MODEL_FILE_NAME


def save(tagger: Tagger, path: str | Path | None = None) -> Path:
    """Write the tagger to `path` (default: data/models/category_tagger.joblib), atomically."""
    import joblib
    import sklearn

    path = Path(path) if path else default_model_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": MODEL_FORMAT,
        "sklearn_version": sklearn.__version__,
        "config": asdict(tagger.config),
        "tagger": tagger,
    }
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        joblib.dump(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load(path: str | Path | None = None) -> Tagger:
    """Read a tagger written by `save`. Only for trusted files (see the module's note): it unpickles."""
    import joblib
    import sklearn

    path = Path(path) if path else default_model_path()
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}")
    payload = joblib.load(path)  # a trusted local artefact: see the module docstring
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise ValueError(f"{path} is not a category tagger of format {MODEL_FORMAT}")
    if payload.get("sklearn_version") != sklearn.__version__:
        log.warning(
            "%s was written with scikit-learn %s, this is %s: retrain if predictions look wrong",
            path,
            payload.get("sklearn_version"),
            sklearn.__version__,
        )
    return payload["tagger"]


# --- the warehouse's labelled history --------------------------------------------------------------


def top_level_names(seeds_dir: Path | None = None) -> dict[str, str]:
    """Top-level category code → name, from the dbt seed `categories.csv` (the taxonomy's one source)."""
    from xinfang.config import get_settings

    seeds_dir = seeds_dir or get_settings().dbt_project_dir / "seeds"
    with (seeds_dir / "categories.csv").open(encoding="utf-8", newline="") as fh:
        return {r["category_code"]: r["category_name"] for r in csv.DictReader(fh) if r["level"] == "1"}


def _second_level_to_top(seeds_dir: Path | None = None) -> dict[str, str]:
    """Any category name → its top-level code (a top-level name maps to itself)."""
    from xinfang.config import get_settings

    seeds_dir = seeds_dir or get_settings().dbt_project_dir / "seeds"
    with (seeds_dir / "categories.csv").open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return {r["category_name"]: (r["parent_code"] or r["category_code"]) for r in rows}


_PETITIONS_SQL = """
SELECT title, content, left(category_code, 6) AS top_code, petition_no
FROM raw.online_petitions
WHERE registered_at >= %(from)s AND registered_at < %(before)s
ORDER BY petition_no
"""

# The latest exported version of each work order received in the period. Orders a petition points
# at are part of that petition, whose text is already read: they are left out (in Python, as the
# planner's estimate for DISTINCT ON can turn an anti-join into a nested loop over every pair).
_HOTLINE_SQL = """
SELECT DISTINCT ON (work_order_no) content, category_name, work_order_no
FROM raw.hotline_work_orders
WHERE received_at >= %(from)s AND received_at < %(before)s
ORDER BY work_order_no, file_date DESC, batch_id DESC, source_row DESC
"""
_PETITION_ORDERS_SQL = (
    "SELECT hotline_work_order_no FROM raw.online_petitions WHERE hotline_work_order_no IS NOT NULL"
)


def _bounds(registered_from: date | None, registered_before: date | None) -> dict[str, datetime]:
    low = registered_from or date(1900, 1, 1)
    high = registered_before or date(9999, 1, 1)
    return {
        "from": datetime.combine(low, datetime.min.time()),
        "before": datetime.combine(high, datetime.min.time()),
    }


def load_warehouse_history(
    conn: Any,
    *,
    registered_from: date | None = None,
    registered_before: date | None = None,
    include_hotline: bool = False,
) -> LabelledTexts:
    """Labelled texts of the warehouse (raw schema, read only) registered in [from, before).

    Petitions: `title + " " + content`, labelled with the top-level category
    name of `category_code` (its first six digits). With `include_hotline`,
    also the hotline work orders that stayed with the hotline, their
    `category_name` mapped to its top-level category. `conn` is a psycopg
    connection; nothing is written.
    """
    import psycopg

    names = top_level_names()
    to_top = _second_level_to_top()
    bounds = _bounds(registered_from, registered_before)
    texts: list[str] = []
    labels: list[str] = []
    ids: list[str] = []
    try:
        for title, content, code, number in conn.execute(_PETITIONS_SQL, bounds):
            texts.append(f"{title} {content}")
            labels.append(names.get(code, code))
            ids.append(number)
        unmapped: Counter[str] = Counter()
        if include_hotline:
            in_petitions = {number for (number,) in conn.execute(_PETITION_ORDERS_SQL)}
            for content, category, number in conn.execute(_HOTLINE_SQL, bounds):
                if number in in_petitions:
                    continue
                code = to_top.get(category)
                if code is None:
                    unmapped[category] += 1
                    continue
                texts.append(content)
                labels.append(names.get(code, code))
                ids.append(number)
    except psycopg.errors.UndefinedTable as exc:
        raise LookupError(f"the warehouse has no labelled history yet ({exc.diag.message_primary})") from None
    data = LabelledTexts(texts=texts, labels=labels, ids=ids, source="warehouse")
    if unmapped:
        data.notes.append(
            "hotline orders of categories missing from the taxonomy skipped: "
            + ", ".join(f"{k} ({v})" for k, v in sorted(unmapped.items()))
        )
    return data


def train_from_warehouse(
    conn: Any,
    *,
    registered_from: date | None = None,
    registered_before: date | None = None,
    include_hotline: bool = False,
    config: TaggerConfig | None = None,
    seed: int = DEFAULT_SEED,
) -> Tagger:
    """Train on the warehouse's labelled history (see `load_warehouse_history`).

    The labels are the top-level categories of `dbt_project/seeds/categories.csv`
    that occur in the data: 政治综合 … 其他 (18 in the taxonomy; the simulated
    world uses 13 of them).
    """
    data = load_warehouse_history(
        conn,
        registered_from=registered_from,
        registered_before=registered_before,
        include_hotline=include_hotline,
    )
    if not data.texts:
        raise LookupError("the warehouse holds no labelled petitions in that period")
    span = f"{registered_from or '…'}..{registered_before or '…'}"
    return train(
        data.texts, data.labels, config=config, seed=seed, source=f"warehouse petitions registered {span}"
    )
