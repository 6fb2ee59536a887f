"""AI reply generation (queue `ai_high_priority`)."""
