"""Delivery of the change feed to the departments' webhooks (``hub webhook deliver``, and after each publish).

Each event is one ``POST`` of JSON to the department's URL with the headers ``X-Hub-Event-Id`` (the
event id, ``<release>-<seq>``), ``X-Hub-Department`` and ``X-Hub-Signature-256: sha256=<hex>``, the
HMAC-SHA256 of the exact body bytes under the webhook's secret. A 2xx answer delivers the event; anything
else (another status, a timeout, a refused connection) is retried with exponential backoff. Events are
delivered in order, one department's at a time: an event that is not delivered holds back the later
ones of its department until it is. Every attempt is recorded in ``publish.webhook_outbox``; every
delivered event is written to the access log (what left the hub, for which department and purpose).

Where events may go: an ``https://`` URL whose host resolves only to public (global) addresses. A host
that is or resolves to a loopback, link-local (169.254.0.0/16 — cloud metadata —, fe80::/10), private,
multicast, unspecified or otherwise non-global address, and any ``http://`` URL, is refused unless the
operator lists it in ``HUB_WEBHOOK_ALLOW_HOSTS`` (host names, addresses or networks, comma-separated:
``HUB_WEBHOOK_ALLOW_HOSTS=10.20.0.0/16,wj-gateway.county.local``; a listed host may be reached by plain
http too). ``hub webhook add`` checks the URL, and every delivery checks the address the host resolves to
then, so a name pointed elsewhere after it was added is refused too.

The body holds the fields the department may see without a purpose (无条件), and the 有条件 fields the
webhook's purpose code releases while it is in force — for masters holding an enrolment of the
department's own sources in the event's release only; the names of the others are listed under
``withheld``. Secrets never appear in a log, a message or an answer.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import os
import socket
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import sqlalchemy as sa

from warehouse import changes
from warehouse.access_log import Access, log_access
from warehouse.sharing import CONDITIONAL, DepartmentSharing

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "X-Hub-Signature-256"
EVENT_HEADER = "X-Hub-Event-Id"
_LOCK = "hub webhook delivery"


@dataclass(frozen=True)
class Backoff:
    """How a failed event is retried: ``attempts`` tries in one delivery run, waiting ``first`` seconds, then
    twice as long each time (at most ``longest``); after the run, the next try waits the next step."""
    attempts: int = 3
    first: float = 2.0
    longest: float = 600.0
    timeout: float = 10.0

    def wait(self, attempt: int) -> float:
        return min(self.longest, self.first * 2 ** max(0, attempt - 1))


def signature(secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value of ``body``: ``sha256=`` and the hex HMAC-SHA256 under ``secret``."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def shown_url(url: str) -> str:
    """The URL without user, password or query (they may carry a token): what messages and lists show."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    return urllib.parse.urlunsplit((parts.scheme, host + (f":{parts.port}" if parts.port else ""), parts.path, "", ""))


ALLOW_HOSTS_SETTING = "HUB_WEBHOOK_ALLOW_HOSTS"
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class WebhookURLError(ValueError):
    """A webhook URL the hub will not post to; the message (one line) says why and what to do."""


def allowed_hosts(value: str | None = None) -> tuple[set[str], list]:
    """``HUB_WEBHOOK_ALLOW_HOSTS`` (or ``value``): host names, and addresses or networks, the operator allows."""
    names, networks = set(), []
    raw = os.environ.get(ALLOW_HOSTS_SETTING, "") if value is None else value
    for entry in (e.strip().lower().strip("[]") for e in raw.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            names.add(entry.rstrip("."))
    return names, networks


def _not_public(ip: _Address) -> str | None:
    """Why ``ip`` is no place for a webhook (None: a public address)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    for what, test in (("unspecified", ip.is_unspecified), ("loopback", ip.is_loopback),
                       ("link-local", ip.is_link_local), ("multicast", ip.is_multicast),
                       ("private", ip.is_private), ("reserved", ip.is_reserved), ("not global", not ip.is_global)):
        if test:
            return what
    return None


def _addresses(host: str, port: int | None) -> list[_Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    infos = socket.getaddrinfo(host, port or 443, type=socket.SOCK_STREAM)
    return sorted({ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos}, key=str)


def check_url(url: str, *, allow: str | None = None) -> list[str]:
    """Refuse (:class:`WebhookURLError`) a URL events may not be posted to: not http(s) with a host, plain
    http, or a host that is or resolves to a non-public address — unless ``HUB_WEBHOOK_ALLOW_HOSTS`` (or
    ``allow``) lists the host name or its addresses. Returns warnings (a host that does not resolve now)."""
    parts = urllib.parse.urlsplit(url)
    try:
        host, port = (parts.hostname or "").rstrip("."), parts.port
    except ValueError:
        raise WebhookURLError("--url: the port is not a number between 0 and 65535") from None
    if parts.scheme not in ("http", "https") or not host:
        raise WebhookURLError("--url: an https:// address with a host")
    names, networks = allowed_hosts(allow)
    if host in names:
        return []
    hint = f"; if the department's receiver really is there, list it in {ALLOW_HOSTS_SETTING} (host, address or network)"
    try:
        addresses = _addresses(host, port)
    except (OSError, UnicodeError):
        addresses = []
    if not addresses:
        if parts.scheme != "https":
            raise WebhookURLError(f"--url: {host}: plain http is refused (the events carry personal data); use https{hint}")
        return [f"{host} does not resolve from here now; each delivery checks the address it resolves to then"]
    refused = [(ip, why) for ip in addresses if not any(ip in n for n in networks) and (why := _not_public(ip))]
    if refused:
        ip, why = refused[0]
        shown = host if str(ip) == host else f"{host} ({ip})"
        raise WebhookURLError(f"--url: {shown} is not a public address ({why}): the hub does not post events"
                              f" there{hint}")
    if parts.scheme != "https" and not all(any(ip in n for n in networks) for ip in addresses):
        raise WebhookURLError(f"--url: {host}: plain http is refused (the events carry personal data); use https{hint}")
    return []


def released_fields(sharing: DepartmentSharing | None, purpose: str | None) -> tuple[str, ...]:
    """The fields a webhook body carries: 无条件 ones and those the purpose releases while in force."""
    if sharing is None:
        return ()
    unlocked = set(sharing.unlocked(purpose))
    return tuple(f for f in sharing.visible() if sharing.classes[f] != CONDITIONAL or f in unlocked)


def body_of(department: str, event: dict, released: tuple[str, ...], conditional: tuple[str, ...] = ()) -> bytes:
    event = changes.cut_event(changes.as_event(event), released, conditional)
    return json.dumps({"department": department, **event}, ensure_ascii=False, sort_keys=True,
                      default=str).encode("utf-8")


def _post(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> tuple[int | None, str | None]:
    """(status, None) for an answer, (None, what went wrong) when there was none — a URL whose host resolves
    to an address events may not go to now (:func:`check_url`) is not posted to."""
    import requests

    try:
        if check_url(url):
            return None, "the host does not resolve"
    except WebhookURLError as exc:
        return None, str(exc).removeprefix("--url: ")
    try:
        answer = requests.post(url, data=body, headers=dict(headers), timeout=timeout, allow_redirects=False)
    except requests.Timeout:
        return None, f"no answer within {timeout:g} s"
    except requests.ConnectionError:
        return None, "connection refused or failed"
    except requests.RequestException as exc:
        return None, type(exc).__name__
    return answer.status_code, None


def _cst(when) -> str:
    from reports.render import beijing_time

    return beijing_time(when)


def _deliver_one(engine: sa.Engine, hook: dict, secret: str, sharing: DepartmentSharing | None,
                 backoff: Backoff, sleep: Callable[[float], None], batch: int, now_too: bool) -> dict:
    webhook_id, department = hook["webhook_id"], hook["department"]
    released = released_fields(sharing, hook["purpose"])
    conditional = tuple(f for f in released if sharing is not None and sharing.classes[f] == CONDITIONAL)
    delivered, failed = 0, None
    while failed is None:
        with engine.connect() as conn:
            pending = changes.next_pending(conn, webhook_id, batch)
            now = conn.execute(sa.text("SELECT clock_timestamp()")).scalar_one()
        if not pending:
            break
        for event in pending:
            if event["attempts"] and event["next_attempt_at"] > now and not now_too:
                failed = (f"event {event['event_id']} failed {event['attempts']} times and waits for its next attempt"
                          f" ({_cst(event['next_attempt_at'])}); deliver now to try at once")
                break
            body = body_of(department, event, released, conditional)
            headers = {"Content-Type": "application/json; charset=utf-8", EVENT_HEADER: event["event_id"],
                       "X-Hub-Department": department, SIGNATURE_HEADER: signature(secret, body)}
            for attempt in range(1, backoff.attempts + 1):
                status, error = _post(hook["url"], body, headers, backoff.timeout)
                ok = status is not None and 200 <= status < 300
                tries = event["attempts"] + attempt
                with engine.begin() as conn:
                    changes.record_attempt(conn, webhook_id, event["release_no"], event["seq"], status=status,
                                           error=error, delivered=ok, retry_in_seconds=0 if ok else backoff.wait(tries))
                    if ok:
                        log_access(conn, Access(endpoint=f"WEBHOOK {department} {event['event_id']}",
                                                client=urllib.parse.urlsplit(hook["url"]).hostname,
                                                department=department, purpose=hook["purpose"], requested=1,
                                                results=1, master_ids=[event["master_id"]]), status)
                if ok:
                    delivered += 1
                    break
                what = f"HTTP {status}" if status is not None else error
                log.warning("webhook of %s (%s): event %s not delivered (attempt %d): %s", department,
                            shown_url(hook["url"]), event["event_id"], tries, what)
                if attempt < backoff.attempts:
                    sleep(backoff.wait(tries))
                else:
                    failed = f"event {event['event_id']}: {what} after {tries} attempts"
            if failed:
                break
        if len(pending) < batch and failed is None:
            break
    with engine.connect() as conn:
        left = len(changes.next_pending(conn, webhook_id, changes.MAX_PAGE))
    return {"department": department, "url": shown_url(hook["url"]), "delivered": delivered, "pending": left,
            "problem": failed}


def deliver(engine: sa.Engine, department: str | None = None, *,
            sharing: Mapping[str, DepartmentSharing] | None = None, backoff: Backoff = Backoff(),
            sleep: Callable[[float], None] = time.sleep, batch: int = 200, now: bool = False) -> list[dict]:
    """Deliver the queued events of every webhook (or ``department``'s), in order; returns per webhook how
    many were delivered, how many are still pending and why delivery stopped (None when all went).
    An event waiting out its backoff after failed runs is tried only when its time has come (``now``: at
    once). A webhook another process is delivering right now is skipped."""
    from warehouse.sharing import load_sharing

    sharing = dict(sharing) if sharing is not None else load_sharing()
    with engine.connect() as conn:
        hooks = changes.list_webhooks(conn, department)
    out = []
    for hook in hooks:
        with engine.connect() as lock:
            got = lock.execute(sa.text("SELECT pg_try_advisory_lock(hashtext(:k), :w)"),
                               {"k": _LOCK, "w": hook["webhook_id"]}).scalar_one()
            lock.commit()
            if not got:
                out.append({"department": hook["department"], "url": shown_url(hook["url"]), "delivered": 0,
                            "pending": hook["pending"], "problem": "another delivery of this webhook is running"})
                continue
            try:
                with engine.connect() as conn:
                    info, secret = changes.webhook_secret(conn, hook["webhook_id"])
                out.append(_deliver_one(engine, info, secret, sharing.get(hook["department"]), backoff, sleep, batch,
                                        now))
            finally:
                lock.execute(sa.text("SELECT pg_advisory_unlock(hashtext(:k), :w)"),
                             {"k": _LOCK, "w": hook["webhook_id"]})
                lock.commit()
    return out


def deliver_after_publish(engine: sa.Engine) -> list[dict]:
    """After a publish: one try of each queued event per webhook (no waiting between tries); what is not
    delivered stays queued for ``hub webhook deliver``. A failure never fails the publish."""
    try:
        with engine.connect() as conn:
            if not changes.has_webhooks(conn):
                return []
        results = deliver(engine, backoff=Backoff(attempts=1))
    except Exception as exc:  # noqa: BLE001 — the release is published; delivery is retried later
        log.error("webhooks: delivery after the publish failed (%s); run `hub webhook deliver`", type(exc).__name__)
        return []
    for r in results:
        if r["problem"]:
            log.warning("webhook of %s: %d delivered, %d pending: %s", r["department"], r["delivered"], r["pending"],
                        r["problem"])
    return results
