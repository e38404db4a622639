"""Pseudonymisation helpers: masking, keyed person hashes, scrubbing free text."""

from __future__ import annotations

import hashlib
import hmac
import re

import pytest

from xinfang.pii import mask_address, mask_name, mask_phone, normalise_phone, person_key, scrub_text


@pytest.mark.parametrize(
    ("name", "masked"),
    [
        ("张三明", "张*明"),
        ("李娜", "李*"),
        ("欧阳翠花", "欧**花"),
        (" 王小二 ", "王*二"),
        ("诸葛孔明亮", "诸***亮"),
    ],
)
def test_mask_name(name: str, masked: str) -> None:
    assert mask_name(name) == masked


def test_mask_name_of_a_single_character_hides_it() -> None:
    assert mask_name("王") == "*"


@pytest.mark.parametrize(
    ("phone", "masked"),
    [
        ("13812345678", "138****5678"),
        ("+86 138 1234 5678", "138****5678"),
        ("138-1234-5678", "138****5678"),
        ("0571-87654321", "057*****4321"),
    ],
)
def test_mask_phone(phone: str, masked: str) -> None:
    assert mask_phone(phone) == masked


@pytest.mark.parametrize(
    "phone",
    [
        "13812345678",
        "+8613812345678",
        "+86 138 1234 5678",
        "+86-138-1234-5678",
        "138 1234 5678",
        "8613812345678",
    ],
)
def test_normalise_phone(phone: str) -> None:
    assert normalise_phone(phone) == "13812345678"


def test_normalise_phone_keeps_a_landline_as_digits() -> None:
    assert normalise_phone("0571-87654321") == "057187654321"


def test_person_key_is_stable_per_key_and_differs_between_keys() -> None:
    first = person_key("13812345678", b"key-one")
    assert first == person_key("13812345678", b"key-one")
    assert first != person_key("13812345678", b"key-two")
    assert first != person_key("13812345679", b"key-one")
    expected = hmac.new(b"key-one", b"13812345678", hashlib.sha256).hexdigest()
    assert first == expected
    assert "13812345678" not in first
    # Not a bare (unkeyed) hash that anyone could recompute from a phone list.
    assert first != hashlib.sha256(b"13812345678").hexdigest()


def test_mask_address_keeps_only_the_administrative_prefix() -> None:
    assert mask_address("江东区东湖街道人民路12号3栋401室", "江东区东湖街道") == "江东区东湖街道***"
    assert mask_address("人民路12号3栋401室", "江东区东湖街道") == "***"


def test_scrub_text_hides_phone_and_id_number_in_chinese_text() -> None:
    id_number = "36990119850317123X"
    text = f"本人电话13812345678，身份证号{id_number}，反映小区物业问题，请回电。"
    scrubbed = scrub_text(text)
    assert "13812345678" not in scrubbed
    assert id_number not in scrubbed
    assert id_number.lower() not in scrub_text(text.replace("X", "x")).lower()
    assert "19850317" not in scrubbed  # the birth date inside the ID number is personal too
    # The surrounding text survives; no run of 11 digits is left.
    assert scrubbed.startswith("本人电话")
    assert "反映小区物业问题，请回电。" in scrubbed
    assert not re.search(r"\d{11}", scrubbed)


def test_scrub_text_leaves_ordinary_numbers_alone() -> None:
    text = "拖欠工资35000元，涉及42名工人，工单号GD2025060100012。"
    assert scrub_text(text) == text


@pytest.mark.parametrize(
    "typed",
    ["+8613812345678", "+86 138-1234-5678", "0086 138 1234 5678", "138-1234-5678", "138 1234 5678"],
)
def test_scrub_text_hides_mobiles_written_with_country_code_or_separators(typed):
    scrubbed = scrub_text(f"请拨打{typed}联系我")
    digits_left = "".join(ch for ch in scrubbed if ch.isdigit())
    assert "12345678" not in digits_left
    assert "5678" in scrubbed  # the masked form keeps the last four digits


def test_normalise_phone_strips_0086():
    assert normalise_phone("0086 138 1234 5678") == "13812345678"


@pytest.mark.parametrize("phone", ["8765432", "87654321", "087654321", "0571876543"])
def test_mask_phone_of_a_short_landline_hides_all_but_its_last_digits(phone):
    masked = mask_phone(phone)
    assert len(masked) == len(phone)
    shown = [c for c in masked if c != "*"]
    assert len(shown) <= 4 and masked.count("*") >= 4
    assert masked.endswith("".join(shown)) and phone.endswith("".join(shown))


def test_scrub_text_hides_the_records_own_name_and_address_and_15_digit_ids():
    text = "我叫王建国，住在江东区东湖街道人民路12号3栋501室，老身份证号110105490101002，求助。"
    scrubbed = scrub_text(text, name="王建国", address="江东区东湖街道人民路12号3栋501室")
    assert "王建国" not in scrubbed and "王*国" in scrubbed
    assert "人民路12号" not in scrubbed
    assert "110105490101002" not in scrubbed and "110105*****1002" in scrubbed


def test_quarantine_reasons_never_carry_a_phone_or_id_number() -> None:
    """A value in the wrong field can be personal data; reasons go to ops.quarantine and the logs."""
    from xinfang.ingest.batches import RowError

    error = RowError("dwbm", "unknown unit code '13812345678' (or 110105199001010021?)")
    assert "13812345678" not in error.reason and "110105199001010021" not in error.reason
    assert "138****5678" in error.reason and error.field == "dwbm"


def test_handler_and_staff_code_reasons_withhold_the_value() -> None:
    """Platforms often send the handler's name where an account code belongs."""
    from xinfang.ingest import online
    from xinfang.ingest.batches import RowError

    with pytest.raises(RowError) as caught:
        online._events(
            {"blgc": [{"xh": 1, "lx": "交办", "sj": "2025-06-02T10:00:00+08:00", "jbr": "张三明", "bz": ""}]},
            "XF3699002025060200001",
        )
    assert "张三明" not in caught.value.reason and caught.value.field.endswith("jbr")


def test_quality_errors_hide_quoted_values_but_keep_relation_names() -> None:
    from xinfang.quality.gates import _short

    text = _short('invalid input syntax for type integer: "张三明 13812345678" in relation "marts.fct_cases"')
    assert "张三明" not in text and "13812345678" not in text
    assert '"marts.fct_cases"' in text
