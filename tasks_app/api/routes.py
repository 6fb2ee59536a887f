"""Registers the task endpoints (/api/v1/tasks/...) on the project's router."""
