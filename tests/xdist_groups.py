"""How ``pytest -n 2`` splits the suite between its two workers (wired in ``tests/conftest.py``).

A test file runs on one worker, so a module's fixtures (an engine, a server) start once. Every file with a test on
the session's server (the ``server``/``live`` fixtures) runs on one worker too, so one session server serves them
all. The replicas' file (two servers, one of them with two data-parallel engines: about 11.5 GB) starts first on
the other worker, so it runs while the session server's worker holds nothing else: a tiny server takes about
4.6 GB, and two workers each holding a session server and the replicas would not fit in 24 GB.

The split is a pytest-xdist scheduler (its ``pytest_xdist_make_scheduler`` hook), because xdist's own
``xdist_group`` marks do not reach its scheduler under pytest 9.2 (xdist 3.8 renames the node id through an
attribute pytest no longer reads). The scheduler sees only node ids, so the session server's files are listed
here; ``tests/test_xdist_groups.py`` fails when a file that uses the session server is missing from the list.
"""

from __future__ import annotations

from xdist.scheduler import LoadScopeScheduling

SESSION_SERVER_GROUP = "session-server"
SESSION_SERVER_FIXTURES = frozenset({"server", "live"})
SESSION_SERVER_FILES = frozenset(
    {
        "tests/bench/test_end_to_end.py",
        "tests/bench/test_lmms_eval.py",
        "tests/bench/test_scanqa_run.py",
        "tests/bench/test_vsibench_run.py",
        "tests/deploy/test_deploy_monitoring.py",
        "tests/server/test_bad_input.py",
        "tests/server/test_curl.py",
        "tests/server/test_fidelity.py",
        "tests/server/test_files_api.py",
        "tests/server/test_frame_lists_live.py",
        "tests/server/test_fuzz.py",
        "tests/server/test_load.py",
        "tests/server/test_openai_sdk.py",
        "tests/server/test_playground.py",
        "tests/server/test_readiness.py",
        "tests/server/test_routes.py",
        "tests/server/test_short_videos_live.py",
        "tests/server/test_video_frames.py",
    }
)
# the longest file apart from the session server's (its servers hold ~11.5 GB): first on the other worker
REPLICAS_FILE = "tests/server/test_replicas.py"
# files whose tests each start a server of their own and share no module fixture: a unit per test, so these
# starts spread over both workers instead of running one after another at the end of one
SPLIT_PER_TEST = frozenset({"tests/server/test_startup_signals.py"})


def group_of(path: str) -> str:
    """The work unit of a test file (its path relative to the repository, as in a node id)."""
    if path in SESSION_SERVER_FILES:
        return SESSION_SERVER_GROUP
    return path


def run_order(path: str, engine: bool) -> int:
    """Where a test of ``path`` goes in the run (the scheduler hands out work units in this order, longest work
    first so no worker is left with an engine file at the end while the other idles): the session server's group,
    then the replicas, then the other files that start engines, then the rest."""
    if group_of(path) == SESSION_SERVER_GROUP:
        return 0
    if path == REPLICAS_FILE:
        return 1
    return 2 if engine else 3


class SuiteScheduling(LoadScopeScheduling):
    """xdist's scope scheduling with :func:`group_of` as the scope: whole work units go to whichever worker is
    nearly done, in collection order (``tests/conftest.py`` sorts the longest first)."""

    def _split_scope(self, nodeid: str) -> str:
        path = nodeid.split("::", 1)[0]
        return nodeid if path in SPLIT_PER_TEST else group_of(path)
