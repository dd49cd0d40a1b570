"""The list of files ``pytest -n 2`` runs with the session server (:mod:`xdist_groups`) is complete: a file missing
from it would start a second session server on the other worker."""

from __future__ import annotations

import pytest
from conftest import REPO_ROOT, SESSION_SERVER_USERS
from xdist_groups import REPLICAS_FILE, SESSION_SERVER_FILES, SPLIT_PER_TEST, SuiteScheduling, group_of, run_order


def test_every_file_on_the_session_server_is_listed(request: pytest.FixtureRequest) -> None:
    users = request.config.stash[SESSION_SERVER_USERS]
    missing = sorted(users - SESSION_SERVER_FILES)
    assert not missing, f"add these to SESSION_SERVER_FILES in tests/xdist_groups.py: {missing}"


def test_every_listed_file_exists() -> None:
    for path in SESSION_SERVER_FILES | {REPLICAS_FILE}:
        assert (REPO_ROOT / path).is_file(), path


def test_the_scheduler_groups_by_file_and_the_session_server() -> None:
    split = SuiteScheduling._split_scope
    assert split(None, "tests/server/test_routes.py::test_a[x::y]") == "session-server"
    assert split(None, "tests/server/test_replicas.py::test_b") == "tests/server/test_replicas.py"
    assert split(None, "tests/server/test_cli.py::test_c[1]") == group_of("tests/server/test_cli.py")
    assert group_of("tests/server/test_cli.py") == "tests/server/test_cli.py"
    signal_test = "tests/server/test_startup_signals.py::test_signal_while_the_app_starts_leaves_no_process"
    assert split(None, signal_test) == signal_test  # a unit per test


def test_the_session_server_goes_first_then_the_replicas_then_other_engines() -> None:
    orders = [
        run_order("tests/server/test_routes.py", engine=True),
        run_order(REPLICAS_FILE, engine=True),
        run_order("tests/server/test_startup_signals.py", engine=True),
        run_order("tests/server/test_cli.py", engine=False),
    ]
    assert orders == sorted(orders) and len(set(orders)) == 4


def test_files_split_per_test_share_no_module_fixture() -> None:
    """A file split per test would start a module fixture on each worker that runs one of its tests."""
    for path in SPLIT_PER_TEST:
        source = (REPO_ROOT / path).read_text()
        assert 'scope="module"' not in source and "scope='module'" not in source, path
