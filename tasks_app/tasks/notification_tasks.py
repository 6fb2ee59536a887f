"""Notifications: webhooks and email (queue `notification_default`)."""
