"""Emerging hotspots: clusters of similar complaints about one place, company or community.

A hotspot is a group of petitions and grid matters of one district, received
within a window (default the 30 days up to the month's end), that are about
the same thing (a company, a project, an estate, a community) and are far
more numerous than such complaints usually are there. The monthly
risk-warning report lists them by district and town; 红黄蓝 warnings are
raised from them.

How they are found (`find_hotspots`)
------------------------------------
1. **Text.** Title and content, NFKC-normalised and lower-cased; the
   platform's own markers (``再次反映：``, ``网格上报：``, dates) are removed
   and digit runs masked, so amounts, head counts and dates make no
   difference. Place and subject names stay in: they are what tells one
   hotspot from another. A grid matter and the petition it was escalated to
   count once (`merge_escalated`; the warehouse's `fct_cases` already does
   this, the step matters for other inputs).
2. **Features.** No segmenter is available, so the features are character
   2-4-grams weighted by sublinear TF-IDF, fitted on all texts of the
   baseline periods and the window. Template phrases shared by thousands of
   routine complaints (``拖欠工资``, ``物业不作为``) get a low weight; a name
   new to the city is made of rare n-grams and dominates the similarity of
   the texts that contain it.
3. **Clusters.** Within each district, the window's texts are clustered by
   average-linkage agglomerative clustering on cosine similarity, stopping
   at `link_similarity`. Not connected components of a similarity graph:
   template texts chain, one shared phrase after another, into a single
   district-wide component. The clusters are then regrouped by the names
   their texts share (`_regroup_by_name`): a cluster naming two companies
   is split, clusters naming the same subject in different templates (a
   petition, a grid worker's note) are merged, and a text left alone joins
   the group whose name it contains.
4. **Emerging, not merely large.** Routine clusters (the same templates
   about the same pooled companies and estates) come every month, so size
   proves nothing. A cluster is described by the mean of its members'
   vectors and a radius: the lowest mean similarity of a member to the
   others (leave-one-out, at least `member_similarity`). The same rule picks
   the matching texts of the window (observed) and of the `lookback_days`
   before it; with `seasonal_pad_days` also of the same season a year
   earlier, so the yearly wave of wage arrears before the Spring Festival
   is not news. Counts are of sources (a petitioner once per window-long
   block, every grid matter on its own), so one person's repeats are not a
   hotspot. The baseline is the lookback count plus half a match (Jeffreys
   prior: a subject never seen before is rare, not impossible), scaled to
   the window, or the seasonal rate when higher. A cluster is a hotspot
   when its observed count is at most `max_p_value` likely under a Poisson
   law with the baseline as mean, at least `min_ratio` times the baseline,
   and it has `min_cases` cases from `min_sources` sources.
5. **One subject.** The label is the name the cluster's texts share: among
   the spans ending in an organisation or place suffix (有限公司, 公司,
   项目, 物流园, 小区, 工地, 学校, 医院, 社区, 村, ...; `ENTITY_SUFFIXES`),
   found in at least `subject_min_share` of the texts and
   `subject_min_lift` times more often than in the district's texts, the
   longest of those found in nearly as many texts as the commonest. A
   cluster sharing no name must come for at least `town_share` from one
   town; its label is that town and the longest distinctive phrase the texts
   share (a surge of generic complaints spread over a district is a trend of
   the category, not a local hotspot). Labels hold only CJK characters,
   letters and digits (they come from citizens' text) and at most 40 of them.
6. **Rank and key.** Hotspots are ranked by ``score = -log10(p)``. The key is
   ``sha256(district code | label)`` (16 hex digits): it stays the same
   while the cluster grows, spreads to other towns or lasts several months,
   so next month's report can follow the hotspot up.

Deterministic: inputs are sorted, ties broken by value, nothing random.

Measured on the simulated city (2023-2025, seed 20250101; the dev warehouse),
month-ends 2024-01 to 2025-12 with the default parameters: both planted
risks found in their first month (the wage arrears by 2025-03-31, 28 cases
all planted; the land acquisition by 2025-05-31 with its first 5 cases) and
followed under the same key while they grow; 1 other hotspot in 24 months;
about 2.5 s a month, loading from the warehouse included.

Warehouse: `load_case_texts` reads `marts.fct_case_texts`; `run_hotspots`
finds a month's hotspots (the window ending on its last day, reading nothing
received later) and replaces that month's rows of `risk.hotspots` and
`risk.hotspot_cases` in one transaction.
"""

from __future__ import annotations

import bisect
import calendar
import hashlib
import itertools
import math
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np

SUBJECT_MAX_CHARS = 40
_ESCALATION_DAYS = 30


@dataclass(frozen=True)
class CaseText:
    """One row of `marts.fct_case_texts`: a petition or a grid matter with its text."""

    case_id: str
    matter_source: str  # 'petition' or 'grid'
    received_date: date
    district_code: str
    district_name: str
    town_code: str
    town_name: str
    grid_code: str | None
    category_code: str
    category_name: str
    top_category_code: str
    person_key: str | None
    group_size: int
    title: str
    content: str


@dataclass(frozen=True)
class HotspotParams:
    """Settings of `find_hotspots` (see the module docstring for their role)."""

    window_days: int = 30  # the window is (window_end - window_days, window_end]
    lookback_days: int = 180  # baseline period: the days right before the window
    seasonal_pad_days: int | None = 15  # also the same season a year earlier, +- this; None: off
    ngram_min: int = 2
    ngram_max: int = 4
    link_similarity: float = 0.5  # average-linkage stop (cosine similarity)
    member_similarity: float = 0.35  # lowest mean similarity to the members a member may have
    min_cases: int = 5
    min_sources: int = 3  # distinct petitioners; each grid matter without one counts alone
    max_p_value: float = 1e-4  # Poisson tail probability of the observed count
    min_ratio: float = 3.0  # observed / baseline
    baseline_prior: float = 0.5  # matches added to the baseline period's count (Jeffreys prior)
    recent_days: int = 14
    merge_escalated: bool = True  # a grid matter and the petition it was escalated to count once
    town_share: float = 0.6  # a cluster without a shared name must have this share of it in one town
    subject_min_share: float = 0.5  # a subject name occurs in at least this share of the texts
    subject_min_lift: float = 5.0  # ... and this many times more often than in the district's texts

    def __post_init__(self) -> None:
        if self.window_days < 1 or self.lookback_days < 1:
            raise ValueError("window_days and lookback_days must be positive")
        if not 0 < self.link_similarity <= 1 or not 0 < self.member_similarity <= 1:
            raise ValueError("similarities must be in (0, 1]")
        if self.ngram_min < 1 or self.ngram_max < self.ngram_min:
            raise ValueError("bad n-gram range")


@dataclass(frozen=True)
class Hotspot:
    """One emerging hotspot of a window (counts are over the window's cases of the hotspot).

    `baseline` is the expected number of sources for such a cluster in a
    window (from the preceding months, see the module docstring), `score`
    is -log10 of the Poisson tail probability `p_value` of what was seen.
    """

    key: str
    district_code: str
    district_name: str
    town_codes: tuple[str, ...]
    town_names: tuple[str, ...]
    category_code: str
    category_name: str
    subject: str
    case_ids: tuple[str, ...]
    n_cases: int
    n_persons: int
    n_people: int
    n_group: int
    first_date: date
    last_date: date
    recent_cases: int
    baseline: float
    score: float
    p_value: float = field(default=1.0, compare=False)


# --------------------------------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------------------------------

_PREFIX = re.compile(r"^(?:\s*(?:再次反映|网格上报|重复件|转办)\s*[:：]\s*)+")
_DATE = re.compile(r"\d{2,4}\s*年\s*\d{1,2}\s*月(?:\s*\d{1,2}\s*日)?|\d{4}[-/.]\d{1,2}[-/.]\d{1,2}")
_DIGITS = re.compile(r"\d+(?:[.,]\d+)*")
_NON_WORD = re.compile(r"[^0-9a-z#\u4e00-\u9fff]+")
_CJK_RUN = re.compile(r"[\u4e00-\u9fff]+")
_WORD_RUN = re.compile(r"[0-9a-z\u4e00-\u9fff]+")

# Endings of names of organisations, projects and places (longest first where one ends another).
ENTITY_SUFFIXES: tuple[str, ...] = (
    "股份有限公司", "有限责任公司", "有限公司", "公司", "集团", "工程", "项目", "物流园", "产业园",
    "工业园", "科技园", "园区", "开发区", "小区", "花园", "家园", "公寓", "大厦", "广场", "商场",
    "市场", "酒店", "工地", "学校", "中学", "小学", "幼儿园", "医院", "卫生院", "养老院",
    "养殖场", "工厂", "厂", "合作社", "社区", "村", "置业", "地产", "实业", "商贸", "物流", "科技",
)  # fmt: skip
# A suffix followed by one of these is part of a longer word (村民, 厂房, 公司化, 项目部...).
_SUFFIX_NOT_BEFORE = {
    "村": "民委集干级组里庄镇",
    "厂": "房区长家",
    "工程": "款师队量",
    "项目": "部经",
    "市场": "监价",
    "社区": "工居",
}
# Words that are never part of a name: candidates are cut at them.
_SEPARATORS = re.compile(
    "反映|反应|举报|投诉|咨询|关于|本人|我们|村民|居民|工人|群众|业主|人员|职工|要求|涉及|承建|位于|"
    "务工|拖欠|讨要|补偿|不满|问题|情况"
)
# Characters a name hardly ever starts with (prepositions in front of it). Not 和/向/与: 和平村,
# 向阳社区 are names.
_STOP_PREFIXES: tuple[str, ...] = ("在", "对", "的", "某", "被", "该", "其", "我", "从", "给")
_MIN_NAME_CHARS = 3
_MAX_NAME_CHARS = 20


def normalize_text(title: str | None, content: str | None) -> str:
    """The text the model compares: title and content, boilerplate markers and numbers removed."""
    parts = []
    for raw in (title, content):
        text = unicodedata.normalize("NFKC", raw or "").lower()
        text = _PREFIX.sub("", text)
        text = _DATE.sub(" ", text)
        text = text.replace("已反映此事", " ")
        text = _DIGITS.sub("#", text)
        parts.append(_NON_WORD.sub(" ", text).strip())
    return " ".join(p for p in parts if p)


def entity_names(text: str, places: Iterable[str] = ()) -> set[str]:
    """Candidate names in a normalised text: spans of 3-20 CJK characters ending in an entity suffix.

    Every left extension of a span is a candidate (without a segmenter the
    start of a name is unknown); `subject_label` picks the one the cluster's
    texts share. Spans never cross a verb or noun that cannot be part of a
    name (反映, 村民, 拖欠, ...) nor one of `places` (the names of towns and
    districts, known from the structured fields), and never start with a
    preposition.
    """
    for place in sorted(places, key=lambda p: (-len(p), p)):
        text = text.replace(place, " ")
    names: set[str] = set()
    for run in _CJK_RUN.findall(_SEPARATORS.sub(" ", text)):
        ends: dict[int, int] = {}  # end of a name -> length of the longest suffix ending there
        for suffix in ENTITY_SUFFIXES:
            start = run.find(suffix)
            while start >= 0:
                end = start + len(suffix)
                if end == len(run) or run[end] not in _SUFFIX_NOT_BEFORE.get(suffix, ""):
                    ends[end] = max(ends.get(end, 0), len(suffix))
                start = run.find(suffix, start + 1)
        for end, suffix_len in ends.items():
            # At least two characters before the suffix: 有限公司 or 小区 alone names nothing.
            shortest = max(_MIN_NAME_CHARS, suffix_len + 2)
            for begin in range(max(0, end - _MAX_NAME_CHARS), end - shortest + 1):
                name = run[begin:end]
                if not name.startswith(_STOP_PREFIXES):
                    names.add(name)
    return names


def _substrings(text: str, shortest: int = 3, longest: int = 16) -> set[str]:
    out: set[str] = set()
    for run in _WORD_RUN.findall(text):
        if "#" in run:
            continue
        for i in range(len(run)):
            for j in range(i + shortest, min(len(run), i + longest) + 1):
                out.add(run[i:j])
    return out


def _clean_label(label: str) -> str:
    plain = "".join(_WORD_RUN.findall(unicodedata.normalize("NFKC", label)))
    return plain[:SUBJECT_MAX_CHARS]


class _Reference:
    """The texts a label must stand out from, with a cache of how many contain a string."""

    def __init__(self, texts: Sequence[str], places: Iterable[str] = ()) -> None:
        self.n = max(1, len(texts))
        self._joined = "\n".join(texts)
        self._starts = list(itertools.accumulate((len(t) + 1 for t in texts[:-1]), initial=0))
        self._counts: dict[str, int] = {}
        self.places = tuple(sorted(set(places), key=lambda p: (-len(p), p)))

    def share(self, s: str) -> float:
        """The share of the texts containing `s`."""
        if s not in self._counts:
            docs = {
                bisect.bisect_right(self._starts, m.start()) for m in re.finditer(re.escape(s), self._joined)
            }
            self._counts[s] = len(docs)
        return self._counts[s] / self.n


def _distinctive(
    candidates: Counter[str], n: int, reference: _Reference, params: HotspotParams
) -> dict[str, int]:
    """The candidates found in enough of the n texts and far more often than in `reference`."""
    need = max(2, math.ceil(params.subject_min_share * n))
    return {
        s: c
        for s, c in candidates.items()
        if c >= need and c / n >= params.subject_min_lift * reference.share(s)
    }


def _best(found: dict[str, int]) -> str:
    """Among the names found in nearly as many texts as the commonest, the longest."""
    if not found:
        return ""
    top = max(found.values())
    near = [s for s, c in found.items() if c >= 0.8 * top]
    return _clean_label(min(near, key=lambda s: (-len(s), -found[s], s)))


def _cluster_names(texts: Iterable[str], reference: _Reference, params: HotspotParams) -> dict[str, int]:
    names: Counter[str] = Counter()
    n = 0
    for t in texts:
        names.update(entity_names(t, reference.places))
        n += 1
    return _distinctive(names, n, reference, params) if n else {}


def subject_label(
    texts: Sequence[str],
    reference: Sequence[str],
    params: HotspotParams = HotspotParams(),
    places: Iterable[str] = (),
) -> str:
    """A short plain-text label of what the normalised `texts` share (see the module docstring).

    `reference` holds the normalised texts of the district the cluster comes
    from (the cluster's own included): a label must be far commoner in the
    cluster than there. `places` are town and district names, never part of
    a name. Returns '' when nothing distinctive is shared.
    """
    return _subject_and_kind(texts, _Reference(reference, places), params)[0]


def _subject_and_kind(texts: Sequence[str], reference: _Reference, params: HotspotParams) -> tuple[str, bool]:
    """The label and whether it is a name (True) or only the texts' distinctive words (False)."""
    if not texts:
        return "", False
    label = _best(_cluster_names(texts, reference, params))
    if label:
        return label, True
    spans: Counter[str] = Counter()
    for t in texts:
        for place in reference.places:
            t = t.replace(place, " ")
        spans.update(_substrings(t))
    return _best(_distinctive(spans, len(texts), reference, params)), False


def hotspot_key(district_code: str, subject: str) -> str:
    """Stable id of a hotspot: the district and the normalised subject label."""
    norm = "".join(_WORD_RUN.findall(unicodedata.normalize("NFKC", subject).lower()))
    return hashlib.sha256(f"{district_code}|{norm}".encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------------


def poisson_tail(n: int, lam: float) -> float:
    """P(X >= n) for X ~ Poisson(lam)."""
    if n <= 0:
        return 1.0
    if lam <= 0:
        return 0.0
    # Sum the upper tail from n on, in log space; the terms decrease once k > lam.
    log_term = -lam + n * math.log(lam) - math.lgamma(n + 1)
    if n < lam:
        lower = sum(math.exp(-lam + k * math.log(lam) - math.lgamma(k + 1)) for k in range(n))
        return max(0.0, 1.0 - lower)
    total, k, term = 0.0, n, log_term
    while True:
        total += math.exp(term)
        k += 1
        term += math.log(lam) - math.log(k)
        if term < log_term - 40 or k > n + 10_000:
            break
    return min(1.0, total)


# --------------------------------------------------------------------------------------------------
# Hotspots
# --------------------------------------------------------------------------------------------------


def _window_bounds(window_end: date, params: HotspotParams) -> tuple[date, date, date]:
    start = window_end - timedelta(days=params.window_days - 1)
    return start, start - timedelta(days=params.lookback_days), window_end


def data_start(window_end: date, params: HotspotParams = HotspotParams()) -> date:
    """The earliest received date `find_hotspots` looks at for a window ending on `window_end`."""
    start, lookback_start, _ = _window_bounds(window_end, params)
    if params.seasonal_pad_days is None:
        return lookback_start
    return min(lookback_start, start - timedelta(days=365 + params.seasonal_pad_days))


@dataclass
class _Cluster:
    members: list[int]  # indexes into the district's window cases
    subject: str = ""


def _agglomerate(vectors: Any, threshold: float) -> list[list[int]]:
    n = vectors.shape[0]
    if n == 1:
        return [[0]]
    from sklearn.cluster import AgglomerativeClustering

    sim = (vectors @ vectors.T).toarray()
    dist = np.clip(1.0 - sim, 0.0, 2.0)
    np.fill_diagonal(dist, 0.0)
    labels = AgglomerativeClustering(
        n_clusters=None, metric="precomputed", linkage="average", distance_threshold=1.0 - threshold
    ).fit_predict(dist)
    groups: dict[int, list[int]] = defaultdict(list)
    for i, lab in enumerate(labels):
        groups[int(lab)].append(i)
    return sorted(groups.values(), key=lambda g: g[0])


def _source_count(cases: Iterable[CaseText], window_end: date, days: int) -> int:
    """Cases counted by source: a petitioner once per window-long block, a grid matter each."""
    seen: set[tuple[str, int]] = set()
    n = 0
    for c in cases:
        if c.person_key:
            key = (c.person_key, (window_end - c.received_date).days // days)
            if key in seen:
                continue
            seen.add(key)
        n += 1
    return n


def _dominant(values: Iterable[str]) -> str:
    counts = Counter(values)
    return min(counts, key=lambda v: (-counts[v], v))


def _without_escalated_grid_matters(cases: Sequence[CaseText], texts: Sequence[str]) -> list[int]:
    """Indexes of the cases to keep: a grid matter escalated to a petition counts once, as the petition.

    A petition of channel 网格上报 repeats its grid matter's description. It is
    recognised as a petition of the same grid that contains the grid matter's
    whole (normalised) text and was received within `_ESCALATION_DAYS` after it.
    """
    by_grid: dict[str, list[int]] = defaultdict(list)
    for i, c in enumerate(cases):
        if c.matter_source == "grid" and c.grid_code and texts[i]:
            by_grid[c.grid_code].append(i)
    dropped: set[int] = set()
    for i, c in enumerate(cases):  # in date order; each petition takes the latest matter before it
        if c.matter_source != "petition" or not c.grid_code:
            continue
        for j in reversed(by_grid.get(c.grid_code, ())):
            lag = (c.received_date - cases[j].received_date).days
            if j not in dropped and 0 <= lag <= _ESCALATION_DAYS and texts[j] in texts[i]:
                dropped.add(j)
                break
    return [i for i in range(len(cases)) if i not in dropped]


def find_hotspots(
    cases: Sequence[CaseText], *, window_end: date, params: HotspotParams = HotspotParams()
) -> list[Hotspot]:
    """The emerging hotspots of the window ending on `window_end`, best first.

    Cases received after `window_end` are ignored; so are cases before the
    baseline period (`data_start`). See the module docstring for the method.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer

    win_start, look_start, _ = _window_bounds(window_end, params)
    first_day = data_start(window_end, params)
    season: tuple[date, date] | None = None
    if params.seasonal_pad_days is not None:
        pad = timedelta(days=params.seasonal_pad_days)
        season = (win_start - timedelta(days=365) - pad, window_end - timedelta(days=365) + pad)
    usable = sorted(
        # A matter without a district (a town code missing from the region seed) cannot be placed.
        (c for c in cases if first_day <= c.received_date <= window_end and c.district_code),
        key=lambda c: (c.received_date, c.case_id, c.title or "", c.content or "", c.person_key or ""),
    )
    unique: dict[str, CaseText] = {}
    for c in usable:
        unique.setdefault(c.case_id, c)  # a repeated row counts once
    usable = list(unique.values())
    texts = [normalize_text(c.title, c.content) for c in usable]
    if params.merge_escalated:
        kept = _without_escalated_grid_matters(usable, texts)
        usable, texts = [usable[i] for i in kept], [texts[i] for i in kept]
    if not any(c.received_date >= win_start for c in usable):
        return []
    vectorizer = TfidfVectorizer(
        analyzer="char_wb",
        ngram_range=(params.ngram_min, params.ngram_max),
        sublinear_tf=True,
        lowercase=False,
        dtype=np.float64,
    )
    try:
        matrix = vectorizer.fit_transform(texts).tocsr()
    except ValueError:  # no text at all
        return []

    places = {c.town_name for c in usable if c.town_name} | {
        c.district_name for c in usable if c.district_name
    }
    by_district: dict[str, list[int]] = defaultdict(list)
    for i, c in enumerate(usable):
        by_district[c.district_code].append(i)

    hotspots: list[Hotspot] = []
    for district in sorted(by_district):
        idx = by_district[district]
        window = [i for i in idx if usable[i].received_date >= win_start]
        if len(window) < params.min_cases:
            continue
        recent_base = [i for i in idx if look_start <= usable[i].received_date < win_start]
        seasonal_base = [i for i in idx if season and season[0] <= usable[i].received_date <= season[1]]
        reference = _Reference([texts[i] for i in idx if look_start <= usable[i].received_date], places)
        hotspots.extend(
            _district_hotspots(
                usable, texts, matrix, window, recent_base, seasonal_base, reference, params, window_end
            )
        )
    hotspots.sort(key=lambda h: (-h.score, h.key))
    return hotspots


def _regroup_by_name(
    groups: list[list[int]], texts: Sequence[str], reference: _Reference, params: HotspotParams
) -> list[list[int]]:
    """Turn similarity clusters into subject clusters, using the names the texts share.

    * Split: a cluster whose texts name different subjects (two companies
      complained about in the same words) is cut into one group per name,
      the commonest first; texts naming none stay together.
    * Merge: groups join when one's name is a distinctive name of the other
      (新港物流园 and 新港物流园二期征地项目): one company's complaints come in
      several templates (a petition, a repeat, a grid worker's note) that
      character n-grams can keep apart although they are one hotspot.
    * A text alone joins the largest group whose name it contains.
    """
    named: dict[str, list[int]] = {}
    unnamed: list[list[int]] = []
    alone: list[int] = []
    for g in groups:
        rest = list(g)
        while len(rest) >= 2:
            label = _best(_cluster_names((texts[k] for k in rest), reference, params))
            inside = [k for k in rest if label and label in texts[k]]
            if not inside:
                break
            named.setdefault(label, []).extend(inside)
            taken = set(inside)
            rest = [k for k in rest if k not in taken]
        if len(rest) >= 2:
            unnamed.append(rest)
        else:
            alone.extend(rest)
    labels = sorted(named, key=lambda lab: (-len(named[lab]), lab))
    for k in sorted(alone):
        home = next((lab for lab in labels if lab in texts[k]), None)
        if home is not None:
            named[home].append(k)

    parent = {lab: lab for lab in labels}

    def root(lab: str) -> str:
        while parent[lab] != lab:
            lab = parent[lab]
        return lab

    for lab in labels:
        names = _cluster_names((texts[k] for k in named[lab]), reference, params)
        for other in labels:
            if other != lab and other in names:
                a, b = sorted((root(lab), root(other)))
                parent[b] = a
    joined: dict[str, list[int]] = defaultdict(list)
    for lab in labels:
        joined[root(lab)].extend(named[lab])
    return sorted([sorted(g) for g in joined.values()] + [sorted(g) for g in unnamed])


def _district_hotspots(
    usable: Sequence[CaseText],
    texts: Sequence[str],
    matrix: Any,
    window: list[int],
    recent_base: list[int],
    seasonal_base: list[int],
    reference: _Reference,
    params: HotspotParams,
    window_end: date,
) -> list[Hotspot]:
    w_vec = matrix[window]
    w_texts = [texts[i] for i in window]
    clusters = _regroup_by_name(_agglomerate(w_vec, params.link_similarity), w_texts, reference, params)

    days = params.window_days
    season_days = params.window_days + 2 * (params.seasonal_pad_days or 0)
    r_vec = matrix[recent_base] if recent_base else None
    s_vec = matrix[seasonal_base] if seasonal_base else None
    found: dict[str, Hotspot] = {}
    for members in clusters:
        if len(members) < params.min_cases:
            continue
        # A text's similarity to the cluster: its mean cosine similarity to the members. A member's
        # own is taken without itself (leave one out), so members and other texts are measured alike.
        mean_vec = np.asarray(w_vec[members].mean(axis=0)).ravel()
        sims = w_vec @ mean_vec
        m = len(members)
        sims[members] = (m * sims[members] - 1.0) / (m - 1)
        radius = max(params.member_similarity, float(sims[members].min())) - 1e-9
        observed = [int(k) for k in np.flatnonzero(sims >= radius)]
        if len(observed) < params.min_cases:
            continue
        # Expected count in a window: the baseline period's matches scaled to the window, with half a
        # match added (Jeffreys prior), so a subject never seen before is not taken as impossible.
        # Counts are of sources, so one petitioner's repeats within a window count once.
        hits = 0.0
        if r_vec is not None:
            matched = np.flatnonzero(r_vec @ mean_vec >= radius)
            hits = _source_count((usable[recent_base[k]] for k in matched), window_end, days)
        base = (hits + params.baseline_prior) * days / params.lookback_days
        if s_vec is not None:
            matched = np.flatnonzero(s_vec @ mean_vec >= radius)
            base = max(
                base,
                _source_count((usable[seasonal_base[k]] for k in matched), window_end, days)
                * days
                / season_days,
            )
        cases = [usable[window[k]] for k in observed]
        n = _source_count(cases, window_end, days)
        if n < params.min_ratio * base or n < params.min_sources:
            continue
        p = poisson_tail(n, base)
        if p > params.max_p_value:
            continue
        hotspot = _make_hotspot(cases, [w_texts[k] for k in observed], reference, base, p, params, window_end)
        if hotspot is None:
            continue
        previous = found.get(hotspot.key)
        if previous is None or (hotspot.score, hotspot.n_cases) > (previous.score, previous.n_cases):
            found[hotspot.key] = hotspot
    # Two clusters of one district may end up describing the same cases: keep the stronger one.
    kept: list[Hotspot] = []
    for h in sorted(found.values(), key=lambda h: (-h.score, h.key)):
        ids = set(h.case_ids)
        if any(len(ids & set(k.case_ids)) > 0.5 * len(ids) for k in kept):
            continue
        kept.append(h)
    return kept


def _make_hotspot(
    cases: list[CaseText],
    texts: list[str],
    reference: _Reference,
    baseline: float,
    p: float,
    params: HotspotParams,
    window_end: date,
) -> Hotspot | None:
    district_code = cases[0].district_code
    subject, named = _subject_and_kind(texts, reference, params)
    if not named:
        # No shared name: the cluster is about a place only if most of it comes from one town.
        # Its label is that town and the category, never the shared words themselves: those are
        # citizens' own words and may name a third party the scrubbing did not know of.
        town = _dominant(c.town_name for c in cases)
        if sum(1 for c in cases if c.town_name == town) < params.town_share * len(cases):
            return None
        subject = _clean_label(town + _dominant(c.category_name for c in cases))
    towns = sorted({(c.town_code, c.town_name) for c in cases})
    category = _dominant(c.category_code for c in cases)
    category_name = _dominant(c.category_name for c in cases if c.category_code == category)
    recent_from = window_end - timedelta(days=params.recent_days - 1)
    ordered = sorted(cases, key=lambda c: (c.received_date, c.case_id))
    score = min(300.0, -math.log10(p)) if p > 0 else 300.0
    return Hotspot(
        key=hotspot_key(district_code, subject),
        district_code=district_code,
        district_name=cases[0].district_name,
        town_codes=tuple(t[0] for t in towns),
        town_names=tuple(t[1] for t in towns),
        category_code=category,
        category_name=category_name,
        subject=subject,
        case_ids=tuple(sorted(c.case_id for c in cases)),
        n_cases=len(cases),
        n_persons=len({c.person_key for c in cases if c.person_key}),
        n_people=sum(max(1, c.group_size or 1) for c in cases),
        n_group=sum(1 for c in cases if (c.group_size or 0) >= 5),
        first_date=ordered[0].received_date,
        last_date=ordered[-1].received_date,
        recent_cases=sum(1 for c in cases if c.received_date >= recent_from),
        baseline=round(baseline, 3),
        score=round(score, 3),
        p_value=p,
    )


# --------------------------------------------------------------------------------------------------
# Warehouse
# --------------------------------------------------------------------------------------------------

_LOAD_SQL = """
select case_id, matter_source, received_date, district_code, district_name, town_code, town_name,
       grid_code, category_code, category_name, top_category_code, person_key, group_size,
       coalesce(title, ''), coalesce(content, '')
from marts.fct_case_texts
where received_date between %s and %s
order by received_date, case_id
"""

DDL = """
create schema if not exists risk;
create table if not exists risk.hotspots (
    as_of_month date not null,
    hotspot_key text not null,
    rank int not null,
    district_code text not null,
    district_name text,
    town_codes text[] not null,
    town_names text[] not null,
    category_code text,
    category_name text,
    subject text not null,
    n_cases int not null,
    n_persons int not null,
    n_people int not null,
    n_group int not null,
    recent_cases int not null,
    baseline numeric not null,
    score numeric not null,
    first_date date not null,
    last_date date not null,
    primary key (as_of_month, hotspot_key)
);
create table if not exists risk.hotspot_cases (
    as_of_month date not null,
    hotspot_key text not null,
    case_id text not null,
    primary key (as_of_month, hotspot_key, case_id),
    foreign key (as_of_month, hotspot_key) references risk.hotspots (as_of_month, hotspot_key)
        on delete cascade
);
"""


def load_case_texts(conn: Any, start: date, end: date) -> list[CaseText]:
    """Cases of `marts.fct_case_texts` received in [start, end] (both included)."""
    rows = conn.execute(_LOAD_SQL, (start, end)).fetchall()
    return [
        CaseText(
            case_id=r[0],
            matter_source=r[1],
            received_date=r[2],
            district_code=r[3],
            district_name=r[4],
            town_code=r[5],
            town_name=r[6],
            grid_code=r[7],
            category_code=r[8],
            category_name=r[9],
            top_category_code=r[10],
            person_key=r[11],
            group_size=int(r[12] or 0),
            title=r[13],
            content=r[14],
        )
        for r in rows
    ]


def month_end(day: date) -> date:
    return day.replace(day=calendar.monthrange(day.year, day.month)[1])


def ensure_tables(conn: Any) -> None:
    conn.execute(DDL)


_INSERT_HOTSPOT = """
insert into risk.hotspots (as_of_month, hotspot_key, rank, district_code, district_name, town_codes,
    town_names, category_code, category_name, subject, n_cases, n_persons, n_people, n_group,
    recent_cases, baseline, score, first_date, last_date)
values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
"""


def _hotspot_row(month: date, rank: int, h: Hotspot) -> tuple:
    return (
        month, h.key, rank, h.district_code, h.district_name, list(h.town_codes), list(h.town_names),
        h.category_code, h.category_name, h.subject, h.n_cases, h.n_persons, h.n_people, h.n_group,
        h.recent_cases, h.baseline, h.score, h.first_date, h.last_date,
    )  # fmt: skip


def run_hotspots(conn: Any, *, as_of_month: date, params: HotspotParams = HotspotParams()) -> list[Hotspot]:
    """Find the hotspots of the month of `as_of_month` and store them, replacing that month's rows.

    The window ends on the month's last day; nothing received later is read.
    Rows are stored under the month's first day. Tables and schema are created
    when missing; deleting the month's rows and inserting the new ones is one
    transaction (a savepoint when `conn` is already in one: the caller's
    commit, e.g. leaving `xinfang.db.connect`, makes it durable).
    """
    month = as_of_month.replace(day=1)
    end = month_end(month)
    cases = load_case_texts(conn, data_start(end, params), end)
    hotspots = find_hotspots(cases, window_end=end, params=params)
    with conn.transaction():
        ensure_tables(conn)
        conn.execute("delete from risk.hotspot_cases where as_of_month = %s", (month,))
        conn.execute("delete from risk.hotspots where as_of_month = %s", (month,))
        with conn.cursor() as cur:
            cur.executemany(
                _INSERT_HOTSPOT, [_hotspot_row(month, rank, h) for rank, h in enumerate(hotspots, start=1)]
            )
            cur.executemany(
                "insert into risk.hotspot_cases (as_of_month, hotspot_key, case_id) values (%s, %s, %s)",
                [(month, h.key, cid) for h in hotspots for cid in h.case_ids],
            )
    return hotspots
