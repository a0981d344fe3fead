"""Test-only: a Python subprocess of the Azure ML tests resolves the fake cloud's names.

Only with this folder on ``PYTHONPATH`` and ``MODELPORT_FAKE_RESOLVE`` set (``fake_resolver.py``).
"""

import fake_resolver

fake_resolver.install_from_env()
