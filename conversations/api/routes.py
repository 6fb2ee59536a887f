"""Registers the conversation and knowledge endpoints on the project's router."""
