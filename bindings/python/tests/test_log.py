"""herald.set_log: libherald's log lines to a Python callable, with their
level, instead of stderr; None restores stderr (issue 17).

The line is one the library says for real: a torn outbox record cut off.
With the test's broker stopped, three publishes stay in the outbox; garbage
after the last record is what a crash inside a publish call leaves.  The
next agent on that state directory cuts it off and says so.  stderr is
file descriptor 2 of this process, so the test reads it through capfd.
"""

import os
import threading

import pytest

import herald
from conftest import wait_for


@pytest.fixture(autouse=True)
def _restore_stderr():
    yield
    herald.set_log(None)


def _tear_the_outbox(broker, make_agent, state_dir):
    assert not broker.stop()
    agent = make_agent()
    for _ in range(3):
        agent.publish_async("o.1", b"x")
    agent.close()
    with open(os.path.join(state_dir, "outbox"), "ab") as outbox:
        outbox.write(b"\x40\x00\x00\x00\x01")


def test_a_torn_record_is_a_warning_to_the_callable(broker, make_agent, state_dir, capfd):
    _tear_the_outbox(broker, make_agent, state_dir)
    lines = []
    threads = set()

    def record(level, message):
        lines.append((level, message))
        threads.add(threading.get_ident())

    herald.set_log(record)
    capfd.readouterr()
    agent = make_agent()
    assert agent.stats().state_recovered == 1
    wait_for(lambda: lines, what="a log line")
    torn = [(level, message) for level, message in lines if "torn by a crash" in message]
    assert torn and torn[0][0] == herald.LOG_WARNING, lines
    assert "outbox" in torn[0][1] and "\n" not in torn[0][1]
    assert "herald agent:" not in capfd.readouterr().err


def test_none_restores_stderr(broker, make_agent, state_dir, capfd):
    _tear_the_outbox(broker, make_agent, state_dir)
    lines = []
    herald.set_log(lambda level, message: lines.append(message))
    herald.set_log(None)
    capfd.readouterr()
    agent = make_agent()
    assert agent.stats().state_recovered == 1
    assert lines == []
    err = capfd.readouterr().err
    assert "herald agent: " in err and "outbox: cut off a record torn by a crash" in err, err


def test_set_log_from_the_callable_is_refused(broker, make_agent, state_dir):
    _tear_the_outbox(broker, make_agent, state_dir)
    refused = []

    def nested(level, message):
        try:
            herald.set_log(None)
        except herald.InvalidArgumentError as exc:
            refused.append(str(exc))

    herald.set_log(nested)
    make_agent()
    assert refused and "log callback" in refused[0], refused
