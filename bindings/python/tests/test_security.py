"""Security from Python (docs/security.md, "Clients"): key_file and server_key.

A real heraldd with --curve-secret and --acl; keys made here by `herald
keygen` (zcert files, secrets 0600).  The
Agent takes key_file/server_key, or HERALD_KEY/HERALD_SERVER_KEY; a publish
outside the grants raises herald.Unauthorized; a key the broker refuses
counts in stats()["auth_refused"] and is retried by the agent until the
ACL admits it; bad keys are refused at construction; and _lib refuses a
libherald whose herald_agent_options_t is not the size of its Options.
"""

import ctypes
import os
import signal
import subprocess
import time

import pytest
import zmq
import zmq.auth

import herald
from herald import _lib

from conftest import BUILDDIR, Broker, wait_for


def _keys(tmp_path):
    """zcert keypairs made by `herald keygen` (NAME.key, NAME.key_secret 0600)."""
    keys = tmp_path / "keys"
    keys.mkdir()
    herald_tool = str(BUILDDIR / "tools" / "herald")
    public = {}
    for name in ("broker", "alice", "bob", "audit", "other"):
        subprocess.run([herald_tool, "keygen", name, "--dir", str(keys)], check=True,
                       capture_output=True)
        public[name] = subprocess.run([herald_tool, "keygen", "--show",
                                       str(keys / (name + ".key"))], check=True,
                                      capture_output=True, text=True).stdout.strip()
    return keys, public


class SecureBroker(Broker):
    """heraldd with CURVE; ready once STATUS answers alice's key."""

    def __init__(self, tmp_path, keys, public):
        self.keys, self.public = keys, public
        self.acl_path = tmp_path / "acl"
        self.write_acl(with_bob=False)
        super().__init__(tmp_path, "secure", ["--curve-secret", str(keys / "broker.key_secret"),
                                              "--acl", str(self.acl_path),
                                              "--acl-check-ms", "100",
                                              "--audit-log", str(tmp_path / "audit.log")])

    def write_acl(self, with_bob):
        text = ("[user alice]\nkey = %s\nread = *\npublish = orders.\n\n"
                "[user audit]\nkey = %s\npublish = audit.\n" % (self.public["alice"],
                                                                 self.public["audit"]))
        if with_bob:
            text += "\n[user bob]\nkey = %s\nread = *\npublish = orders.\n" % self.public["bob"]
        new = self.acl_path.with_suffix(".new")
        new.write_text(text)
        os.chmod(new, 0o600)
        os.rename(new, self.acl_path)
        if getattr(self, "proc", None) is not None:
            self.proc.send_signal(signal.SIGHUP)

    def _ready(self, timeout):
        ctx = zmq.Context.instance()
        public, secret = zmq.auth.load_certificate(str(self.keys / "alice.key_secret"))
        deadline = time.monotonic() + timeout
        rid = 1
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            probe = ctx.socket(zmq.DEALER)
            probe.setsockopt(zmq.LINGER, 0)
            probe.curve_publickey, probe.curve_secretkey = public, secret
            probe.curve_serverkey = self.public["broker"].encode()
            probe.connect(self.api)
            try:
                import msgpack
                probe.send_multipart([b"STATUS", msgpack.packb({"rid": rid})])
                if probe.poll(1000, zmq.POLLIN):
                    return True
            finally:
                probe.close(0)
            rid += 1
        return False


@pytest.fixture
def secure(tmp_path):
    keys, public = _keys(tmp_path)
    b = SecureBroker(tmp_path, keys, public).start()
    yield b
    why = b.stop()
    if why:
        pytest.fail(why + "\n" + b.log_tail())


@pytest.fixture
def agents():
    made = []
    yield made
    for agent in made:
        agent.close()


def _agent(agents, secure, state_dir, user="alice", **options):
    options.setdefault("key_file", str(secure.keys / ("%s.key_secret" % user)))
    options.setdefault("server_key", secure.public["broker"])
    agent = herald.Agent("py-sec", state_dir=state_dir, api=secure.api, heartbeat=0.2,
                         **options)
    agents.append(agent)
    return agent


def test_key_file_and_server_key_publish_and_subscribe(secure, state_dir, agents):
    agent = _agent(agents, secure, state_dir,
                   server_key="@" + str(secure.keys / "broker.key"))
    seen = []
    agent.subscribe("orders.", name="orders")(lambda event: seen.append(event.seq))
    for n in range(3):
        agent.publish("orders.%d" % n, {"n": n})
    wait_for(lambda: len(seen) == 3, what=lambda: "3 events, got %r" % seen)
    assert seen == sorted(seen)
    assert agent.stats()["auth_refused"] == 0
    assert agent.stats().auth_refused == 0


def test_the_environment_gives_the_defaults(secure, state_dir, agents, monkeypatch):
    monkeypatch.setenv("HERALD_KEY", str(secure.keys / "alice.key_secret"))
    monkeypatch.setenv("HERALD_SERVER_KEY", secure.public["broker"])
    agent = herald.Agent("py-sec", state_dir=state_dir, api=secure.api)
    agents.append(agent)
    assert agent.publish("orders.env", {}).seq >= 1
    # An argument wins over the variable
    monkeypatch.setenv("HERALD_SERVER_KEY", "not-a-key")
    with pytest.raises(herald.InvalidArgumentError, match="neither a Z85 public key"):
        herald.Agent("py-sec", state_dir=state_dir + "-2", api=secure.api)
    other = herald.Agent("py-sec", state_dir=state_dir + "-3", api=secure.api,
                         server_key=secure.public["broker"])
    agents.append(other)
    assert other.publish("orders.env", {}).seq >= 1


def test_a_publish_outside_the_grants_raises_unauthorized(secure, state_dir, agents):
    agent = _agent(agents, secure, state_dir)
    with pytest.raises(herald.Unauthorized) as caught:
        agent.publish("billing.1", {})
    assert isinstance(caught.value, PermissionError)
    assert caught.value.code == _lib.ERR_UNAUTHORIZED
    assert agent.stats().outbox_depth == 0
    assert agent.publish("orders.1", {}).seq >= 1


def test_a_refused_key_is_retried_until_the_acl_admits_it(secure, state_dir, agents):
    agent = _agent(agents, secure, state_dir, user="bob")
    futures = [agent.publish_async("orders.bob", {"n": n}) for n in range(3)]
    wait_for(lambda: agent.stats()["auth_refused"] >= 1, what="a refusal")
    assert agent.stats().published == 0
    secure.write_acl(with_bob=True)
    agent.flush(timeout=20)
    assert [future.result(timeout=20).seq for future in futures] == [1, 2, 3]
    assert agent.stats()["auth_refused"] >= 1


def test_bad_keys_are_refused_at_construction(secure, state_dir):
    with pytest.raises(herald.InvalidArgumentError, match="holds no secret key"):
        herald.Agent("py-sec", state_dir=state_dir, api=secure.api,
                     key_file=str(secure.keys / "alice.key"),
                     server_key=secure.public["broker"])
    os.chmod(secure.keys / "bob.key_secret", 0o644)
    with pytest.raises(herald.InvalidArgumentError, match="group or others"):
        herald.Agent("py-sec", state_dir=state_dir, api=secure.api,
                     key_file=str(secure.keys / "bob.key_secret"),
                     server_key=secure.public["broker"])
    with pytest.raises(ValueError, match="without server_key"):
        herald.Agent("py-sec", state_dir=state_dir, api=secure.api,
                     key_file=str(secure.keys / "alice.key_secret"), server_key=None)


def test_a_library_with_another_options_size_is_refused(monkeypatch):
    assert _lib.lib.herald_agent_options_size() == ctypes.sizeof(_lib.Options)

    class Shorter(ctypes.Structure):            # the binding before the two fields
        _fields_ = _lib.Options._fields_[:-2]

    monkeypatch.setattr(_lib, "Options", Shorter)
    with pytest.raises(ImportError, match="different versions"):
        _lib._load()
