"""The development outbox (no SMTP_URL): mail kept in the real database, listed newest
first, per recipient in any case, for a day."""

from __future__ import annotations

import datetime as dt

import pytest

from transom_socketio.db import ensure_indexes
from transom_socketio.mail.message import Mail
from transom_socketio.mail.sender import Mailer
from transom_socketio.mail.templates import MailTemplates
from transom_socketio.mail.transports import COLLECTION, INDEXES, KEEP_SECONDS, DevOutbox

SENDER = "noreply@app.example"


@pytest.mark.gen_test
async def test_the_outbox_lists_newest_first_and_per_recipient_in_any_case(app, db):
    outbox = DevOutbox(db)
    for number, to in enumerate(
        ["Alice@Example.com", "bob@example.org", "alice@example.com", "ALICE@EXAMPLE.COM"]
    ):
        await outbox.deliver(Mail("verify", to, f"subject {number}", f"text {number}"), SENDER)

    everything = await outbox.list()
    assert [mail["subject"] for mail in everything] == [f"subject {n}" for n in (3, 2, 1, 0)]
    alice = await outbox.list(to="aLiCe@example.COM")
    assert [mail["to"] for mail in alice] == [
        "ALICE@EXAMPLE.COM", "alice@example.com", "Alice@Example.com",
    ]  # fmt: skip
    assert [mail["subject"] for mail in await outbox.list(to="bob@example.org")] == ["subject 1"]
    assert await outbox.list(to="carol@example.com") == []
    assert len(await outbox.list(limit=2)) == 2
    assert len(await outbox.list(to=" ")) == 4

    newest = everything[0]
    assert set(newest) == {"_id", "kind", "to", "subject", "text", "sent_at"}
    assert isinstance(newest["_id"], str)
    assert (newest["kind"], newest["text"]) == ("verify", "text 3")
    assert isinstance(newest["sent_at"], dt.datetime) and newest["sent_at"].tzinfo is not None
    assert newest["sent_at"] >= everything[-1]["sent_at"]


@pytest.mark.gen_test
async def test_the_outbox_keeps_mail_for_a_day_under_a_ttl_index(app, db):
    await ensure_indexes(db, INDEXES)
    await DevOutbox(db).deliver(Mail("reset", "Alice@Example.com", "s", "t"), SENDER)

    stored = await db[COLLECTION].find_one({})
    assert stored["to_lower"] == "alice@example.com"
    assert stored["expires_at"] - stored["sent_at"] == dt.timedelta(seconds=KEEP_SECONDS)
    indexes = await db[COLLECTION].index_information()
    ttl = [index for index in indexes.values() if "expireAfterSeconds" in index]
    assert [(index["key"], index["expireAfterSeconds"]) for index in ttl] == [
        ([("expires_at", 1)], 0)
    ]
    assert any(index["key"] == [("to_lower", 1), ("sent_at", -1)] for index in indexes.values())


@pytest.mark.gen_test
async def test_a_mailer_on_the_outbox_stores_the_rendered_mail(app, db):
    outbox = DevOutbox(db)
    mailer = Mailer(outbox, SENDER, MailTemplates())
    link = "http://127.0.0.1:8000/verify?token=abc"
    mailer.send(
        "verify",
        "alice@example.com",
        app_name="Example App",
        user={"display_name": "Alice"},
        link=link,
        expires_minutes=30,
    )
    await mailer.drain()

    [mail] = await outbox.list(to="alice@example.com")
    assert mail["kind"] == "verify"
    assert mail["subject"] == "Confirm your email address for Example App"
    assert link in mail["text"]
    assert mailer.sent == 1
