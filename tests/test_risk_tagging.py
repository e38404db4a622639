"""The category tagger (xinfang.risk.tagging) and `xinfang risk tag-eval`, on real data.

The real data are 495 citizen messages of the TeddyCup 2020 sample in the
shared data folder (subject, details, and one of 7 top-level categories);
the warehouse test loads the world model's petitions into a database of its
own through the platform's API and the real ingestion.
"""

from __future__ import annotations

import csv
import json
import re
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from xinfang.cli import main
from xinfang.risk import tagging
from xinfang.risk.labelled_csv import (
    LabelledDataError,
    drop_conflicting_duplicates,
    read_labelled_csv,
)

# A copy of shared/data/teddy2020_sample kept with the tests, so they run wherever the repo is cloned.
TEDDY = Path(__file__).resolve().parent / "data" / "teddy2020_sample" / "teddy2020_a2_sample495.csv"
TEXT = ("留言主题", "留言详情")
LABEL = "一级分类"
ID = "留言编号"
COLUMNS = ["--text-column", TEXT[0], "--text-column", TEXT[1], "--label-column", LABEL]
SEED = 20250101

# Measured on the sample (split 0.3, seed 20250101): accuracy 0.838, macro-F1 0.821; over seeds 0-4
# the split's macro-F1 ranged 0.72-0.85 and 5-fold CV gave 0.79-0.81. The floors leave room for
# library drift, and stay far above the majority-class baseline (macro-F1 about 0.05).
ACCURACY_FLOOR = 0.72
MACRO_F1_FLOOR = 0.70


def require_sample() -> None:
    # Not a skip: without the sample these tests would prove nothing.
    assert TEDDY.is_file(), f"the real sample is missing: {TEDDY}"


@pytest.fixture(scope="module")
def teddy_rows() -> list[dict[str, str]]:
    require_sample()
    with TEDDY.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def teddy():
    require_sample()
    data = read_labelled_csv(TEDDY, text_columns=TEXT, label_column=LABEL, id_column=ID)
    return drop_conflicting_duplicates(data)


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["risk", "tag-eval", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def figure(output: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)}\s+([01]\.\d{{3}})$", output, re.MULTILINE)
    assert match, f"no {name} line in:\n{output}"
    return float(match.group(1))


def majority_macro_f1(labels: list[str]) -> tuple[float, float]:
    """Accuracy and macro-F1 of always answering the most frequent label, computed by hand."""
    counts = Counter(labels)
    top = max(counts.values())
    share = top / len(labels)
    f1_top = 2 * share / (1 + share)  # precision = share, recall = 1
    return share, f1_top / len(counts)


# --- the command on the real sample ----------------------------------------------------------------


def test_tag_eval_on_the_real_sample_beats_the_majority_baseline(
    capsys: pytest.CaptureFixture[str], teddy_rows: list[dict[str, str]]
) -> None:
    code, out, err = run_cli(
        capsys, "--data", str(TEDDY), "--split", "0.3", "--seed", str(SEED), "--id-column", ID, *COLUMNS
    )
    assert code == 0, err
    accuracy, macro_f1 = figure(out, "accuracy"), figure(out, "macro-F1")
    base_accuracy, base_f1 = majority_macro_f1([r[LABEL] for r in teddy_rows])
    assert base_accuracy < 0.25 and base_f1 < 0.06  # the sample is balanced enough for this to mean much
    assert accuracy >= ACCURACY_FLOOR, out
    assert macro_f1 >= MACRO_F1_FLOOR, out
    assert macro_f1 >= base_f1 + 0.5 and accuracy >= base_accuracy + 0.4
    # The command's own baseline line agrees with the hand-computed one (split shares are stratified).
    line = re.search(r"majority-class baseline \((.+)\): accuracy ([\d.]+), macro-F1 ([\d.]+)", out)
    assert line and line.group(1) == "劳动和社会保障"
    assert abs(float(line.group(2)) - base_accuracy) < 0.02
    # 148 of 493 rows tested: the one id with two labels was dropped, and said so.
    assert "test:  " in out and "(148 rows)" in out and "(345 rows)" in out
    assert "37042: 劳动和社会保障 / 城乡建设" in out
    # Every label has a row in the per-label table.
    labels = {r[LABEL] for r in teddy_rows}
    table = [line for line in out.splitlines() if line.split(" ")[0] in labels]
    assert len(table) == len(labels) == 7


def test_train_and_test_files_give_the_same_figures_as_the_split(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, teddy
) -> None:
    """--train/--test on the split written out as two GB18030 files (with a BOM-less header)."""
    train_idx, test_idx = tagging.stratified_split(teddy.labels, test_size=0.3, seed=SEED)
    for name, indexes in (("train.csv", train_idx), ("test.csv", test_idx)):
        with (tmp_path / name).open("w", encoding="gb18030", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["编号", "分类", "全文"])
            for i in indexes:
                writer.writerow([teddy.ids[i], teddy.labels[i], teddy.texts[i]])
    code, out, err = run_cli(
        capsys,
        "--train",
        str(tmp_path / "train.csv"),
        "--test",
        str(tmp_path / "test.csv"),
        "--text-column",
        "全文",
        "--label-column",
        "分类",
        "--encoding",
        "gb18030",
        "--seed",
        str(SEED),
        "--json",
    )
    assert code == 0, err
    files = json.loads(out)
    code, out, err = run_cli(
        capsys, "--data", str(TEDDY), "--seed", str(SEED), "--id-column", ID, "--json", *COLUMNS
    )
    assert code == 0, err
    split = json.loads(out)
    assert files["result"]["n_test"] == split["result"]["n_test"] == len(test_idx)
    assert files["result"]["accuracy"] == split["result"]["accuracy"]
    assert files["result"]["macro_f1"] == split["result"]["macro_f1"]
    assert files["result"]["per_label"] == split["result"]["per_label"]


def test_cross_validation_reports_mean_and_sd(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(
        capsys, "--data", str(TEDDY), "--folds", "5", "--id-column", ID, "--json", *COLUMNS
    )
    assert code == 0, err
    cv = json.loads(out)["cross_validation"]
    assert cv["folds"] == len(cv["per_fold"]) == 5
    assert cv["macro_f1_mean"] >= MACRO_F1_FLOOR
    assert 0 < cv["macro_f1_sd"] < 0.1
    assert cv["macro_f1_mean"] == pytest.approx(sum(f["macro_f1"] for f in cv["per_fold"]) / 5)


# --- bad input: the error names the file, the row and the column ------------------------------------


def write_rows(path: Path, header: list[str], rows: list[list[str]], encoding: str = "utf-8") -> Path:
    with path.open("w", encoding=encoding, newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def sample(teddy_rows: list[dict[str, str]], n: int = 6) -> list[list[str]]:
    return [list(r.values()) for r in teddy_rows[:n]]


def test_a_missing_column_is_named_with_the_file_and_the_header(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, teddy_rows: list[dict[str, str]]
) -> None:
    header = list(teddy_rows[0])
    bad = write_rows(
        tmp_path / "no_label.csv", [h if h != LABEL else "分类" for h in header], sample(teddy_rows)
    )
    code, out, err = run_cli(capsys, "--data", str(bad), *COLUMNS)
    assert code == 2 and out == ""
    assert str(bad) in err and f"no column '{LABEL}'" in err and "line 1" in err and "'分类'" in err


def test_an_empty_label_names_row_line_and_column(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, teddy_rows: list[dict[str, str]]
) -> None:
    rows = sample(teddy_rows)
    rows[3][-1] = "  "  # row 4; rows 1-3 span several lines each (their details hold line breaks)
    bad = write_rows(tmp_path / "empty_label.csv", list(teddy_rows[0]), rows)
    line = 2 + sum(r[4].count("\n") + 1 for r in rows[:3])  # the header, then rows 1-3
    code, _, err = run_cli(capsys, "--data", str(bad), *COLUMNS)
    assert code == 2
    assert f"{bad}: row 4 (line {line}), column '{LABEL}': empty label" in err


def test_bytes_that_are_not_the_encoding_name_the_row(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, teddy_rows: list[dict[str, str]]
) -> None:
    """A GB18030 file read as UTF-8: the first non-ASCII byte is in the header; then in row 2."""
    rows = sample(teddy_rows, 3)
    gb = write_rows(tmp_path / "gb.csv", list(teddy_rows[0]), rows, encoding="gb18030")
    code, _, err = run_cli(capsys, "--data", str(gb), *COLUMNS)
    assert code == 2 and str(gb) in err and "the header (line 1) is not valid utf-8-sig" in err
    assert "--encoding" in err

    raw = write_rows(tmp_path / "mixed.csv", list(teddy_rows[0]), rows).read_bytes()
    second = raw.index(rows[1][1].encode())  # row 2's user id, after row 1's multi-line details
    mixed = tmp_path / "mixed.csv"
    mixed.write_bytes(raw[:second] + "投诉".encode("gb18030") + raw[second:])
    line = raw[:second].count(b"\n") + 1
    code, _, err = run_cli(capsys, "--data", str(mixed), *COLUMNS)
    assert code == 2 and f"{mixed}: row 2 (line {line}) is not valid utf-8-sig" in err


def test_a_shifted_row_and_a_short_row_are_refused(tmp_path: Path, teddy_rows: list[dict[str, str]]) -> None:
    header = list(teddy_rows[0])
    rows = sample(teddy_rows, 3)
    rows[1] = [*rows[1], "多出的一列"]
    shifted = write_rows(tmp_path / "shifted.csv", header, rows)
    with pytest.raises(
        LabelledDataError, match=r"shifted\.csv: row 2 \(line \d+\) has 7 fields but the header has 6"
    ):
        read_labelled_csv(shifted, text_columns=TEXT, label_column=LABEL)
    rows = sample(teddy_rows, 3)
    rows[2] = rows[2][:4]
    short = write_rows(tmp_path / "short.csv", header, rows)
    with pytest.raises(
        LabelledDataError, match=r"short\.csv: row 3 \(line \d+\), column '留言详情': missing"
    ):
        read_labelled_csv(short, text_columns=TEXT, label_column=LABEL)


def test_a_bom_is_accepted_and_the_duplicate_id_policy_holds(tmp_path: Path, teddy_rows) -> None:
    rows = sample(teddy_rows, 4)
    rows.append(list(rows[0]))  # an exact repeat: kept once
    rows.append([*rows[1][:5], "环境保护" if rows[1][5] != "环境保护" else "教育文体"])  # a conflict: dropped
    path = tmp_path / "bom.csv"
    path.write_bytes(
        b"\xef\xbb\xbf" + write_rows(tmp_path / "plain.csv", list(teddy_rows[0]), rows).read_bytes()
    )
    for encoding in ("utf-8-sig", "utf-8"):
        data = read_labelled_csv(path, text_columns=TEXT, label_column=LABEL, id_column=ID, encoding=encoding)
        assert len(data) == 6
        kept = drop_conflicting_duplicates(data)
        assert kept.ids == [rows[0][0], rows[2][0], rows[3][0]]
        assert any("conflicting labels" in n and rows[1][0] in n for n in kept.notes)


# --- determinism and normalisation -----------------------------------------------------------------


def test_the_same_seed_gives_the_same_model_and_another_seed_another_split(teddy) -> None:
    train_idx, test_idx = tagging.stratified_split(teddy.labels, test_size=0.3, seed=SEED)
    assert (train_idx, test_idx) == tagging.stratified_split(teddy.labels, test_size=0.3, seed=SEED)
    assert test_idx != tagging.stratified_split(teddy.labels, test_size=0.3, seed=SEED + 1)[1]
    train, test = teddy.subset(train_idx), teddy.subset(test_idx)
    first = tagging.train(train.texts, train.labels, seed=SEED)
    second = tagging.train(list(train.texts), list(train.labels), seed=SEED)
    assert first.predict(test.texts) == second.predict(test.texts)
    assert tagging.evaluate(first, test.texts, test.labels) == tagging.evaluate(
        second, test.texts, test.labels
    )
    result = tagging.evaluate(first, test.texts, test.labels)
    assert set(result) >= {"accuracy", "macro_f1", "per_label", "n_train", "n_test"}
    assert (result["n_train"], result["n_test"]) == (len(train), len(test)) == (345, 148)


def test_normalisation_folds_widths_and_whitespace_runs() -> None:
    raw = "\n\t\t\t\t\t\n\t\t\t\t\t\u3000\u3000ＡＢＣ小区１２３号，噪音扰民！\xa0\xa0请  处理？ \n\t\t\t\t"
    assert tagging.normalize_text(raw) == "abc小区123号,噪音扰民! 请 处理?"
    assert tagging.normalize_text(None) == "" and tagging.normalize_text(" \t\n\u3000") == ""


def test_predictions_do_not_depend_on_layout_or_character_width(teddy) -> None:
    tagger = tagging.train(teddy.texts, teddy.labels, seed=SEED)
    texts = teddy.texts[:80]
    half_to_full = str.maketrans({chr(c): chr(c + 0xFEE0) for c in range(0x21, 0x7F)})
    variants = ["\u3000\u3000\t" + " \n ".join(t.split()).translate(half_to_full) + "\n\t\t" for t in texts]
    assert [tagging.normalize_text(v) for v in variants] == [tagging.normalize_text(t) for t in texts]
    assert tagger.predict(variants) == tagger.predict(texts)


def test_a_saved_model_loads_and_predicts_the_same(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, teddy
) -> None:
    tagger = tagging.train(teddy.texts, teddy.labels, seed=SEED)
    path = tagging.save(tagger, tmp_path / "models" / "tagger.joblib")
    loaded = tagging.load(path)
    assert loaded.labels == tagger.labels and loaded.n_train == len(teddy)
    assert loaded.predict(teddy.texts) == tagger.predict(teddy.texts)
    import joblib

    joblib.dump({"format": 0}, tmp_path / "other.joblib")
    code, out, err = run_cli(capsys, "--model", str(path), "--test", str(TEDDY), "--id-column", ID, *COLUMNS)
    assert code == 0, err
    assert figure(out, "accuracy") == round(
        tagging.evaluate(tagger, teddy.texts, teddy.labels)["accuracy"], 3
    )
    code, _, err = run_cli(capsys, "--model", str(tmp_path / "other.joblib"), "--test", str(TEDDY), *COLUMNS)
    assert code == 2 and "not a category tagger" in err
    with pytest.raises(ValueError, match="not a category tagger"):
        tagging.load(tmp_path / "other.joblib")


def test_the_command_refuses_mixed_or_incomplete_modes(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "--data", str(TEDDY), "--train", str(TEDDY), *COLUMNS)
    assert code == 2 and "choose one of" in err
    code, _, err = run_cli(capsys, "--train", str(TEDDY), *COLUMNS)
    assert code == 2 and "give --test" in err
    code, _, err = run_cli(capsys, "--data", str(TEDDY), "--label-column", LABEL)
    assert code == 2 and "--text-column" in err


def test_training_needs_two_labels_and_a_split_two_rows_of_each() -> None:
    with pytest.raises(ValueError, match="two distinct labels"):
        tagging.train(["甲", "乙"], ["城乡建设", "城乡建设"])
    with pytest.raises(ValueError, match="only one of: 卫生计生"):
        tagging.stratified_split(["城乡建设", "城乡建设", "卫生计生"], test_size=0.3)


# --- the warehouse's labelled history --------------------------------------------------------------

WORLD_SEED = 5150  # a world of its own, in a database of its own
TOKEN = "risk-tagging-test-token"


@pytest.fixture(scope="module")
def warehouse(server_url: str) -> Iterator[tuple[psycopg.Connection, str]]:
    """A fresh database holding the world's petitions of January and February 2024, loaded for real."""
    from xinfang.db import connect
    from xinfang.ingest import online
    from xinfang.sim.web_api import PetitionAPIServer, WorldProvider, start_in_thread
    from xinfang.sim.world import WorldConfig, build_world

    name = f"xinfang_test_risk_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(make_conninfo(server_url), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    params = conninfo_to_dict(server_url)
    params["dbname"] = name
    url = make_conninfo(**params)
    try:
        with connect(url, autocommit=True) as conn:
            online.ensure_schema(conn)
            world = build_world(WorldConfig(seed=WORLD_SEED))
            provider = WorldProvider(world.petitions(date(2024, 1, 1), date(2024, 2, 29)))
            server = PetitionAPIServer(("127.0.0.1", 0), token=TOKEN, records_provider=provider)
            start_in_thread(server)
            try:
                result = online.load_window(
                    conn,
                    base_url=server.url,
                    token=TOKEN,
                    since=datetime(2023, 12, 1),
                    until=datetime(2024, 3, 1),
                    pii_key=b"risk-test-key",
                    page_size=500,
                )
            finally:
                server.shutdown()
                server.server_close()
            assert result.loaded_rows > 1000
            yield conn, url
    finally:
        with psycopg.connect(make_conninfo(server_url), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_train_from_warehouse_learns_the_top_level_categories(
    warehouse: tuple[psycopg.Connection, str],
) -> None:
    warehouse, _ = warehouse
    tagger = tagging.train_from_warehouse(warehouse, registered_before=date(2024, 2, 1))
    expected = warehouse.execute(
        "SELECT count(*), array_agg(DISTINCT left(category_code, 6)) FROM raw.online_petitions "
        "WHERE registered_at < '2024-02-01'"
    ).fetchone()
    names = tagging.top_level_names()
    assert tagger.n_train == expected[0]
    assert tagger.labels == sorted(names[code] for code in expected[1])
    assert {"劳动社保", "城乡建设"} <= set(tagger.labels)

    test = tagging.load_warehouse_history(warehouse, registered_from=date(2024, 2, 1))
    assert (
        len(test)
        == warehouse.execute(
            "SELECT count(*) FROM raw.online_petitions WHERE registered_at >= '2024-02-01'"
        ).fetchone()[0]
    )
    result = tagging.evaluate(tagger, test.texts, test.labels)
    assert result["accuracy"] >= 0.95  # the simulated texts are templates: an easy, not a realistic, test
    assert tagger.predict(["反映某公司拖欠工资，要求尽快结清。"]) == ["劳动社保"]
    # The hotline's table exists (the ingestion's schema) but is empty: nothing is added.
    with_hotline = tagging.load_warehouse_history(
        warehouse, registered_from=date(2024, 2, 1), include_hotline=True
    )
    assert with_hotline.texts == test.texts


def test_tag_eval_measures_later_months_of_the_warehouse(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    warehouse: tuple[psycopg.Connection, str],
) -> None:
    conn, url = warehouse
    monkeypatch.setenv("XINFANG_DATABASE_URL", url)
    code, out, err = run_cli(capsys, "--warehouse", "--test-from", "2024-02-01", "--json")
    assert code == 0, err
    report = json.loads(out)
    counts = conn.execute(
        "SELECT count(*) FILTER (WHERE registered_at < '2024-02-01'), count(*) FILTER "
        "(WHERE registered_at >= '2024-02-01') FROM raw.online_petitions"
    ).fetchone()
    assert (report["train"]["rows"], report["test"]["rows"]) == counts
    assert report["result"]["accuracy"] >= 0.95 > report["baseline"]["accuracy"]
    # Templated texts repeat: the command says how many test texts it saw in training.
    assert 0 < report["test_texts_seen_in_training"] < counts[1]
    code, _, err = run_cli(capsys, "--warehouse", "--test-from", "2030-01-01")
    assert code == 2 and "no labelled petitions in the test period" in err
