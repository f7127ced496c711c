"""Shared test set-up: slow steps say what they are doing on the terminal, even with output captured."""

import pytest


@pytest.fixture
def announce(request):
    """Write one line to the terminal now (pytest captures print), for steps that take minutes."""
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")

    def say(message: str) -> None:
        if reporter is None:
            return
        with capture.global_and_fixture_disabled():  # else the captured stdout swallows the line
            reporter.write_line(f"  [{request.node.name}] {message}")
    return say


def pytest_sessionstart(session):
    """Convert the default model before the tests (once per machine, ~2 minutes), saying so."""
    from tvlib.models import ALIASES, DEFAULT_MODEL, _converted_dir, resolve

    try:
        cached = (_converted_dir(DEFAULT_MODEL) / "model.safetensors").exists()
    except ModuleNotFoundError:
        return  # the package is missing: the tests that need the model say so
    if not cached:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"tvlib: converting {DEFAULT_MODEL} from GGUF once (about 2 minutes; "
                                f"{ALIASES[DEFAULT_MODEL].package}) into the model cache ...")
        resolve(DEFAULT_MODEL)
