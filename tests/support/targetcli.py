"""What the TARGET tests share (`tests/integration/test_targets.py`,
`test_targets_named.py`): a private registry's settings, the arguments a command hands
`resolve`, and the sentence of a refusal."""
from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from config.registry import RegistrySettings
from executor.cli import UsageError
from executor.cli.targets import resolve


def registry_in(tmp_path: Path) -> RegistrySettings:
    return RegistrySettings(registry_root=str(tmp_path / "root"), registry_retention_secs=86400.0)


def args_of(settings: RegistrySettings) -> argparse.Namespace:
    """The namespace a command's parser gives `resolve`, with `settings`' registry."""
    return argparse.Namespace(registry_root=settings.registry_root, registry_retention_secs=None)


def refused(given: str | None, settings: RegistrySettings, **kw: object) -> str:
    """The UsageError `resolve` raises for `given`, as its text."""
    with pytest.raises(UsageError) as caught:
        resolve(given, args_of(settings), **kw)  # type: ignore[arg-type]
    return str(caught.value)
