"""No mask can be undone with what is shown beside it: every masked ID number the review API and ``hub review
show --json`` print, taken with the birth date, sex and region shown beside it, still fits more than a
hundred valid numbers (check character included); phones keep at least four digits hidden, house numbers
all of theirs."""

from __future__ import annotations

import json
import re
import subprocess

import httpx
import pytest

from hub.api import create_app
from hub.api_keys import create_key
from schemas.id_number import CHECK_CHARS, WEIGHTS
from schemas.masking import mask_house_no, mask_id_number, mask_name, mask_phone
from tests.test_api import _serve
from tests.test_steward_scope import PAIRS, RECORDS, id_number_of, seed_reviews

DIGITS = "0123456789"


def candidates(masked: str, *, birth_date: str | None = None, sex: int | None = None,
               region: str | None = None) -> int:
    """How many valid 18-character ID numbers fit ``masked`` (``*`` hides a character) and what is shown
    beside it: the birth date (YYYY-MM-DD), the sex (1 male, 2 female), the region code. Counted over the
    check sum (mod 11), so that no number needs to be written out."""
    assert len(masked) == 18, masked
    allowed = []
    for i, c in enumerate(masked):
        options = set(DIGITS + "X") if i == 17 else set(DIGITS)
        if c != "*":
            options = {c}
        if region and i < 6:
            options &= {region[i]}
        if birth_date and 6 <= i < 14:
            options &= {birth_date.replace("-", "")[i - 6]}
        if sex and i == 16:
            options &= {d for d in DIGITS if int(d) % 2 == sex % 2}
        allowed.append(options)
    # ways[r]: how many choices of the first 17 characters give a weighted sum ≡ r (mod 11)
    ways = [1] + [0] * 10
    for i in range(17):
        step = [0] * 11
        for r, n in enumerate(ways):
            if n:
                for d in allowed[i]:
                    step[(r + int(d) * int(WEIGHTS[i])) % 11] += n
        ways = step
    return sum(n for r, n in enumerate(ways) if CHECK_CHARS[r] in allowed[17])


def test_the_counter_rebuilds_the_old_mask_and_not_the_new_one():
    number = id_number_of("mz_dibao/D1")
    old = number[:6] + "********" + number[-4:]  # the mask that kept the last four characters
    assert candidates(old, birth_date="1962-03-14", sex=1) == 1  # rebuilt: the attack the issue reports
    assert candidates(mask_id_number(number), birth_date="1962-03-14", sex=1) == 500
    assert candidates(mask_id_number(number)) > 10**10


def test_masks_of_every_kind():
    assert mask_id_number("34152219800101123X") == "341522************"
    assert mask_id_number("341522800101123") == "341522*********"  # 15 digits: the region only as well
    assert mask_id_number("12345") == "*****" and mask_id_number(None) == "<empty>"
    assert mask_phone("+8613812345678") == mask_phone("138-1234-5678") == "138****5678"
    assert mask_phone("+861062345678") == "******5678" and mask_phone("123") == "***" and mask_phone("") is None
    assert mask_house_no("12号") == "***" and mask_house_no(" ") is None
    assert mask_name("欧阳娜娜") == "欧***"


def test_an_explanation_page_masks_id_numbers_to_the_region():
    from mpi.explain import masked

    number = id_number_of("rs_yanglao/Y1")
    shown = masked({"id_valid_l": number, "id_body_r": number[:17], "dob_l": "1962-03-14", "phone_l": "+8613900001111",
                    "address_key_r": "341522|城关镇|幸福村|12号"})
    assert shown["id_valid_l"] == "341522************" and shown["id_body_r"] == "341522" + "*" * 11
    assert candidates(shown["id_valid_l"], birth_date=shown["dob_l"], sex=1) > 100
    assert "12号" not in json.dumps(shown, ensure_ascii=False)


@pytest.fixture(scope="module")
def warehouse(engine):
    seed_reviews(engine)
    return engine


def _hub(*args):
    from typer.testing import CliRunner

    from hub.cli import app

    result = CliRunner().invoke(app, list(args), prog_name="hub")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return subprocess.CompletedProcess(["hub", *args], result.exit_code, result.stdout, result.stderr)


def _shown_records(warehouse) -> list[tuple[str, dict]]:
    """Every record every review page shows: the CLI's (the hub's own user) and each department steward's."""
    out = []
    for review_id in PAIRS:
        shown = _hub("review", "show", str(review_id), "--json")
        assert shown.returncode == 0, shown.stderr
        doc = json.loads(shown.stdout)
        out += [(f"hub review show {review_id}", doc["left"]), (f"hub review show {review_id}", doc["right"])]
    with warehouse.begin() as conn:
        keys = {d: create_key(conn, d, f"{d} data office", scopes=["steward"])
                for d in ("civil_affairs", "health", "social_security")}
    server, thread, url = _serve(create_app(warehouse, rate_limit=None, quotas=None))
    try:
        with httpx.Client(base_url=url, timeout=10) as api:
            for department, key in keys.items():
                for review_id in PAIRS:
                    got = api.get(f"/v1/reviews/{review_id}", headers={"X-API-Key": key})
                    if got.status_code == 200:
                        out += [(f"{department} GET /v1/reviews/{review_id}", got.json()[side])
                                for side in ("left", "right")]
    finally:
        server.should_exit = True
        thread.join(5)
    return out


def test_no_masked_number_shown_beside_a_birth_date_can_be_rebuilt(warehouse):
    shown = _shown_records(warehouse)
    with_numbers = [(where, r) for where, r in shown if r.get("id_number")]
    assert len(with_numbers) >= 8 + 4  # every record by the CLI, and each steward's own records
    for where, r in with_numbers:
        fits = candidates(r["id_number"], birth_date=r.get("birth_date"), sex=r.get("sex"),
                          region=r.get("id_region"))
        assert fits > 100, (where, r["record_key"], fits)
        assert id_number_of(r["record_key"]) not in json.dumps(r)
    for where, r in shown:
        if r.get("phone"):
            assert len(re.findall(r"\*", r["phone"])) >= 4, (where, r["phone"])
        if r.get("address_house_no"):
            assert not re.search(r"\d", r["address_house_no"]), (where, r["address_house_no"])
    phones = {p for *_, p, _ in RECORDS.values()}
    assert not any(p in json.dumps(shown, ensure_ascii=False) for p in phones)
