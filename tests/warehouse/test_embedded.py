"""The embedded PostgreSQL: started on first use, reused, stopped on request."""

import shutil
import uuid
import warnings

import sqlalchemy as sa

from hub.settings import PROJECT_ROOT
from warehouse.embedded import start_embedded, stop_embedded


def test_stop_stops_a_server_this_process_started_and_kept_running():
    # beside the test server: as root the server runs as another user, who cannot enter pytest's tmp_path
    pgdata = PROJECT_ROOT / ".hub" / f"test-stop-{uuid.uuid4().hex[:8]}"
    try:
        _start_use_stop(pgdata)
    finally:
        stop_embedded(pgdata)
        shutil.rmtree(pgdata, ignore_errors=True)


def _start_use_stop(pgdata):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        url = start_embedded(pgdata, database="hub_probe")
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT current_database()")).scalar_one() == "hub_probe"
    engine.dispose()
    assert (pgdata / "postmaster.pid").exists()
    assert stop_embedded(pgdata) is True
    assert not (pgdata / "postmaster.pid").exists()
    assert stop_embedded(pgdata) is False
