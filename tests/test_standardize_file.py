import codecs
import datetime as dt
import subprocess
import sys

import openpyxl
import pandas as pd
import pytest

from hub.standardize_file import standardize_file
from schemas.resident import STD_COLUMNS

ROWS = [
    # source, source_record_id, name, id_number, sex, birth_date, phone, address, 备注
    ("mz_dibao", "1", "张伟", "11010519491231002X", "女", "1949-12-31", "138-1234-5678", "城关镇东湖村三组12号", "低保户"),
    ("mz_dibao", "2", "曾 志伟", "110105491231002", "男", "19491231", "无", "安徽省六安市霍邱县城关镇东湖村3组12号", ""),
    ("mz_dibao", "3", "買買提.艾力", "无", "M", "32939", "010-62345678转1", "", "迁入"),
    ("mz_dibao", "4", "", "11010519491231003X", "X", "1990-02-30", "", "asdf", ""),
    ("mz_dibao", "5", "王芳", "", "2", "", "13812345678/13987654321", "东湖村3组", ""),
]
COLUMNS = ["source", "source_record_id", "name", "id_number", "sex", "birth_date", "phone", "address", "备注"]


def _frame() -> pd.DataFrame:
    return pd.DataFrame(ROWS, columns=COLUMNS)


def _read(path) -> pd.DataFrame:
    assert path.read_bytes().startswith(codecs.BOM_UTF8)  # so that Excel opens it as UTF-8
    return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")


def _check(out: pd.DataFrame, result: dict) -> None:
    assert list(out.columns) == [*STD_COLUMNS, "备注"]
    assert result["rows"] == 5
    assert out["name"].tolist() == ["张伟", "曾志伟", "買買提·艾力", "", "王芳"]
    assert out["name_raw"].tolist()[1] == "曾 志伟"
    assert out["id_number_status"].tolist() == ["valid", "upgraded_from_15", "placeholder", "checksum_error", "missing"]
    assert out["birth_date"].tolist() == ["1949-12-31", "1949-12-31", "1990-03-07", "", ""]
    assert out["sex_status"].tolist() == ["valid", "conflict_with_id", "valid", "unknown_code", "valid"]
    assert out["phone"].tolist() == ["+8613812345678", "", "+861062345678", "", "+8613812345678"]
    assert out["address_key"].tolist()[:2] == ["341522|城关镇|东湖村|3|12"] * 2
    assert out["备注"].tolist()[0] == "低保户"
    assert result["id_number_status"] == {"checksum_error": 1, "missing": 1, "placeholder": 1, "upgraded_from_15": 1, "valid": 1}
    assert result["birth_date_status"] == {"excel_serial": 1, "impossible": 1, "missing": 1, "valid": 2}
    assert result["phone_status"] == {"missing": 1, "multiple": 1, "placeholder": 1, "valid": 2}
    assert result["name_status"] == {"missing": 1, "valid": 4}
    assert result["sex_status"] == {"conflict_with_id": 1, "unknown_code": 1, "valid": 3}


def test_gbk_csv(tmp_path):
    source = tmp_path / "低保名单.csv"
    _frame().to_csv(source, index=False, encoding="gbk")
    result = standardize_file(source, tmp_path / "out" / "std.csv", default_county="341522")
    assert result["encoding"] == "gb18030"
    _check(_read(tmp_path / "out" / "std.csv"), result)


def test_utf8_csv_with_bom_and_progress(tmp_path):
    source = tmp_path / "list.csv"
    _frame().to_csv(source, index=False, encoding="utf-8-sig")
    progress = []
    result = standardize_file(source, tmp_path / "std.csv", default_county="341522", chunk_rows=2,
                              on_progress=lambda done, total: progress.append((done, total)))
    assert result["encoding"] == "utf-8-sig"
    assert progress == [(2, 5), (4, 5), (5, 5)]
    _check(_read(tmp_path / "std.csv"), result)


def test_xlsx_with_a_title_row_and_typed_cells(tmp_path):
    source = tmp_path / "list.xlsx"
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["霍邱县城关镇 最低生活保障对象名册（2026年11月）"])
    sheet.append(COLUMNS)
    for row in ROWS:
        sheet.append(list(row))
    sheet["F4"] = dt.datetime(1949, 12, 31)  # a real date cell
    sheet["G6"] = 13812345678                 # a phone typed as a number
    sheet["F7"] = None
    book.save(source)
    result = standardize_file(source, tmp_path / "std.csv", default_county="341522")
    out = _read(tmp_path / "std.csv")
    assert result["encoding"] == "xlsx"
    assert out["birth_date_raw"].iloc[1] == "1949-12-31"  # a date cell reads as the drop-file extractor reads it
    assert out["phone"].iloc[3] == "+8613812345678"
    assert out["phone_status"].iloc[3] == "valid"
    assert out["id_number_status"].tolist() == ["valid", "upgraded_from_15", "placeholder", "checksum_error", "missing"]
    assert out["birth_date"].tolist() == ["1949-12-31", "1949-12-31", "1990-03-07", "", ""]


def test_missing_columns_are_named_with_the_file(tmp_path):
    source = tmp_path / "bad.csv"
    _frame().drop(columns=["sex", "phone"]).to_csv(source, index=False, encoding="gbk")
    with pytest.raises(ValueError, match=r"bad\.csv: missing column\(s\) sex, phone") as caught:
        standardize_file(source, tmp_path / "std.csv")
    assert "张伟" not in str(caught.value) and "11010519491231002X" not in str(caught.value)
    assert not (tmp_path / "std.csv").exists()

    book = openpyxl.Workbook()
    book.active.append(["张伟", "11010519491231002X", "13812345678"])  # no header row at all
    book.save(tmp_path / "bad.xlsx")
    with pytest.raises(ValueError, match=r"bad\.xlsx: missing column\(s\) source, source_record_id, name") as caught:
        standardize_file(tmp_path / "bad.xlsx", tmp_path / "std.csv")
    assert "张伟" not in str(caught.value) and "1101051949" not in str(caught.value) and "138123" not in str(caught.value)


def test_unreadable_input_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        standardize_file(tmp_path / "nowhere.csv", tmp_path / "std.csv")
    (tmp_path / "list.json").write_text("{}")
    with pytest.raises(ValueError, match="not a CSV or XLSX"):
        standardize_file(tmp_path / "list.json", tmp_path / "std.csv")
    broken = tmp_path / "broken.csv"
    broken.write_bytes(",".join(COLUMNS).encode() + b"\n" + ",".join(ROWS[0]).encode("utf-8")[:-3] + b"\xff\n")
    with pytest.raises(ValueError, match="broken.csv: mostly UTF-8"):
        standardize_file(broken, tmp_path / "std.csv")
    (tmp_path / "fake.xlsx").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="fake.xlsx: cannot be read"):
        standardize_file(tmp_path / "fake.xlsx", tmp_path / "std.csv")


def test_bad_options_fail_before_the_file_is_read(tmp_path):
    source = tmp_path / "list.csv"
    _frame().to_csv(source, index=False)
    with pytest.raises(ValueError, match="default_county"):
        standardize_file(source, tmp_path / "std.csv", default_county="999999")
    with pytest.raises(ValueError, match="GB/T 2261.1"):
        standardize_file(source, tmp_path / "std.csv", sex_codes={"0": 5})


def test_no_airflow_or_great_expectations_on_import():
    code = ("import sys, hub.standardize_file; "
            "print([m for m in sys.modules if m.split('.')[0] in ('airflow', 'great_expectations')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
