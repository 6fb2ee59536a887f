"""The chat domain's hand-written statements (conversations.queries), against the real database."""

import pytest
from django.db import connection, transaction

from conversations import queries
from conversations.knowledge import knowledge_reindex
from conversations.models import Conversation, KnowledgeDocument

pytestmark = pytest.mark.django_db


def test_insert_or_get_conversation_inserts_then_returns_the_stored_one(alice):
    # when a conversation is asked for twice
    new, created = queries.insert_or_get_conversation(
        Conversation(public_id="conv_q1", user_id="user_1", created_by_id=alice.pk)
    )
    again, created_again = queries.insert_or_get_conversation(
        Conversation(public_id="conv_q1", user_id="someone else", created_by_id=alice.pk)
    )

    # then the first inserts it, the second reads it as stored
    assert (created, created_again) == (True, False)
    assert again.pk == new.pk == Conversation.objects.get(public_id="conv_q1").pk
    assert (again.user_id, again.created_by_id) == ("user_1", alice.pk)


def test_insert_or_get_conversation_keeps_tenants_apart(alice, bob):
    mine, _ = queries.insert_or_get_conversation(Conversation(public_id="conv_q2", user_id="u", created_by_id=alice.pk))
    theirs, created = queries.insert_or_get_conversation(
        Conversation(public_id="conv_q2", user_id="u", created_by_id=bob.pk)
    )
    from_code, created_from_code = queries.insert_or_get_conversation(Conversation(public_id="conv_q2", user_id="u"))
    assert created
    assert created_from_code
    assert len({mine.pk, theirs.pk, from_code.pk}) == 3
    assert from_code.created_by_id is None


def test_an_advisory_lock_is_held_until_the_transaction_ends():
    with transaction.atomic():
        assert queries.try_advisory_xact_lock(1, 42)
        with connection.cursor() as cursor:  # held: a second session would be refused
            cursor.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 42")
            assert cursor.fetchone()[0] == 1


def test_best_matching_chunks_ranks_the_tenants_user_chunks(alice, bob, settings):
    # given the same chat user id under two tenants, each with a document
    for owner, content in ((alice, "Refunds within 30 days. Refund desk."), (bob, "Refunds are Bob's business.")):
        knowledge_reindex(
            KnowledgeDocument.objects.create(created_by=owner, user_id="user_1", title="policy", content=content)
        )

    # when alice's user searches
    found = queries.best_matching_chunks(
        search_config=settings.KNOWLEDGE_SEARCH_CONFIG, terms="'refund'", tenant_id=alice.pk, user_id="user_1", limit=5
    )

    # then only alice's chunk comes back, with its document's title
    assert [(chunk.content, chunk.document_title) for chunk in found] == [
        ("Refunds within 30 days. Refund desk.", "policy")
    ]
