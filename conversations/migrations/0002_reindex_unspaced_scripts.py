"""Knowledge documents in Chinese or Japanese, indexed before such text was searched as pairs of
characters (conversations.knowledge), hold whole runs of it as single words that no question can
match. Marking them stale hands them to the periodic re-index of stale documents; their old chunks
serve until then."""

from django.db import migrations
from django.db.models import Q

# The characters conversations.knowledge splits into pairs (Han, Hiragana, Katakana).
UNSPACED = "[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]"


def mark_unspaced_documents_stale(apps, schema_editor):
    KnowledgeDocument = apps.get_model("conversations", "KnowledgeDocument")
    KnowledgeDocument.objects.filter(indexed_at__isnull=False).filter(
        Q(title__regex=UNSPACED) | Q(content__regex=UNSPACED)
    ).update(indexed_at=None)


class Migration(migrations.Migration):
    dependencies = [("conversations", "0001_initial")]

    operations = [migrations.RunPython(mark_unspaced_documents_stale, migrations.RunPython.noop)]
