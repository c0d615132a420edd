"""The pytest face of the conformance kit: subclass :class:`ProviderConformance` in your tests.

::

    from loom.sdk.testing import ProviderConformance
    import my_plugin

    class TestMyProvider(ProviderConformance):
        provider = my_plugin.MyProvider
        options = {"model": "tiny"}
        plugin = my_plugin            # optional: check the hooks too
        entry_point = "my-plugin"     # optional: check the installed entry point

The class gets one test per applicable check, ``test_conformance[chat.stream]`` and so on, for the
capabilities the provider declares. The provider is built and loaded once per class.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import pytest

from ..types import Capability
from .checks import Check, Settings, applicable
from .harness import Subject


class ProviderConformance:
    """Base class of a provider's conformance tests; configure it with class attributes."""

    #: The provider class under test (required).
    provider: ClassVar[type | None] = None
    #: ``[[models]].options`` as a config table (dict) or an ``Options`` instance. To compute it
    #: from other fixtures (a fake server's URL, a model file), override the ``loom_options`` fixture.
    options: ClassVar[Any] = None
    #: The plugin's ``[plugins.NAME]`` options, as the provider's ``spec.plugin_options``.
    plugin_options: ClassVar[Any] = None
    #: The plugin module: its hooks are checked against Loom's hookspecs (``plugin.registration``).
    plugin: ClassVar[Any] = None
    #: The entry-point name in the ``loom`` group, checked when set (needs the package installed).
    entry_point: ClassVar[str | None] = None
    device: ClassVar[str] = "cpu"
    #: Check only these capabilities (default: every capability the provider declares).
    capabilities: ClassVar[frozenset[Capability] | None] = None
    #: Override the provider's own ``deterministic`` claim (None: read it from the class).
    deterministic: ClassVar[bool | None] = None
    #: Check id -> reason, for checks this provider knowingly fails; they are reported as skipped.
    skip_checks: ClassVar[dict[str, str]] = {}
    # What the checks send (see loom.sdk.testing.checks.Settings for the defaults).
    prompt: ClassVar[str] = Settings.prompt
    completion_prompt: ClassVar[str] = Settings.completion_prompt
    max_tokens: ClassVar[int] = Settings.max_tokens
    seed: ClassVar[int] = Settings.seed
    cancel_grace: ClassVar[int] = Settings.cancel_grace
    texts: ClassVar[tuple[str, ...]] = Settings.texts
    image_size: ClassVar[tuple[int, int]] = Settings.image_size
    image_steps: ClassVar[int] = Settings.image_steps
    languages: ClassVar[tuple[str, str]] = Settings.languages
    bad_language: ClassVar[str] = Settings.bad_language
    third_language: ClassVar[str | None] = Settings.third_language
    rerank_query: ClassVar[str] = Settings.rerank_query

    @classmethod
    def _provider_class(cls) -> type:
        assert cls.provider is not None, f"{cls.__name__}: set `provider = YourProviderClass`"
        return cls.provider

    @classmethod
    def loom_settings(cls) -> Settings:
        claimed = bool(getattr(cls._provider_class(), "deterministic", False))
        values = {f.name: getattr(cls, f.name) for f in dataclasses.fields(Settings) if f.name != "deterministic"}
        return Settings(**values, deterministic=claimed if cls.deterministic is None else cls.deterministic)

    @classmethod
    def loom_checks(cls) -> list[Check]:
        assert cls.provider is not None, f"{cls.__name__}: set `provider = YourProviderClass`"
        declared = frozenset(getattr(cls.provider, "capabilities", ()))
        wanted = declared if cls.capabilities is None else declared & frozenset(cls.capabilities)
        return applicable(wanted, plugin=cls.plugin is not None)

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if "loom_check" in metafunc.fixturenames:
            checks = type(self).loom_checks()
            metafunc.parametrize("loom_check", checks, ids=[c.id for c in checks])

    # Class-scoped fixtures are classmethods: pytest 9.2 deprecates them as instance methods (an
    # instance's attributes would not reach the tests), and overrides should follow suit.
    @pytest.fixture(scope="class")
    @classmethod
    def loom_options(cls) -> Any:
        """The provider's options; override this fixture to build them from other fixtures."""
        return cls.options

    @pytest.fixture(scope="class")
    @classmethod
    def loom_plugin_options(cls) -> Any:
        """The plugin's options; override this fixture to build them from other fixtures."""
        return cls.plugin_options

    @pytest.fixture(scope="class")
    @classmethod
    def loom_subject(cls, loom_options: Any, loom_plugin_options: Any, tmp_path_factory: pytest.TempPathFactory):
        """The provider, built from a ModelSpec and loaded once for the class."""
        subject = Subject(
            cls._provider_class(),
            loom_options,
            plugin_options=loom_plugin_options,
            capabilities=None if cls.capabilities is None else frozenset(cls.capabilities),
            device=cls.device,
            data_dir=str(tmp_path_factory.mktemp("loom-conformance")),
            settings=cls.loom_settings(),
        )
        try:
            subject.load()
            yield subject
        finally:
            subject.close()

    def test_conformance(self, loom_check: Check, loom_subject: Subject) -> None:
        reason = type(self).skip_checks.get(loom_check.id)
        if reason:
            pytest.skip(f"{loom_check.id}: {reason}")
        why = loom_check.skip_reason(loom_subject, loom_subject.settings)
        if why is not None:
            pytest.skip(f"{loom_check.id}: {why}")
        loom_check.run(loom_subject)


def provider_conformance(provider: type, **settings: Any) -> type[ProviderConformance]:
    """A ``ProviderConformance`` subclass for ``provider``; assign it to a ``Test*`` name::

    TestEcho = provider_conformance(EchoProvider, options={"greeting": "hi"})
    """
    unknown = set(settings) - set(vars(ProviderConformance)) - {"options"}
    if unknown:
        raise TypeError(f"provider_conformance: unknown settings {sorted(unknown)}")
    return type(f"Test{provider.__name__}Conformance", (ProviderConformance,), {"provider": provider, **settings})
