"""The REST extractor against the simulated platform over a real socket."""

from pathlib import Path

import pytest

from connectors.registry import RegistryError, load_source_file
from connectors.rest import Endpoint, ExtractError, fetch_pages


def _mz(platforms, password=None):
    server = platforms.rest["civil_affairs"]
    return Endpoint(server.url, server.username, password or server.password)


def test_fetches_every_record_of_every_resource(platforms, county):
    for name in ("mz_dibao", "mz_gaoling"):
        resource = platforms.rest["civil_affairs"].resources[name]
        pages = list(fetch_pages(_mz(platforms), resource, source=name, page_size=37))
        fetched = [r for p in pages for r in p.records]
        assert fetched == county.served(name).to_dict(orient="records")
        assert [p.number for p in pages] == list(range(1, len(pages) + 1))


def test_wrong_password_is_a_clear_error(platforms):
    endpoint = _mz(platforms, "wrong")
    with pytest.raises(ExtractError, match="mz_dibao: login refused"):
        list(fetch_pages(endpoint, "/api/v1/dibao", source="mz_dibao"))


def test_unknown_resource_names_source_and_page(platforms):
    endpoint = _mz(platforms)
    with pytest.raises(ExtractError, match=r"x: /api/v1/nothing page 1 failed with HTTP 404"):
        list(fetch_pages(endpoint, "/api/v1/nothing", source="x", body_retries=1))


def test_registry_errors_name_file_and_field(tmp_path: Path):
    bad = tmp_path / "mz_bad.yaml"
    bad.write_text(
        "name: mz_bad\ntitle: t\ndepartment: civil_affairs\nkind: soap\nconn_id: c\nresource: /r\n"
        "primary_key: id\nsharing_class: 有条件\nprogram: p\nmapping: {name: xm, id_number: sfzh, shoe: x}\n",
        encoding="utf-8")
    with pytest.raises(RegistryError) as info:
        load_source_file(bad)
    message = str(info.value)
    assert "mz_bad.yaml" in message
    assert "field 'kind'" in message
    assert "field 'mapping'" in message and "shoe" in message


def test_registry_file_name_must_match_source_name(tmp_path: Path):
    f = tmp_path / "other.yaml"
    f.write_text(Path(__file__).parents[2].joinpath("connectors/sources/mz_dibao.yaml").read_text(encoding="utf-8"),
                 encoding="utf-8")
    with pytest.raises(RegistryError, match="other.yaml: field 'name'"):
        load_source_file(f)
