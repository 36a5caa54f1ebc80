"""fork: an agent inherited by a forked child, ids made in forked children,
and an id reused for another event (issue 11).

A forked child has a copy of the parent's agent but none of its threads;
using it must fail at once with ForkedAgentError (never hang, never write
into the parent's outbox), while the parent's agent goes on.  Agents made
in children draw ids from libherald's generator, which a child reseeds:
no id, and no id's 62 random bits, is shared between processes (before,
a child drew the parent's pool bytes again: shared random bits every
time, whole ids whenever the millisecond matched).
"""

import multiprocessing
import os
import signal
import time
import uuid

import pytest

import herald

CHILD_EXIT_TIMEOUT = 30.0


def _reap(pid, timeout=CHILD_EXIT_TIMEOUT):
    """The child's exit status; kill it and fail when it does not exit."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail("the forked child hung (killed after %.0f s)" % timeout)


def _in_child(body):
    """fork; run body() in the child, exit 0 if it returns True, else 1
    (2 on an exception, its text on stderr)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = 0 if body() else 1
        except BaseException as exc:            # pragma: no cover - reported by status
            os.write(2, ("child: %r\n" % (exc,)).encode())
            code = 2
        os._exit(code)
    return pid


def test_an_inherited_agent_fails_clearly_in_a_forked_child(make_agent):
    agent = make_agent()
    before = agent.publish("fork.parent", b"before")
    parent_pid = os.getpid()

    def child():
        started = time.monotonic()
        try:
            agent.publish("fork.child", b"x", timeout=10)
        except herald.ForkedAgentError as exc:
            text = str(exc)
            ok = ("belongs to process %d" % parent_pid in text
                  and isinstance(exc, herald.HeraldError)
                  and time.monotonic() - started < 1.0)
        else:
            return False
        for call in (lambda: agent.publish_async("fork.child", b"y"), agent.flush,
                     agent.stats, lambda: agent.subscribe("fork.", lambda e: None)):
            try:
                call()
                return False
            except herald.ForkedAgentError:
                pass
        agent.close()                           # lets go, never joins the parent's threads
        return ok and agent.closed

    assert _reap(_in_child(child)) == 0, "the child did not get ForkedAgentError at once"
    after = agent.publish("fork.parent", b"after")
    assert after.seq == before.seq + 1, "the child stored something, or the parent broke"
    agent.flush(timeout=10)
    assert [e.topic for e in agent.replay()] == ["fork.parent", "fork.parent"]


def test_a_child_exiting_with_an_inherited_agent_does_not_hang(make_agent):
    agent = make_agent()
    agent.publish("fork.parent", b"x")

    def child():
        import atexit
        atexit._run_exitfuncs()                 # what a normal exit runs: herald's hook too
        return True

    assert _reap(_in_child(child)) == 0, "the child's exit hooks failed"
    assert agent.publish("fork.parent", b"y").seq == 2


def _use_inherited(_):
    try:
        _INHERITED.publish("pool.child", b"x", timeout=10)
        return "published"
    except herald.ForkedAgentError as exc:
        return "ForkedAgentError: %s" % exc
    except Exception as exc:                    # the old behaviour: a timeout
        return "%s: %s" % (type(exc).__name__, exc)


_INHERITED = None


def test_a_multiprocessing_fork_pool_gets_forked_agent_error(make_agent):
    global _INHERITED
    _INHERITED = make_agent()
    _INHERITED.publish("pool.parent", b"x")
    context = multiprocessing.get_context("fork")
    try:
        with context.Pool(2) as pool:
            answers = pool.map_async(_use_inherited, range(4)).get(timeout=60)
    finally:
        inherited, _INHERITED = _INHERITED, None
    assert all(a.startswith("ForkedAgentError: this agent belongs to process") for a in answers), \
        answers
    assert inherited.publish("pool.parent", b"y").seq == 2


def _publish_from_a_new_agent(args):
    api, fanout, state_dir, count = args
    with herald.Agent("child", state_dir=state_dir, api=api, fanout=fanout) as agent:
        futures = [agent.publish_async("ids.child", b"%d" % index) for index in range(count)]
        agent.flush(timeout=30)
        return [(f.result(timeout=30).id.bytes, f.result().duplicate) for f in futures]


def test_agents_made_in_forked_children_make_unique_ids(make_agent, broker, tmp_path):
    children, count = 4, 60
    agent = make_agent()
    agent.publish("ids.parent", b"warm")        # libherald's id pool is filled and in use
    context = multiprocessing.get_context("fork")
    dirs = []
    for index in range(children):
        path = tmp_path / ("child-%d" % index)
        path.mkdir()
        dirs.append(str(path))
    with context.Pool(children) as pool:
        pending = pool.map_async(_publish_from_a_new_agent,
                                 [(broker.api, broker.fanout, d, count) for d in dirs])
        mine = [agent.publish_async("ids.parent", b"%d" % index) for index in range(count)]
        theirs = pending.get(timeout=120)
    agent.flush(timeout=30)
    ids = [(f.result(timeout=30).id.bytes, f.result().duplicate) for f in mine]
    for answer in theirs:
        ids += answer
    assert not any(dup for _, dup in ids), "an event was taken for a duplicate: not stored"
    raw = [i for i, _ in ids]
    assert len(raw) == (children + 1) * count
    assert len(set(raw)) == len(raw), "two processes made the same id"
    assert len({i[8:] for i in raw}) == len(raw), "two processes drew the same random bits"
    assert len(agent.replay(prefixes="ids.")) == len(raw) + 1


def test_an_id_reused_with_other_data_raises_id_reused_error(make_agent):
    agent = make_agent()
    event_id = uuid.uuid4()
    first = agent.publish("reuse.1", b"original", id=event_id)
    with pytest.raises(herald.IdReusedError) as info:
        agent.publish("reuse.1", b"something else", id=event_id)
    error = info.value
    assert isinstance(error, herald.HeraldError)
    assert (error.id, error.seq, error.code, error.name) == (event_id, first.seq, 30, "id_reused")
    assert "not stored" in str(error)
    future = agent.publish_async("reuse.2", b"original", id=event_id)
    with pytest.raises(herald.IdReusedError) as info:
        future.result(timeout=20)
    assert info.value.id == event_id and info.value.seq == first.seq
    retry = agent.publish("reuse.1", b"original", id=event_id)
    assert retry.duplicate and retry.seq == first.seq, "a true retry is a plain duplicate"
    assert agent.stats().outbox_depth == 0, "a reused id is final: not left in the outbox"
    assert len(agent.replay()) == 1
