"""`xinfang risk tag-eval`: train the category tagger on labelled data and measure it on other data.

Four ways to get a training and a test set:

* `--train A.csv --test B.csv`: any two labelled CSV files;
* `--data X.csv --split 0.3 [--folds 5]`: one file, a stratified split (and k-fold cross-validation);
* `--warehouse --test-from 2025-07-01`: the warehouse's petitions, earlier months against later ones;
* `--model M.joblib --test B.csv`: a saved model (trusted file, see `xinfang.risk.tagging`) on a test file.

It prints accuracy, macro-F1, the majority-class baseline and a per-label
table (or, with `--json`, the same as one JSON object). Data errors end with
exit status 2 and a message naming the file, row and column.
"""

from __future__ import annotations

import argparse
import json
import sys
import unicodedata
from datetime import date
from pathlib import Path
from typing import Any

from xinfang.risk import tagging
from xinfang.risk.labelled_csv import (
    DEFAULT_ENCODING,
    LabelledDataError,
    LabelledTexts,
    drop_conflicting_duplicates,
    read_labelled_csv,
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    data = p.add_argument_group("data (one of --train/--test, --data, --warehouse, --model/--test)")
    data.add_argument("--train", type=Path, metavar="CSV", help="labelled CSV to train on")
    data.add_argument("--test", type=Path, metavar="CSV", help="labelled CSV to measure on")
    data.add_argument(
        "--data", type=Path, metavar="CSV", help="one labelled CSV, split into train and test (--split)"
    )
    data.add_argument(
        "--split",
        type=float,
        metavar="SHARE",
        default=0.3,
        help="test share of --data (stratified; default 0.3)",
    )
    data.add_argument(
        "--folds", type=int, metavar="K", default=0, help="also k-fold cross-validation on --data (e.g. 5)"
    )
    data.add_argument("--warehouse", action="store_true", help="train and test on the warehouse's petitions")
    data.add_argument(
        "--train-from",
        type=date.fromisoformat,
        metavar="YYYY-MM-DD",
        help="--warehouse: first registration day",
    )
    data.add_argument(
        "--test-from",
        type=date.fromisoformat,
        metavar="YYYY-MM-DD",
        help="--warehouse: first test day (train before)",
    )
    data.add_argument(
        "--test-before",
        type=date.fromisoformat,
        metavar="YYYY-MM-DD",
        help="--warehouse: day after the last test day",
    )
    data.add_argument("--include-hotline", action="store_true", help="--warehouse: add hotline work orders")
    data.add_argument(
        "--model", type=Path, metavar="PATH", help="measure this saved model (trusted file) on --test"
    )
    cols = p.add_argument_group("CSV columns")
    cols.add_argument(
        "--text-column",
        action="append",
        dest="text_columns",
        metavar="COL",
        help="text column; repeat to join several (e.g. subject and details), in the order given",
    )
    cols.add_argument("--label-column", metavar="COL", help="label column")
    cols.add_argument(
        "--id-column",
        metavar="COL",
        help="record id column: repeats keep the first; ids whose rows disagree on the label are dropped",
    )
    cols.add_argument(
        "--encoding", default=DEFAULT_ENCODING, help=f"CSV encoding (default {DEFAULT_ENCODING})"
    )
    p.add_argument("--seed", type=int, default=tagging.DEFAULT_SEED, help="seed of the split and the model")
    p.add_argument("--save-model", type=Path, metavar="PATH", help="save the trained model to PATH")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


class UsageError(ValueError):
    pass


def _read(path: Path, args: argparse.Namespace) -> LabelledTexts:
    if not args.text_columns or not args.label_column:
        raise UsageError("give --text-column (one or more) and --label-column for CSV data")
    data = read_labelled_csv(
        path,
        text_columns=args.text_columns,
        label_column=args.label_column,
        id_column=args.id_column,
        encoding=args.encoding,
    )
    return drop_conflicting_duplicates(data)


def _warehouse(args: argparse.Namespace) -> tuple[LabelledTexts, LabelledTexts]:
    from xinfang.db import connect

    if not args.test_from:
        raise UsageError("--warehouse needs --test-from YYYY-MM-DD (training uses the months before it)")
    with connect() as conn:
        conn.read_only = True
        train = tagging.load_warehouse_history(
            conn,
            registered_from=args.train_from,
            registered_before=args.test_from,
            include_hotline=args.include_hotline,
        )
        test = tagging.load_warehouse_history(
            conn,
            registered_from=args.test_from,
            registered_before=args.test_before,
            include_hotline=args.include_hotline,
        )
    train.source = f"warehouse, registered {args.train_from or '…'} to before {args.test_from}"
    test.source = f"warehouse, registered {args.test_from} to before {args.test_before or '…'}"
    for part, name in ((train, "training"), (test, "test")):
        if not part.texts:
            raise UsageError(
                f"the warehouse holds no labelled petitions in the {name} period ({part.source})"
            )
    return train, test


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Everything the command prints, as a dict."""
    modes = [bool(args.train), bool(args.data), args.warehouse, bool(args.model)]
    if sum(modes) != 1:
        raise UsageError("choose one of --train/--test, --data, --warehouse or --model/--test")
    report: dict[str, Any] = {"seed": args.seed, "notes": []}
    cv = None
    if args.data:
        data = _read(args.data, args)
        report["notes"] += data.notes
        train_idx, test_idx = tagging.stratified_split(data.labels, test_size=args.split, seed=args.seed)
        train, test = data.subset(train_idx), data.subset(test_idx)
        report["mode"] = f"stratified split of {args.data}: test share {args.split:g}, seed {args.seed}"
        if args.folds:
            cv = tagging.cross_validate(data.texts, data.labels, folds=args.folds, seed=args.seed)
    elif args.warehouse:
        train, test = _warehouse(args)
        report["notes"] += sorted(set(train.notes + test.notes))
        report["mode"] = f"warehouse petitions, test from {args.test_from}"
    else:
        if not args.test:
            raise UsageError("give --test B.csv to measure on")
        test = _read(args.test, args)
        report["notes"] += [f"test: {n}" for n in test.notes]
        if args.model:
            train = None
            report["mode"] = f"saved model {args.model} on {args.test}"
        else:
            train = _read(args.train, args)
            report["notes"] += [f"train: {n}" for n in train.notes]
            report["mode"] = f"train on {args.train}, test on {args.test}"

    if train is None:
        tagger = tagging.load(args.model)
        report["train"] = {"source": tagger.source or str(args.model), "rows": tagger.n_train}
        train_texts: set[str] = set()
    else:
        tagger = tagging.train(train.texts, train.labels, seed=args.seed, source=train.source)
        report["train"] = {"source": train.source, "rows": len(train)}
        report["baseline"] = tagging.majority_baseline(train.labels, test.labels)
        train_texts = {tagging.normalize_text(t) for t in train.texts}
    report["test"] = {"source": test.source, "rows": len(test)}
    report["model"] = tagger.config.describe()
    report["result"] = tagging.evaluate(tagger, test.texts, test.labels)
    if train_texts:
        unseen = [i for i, t in enumerate(test.texts) if tagging.normalize_text(t) not in train_texts]
        report["test_texts_seen_in_training"] = len(test) - len(unseen)
        if unseen and len(unseen) < len(test):
            # Templated or repeated texts flatter a model: the figures on texts it never saw.
            part = test.subset(unseen)
            report["result_unseen_texts"] = tagging.evaluate(tagger, part.texts, part.labels)
    if cv:
        report["cross_validation"] = cv
    if args.save_model:
        report["saved_model"] = str(tagging.save(tagger, args.save_model))
    return report


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _pad(text: str, width: int) -> str:
    return text + " " * max(0, width - _width(text))


def render(report: dict[str, Any]) -> str:
    result = report["result"]
    lines = [
        f"tag-eval: {report['mode']}",
        f"  train: {report['train']['source']} ({report['train']['rows']} rows)",
        f"  test:  {report['test']['source']} ({report['test']['rows']} rows)",
        f"  model: {report['model']}",
    ]
    lines += [f"  note: {n}" for n in report["notes"]]
    if "test_texts_seen_in_training" in report:
        lines.append(
            f"  test texts also in the training set (after normalisation): "
            f"{report['test_texts_seen_in_training']} of {result['n_test']}"
        )
    if "result_unseen_texts" in report:
        u = report["result_unseen_texts"]
        lines.append(
            f"  on the {u['n_test']} test texts not in the training set: "
            f"accuracy {u['accuracy']:.3f}, macro-F1 {u['macro_f1']:.3f}"
        )
    if result["labels_not_in_training"]:
        lines.append(f"  test labels never seen in training: {', '.join(result['labels_not_in_training'])}")
    lines += ["", f"accuracy  {result['accuracy']:.3f}", f"macro-F1  {result['macro_f1']:.3f}"]
    if "baseline" in report:
        b = report["baseline"]
        lines.append(
            f"majority-class baseline ({b['label']}): "
            f"accuracy {b['accuracy']:.3f}, macro-F1 {b['macro_f1']:.3f}"
        )
    if "cross_validation" in report:
        cv = report["cross_validation"]
        lines.append(
            f"{cv['folds']}-fold cross-validation (stratified, seed {cv['seed']}; mean ± sd): "
            f"accuracy {cv['accuracy_mean']:.3f} ± {cv['accuracy_sd']:.3f}, "
            f"macro-F1 {cv['macro_f1_mean']:.3f} ± {cv['macro_f1_sd']:.3f}"
        )
    labels = list(result["per_label"])
    width = max([_width("label"), *(_width(label) for label in labels)]) + 2
    lines += ["", f"{_pad('label', width)}precision  recall     f1  support  predicted"]
    for label in labels:
        v = result["per_label"][label]
        lines.append(
            f"{_pad(label, width)}{v['precision']:>9.3f}  {v['recall']:>6.3f}  {v['f1']:>5.3f}  "
            f"{v['support']:>7d}  {v['predicted']:>9d}"
        )
    if "saved_model" in report:
        lines += ["", f"model saved to {report['saved_model']}"]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    try:
        report = measure(args)
    except (LabelledDataError, UsageError, LookupError, FileNotFoundError) as exc:
        print(f"xinfang risk tag-eval: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # a split or training that the data cannot support
        print(f"xinfang risk tag-eval: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        print(render(report))
    return 0
