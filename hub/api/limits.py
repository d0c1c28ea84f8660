"""The limits of the read API that hold across every API process, kept in the warehouse
(:mod:`warehouse.quotas`): daily quotas per key and department, sweep detection, and throttling of
requests with bad keys per client address.

* **Daily quotas** (:class:`Quotas`): persons served per key and per department and day, and requests
  per key and day (the day of Asia/Shanghai). A request over a quota answers 429 with ``Retry-After``
  until midnight, and an ``audit.access_alert`` row (kind ``quota``) is written once per subject and day.
  A batch check of n items may give up to n persons: it reserves n persons of both quotas before it
  reads anything (:func:`reserve_persons`, atomic across processes) and answers 429 saying how many
  persons remain today when they are fewer, so the department can send a smaller batch; what the answer
  did not use is given back when it is logged. A look-up by master id or ID number (normally one person)
  is admitted while the quotas are not used up and counted after its answer.
* **Sweeps**: more than ``sweep_ids`` distinct master ids looked up one by one (``GET
  /v1/persons/<id>``) by one key within ``sweep_window`` seconds blocks the key
  (``audit.api_key.blocked_at``), writes an alert (kind ``sweep``) and answers 403; the key stays
  refused until ``hub api-key unblock KEY_ID``.
* **Bad keys**: after ``bad_keys_per_minute`` requests with a missing, unknown, revoked or blocked key
  from one address within a minute, further ones answer 429 without an access-log row each; one alert (kind
  ``bad_keys``) per address and minute, and ``audit.api_quota`` (scope ``client``, subject
  ``<address> <HH:MM>``) holds how many came.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from hub.api_keys import ApiKey
from warehouse import quotas as stored
from warehouse.access_log import Access


@dataclass(frozen=True)
class Quotas:
    """The limits shared by every API process (None switches one off)."""
    persons_per_key: int | None = 2_000
    persons_per_department: int | None = 10_000
    requests_per_key: int | None = 50_000
    sweep_ids: int | None = 100
    sweep_window: float = 600.0
    bad_keys_per_minute: int | None = 20

    def __post_init__(self):
        for name in ("persons_per_key", "persons_per_department", "requests_per_key", "sweep_ids",
                     "bad_keys_per_minute"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"quota {name} must be at least 1 (or None for no limit), not {value}")
        if self.sweep_window <= 0:
            raise ValueError("sweep_window must be a positive number of seconds")


@dataclass
class Admission:
    """What the guard decided before the route: the key, or a refusal (and whether to log it)."""
    key: ApiKey | None = None
    status: int = 0
    detail: str = ""
    headers: dict[str, str] | None = None
    log: bool = True


def over_quota(conn: sa.Connection, key: ApiKey, quotas: Quotas) -> Admission | None:
    """Count the request against the key's and the department's day; a 429 when a quota is used up."""
    day = stored.local_now().date()
    totals = stored.count(conn, [("key", key.key_id), ("department", key.department)], day, requests=1)
    k_requests, k_persons = totals["key"]
    d_persons = totals["department"][1]
    why = subject = None
    if quotas.persons_per_key is not None and k_persons >= quotas.persons_per_key:
        subject = f"key {key.key_id}"
        why = (f"API key {key.key_id} has been given {k_persons} persons today, its daily quota of"
               f" {quotas.persons_per_key}")
    elif quotas.persons_per_department is not None and d_persons >= quotas.persons_per_department:
        subject = f"department {key.department}"
        why = (f"the keys of department {key.department} have been given {d_persons} persons today, its daily"
               f" quota of {quotas.persons_per_department}")
    elif quotas.requests_per_key is not None and k_requests > quotas.requests_per_key:
        subject = f"key {key.key_id}"
        why = f"API key {key.key_id} has made {quotas.requests_per_key} requests today, its daily quota"
    if why is None:
        return None
    stored.raise_alert_once_a_day(conn, "quota", subject, why, key_id=key.key_id, department=key.department)
    wait = stored.seconds_to_midnight()
    return Admission(status=429, headers={"Retry-After": str(wait)},
                     detail=f"daily quota used up: {why}. The quota starts anew at midnight (Asia/Shanghai),"
                            f" in {wait} seconds; if the work needs more, ask the hub's operators to raise it")


def _refusal(conn: sa.Connection, key: ApiKey, short: stored.QuotaShort, wanted: int, what: str) -> Admission:
    if short.scope == "key":
        subject, whose = f"key {key.key_id}", f"API key {key.key_id}"
    else:
        subject, whose = f"department {key.department}", f"the keys of department {key.department}"
    why = f"{whose} may be given {short.remaining} more persons today (daily quota {short.limit})"
    stored.raise_alert_once_a_day(conn, "quota", subject, f"{why}; a request for up to {wanted} was refused",
                                  key_id=key.key_id, department=key.department)
    wait = stored.seconds_to_midnight()
    if short.remaining:
        advice = f"send a batch of at most {short.remaining} items, or wait until midnight (Asia/Shanghai),"
    else:
        advice = "the quota starts anew at midnight (Asia/Shanghai),"
    return Admission(status=429, headers={"Retry-After": str(wait)}, detail=(
        f"daily quota: {why}, and {what} may give up to {wanted}; nothing was looked up. Please {advice}"
        f" in {wait} seconds; if the work needs more, ask the hub's operators to raise the quota"))


def reserve_persons(engine: sa.Engine, key: ApiKey, quotas: Quotas, wanted: int, what: str) -> Admission | None:
    """Reserve ``wanted`` persons of the key's and the department's quota of today before an answer is read
    (``what``: the request, for the message, e.g. "this batch check of 1000 items"); a 429 saying how many
    remain when either has fewer left. Nothing is reserved then."""
    day = stored.local_now().date()
    subjects = [("key", key.key_id, quotas.persons_per_key),
                ("department", key.department, quotas.persons_per_department)]
    try:
        with engine.begin() as conn:
            stored.reserve(conn, subjects, day, wanted)
        return None
    except stored.QuotaShort as short:  # rolled back: nothing of this request is counted
        with engine.begin() as conn:
            return _refusal(conn, key, short, wanted, what)


def sweep(conn: sa.Connection, key: ApiKey, master_id: str, quotas: Quotas) -> Admission | None:
    """Block the key (and answer 403) when this look-up makes more than ``sweep_ids`` distinct master
    ids looked up one by one within ``sweep_window``."""
    if quotas.sweep_ids is None:
        return None
    ids = stored.swept_master_ids(conn, key.key_id, quotas.sweep_window)
    ids.add(master_id)
    if len(ids) <= quotas.sweep_ids:
        return None
    minutes = f"{quotas.sweep_window / 60:g}"
    reason = (f"{len(ids)} distinct master ids looked up one by one within {minutes} minutes (more than"
              f" {quotas.sweep_ids}): a sweep of the index")
    if stored.block_key(conn, key.key_id, reason):
        stored.raise_alert(conn, "sweep", f"key {key.key_id}: {reason}; the key is blocked",
                           key_id=key.key_id, department=key.department)
    return Admission(status=403, detail=(
        f"API key {key.key_id} is blocked: {reason}. A data steward of the hub can lift the block with"
        f" `hub api-key unblock {key.key_id}` once the cause is understood."))


def refuse_unknown_key(conn: sa.Connection, client: str | None, quotas: Quotas | None) -> Admission:
    """A request with a missing, unknown or revoked key: 401, or 429 without a log row once the address
    sent more than ``bad_keys_per_minute`` of them (or of a blocked key) within the minute."""
    if quotas is None or quotas.bad_keys_per_minute is None:
        return Admission(status=401)
    now = stored.local_now()
    address = client or "unknown"
    subject = f"{address} {now:%H:%M}"
    requests = stored.count(conn, [("client", subject)], now.date(), requests=1)["client"][0]
    limit = quotas.bad_keys_per_minute
    if requests <= limit:
        return Admission(status=401)
    if requests == limit + 1:
        stored.raise_alert(conn, "bad_keys", client=client, detail=(
            f"address {address}: more than {limit} requests with a missing, unknown, revoked or blocked key in the"
            f" minute {now:%Y-%m-%d %H:%M} (Asia/Shanghai); further ones that minute answer 429 without an access-log"
            f" row each: audit.api_quota (scope client, subject '{subject}') counts them all"))
    return Admission(status=429, log=False, headers={"Retry-After": str(max(1, 60 - now.second))},
                     detail=f"too many requests with a missing, unknown, revoked or blocked API key from {address}"
                            " this minute; check the key (X-API-Key) and try again in a minute")


def address_throttled(conn: sa.Connection, client: str | None, quotas: Quotas | None) -> Admission | None:
    """A 429 (with no access-log row) when this address already sent more than ``bad_keys_per_minute`` missing,
    unknown, revoked or blocked keys this minute — whatever it sends now, a right key included — else None."""
    if quotas is None or quotas.bad_keys_per_minute is None:
        return None
    now = stored.local_now()
    address = client or "unknown"
    subject = f"{address} {now:%H:%M}"
    sent = stored.count(conn, [("client", subject)], now.date(), requests=0).get("client", (0, 0))[0]
    if sent <= quotas.bad_keys_per_minute:
        return None
    stored.count(conn, [("client", subject)], now.date(), requests=1)
    return Admission(status=429, log=False, headers={"Retry-After": str(max(1, 60 - now.second))},
                     detail=f"too many attempts with a wrong key from {address} this minute; wait a minute")


def count_persons(conn: sa.Connection, access: Access, persons: int) -> None:
    """Add the persons an answer gave to its key's and department's day (a negative number gives back
    what a reservation did not use)."""
    subjects = [("key", access.key_id)] + ([("department", access.department)] if access.department else [])
    stored.count(conn, subjects, stored.local_now().date(), persons=persons)
