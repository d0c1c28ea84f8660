"""The source registry: validated on load, errors name the file and the field."""

from pathlib import Path

import pytest

from connectors.registry import RegistryError, load_source_file

BASE = ("name: mz_bad\ntitle: t\ndepartment: civil_affairs\nconn_id: c\nresource: /r\nprimary_key: id\n"
        "sharing_class: 有条件\nprogram: p\nfields: [id, xm, sfzh]\n")


@pytest.mark.parametrize(("extra", "expected"), [
    ("kind: soap\nmapping: {name: xm, id_number: sfzh}\n", ["field 'kind'", "soap"]),
    ("kind: file\nmapping: {name: xm, id_number: sfzh, shoe: x}\n", ["field 'mapping'", "shoe"]),
    ("kind: file\nmapping: {name: xm, id_number: zjhm}\n", ["zjhm", "not listed in 'fields'"]),
    ("kind: file\nmapping: {name: xm, id_number: sfzh}\nvolatile_fields: [xh]\n", ["xh", "not listed in 'fields'"]),
    ("kind: file\nmapping: {name: xm, id_number: sfzh}\nvolatile_fields: [xm]\n", ["volatile field(s) ['xm']"]),
    ("kind: rest\nmapping: {name: xm, id_number: sfzh}\n", ["field 'auth'", "field 'pagination'"]),
    ("kind: rest\nmapping: {name: xm, id_number: sfzh}\nauth: {path: /login}\nresponse: {records: d, total: t}\n"
     "pagination: {style: cursor, page_size: 0}\n", ["field 'pagination.page_size'"]),
])
def test_registry_errors_name_file_and_field(tmp_path: Path, extra, expected):
    bad = tmp_path / "mz_bad.yaml"
    bad.write_text(BASE + extra, encoding="utf-8")
    with pytest.raises(RegistryError) as info:
        load_source_file(bad)
    message = str(info.value)
    assert "mz_bad.yaml" in message
    for part in expected:
        assert part in message, message


def test_every_registered_source_is_valid():
    from connectors.registry import load_registry

    registry = load_registry()
    assert len(registry) == 8
    assert {s.kind for s in registry.values()} == {"rest", "file", "sql"}


def test_registry_file_name_must_match_source_name(tmp_path: Path):
    f = tmp_path / "other.yaml"
    f.write_text(Path(__file__).parents[2].joinpath("connectors/sources/mz_dibao.yaml").read_text(encoding="utf-8"),
                 encoding="utf-8")
    with pytest.raises(RegistryError, match="other.yaml: field 'name'"):
        load_source_file(f)
