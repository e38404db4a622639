"""Fake but well-formed personal data: names, mobile numbers, ID numbers, addresses.

Everything is drawn from the caller's random generator so the world is
reproducible from its seed. ID numbers carry a valid GB 11643 check digit so
validation code is exercised the way real data would exercise it.
"""

from __future__ import annotations

import random
from datetime import date

from xinfang.pii import id_check_digit

SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
)
GIVEN = (
    "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超兰霞平刚桂英华建国志红梅玉兰文博宇浩然子涵欣怡俊杰思远雨婷晓东春生"
)
MOBILE_PREFIXES = (
    "130",
    "131",
    "132",
    "135",
    "136",
    "137",
    "138",
    "139",
    "150",
    "151",
    "152",
    "158",
    "159",
    "177",
    "180",
    "181",
    "186",
    "187",
    "188",
    "189",
    "199",
)
STREETS = ("人民路", "解放路", "建设路", "和平街", "中山路", "新华街", "滨江路", "朝阳路", "文化路", "胜利街")


def fake_name(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2, 2))))


def fake_mobile(rng: random.Random) -> str:
    return rng.choice(MOBILE_PREFIXES) + f"{rng.randrange(10**8):08d}"


def fake_id_number(rng: random.Random, region_code: str) -> str:
    born = date(1940, 1, 1).toordinal() + rng.randrange(365 * 65)
    first17 = f"{region_code[:6]}{date.fromordinal(born):%Y%m%d}{rng.randrange(1000):03d}"
    return first17 + id_check_digit(first17)


def fake_address(rng: random.Random, district: str, town: str) -> str:
    street = f"{rng.choice(STREETS)}{rng.randrange(1, 300)}号"
    return f"{district}{town}{street}{rng.randrange(1, 30)}栋{rng.randrange(101, 2600)}室"
