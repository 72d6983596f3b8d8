"""Integration tests: slow, or need services (a SLURM cluster); run as `python -m pytest tests_integration -x`.

Not under tests/, so the README's `python -m pytest` (testpaths = tests) never collects them.
"""

import os

# Jobs never reach the Hugging Face hub (the same as tests/conftest.py; SLURM jobs inherit this environment).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
