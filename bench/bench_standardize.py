"""Benchmark: standardize 2,000,000 messy resident records.

Generates realistic departmental dialects (vectorized, seeded): ID numbers with typos, 15-digit and
full-width forms; names with traditional characters, stray spaces and minority separators; birth
dates in seven shapes including Excel serials; sex in four dialects; phones with separators,
prefixes and extensions; addresses at different granularity with Chinese numerals. Then times
``standardize_frame`` over it in chunks and each standardizer on its own, sampling peak RSS.

    uv run python bench/bench_standardize.py [--rows 2000000] [--chunk 200000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import threading
import time
from collections import Counter

import numpy as np
import pandas as pd
import psutil

from schemas.addresses import parse_addresses
from schemas.dates import standardize_dates
from schemas.id_number import CHECK_CHARS, WEIGHTS, standardize_id_numbers
from schemas.names import standardize_names
from schemas.phones import standardize_phones
from schemas.resident import standardize_frame
from schemas.sex import standardize_sex

TODAY = dt.date(2026, 11, 21)
REGIONS = ["341522", "341522", "341522", "342423", "341502", "341503", "340121", "320382", "410526", "650102"]
SURNAMES = list("王李张刘陈杨黄赵吴周徐孙马朱胡郭何林高罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏")
SURNAMES += list("吕丁任沈单解仇区查朴") + ["欧阳", "司马", "上官", "诸葛", "尉迟"]
GIVEN = list("伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华文建国志永海东春林德成福生金龙辉宏俊浩宇鹏飞峰子轩")
GIVEN += list("兰梅凤玉珍红萍慧婷雪琳佳欣雨晶月莉颖倩洁雅涵")
TRADITIONAL = str.maketrans("张刘陈杨黄赵吴马孙郑谢韩冯邓萧叶苏吕伟丽华国东龙辉宏浩鹏飞凤红萍欣颖洁单区",
                            "張劉陳楊黃趙吳馬孫鄭謝韓馮鄧蕭葉蘇呂偉麗華國東龍輝宏浩鵬飛鳳紅萍欣穎潔單區")
MINORITY = ["买买提", "艾力", "阿不都", "吐尔逊", "古丽", "热依拉", "帕提古丽", "卡德尔"]
SEPARATORS = ["·", "•", ".", "・", " ", ""]
TOWNS = ["城关镇", "新店镇", "石店镇", "马店镇", "孟集镇", "花园镇", "扈胡镇", "长集镇", "周集镇", "临水镇", "城西湖乡", "冯井镇"]
VILLAGES = ["东湖村", "西岗村", "南塘村", "北圩村", "新河村", "王楼村", "李台村", "张庄村", "和平社区", "建设社区", "红星村",
            "桥口村", "陈湾村", "大桥社区", "东湖村委会", "和平社区居委会"]
PREFIXES = ["", "霍邱县", "六安市霍邱县", "安徽省六安市霍邱县", "安徽霍邱县", "安徽省 六安市 霍邱县 "]
CN_NUMBERS = ["", "一", "二", "三", "四", "五", "六", "七", "八", "九", "十", "十一", "十二", "十三", "十四", "十五", "十六",
              "十七", "十八", "十九", "二十", "二十一", "二十二", "二十三", "二十四", "二十五"]


def _choice(rng, options, n, p=None) -> np.ndarray:
    return np.asarray(options, dtype=object)[rng.choice(len(options), n, p=p)]


def _where(mask: np.ndarray, a, b) -> np.ndarray:
    return np.where(mask, a, b).astype(object)


def _cat(*parts) -> np.ndarray:
    """Element-wise concatenation of string arrays and constants."""
    n = next(len(p) for p in parts if not isinstance(p, str))
    out = pd.Series(np.full(n, "", dtype=object), dtype="string[pyarrow]")
    for part in parts:
        out = out + (part if isinstance(part, str) else pd.Series(np.asarray(part, dtype=object), dtype="string[pyarrow]"))
    return out.to_numpy(dtype=object)


def _id_numbers(rng, n: int, births: pd.DatetimeIndex, sex: np.ndarray) -> np.ndarray:
    region = _choice(rng, REGIONS, n)
    seq = rng.integers(0, 500, n) * 2 + (sex == 1)
    bodies = _cat(region, births.strftime("%Y%m%d").to_numpy(), pd.Series(seq).astype(str).str.zfill(3).to_numpy())
    digits = np.frombuffer("".join(bodies).encode("ascii"), dtype=np.uint8).reshape(-1, 17).astype(np.int64) - 48
    checks = np.array(list(CHECK_CHARS))[digits @ WEIGHTS % 11]
    return _cat(bodies, checks)


def _messy_ids(rng, ids: np.ndarray) -> np.ndarray:
    n = len(ids)
    s = pd.Series(ids, dtype="string[pyarrow]")
    kind = rng.choice(9, n, p=[0.80, 0.03, 0.02, 0.03, 0.03, 0.02, 0.01, 0.03, 0.03])
    out = s.to_numpy(dtype=object)
    lower = kind == 1
    out[lower] = s[lower].str.lower().to_numpy(dtype=object)
    full_width = kind == 2
    out[full_width] = s[full_width].str.translate(str.maketrans("0123456789X", "０１２３４５６７８９Ｘ")).to_numpy(dtype=object)
    spaced = kind == 3
    out[spaced] = (s[spaced].str.slice(0, 6) + " " + s[spaced].str.slice(6, 14) + " "
                   + s[spaced].str.slice(14)).to_numpy(dtype=object)
    fifteen = (kind == 4) & (s.str.slice(6, 8) == "19").to_numpy()
    out[fifteen] = (s[fifteen].str.slice(0, 6) + s[fifteen].str.slice(8, 17)).to_numpy(dtype=object)
    typo = kind == 5
    pos = rng.integers(0, 17, typo.sum())
    chars = s[typo].to_numpy(dtype=object)
    out[typo] = [c[:p] + str((int(c[p]) + 1) % 10) + c[p + 1:] for c, p in zip(chars, pos)]
    swapped = kind == 6
    out[swapped] = (s[swapped].str.slice(0, 14) + s[swapped].str.slice(15, 16) + s[swapped].str.slice(14, 15)
                    + s[swapped].str.slice(16)).to_numpy(dtype=object)
    out[kind == 7] = _choice(rng, ["无", "/", "000000000000000000", "不详"], (kind == 7).sum())
    out[kind == 8] = _choice(rng, [None, "", " "], (kind == 8).sum())
    return out


def _names(rng, n: int) -> np.ndarray:
    surname = _choice(rng, SURNAMES, n)
    given = _where(rng.random(n) < 0.7, _cat(_choice(rng, GIVEN, n), _choice(rng, GIVEN, n)), _choice(rng, GIVEN, n))
    names = _cat(surname, given)
    kind = rng.choice(5, n, p=[0.88, 0.05, 0.03, 0.02, 0.02])
    trad = kind == 1
    names[trad] = pd.Series(names[trad], dtype="string[pyarrow]").str.translate(TRADITIONAL).to_numpy(dtype=object)
    spaced = kind == 2
    names[spaced] = _cat(surname[spaced], _choice(rng, [" ", "\u3000", "  "], spaced.sum()), given[spaced])
    minority = kind == 3
    k = minority.sum()
    names[minority] = _cat(_choice(rng, MINORITY, k), _choice(rng, SEPARATORS, k), _choice(rng, MINORITY, k))
    names[kind == 4] = _choice(rng, [None, "", "无", "不详", "张1"], (kind == 4).sum())
    return names


def _dates(rng, births: pd.DatetimeIndex) -> np.ndarray:
    n = len(births)
    kind = rng.choice(9, n, p=[0.38, 0.20, 0.10, 0.05, 0.10, 0.05, 0.05, 0.03, 0.04])
    y, m, d = births.year.astype(str), births.month.astype(str), births.day.astype(str)
    serial = (births - pd.Timestamp("1899-12-30")).days
    shapes = [
        births.strftime("%Y-%m-%d"), births.strftime("%Y%m%d"), y + "/" + m + "/" + d, y + "." + m + "." + d,
        births.strftime("%Y年%m月%d日"), pd.Index(serial.astype(str)), births.strftime("%Y-%m-%d 00:00:00"),
    ]
    out = np.empty(n, dtype=object)
    for i, shape in enumerate(shapes):
        out[kind == i] = shape.to_numpy(dtype=object)[kind == i]
    out[kind == 7] = _choice(rng, ["1900-01-01", "0", "无", "1990-02-30", "00000000", "2099-01-01"], (kind == 7).sum())
    out[kind == 8] = _choice(rng, [None, ""], (kind == 8).sum())
    return out


def _sex(rng, sex: np.ndarray) -> np.ndarray:
    n = len(sex)
    sex = np.where(rng.random(n) < 0.01, 3 - sex, sex)  # a slip of the hand: the other sex
    dialects = [np.array([None, "男", "女"], dtype=object), np.array([None, "1", "2"], dtype=object),
                np.array([None, "M", "F"], dtype=object), np.array([None, "男性", "女性"], dtype=object),
                np.array([None, "1.0", "2.0"], dtype=object)]
    kind = rng.choice(7, n, p=[0.40, 0.30, 0.08, 0.10, 0.05, 0.04, 0.03])
    out = np.empty(n, dtype=object)
    for i, table in enumerate(dialects):
        out[kind == i] = table[sex[kind == i]]
    out[kind == 5] = _choice(rng, [None, "", "未知"], (kind == 5).sum())
    out[kind == 6] = _choice(rng, ["X", "男女", "3"], (kind == 6).sum())
    return out


def _phones(rng, n: int) -> np.ndarray:
    mobile = _cat("1", _choice(rng, list("3456789"), n), pd.Series(rng.integers(0, 10**9, n)).astype(str).str.zfill(9).to_numpy())
    m = pd.Series(mobile, dtype="string[pyarrow]")
    landline = _cat("0564-", pd.Series(rng.integers(2_000_000, 9_999_999, n)).astype(str).to_numpy())
    kind = rng.choice(9, n, p=[0.60, 0.06, 0.04, 0.04, 0.08, 0.02, 0.04, 0.05, 0.07])
    shapes = [
        mobile, (m.str.slice(0, 3) + "-" + m.str.slice(3, 7) + "-" + m.str.slice(7)).to_numpy(dtype=object),
        ("+86 " + m).to_numpy(dtype=object),
        (m.str.slice(0, 3) + " " + m.str.slice(3, 7) + " " + m.str.slice(7)).to_numpy(dtype=object),
        landline, _cat(landline, "转", pd.Series(rng.integers(100, 999, n)).astype(str).to_numpy()),
        _cat(mobile, "/", np.roll(mobile, 1)),
    ]
    out = np.empty(n, dtype=object)
    for i, shape in enumerate(shapes):
        out[kind == i] = shape[kind == i]
    out[kind == 7] = _choice(rng, ["无", "00000000000", "11111111111", "12345678901", "1381234567"], (kind == 7).sum())
    out[kind == 8] = _choice(rng, [None, ""], (kind == 8).sum())
    return out


def _addresses(rng, n: int) -> np.ndarray:
    group = rng.integers(1, 26, n)
    house = rng.integers(1, 200, n)
    chinese = rng.random(n) < 0.2
    group_text = _where(chinese, np.asarray(CN_NUMBERS, dtype=object)[group], group.astype(str))
    group_text = _cat(_where(rng.random(n) < 0.1, "第", ""), group_text, _choice(rng, ["组", "组", "组", "村民小组", "队"], n))
    house_text = _where(rng.random(n) < 0.8, _cat(house.astype(str), "号"), "")
    village = _where(rng.random(n) < 0.9, _choice(rng, VILLAGES, n), _choice(rng, ["人民路", "淮河路", "建设街"], n))
    out = _cat(_choice(rng, PREFIXES, n, p=[0.4, 0.2, 0.15, 0.15, 0.05, 0.05]), _choice(rng, TOWNS, n), village,
               _where(np.char.endswith(village.astype(str), "路") | np.char.endswith(village.astype(str), "街"), "", group_text),
               house_text)
    gone = rng.random(n) < 0.05
    out[gone] = _choice(rng, [None, "", "无", "不详"], gone.sum())
    return out


def messy_records(n: int, seed: int = 20261121) -> pd.DataFrame:
    """``n`` raw records as departments send them: about two records per person, in varying dialects."""
    rng = np.random.default_rng(seed)
    persons = max(1, n // 2)
    births = pd.DatetimeIndex(pd.Timestamp("1925-01-01") + pd.to_timedelta(rng.integers(0, 36500, persons), unit="D"))
    sex = rng.integers(1, 3, persons)
    ids = _id_numbers(rng, persons, births, sex)
    who = rng.integers(0, persons, n)
    return pd.DataFrame({
        "source": _choice(rng, ["mz_dibao", "mz_gaoling", "wj_jisheng", "rs_yanglao"], n),
        "source_record_id": pd.Series(np.arange(n)).astype(str).to_numpy(),
        "name": _names(rng, persons)[who],
        "id_number": _messy_ids(rng, ids[who]),
        "sex": _sex(rng, sex[who]),
        "birth_date": _dates(rng, births[who]),
        "phone": _phones(rng, persons)[who],
        "address": _addresses(rng, persons)[who],
    })


class PeakRSS:
    """Samples the process's resident set size in a thread; ``peak`` in MB."""

    def __init__(self, interval: float = 0.02):
        self.interval, self.peak, self._stop = interval, 0.0, threading.Event()
        self._process = psutil.Process()

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._process.memory_info().rss / 2**20)
            self._stop.wait(self.interval)

    def __enter__(self):
        self.peak = self._process.memory_info().rss / 2**20
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--chunk", type=int, default=200_000)
    args = parser.parse_args()

    started = time.perf_counter()
    raw = messy_records(args.rows)
    generated = time.perf_counter() - started
    chunks = [raw.iloc[i:i + args.chunk] for i in range(0, len(raw), args.chunk)]
    standardize_frame(raw.head(1000), today=TODAY)  # warm the caches: gazetteer, OpenCC, pinyin tables

    statuses = ("id_number_status", "name_status", "birth_date_status", "sex_status", "phone_status", "address_status")
    counts = {column: Counter() for column in statuses}
    rows = 0
    with PeakRSS() as rss:
        started = time.perf_counter()
        for chunk in chunks:
            std = standardize_frame(chunk, today=TODAY, default_county="341522")
            rows += len(std)
            for column in statuses:
                counts[column].update(std[column].value_counts().to_dict())
        seconds = time.perf_counter() - started

    steps = {
        "id_number": lambda c: standardize_id_numbers(c["id_number"], today=TODAY),
        "names": lambda c: standardize_names(c["name"]),
        "birth_date": lambda c: standardize_dates(c["birth_date"], today=TODAY),
        "sex": lambda c: standardize_sex(c["sex"]),
        "phones": lambda c: standardize_phones(c["phone"]),
        "addresses": lambda c: parse_addresses(c["address"], default_county="341522"),
    }
    per_step = {}
    for name, step in steps.items():
        t = time.perf_counter()
        for chunk in chunks:
            step(chunk)
        per_step[name] = time.perf_counter() - t

    print(f"generated {len(raw):,} raw records in {generated:.1f} s; chunks of {args.chunk:,}; {psutil.cpu_count()} CPUs; "
          f"peak RSS includes the raw frame ({raw.memory_usage(deep=True).sum() / 2**20:,.0f} MB)")
    print()
    print("| rows | seconds | rows/s | peak RSS MB |")
    print("|---:|---:|---:|---:|")
    print(f"| {rows:,} | {seconds:.1f} | {rows / seconds:,.0f} | {rss.peak:,.0f} |")
    print()
    print("| standardizer | seconds (alone, same chunks) |")
    print("|---|---:|")
    for name, s in per_step.items():
        print(f"| {name} | {s:.1f} |")
    print()
    print("| field | status counts |")
    print("|---|---|")
    for column, counter in counts.items():
        print(f"| {column.removesuffix('_status')} | {', '.join(f'{k} {v:,}' for k, v in counter.most_common())} |")


if __name__ == "__main__":
    main()
