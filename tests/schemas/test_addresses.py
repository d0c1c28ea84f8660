import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.addresses import COLUMNS, STATUSES, chinese_number, parse_addresses

LEVELS = ["address_province", "address_city", "address_county", "address_town", "address_village", "address_group",
          "address_house_no", "address_county_code", "address_status"]

TRICKY = [
    # raw, (province, city, county, town, village, group, house_no, county code, status)
    ("安徽省六安市霍邱县城关镇东湖村3组12号", ("安徽省", "六安市", "霍邱县", "城关镇", "东湖村", "3", "12", "341522", "valid")),
    ("城关镇东湖村三组12号", (None, None, None, "城关镇", "东湖村", "3", "12", None, "valid")),
    ("霍邱县城关镇东湖村第3村民小组", ("安徽省", "六安市", "霍邱县", "城关镇", "东湖村", "3", None, "341522", "valid")),
    ("六安市霍邱县新店镇王楼村十二组二十一号", ("安徽省", "六安市", "霍邱县", "新店镇", "王楼村", "12", "21", "341522", "valid")),
    ("安徽霍邱县城关镇东湖村二十一组", ("安徽省", "六安市", "霍邱县", "城关镇", "东湖村", "21", None, "341522", "valid")),
    ("安徽 六安 霍邱县 城关镇 东湖村 3组", ("安徽省", "六安市", "霍邱县", "城关镇", "东湖村", "3", None, "341522", "valid")),
    ("中国安徽省六安市霍邱县城关镇东湖村", ("安徽省", "六安市", "霍邱县", "城关镇", "东湖村", None, None, "341522", "valid")),
    ("城关镇东湖村３组１２号", (None, None, None, "城关镇", "东湖村", "3", "12", None, "valid")),      # full-width digits
    ("城关镇东湖村委会", (None, None, None, "城关镇", "东湖村", None, None, None, "valid")),             # 村委会 is the village
    ("新店镇和平社区居委会5号", (None, None, None, "新店镇", "和平社区", None, "5", None, "valid")),
    ("城关街道办事处东湖社区", (None, None, None, "城关街道", "东湖社区", None, None, None, "valid")),
    ("城关镇东湖村3组12-3号", (None, None, None, "城关镇", "东湖村", "3", "12-3", None, "valid")),
    ("城关镇东湖村3队", (None, None, None, "城关镇", "东湖村", "3", None, None, "valid")),              # 队: the old name of 组
    ("某某县城关镇东湖村", (None, None, "某某县", "城关镇", "东湖村", None, None, None, "valid")),  # unknown county
    ("北京市朝阳区建国路88号", ("北京市", None, "朝阳区", None, None, None, "建国路88", "110105", "partial")),
    ("北京朝阳区", ("北京市", None, "朝阳区", None, None, None, None, "110105", "partial")),
    ("吉林市船营区", ("吉林省", "吉林市", "船营区", None, None, None, None, "220204", "partial")),  # the city 吉林
    ("山东省济南市市中区", ("山东省", "济南市", "市中区", None, None, None, None, "370103", "partial")),
    ("江苏省南京市鼓楼区中山路1号", ("江苏省", "南京市", "鼓楼区", None, None, None, "中山路1", "320106", "partial")),
    ("鼓楼区中山路1号", (None, None, "鼓楼区", None, None, None, "中山路1", None, "partial")),         # four 鼓楼区: ambiguous
    ("六安市城关镇东湖村", (None, "六安市", None, "城关镇", "东湖村", None, None, None, "valid")),
    ("城关镇人民路12号", (None, None, None, "城关镇", None, None, "人民路12", None, "partial")),
    ("东湖村3组", (None, None, None, None, "东湖村", "3", None, None, "partial")),
    ("安徽路12号", (None, None, None, None, None, None, "安徽路12", None, "unparseable")),          # 安徽 only before a county
    ("asdf", (None, None, None, None, None, None, None, None, "unparseable")),
    ("无", (None, None, None, None, None, None, None, None, "missing")),
    ("", (None, None, None, None, None, None, None, None, "missing")),
    (None, (None, None, None, None, None, None, None, None, "missing")),
]


@pytest.mark.parametrize(("raw", "expected"), TRICKY)
def test_tricky_values(raw, expected):
    out = parse_addresses(pd.Series([raw], dtype=object)).iloc[0]
    assert tuple(None if pd.isna(out[c]) else out[c] for c in LEVELS) == expected


def test_a_default_county_fills_addresses_that_start_below_it():
    raw = pd.Series(["城关镇东湖村三组12号", "东湖村3组", "安徽省六安市霍邱县城关镇东湖村3组12号", "六安市城关镇东湖村", "asdf"])
    out = parse_addresses(raw, default_county="341522")
    assert out["address_status"].tolist() == ["county_assumed", "county_assumed", "valid", "valid", "unparseable"]
    assert out["address_county_code"].tolist()[:3] == ["341522"] * 3
    assert out["address_county"].iloc[0] == "霍邱县" and out["address_province"].iloc[0] == "安徽省"
    assert pd.isna(out["address_county_code"].iloc[3])  # 六安市 was written: nothing is assumed below it


def test_the_house_key_matches_the_same_house_written_differently():
    raw = pd.Series(["安徽省六安市霍邱县城关镇东湖村3组12号", "城关镇东湖村三组十二号", "霍邱县 城关镇 东湖村委会 第3组 12号",
                     "城关镇东湖村3组13号", "城关镇东湖村3组"])
    out = parse_addresses(raw, default_county="341522")
    assert out["address_key"].tolist()[:3] == ["341522|城关镇|东湖村|3|12"] * 3
    assert out["address_key"].iloc[3] == "341522|城关镇|东湖村|3|13"
    assert pd.isna(out["address_key"].iloc[4])  # no house number: not a house


def test_default_county_must_be_a_current_county_code():
    with pytest.raises(ValueError, match="default_county"):
        parse_addresses(pd.Series(["城关镇"]), default_county="341500")
    with pytest.raises(ValueError, match="default_county"):
        parse_addresses(pd.Series(["城关镇"]), default_county="342423")  # abolished in 2000


@pytest.mark.parametrize(("text", "number"), [
    ("三", "3"), ("十", "10"), ("十二", "12"), ("二十", "20"), ("二十一", "21"), ("一百零三", "103"), ("两百", "200"),
    ("一二", "12"), ("〇三", "3"), ("03", "3"), ("", ""),
])
def test_chinese_numbers(text, number):
    assert chinese_number(text) == number


@given(st.integers(1, 999))
def test_chinese_numbers_round_trip(n):
    digits = "零一二三四五六七八九"
    hundreds, tens, ones = n // 100, n // 10 % 10, n % 10
    text = (digits[hundreds] + "百" if hundreds else "") + (digits[tens] + "十" if tens else ("零" if hundreds and ones else ""))
    text += digits[ones] if ones else ""
    assert chinese_number(text) == str(n)


@settings(deadline=None)  # the first example loads the code tables
@given(st.lists(st.one_of(st.text(max_size=40), st.none(), st.integers()), max_size=20))
def test_hostile_input_always_has_a_status(values):
    out = parse_addresses(pd.Series(values, dtype=object))
    assert list(out.columns) == list(COLUMNS)
    assert out["address_status"].isin(STATUSES).all()
