"""The table of kinds: every kind the registry accepts has an extractor, and each takes its connection parts."""

import typing

import pytest

from connectors.base import ExtractState
from connectors.connections import ConnectionConfigError, ConnectionParts, connection_from_env, connection_json
from connectors.kinds import KINDS, extractor
from connectors.registry import AnySource


def test_every_registry_kind_has_an_extractor_and_no_more():
    accepted = {typing.get_args(model.model_fields["kind"].annotation)[0] for model in typing.get_args(AnySource)}
    assert accepted == set(KINDS)
    for kind in KINDS:
        ex = extractor(kind)
        assert callable(ex.extract)
        assert isinstance(ex.reads_cursor, bool) and isinstance(ex.marks_snapshots, bool)
    # file drops mark their own snapshots and read no cursor; the others are complete without one
    assert (extractor("file").reads_cursor, extractor("file").marks_snapshots) == (False, True)
    assert all(extractor(k).reads_cursor and not extractor(k).marks_snapshots for k in ("rest", "sql"))


def test_an_unknown_kind_names_the_known_ones():
    with pytest.raises(ValueError, match="kind 'soap'.*file, rest, sql"):
        extractor("soap")


def test_each_kind_takes_what_it_needs_from_the_connection(tmp_path):
    from connectors.files import drop_folder
    from connectors.rest import endpoint
    from connectors.sql import sqlalchemy_url

    rest = ConnectionParts("p", "http", "127.0.0.1", 8080, "u", "s", "https")
    assert endpoint(rest).base_url == "https://127.0.0.1:8080" and endpoint(rest).login == "u"
    assert endpoint(ConnectionParts("p", host="http://x.example/")).base_url == "http://x.example"
    assert drop_folder(ConnectionParts("d", extra={"path": str(tmp_path)})) == tmp_path
    (tmp_path / "x.db").touch()
    assert sqlalchemy_url(ConnectionParts("s", "sqlite", host=f"{tmp_path}/x.db")) == f"sqlite:///{tmp_path}/x.db"
    assert sqlalchemy_url(ConnectionParts("s", "postgres", "db", None, "u", "pw", "hub")) == \
        "postgresql+psycopg2://u:pw@db:5432/hub"
    for call, parts, message in [(endpoint, ConnectionParts("p"), "has no host"),
                                 (drop_folder, ConnectionParts("d"), "names no folder"),
                                 (sqlalchemy_url, ConnectionParts("s", "oracle"), "set extra.sqlalchemy_url")]:
        with pytest.raises(ConnectionConfigError, match=message):
            call(parts)


def test_a_connection_without_what_its_kind_needs_fails_before_any_request():
    with pytest.raises(ConnectionConfigError, match="has no host"):
        extractor("rest").extract(None, ConnectionParts("p"), ExtractState())


def test_connections_from_the_environment_in_json_and_uri_form(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_MZ_T", connection_json(conn_type="http", host="h", port=1, login="a", password="b"))
    monkeypatch.setenv("AIRFLOW_CONN_WJ_T", "http://a:p%40ss@h:2/https?path=%2Fdrops")
    assert connection_from_env("mz_t") == ConnectionParts("mz_t", "http", "h", 1, "a", "b")
    assert connection_from_env("wj_t") == ConnectionParts("wj_t", "http", "h", 2, "a", "p@ss", "https", {"path": "/drops"})
    monkeypatch.delenv("AIRFLOW_CONN_RS_T", raising=False)
    with pytest.raises(ConnectionConfigError, match="AIRFLOW_CONN_RS_T"):
        connection_from_env("rs_t")
