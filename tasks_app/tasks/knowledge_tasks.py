"""Knowledge-base indexing (queue `knowledge_default`)."""
