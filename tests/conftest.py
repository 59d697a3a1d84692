"""Test configuration: offline Hub, deterministic seeds, and transformers' common suites on the path."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import transformers_suites  # noqa: E402

transformers_suites.install()
