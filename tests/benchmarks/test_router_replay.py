"""The trace-replay benchmark's command line: bad arguments fail before the long run."""

from __future__ import annotations

import pytest

from benchmarks.router_replay import main


@pytest.mark.parametrize(("argv", "named"), [
    (["--start", "99999"], "--start 99999 is past the trace's last request; it holds 12031"),
    (["--routers", "ours,random"], "--routers: unknown random"),
    (["--requests", "0"], "--requests 0"),
    (["--knob", "no_such_knob=1"], "no_such_knob"),
])
def test_bad_arguments_name_what_to_change(argv, named, capsys):
    with pytest.raises((SystemExit, ValueError)) as e:
        main(argv)
    said = capsys.readouterr().err + str(e.value)
    assert named in said
