"""factory_boy factories for the rows tests make by hand.

Each gives a valid row with as little as possible chosen for the test, so a test names only
what it is about: `TaskRecordFactory(state=TaskState.FAILURE, submitted_by=alice)`. They write
through the ORM, as the admin and the services' ORM paths do; the rows the system itself writes
at publish time (records, messages of a reply) come from the code under test, not from here.
"""

import uuid

import factory
from django.conf import settings
from factory.django import DjangoModelFactory, Password

from conversations.models import Conversation, KnowledgeDocument, Message, MessageRole
from tasks_app.models import TaskRecord

PASSWORD = "pw"


class UserFactory(DjangoModelFactory):
    """An API user, i.e. a tenant; its password is "pw" (for admin and session logins)."""

    class Meta:
        model = settings.AUTH_USER_MODEL
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = Password(PASSWORD)


class StaffFactory(UserFactory):
    """Staff: may sign in to the admin, and (staff alone) nothing more in the API."""

    username = factory.Sequence(lambda n: f"staff{n}")
    is_staff = True


class SuperuserFactory(StaffFactory):
    username = factory.Sequence(lambda n: f"root{n}")
    is_superuser = True


class TaskRecordFactory(DjangoModelFactory):
    """A task record as the publish path leaves it: PENDING on the default queue, no owner."""

    class Meta:
        model = TaskRecord

    task_id = factory.LazyFunction(lambda: str(uuid.uuid4()))
    task_name = "tests.record_run"
    queue = "default"


class ConversationFactory(DjangoModelFactory):
    """A conversation of one chat user; `created_by` is its tenant (None: made from code)."""

    class Meta:
        model = Conversation

    public_id = factory.Sequence(lambda n: f"conv_{n}")
    user_id = "user_456"
    created_by = None


class MessageFactory(DjangoModelFactory):
    class Meta:
        model = Message

    conversation = factory.SubFactory(ConversationFactory)
    role = MessageRole.USER
    content = "hi"


class KnowledgeDocumentFactory(DjangoModelFactory):
    """A document of one chat user; its size is that of its content, as the API stores it."""

    class Meta:
        model = KnowledgeDocument

    user_id = "user_456"
    title = factory.Sequence(lambda n: f"Document {n}")
    content = "text"
    created_by = None
    content_bytes = factory.LazyAttribute(lambda document: len(document.content.encode()))
