"""HWP/1 conformance: raw ZeroMQ frames and MessagePack, as a third party

Each test starts its own heraldd (conftest.py) and checks one behaviour of
docs/protocol.md, the contract: where the broker disagrees, the
test fails and says what the contract expects and what came back.  Every
receive is bounded, so a broker that stays silent fails a test instead of
hanging it.

MessagePack replies are decoded with the small decoder below rather than
msgpack.unpackb, because the contract's types are those of the wire: a
`uint` must be encoded in a uint (or positive fixint) format, a `str` in a
str format and a `bin` in a bin format.
"""

import os
import struct
import time

import msgpack
import pytest
import zmq

SILENCE_MS = 300          # "nothing more arrives" window for credit checks


# -- a typed MessagePack decoder -----------------------------------------

class SignedInt(int):
    """An integer that came in a signed (int 8..64 or negative fixint)
    format: never a `uint` in the contract's sense."""


class DecodeError(ValueError):
    pass


def decode(data):
    """Decode one MessagePack object that fills data exactly."""
    if data is None:
        raise DecodeError("no body frame")
    value, end = _decode(bytes(data), 0)
    if end != len(data):
        raise DecodeError("%d trailing bytes" % (len(data) - end))
    return value


def _take(b, i, n):
    if i + n > len(b):
        raise DecodeError("truncated")
    return b[i:i + n], i + n


def _decode(b, i):
    head, i = _take(b, i, 1)
    t = head[0]
    if t <= 0x7f:
        return t, i
    if t >= 0xe0:
        return SignedInt(t - 0x100), i
    if 0x80 <= t <= 0x8f:
        return _map(b, i, t & 0x0f)
    if 0x90 <= t <= 0x9f:
        return _array(b, i, t & 0x0f)
    if 0xa0 <= t <= 0xbf:
        return _str(b, i, t & 0x1f)
    if t == 0xc0:
        return None, i
    if t == 0xc2:
        return False, i
    if t == 0xc3:
        return True, i
    sizes = {0: 1, 1: 2, 2: 4, 3: 8}
    fmt = {1: ">B", 2: ">H", 4: ">I", 8: ">Q"}
    sfmt = {1: ">b", 2: ">h", 4: ">i", 8: ">q"}
    if t in (0xc4, 0xc5, 0xc6):
        n = sizes[t - 0xc4]
        raw, i = _take(b, i, n)
        length = struct.unpack(fmt[n], raw)[0]
        return _take(b, i, length)
    if t == 0xca:
        raw, i = _take(b, i, 4)
        return struct.unpack(">f", raw)[0], i
    if t == 0xcb:
        raw, i = _take(b, i, 8)
        return struct.unpack(">d", raw)[0], i
    if 0xcc <= t <= 0xcf:
        n = sizes[t - 0xcc]
        raw, i = _take(b, i, n)
        return struct.unpack(fmt[n], raw)[0], i
    if 0xd0 <= t <= 0xd3:
        n = sizes[t - 0xd0]
        raw, i = _take(b, i, n)
        return SignedInt(struct.unpack(sfmt[n], raw)[0]), i
    if 0xd9 <= t <= 0xdb:
        n = sizes[t - 0xd9]
        raw, i = _take(b, i, n)
        return _str(b, i, struct.unpack(fmt[n], raw)[0])
    if t in (0xdc, 0xdd):
        n = 2 if t == 0xdc else 4
        raw, i = _take(b, i, n)
        return _array(b, i, struct.unpack(fmt[n], raw)[0])
    if t in (0xde, 0xdf):
        n = 2 if t == 0xde else 4
        raw, i = _take(b, i, n)
        return _map(b, i, struct.unpack(fmt[n], raw)[0])
    raise DecodeError("format byte 0x%02x is not used by HWP/1" % t)


def _str(b, i, n):
    raw, i = _take(b, i, n)
    try:
        return raw.decode("utf-8"), i
    except UnicodeDecodeError:
        raise DecodeError("str is not UTF-8: %r" % raw)


def _array(b, i, n):
    out = []
    for _ in range(n):
        v, i = _decode(b, i)
        out.append(v)
    return out, i


def _map(b, i, n):
    out = {}
    for _ in range(n):
        k, i = _decode(b, i)
        if type(k) is not str:
            raise DecodeError("map key %r is not a str" % (k,))
        if k in out:
            raise DecodeError("map key %r repeated" % k)
        v, i = _decode(b, i)
        out[k] = v
    return out, i


# -- the contract's types ------------------------------------------------

def is_kind(v, kind):
    return {
        "uint": lambda: type(v) is int and v >= 0,
        "str": lambda: type(v) is str,
        "bin": lambda: type(v) is bytes,
        "bool": lambda: type(v) is bool,
        "array": lambda: type(v) is list,
        "map": lambda: type(v) is dict,
        "nil": lambda: v is None,
    }[kind]()


def describe(v):
    if isinstance(v, SignedInt):
        return "%r (signed int format)" % int(v)
    return "%r (%s)" % (v, type(v).__name__)


def check_keys(body, spec, what):
    assert type(body) is dict, "%s: body is not a map: %s" % (what, describe(body))
    for key, kind in spec.items():
        assert key in body, "%s: key %r missing in %r" % (what, key, body)
        assert is_kind(body[key], kind), \
            "%s: %r should be %s, got %s" % (what, key, kind, describe(body[key]))


def body_of(reply, command):
    assert reply.command == command, \
        "expected %s, got %s %r" % (command, reply.command, _peek(reply))
    try:
        return decode(reply.body)
    except DecodeError as e:
        pytest.fail("%s body is not valid MessagePack (%s): %r" % (command, e, reply.body))


def _peek(reply):
    try:
        return decode(reply.body)
    except Exception:
        return reply.frames


def check_ack(reply, rid, n):
    body = body_of(reply, "ACK")
    check_keys(body, {"rid": "uint", "seq": "array", "ver": "array", "dup": "array"}, "ACK")
    assert body["rid"] == rid, "ACK rid: expected %r, got %r" % (rid, body["rid"])
    for key, kind in (("seq", "uint"), ("ver", "uint"), ("dup", "bool")):
        assert len(body[key]) == n, "ACK %s: expected %d entries, got %r" % (key, n, body[key])
        for v in body[key]:
            assert is_kind(v, kind), "ACK %s entry should be %s, got %s" % (key, kind, describe(v))
    return body


def check_error(reply, code, rid):
    """rid None means the reply must carry rid nil."""
    body = body_of(reply, "ERROR")
    check_keys(body, {"code": "str", "message": "str"}, "ERROR")
    assert "rid" in body, "ERROR: key 'rid' missing in %r" % body
    if rid is None:
        assert body["rid"] is None, "ERROR rid: expected nil, got %s" % describe(body["rid"])
    else:
        assert is_kind(body["rid"], "uint") and body["rid"] == rid, \
            "ERROR rid: expected %r, got %s" % (rid, describe(body["rid"]))
    assert body["code"] == code, "ERROR code: expected %r, got %r (%r)" % (
        code, body["code"], body.get("message"))
    return body


def check_end(body):
    check_keys(body, {"rid": "uint", "last": "uint", "head": "uint", "reason": "str"}, "END")
    return body


def check_envelope(raw):
    try:
        e = decode(raw)
    except DecodeError as ex:
        pytest.fail("envelope is not valid MessagePack (%s): %r" % (ex, raw))
    check_keys(e, {"id": "bin", "topic": "str", "seq": "uint", "ver": "uint",
                   "ts": "uint", "data": "bin"}, "envelope")
    assert len(e["id"]) == 16, "envelope id: expected 16 bytes, got %d" % len(e["id"])
    assert e["seq"] >= 1 and e["ver"] >= 1, "envelope seq/ver start at 1: %r" % e
    if "type" in e:
        assert is_kind(e["type"], "str"), "envelope type: %s" % describe(e["type"])
    if "schema" in e:
        assert is_kind(e["schema"], "uint"), "envelope schema: %s" % describe(e["schema"])
    if "meta" in e:
        assert is_kind(e["meta"], "map"), "envelope meta: %s" % describe(e["meta"])
        for k, v in e["meta"].items():
            assert is_kind(v, "str"), "envelope meta %r: %s" % (k, describe(v))
    return e


# -- requests ------------------------------------------------------------

def new_id():
    return os.urandom(16)


def ev(topic, data=b"payload", **extra):
    event = {"id": new_id(), "topic": topic, "data": data}
    event.update(extra)
    return event


def publish(client, rid, events):
    return check_ack(client.request("PUBLISH", {"rid": rid, "events": events}), rid, len(events))


def status(client, rid=9000):
    body = body_of(client.request("STATUS", {"rid": rid}), "STATUS")
    check_keys(body, {"rid": "uint", "head": "uint", "topics": "uint", "events": "uint",
                      "role": "str", "node": "str", "uptime_s": "uint"}, "STATUS")
    assert body["rid"] == rid
    return body


def stream(client, rid, want=None, timeout_ms=3000):
    """Collect the EVENTS of stream rid until its END, or until `want`
    events have come (then END is None).  Returns (envelope bytes, END)."""
    envs = []
    while want is None or len(envs) < want:
        got = client.silent(timeout_ms)
        if got is True:
            pytest.fail("stream %r: expected %s within %d ms, got nothing (%d events so far)" % (
                rid, "END" if want is None else "%d events" % want, timeout_ms, len(envs)))
        reply = got
        if reply.command == "EVENTS":
            head = body_of(reply, "EVENTS")
            check_keys(head, {"rid": "uint"}, "EVENTS")
            assert head["rid"] == rid, "EVENTS rid: expected %r, got %r" % (rid, head["rid"])
            envs.extend(reply.frames[2:])
        elif reply.command == "END":
            end = check_end(body_of(reply, "END"))
            assert end["rid"] == rid, "END rid: expected %r, got %r" % (rid, end["rid"])
            return envs, end
        else:
            pytest.fail("stream %r: expected EVENTS or END, got %s %r" % (
                rid, reply.command, _peek(reply)))
    return envs, None


def replay(client, rid, **args):
    body = {"rid": rid}
    body.update(args)
    client.send("REPLAY", body)
    return stream(client, rid)


def read(client, rid, topic, **args):
    body = {"rid": rid, "topic": topic}
    body.update(args)
    client.send("READ", body)
    return stream(client, rid)


def seqs(envs):
    return [check_envelope(e)["seq"] for e in envs]


def assert_silent(client, what, ms=SILENCE_MS):
    got = client.silent(ms)
    assert got is True, "%s: expected nothing within %d ms, got %s %r" % (
        what, ms, got.command, _peek(got))


def sub_recv(sub, what):
    try:
        return sub.recv_multipart()
    except zmq.Again:
        pytest.fail("fanout: %s did not arrive in time" % what)


def wait_heartbeat(sub):
    """Wait for a `$hb` (so the subscription is live); returns its body."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        frames = sub_recv(sub, "a $hb")
        if frames[0] == b"$hb":
            return decode(frames[1])
    pytest.fail("fanout: no $hb within 5 s")


def fanout_events(sub, n):
    """The next n event messages on fanout (heartbeats skipped)."""
    out = []
    while len(out) < n:
        frames = sub_recv(sub, "event %d of %d" % (len(out) + 1, n))
        if frames[0] == b"$hb":
            continue
        out.append(frames)
    return out


# == STATUS ===============================================================

def test_status_reply_shape(broker):
    c = broker.client()
    body = status(c, rid=7)
    assert body["role"] == "standalone"
    assert body["node"] != ""
    assert (body["head"], body["topics"], body["events"]) == (0, 0, 0)


def test_status_counts_after_publish(broker):
    c = broker.client()
    publish(c, 1, [ev("a"), ev("b"), ev("a")])
    body = status(c, rid=2)
    assert (body["head"], body["topics"], body["events"]) == (3, 2, 3)


# == HELLO ================================================================

def test_hello_welcome_fields(broker):
    c = broker.client()
    node = status(c)["node"]
    body = body_of(c.request("HELLO", {"rid": 11, "proto": 1, "client": "conformance"}), "WELCOME")
    check_keys(body, {"rid": "uint", "proto": "uint", "node": "str", "head": "uint",
                      "fanout": "str", "cluster": "array"}, "WELCOME")
    assert body["rid"] == 11
    assert body["proto"] == 1
    assert body["node"] == node
    assert body["head"] == 0
    assert body["fanout"] == broker.fanout
    assert len(body["cluster"]) == 1, "standalone: one cluster entry, got %r" % body["cluster"]
    assert is_kind(body["cluster"][0], "str")
    assert body["cluster"] == [broker.api]


def test_hello_unsupported_proto(broker):
    c = broker.client()
    check_error(c.request("HELLO", {"rid": 12, "proto": 2, "client": "future"}), "unsupported", 12)
    # the connection remains usable
    status(c)


# == PUBLISH / ACK ========================================================

def test_publish_single_ack(broker):
    c = broker.client()
    body = publish(c, 1, [ev("orders")])
    assert (body["seq"], body["ver"], body["dup"]) == ([1], [1], [False])


def test_publish_batch_array_lengths(broker):
    c = broker.client()
    body = publish(c, 1, [ev("a"), ev("b"), ev("a"), ev("a")])
    assert body["seq"] == [1, 2, 3, 4]
    assert body["ver"] == [1, 1, 2, 3]
    assert body["dup"] == [False] * 4
    body = publish(c, 2, [ev("b"), ev("c")])
    assert body["seq"] == [5, 6] and body["ver"] == [2, 1]


def test_publish_envelope_fields(broker):
    c = broker.client()
    sent = ev("orders.eu", data=b"\x00\x01binary", type="OrderPlaced", schema=3,
              meta={"correlation_id": "c-1", "content_type": "application/json"})
    publish(c, 1, [sent, ev("orders.eu")])
    envs, end = replay(c, 2)
    first, second = [check_envelope(e) for e in envs]
    for key in ("id", "topic", "data", "type", "schema", "meta"):
        assert first[key] == sent[key], "envelope %s: expected %r, got %r" % (key, sent[key], first[key])
    assert (first["seq"], first["ver"], second["seq"], second["ver"]) == (1, 1, 2, 2)
    assert "expect" not in first
    assert first["ts"] <= second["ts"], "ts must be non-decreasing in seq"
    assert abs(first["ts"] - time.time_ns()) < 60 * 10**9, "ts is Unix epoch ns: %r" % first["ts"]


def test_publish_duplicate_is_acked_with_original_position(broker):
    c = broker.client()
    a = ev("t")
    first = publish(c, 1, [a, ev("t")])
    # a retry: same id, other fields not compared, expect not checked
    retry = dict(a, topic="elsewhere", data=b"different", expect=99)
    again = publish(c, 2, [retry])
    assert again["seq"] == [first["seq"][0]] and again["ver"] == [first["ver"][0]]
    assert again["dup"] == [True]
    assert status(c)["head"] == 2, "a duplicate must not be stored again"
    mixed = publish(c, 3, [ev("t"), a])
    assert mixed["dup"] == [False, True]
    assert mixed["seq"] == [3, 1] and mixed["ver"] == [3, 1]


def test_publish_same_id_twice_in_one_batch(broker):
    c = broker.client()
    a = ev("t")
    body = publish(c, 1, [a, ev("u"), dict(a, data=b"other")])
    assert body["seq"] == [1, 2, 1]
    assert body["ver"] == [1, 1, 1]
    assert body["dup"] == [False, False, True]
    assert status(c)["head"] == 2


def test_pipelined_publishes_acked_in_order(broker):
    c = broker.client(timeout_ms=5000)
    n = 300
    rids = [1000 + 3 * k for k in range(n)]
    for rid in rids:
        c.send("PUBLISH", {"rid": rid, "events": [ev("pipe.%d" % (rid % 5))]})
    got = []
    for k in range(n):
        got.append(check_ack(c.recv(), rids[k], 1))   # in request order
    assert [b["seq"][0] for b in got] == list(range(1, n + 1))


def test_pipelined_mixed_requests_matched_by_rid(broker):
    c = broker.client()
    c.send("PUBLISH", {"rid": 1, "events": [ev("x")]})
    c.send("STATUS", {"rid": 2})
    c.send("PUBLISH", {"rid": 3, "events": [ev("x")]})
    c.send("HELLO", {"rid": 4, "proto": 1, "client": "p"})
    replies = {}
    for _ in range(4):
        r = c.recv()
        replies[decode(r.body)["rid"]] = r
    check_ack(replies[1], 1, 1)
    check_ack(replies[3], 3, 1)
    body_of(replies[2], "STATUS")
    body_of(replies[4], "WELCOME")


def test_conflict_error_fields(broker):
    c = broker.client()
    publish(c, 1, [ev("acct", expect=0)])          # 0: topic must not exist
    err = check_error(c.request("PUBLISH", {"rid": 2, "events": [ev("acct", expect=0)]}),
                      "conflict", 2)
    check_keys(err, {"topic": "str", "expected": "uint", "actual": "uint"}, "ERROR conflict")
    assert (err["topic"], err["expected"], err["actual"]) == ("acct", 0, 1)
    err = check_error(c.request("PUBLISH", {"rid": 3, "events": [ev("acct", expect=5)]}),
                      "conflict", 3)
    assert (err["topic"], err["expected"], err["actual"]) == ("acct", 5, 1)
    assert publish(c, 4, [ev("acct", expect=1)])["ver"] == [2]


def test_conflict_batch_is_atomic(broker):
    c = broker.client()
    publish(c, 1, [ev("acct")])
    check_error(c.request("PUBLISH", {"rid": 2, "events": [
        ev("fresh"), ev("acct", expect=1), ev("acct", expect=1)]}), "conflict", 2)
    body = status(c)
    assert body["head"] == 1 and body["topics"] == 1, "a failed batch stores nothing: %r" % body
    envs, end = read(c, 3, "fresh")
    assert envs == [] and end["head"] == 0
    # expect is checked against the versions the batch itself produces
    body = publish(c, 4, [ev("acct", expect=1), ev("acct", expect=2)])
    assert body["ver"] == [2, 3]


# == too_large ============================================================

def test_too_large_event(broker_factory):
    b = broker_factory("--max-event-bytes", "1024")
    c = b.client()
    publish(c, 1, [ev("big", data=b"x" * 900)])
    check_error(c.request("PUBLISH", {"rid": 2, "events": [ev("big", data=b"x" * 1100)]}),
                "too_large", 2)
    check_error(c.request("PUBLISH", {"rid": 3, "events": [
        ev("big", data=b"x" * 10), ev("big", data=b"x" * 2000)]}), "too_large", 3)
    assert status(c)["head"] == 1, "a too_large batch stores nothing"
    # the limit is per event: a message bigger than it is fine
    publish(c, 4, [ev("big", data=b"y" * 600) for _ in range(3)])


def test_too_large_batch(broker_factory):
    b = broker_factory("--max-batch", "3")
    c = b.client()
    publish(c, 1, [ev("b") for _ in range(3)])
    check_error(c.request("PUBLISH", {"rid": 2, "events": [ev("b") for _ in range(4)]}),
                "too_large", 2)
    assert status(c)["head"] == 3


# == bad_request: malformed messages ======================================

def test_bad_request_one_frame(broker):
    c = broker.client()
    for command in (b"STATUS", b"PUBLISH", b"REPLAY"):
        c.send_frames([command])
        check_error(c.recv(), "bad_request", None)
    status(c)


def test_bad_request_body_not_msgpack(broker):
    c = broker.client()
    for body in (b"\xc1", b"\x82\xa3rid", b"", b"\xdf\xff\xff\xff\xff"):
        c.send_frames([b"STATUS", body])
        check_error(c.recv(), "bad_request", None)
    status(c)


def test_bad_request_body_not_a_map(broker):
    c = broker.client()
    for obj in ([1, 2], 5, "rid", None, b"\x81"):
        c.send_frames([b"PUBLISH", msgpack.packb(obj, use_bin_type=True)])
        check_error(c.recv(), "bad_request", None)
    status(c)


def test_bad_request_missing_rid_gives_rid_nil(broker):
    c = broker.client()
    cases = [("STATUS", {}),
             ("PUBLISH", {"events": [ev("t")]}),
             ("REPLAY", {"from": 1}),
             ("READ", {"topic": "t"}),
             ("STATUS", {"rid": None}),
             ("STATUS", {"rid": "1"}),
             ("STATUS", {"rid": -1}),
             ("STATUS", {"rid": 1.5})]
    failures = []
    for command, body in cases:
        reply = c.request(command, body)
        try:
            check_error(reply, "bad_request", None)
        except AssertionError as e:
            failures.append("%s %r: %s" % (command, body, e))
    assert status(c)["head"] == 0, "a refused PUBLISH must not store anything"
    assert not failures, "\n".join(failures)


def _expect_bad(c, cases):
    failures = []
    for rid, (command, body) in enumerate(cases, start=100):
        body = dict(body, rid=rid)
        reply = c.request(command, body)
        try:
            check_error(reply, "bad_request", rid)
        except AssertionError as e:
            failures.append("%s %r: %s" % (command, body, e))
    return failures


def test_bad_request_wrong_types(broker):
    c = broker.client()
    good = ev("t")
    cases = [
        ("PUBLISH", {}),                                         # no events
        ("PUBLISH", {"events": []}),                             # 1 .. max_batch
        ("PUBLISH", {"events": good}),                           # a map, not an array
        ("PUBLISH", {"events": [1]}),
        ("PUBLISH", {"events": [dict(good, id="0123456789abcdef")]}),
        ("PUBLISH", {"events": [dict(good, topic=b"t")]}),
        ("PUBLISH", {"events": [dict(good, data="text")]}),
        ("PUBLISH", {"events": [{"topic": "t", "data": b""}]}),  # no id
        ("PUBLISH", {"events": [{"id": new_id(), "data": b""}]}),
        ("PUBLISH", {"events": [{"id": new_id(), "topic": "t"}]}),
        ("PUBLISH", {"events": [dict(good, expect="1")]}),
        ("PUBLISH", {"events": [dict(good, expect=-1)]}),
        ("PUBLISH", {"events": [dict(good, schema="1")]}),
        ("PUBLISH", {"events": [dict(good, type=7)]}),
        ("PUBLISH", {"events": [dict(good, type="T" * 256)]}),
        ("PUBLISH", {"events": [dict(good, meta=["a"])]}),
        ("PUBLISH", {"events": [dict(good, meta={"k": 1})]}),
        ("PUBLISH", {"events": [dict(good, meta={"k" * 65: "v"})]}),
        ("PUBLISH", {"events": [dict(good, meta={"k": "v" * 4097})]}),
        ("PUBLISH", {"events": [dict(good, meta={"k%d" % i: "v" for i in range(65)})]}),
        ("REPLAY", {"from": "1"}),
        ("REPLAY", {"from": 0}),
        ("REPLAY", {"from": 1, "from_ts": 1}),
        ("REPLAY", {"to": 1, "until_ts": 1}),
        ("REPLAY", {"from": 5, "to": 4}),
        ("REPLAY", {"prefixes": "orders"}),
        ("REPLAY", {"prefixes": [1]}),
        ("REPLAY", {"credit": -1}),
        ("REPLAY", {"credit": "10"}),
        ("READ", {}),
        ("READ", {"topic": b"t"}),
        ("READ", {"topic": "t", "from_ver": 0}),
        ("READ", {"topic": "t", "from_ver": "1"}),
    ]
    failures = _expect_bad(c, cases)
    assert status(c)["head"] == 0, "a refused PUBLISH must not store anything"
    assert not failures, "\n".join(failures)


def test_bad_request_topic_reserved_or_invalid(broker):
    c = broker.client()
    failures = _expect_bad(c, [
        ("PUBLISH", {"events": [ev("$x")]}),
        ("PUBLISH", {"events": [ev("$hb")]}),
        ("PUBLISH", {"events": [ev("a\x00b")]}),
        ("PUBLISH", {"events": [ev("")]}),
        ("PUBLISH", {"events": [ev("t" * 256)]}),
    ])
    publish(c, 1, [ev("t" * 255), ev("x$")])
    assert not failures, "\n".join(failures)


def test_bad_request_id_length(broker):
    c = broker.client()
    failures = _expect_bad(c, [
        ("PUBLISH", {"events": [dict(ev("t"), id=os.urandom(15))]}),
        ("PUBLISH", {"events": [dict(ev("t"), id=os.urandom(17))]}),
        ("PUBLISH", {"events": [dict(ev("t"), id=b"")]}),
    ])
    assert status(c)["head"] == 0
    assert not failures, "\n".join(failures)


def test_bad_request_validation_before_conflict(broker):
    c = broker.client()
    publish(c, 1, [ev("acct")])
    # the conflicting event comes first, the invalid one second: still bad_request
    check_error(c.request("PUBLISH", {"rid": 2, "events": [
        ev("acct", expect=0), ev("$bad")]}), "bad_request", 2)
    # the first failing event, in batch order, names the error
    check_error(c.request("PUBLISH", {"rid": 3, "events": [
        ev("ok"), dict(ev("t"), id=os.urandom(15)), ev("big", data=b"x" * (2 << 20))]}),
        "bad_request", 3)
    check_error(c.request("PUBLISH", {"rid": 4, "events": [
        ev("ok"), ev("big", data=b"x" * (2 << 20)), dict(ev("t"), id=os.urandom(15))]}),
        "too_large", 4)
    assert status(c)["head"] == 1


def test_nil_optional_keys_are_absent(broker):
    c = broker.client()
    plain = ev("t")
    nils = dict(ev("t"), type=None, schema=None, meta=None, expect=None)
    body = publish(c, 1, [plain, nils])
    assert body["dup"] == [False, False]
    envs, end = replay(c, 2, to=None, until_ts=None, from_ts=None, prefixes=None, credit=None)
    assert len(envs) == 2 and end["reason"] == "done"
    e = check_envelope(envs[1])
    for key in ("type", "schema", "meta"):
        assert key not in e or e[key] is None, "nil %s stored as %r" % (key, e[key])
    envs, end = read(c, 3, "t", from_ver=None, to_ver=None, credit=None)
    assert len(envs) == 2 and end["last"] == 2


def test_malformed_input_never_writes(broker):
    c = broker.client()
    for frames in ([b"PUBLISH"], [b"PUBLISH", b"\xc1"], [b"PUBLISH", b"\x93\x01\x02\x03"],
                   [b"PUBLISH", msgpack.packb({"events": [ev("t")]})],
                   [b"PUBLISH", msgpack.packb({"rid": "x", "events": [ev("t")]})]):
        c.send_frames(frames)
        check_error(c.recv(), "bad_request", None)
    body = status(c)
    assert (body["head"], body["events"]) == (0, 0)


# == unknown_command ======================================================

def test_unknown_command(broker):
    c = broker.client()
    check_error(c.request("FROBNICATE", {"rid": 41}), "unknown_command", 41)
    check_error(c.request("status", {"rid": 42}), "unknown_command", 42)
    check_error(c.request("ACK", {"rid": 43, "seq": [1]}), "unknown_command", 43)
    check_error(c.request("FROBNICATE", {"x": 1}), "unknown_command", None)
    c.send_frames([b"FROBNICATE", b"\xc1"])
    check_error(c.recv(), "unknown_command", None)
    c.send_frames([b"FROBNICATE", msgpack.packb([1, 2])])
    check_error(c.recv(), "unknown_command", None)
    c.send_frames([b"FROBNICATE", msgpack.packb({"rid": 44}), b"extra"])
    check_error(c.recv(), "unknown_command", 44)
    status(c)


# == REPLAY ===============================================================

def test_replay_all_and_end(broker):
    c = broker.client()
    publish(c, 1, [ev("a"), ev("b"), ev("c"), ev("a"), ev("b")])
    envs, end = replay(c, 2, **{"from": 1})
    assert seqs(envs) == [1, 2, 3, 4, 5]
    assert (end["last"], end["head"], end["reason"]) == (5, 5, "done")
    # no start given: from = 1
    envs, end = replay(c, 3)
    assert seqs(envs) == [1, 2, 3, 4, 5] and end["last"] == 5


def test_replay_from(broker):
    c = broker.client()
    publish(c, 1, [ev("a") for _ in range(5)])
    envs, end = replay(c, 2, **{"from": 3})
    assert seqs(envs) == [3, 4, 5]
    assert (end["last"], end["head"], end["reason"]) == (5, 5, "done")


def test_replay_to_reached(broker):
    c = broker.client()
    publish(c, 1, [ev("a") for _ in range(6)])
    envs, end = replay(c, 2, **{"from": 2, "to": 4})
    assert seqs(envs) == [2, 3, 4]
    assert (end["last"], end["head"], end["reason"]) == (4, 6, "done")
    envs, end = replay(c, 3, **{"from": 2, "to": 2})
    assert seqs(envs) == [2] and end["last"] == 2


def test_replay_to_beyond_head_ends_at_head(broker):
    c = broker.client()
    publish(c, 1, [ev("a") for _ in range(3)])
    envs, end = replay(c, 2, **{"from": 1, "to": 100})
    assert seqs(envs) == [1, 2, 3]
    assert (end["last"], end["head"], end["reason"]) == (3, 3, "done")


def test_replay_last_when_nothing_examined(broker):
    c = broker.client()
    envs, end = replay(c, 1)                        # empty log
    assert envs == []
    assert (end["last"], end["head"], end["reason"]) == (0, 0, "done")
    publish(c, 2, [ev("a") for _ in range(5)])
    envs, end = replay(c, 3, **{"from": 6})          # from = head + 1
    assert envs == [] and (end["last"], end["head"]) == (5, 5)
    envs, end = replay(c, 4, **{"from": 10})         # far past the head
    assert envs == []
    assert (end["last"], end["head"], end["reason"]) == (9, 5, "done"), \
        "nothing examined: last must be from - 1 = 9"


def test_replay_prefixes(broker):
    c = broker.client()
    topics = ["orders.1", "users.1", "orders.2", "payments", "users.2", "audit"]
    publish(c, 1, [ev(t) for t in topics])
    envs, end = replay(c, 2, prefixes=["orders."])
    assert [check_envelope(e)["topic"] for e in envs] == ["orders.1", "orders.2"]
    assert (end["last"], end["head"]) == (6, 6), "last covers non-matching events examined"
    envs, end = replay(c, 3, prefixes=["users", "pay"])
    assert seqs(envs) == [2, 4, 5]
    envs, end = replay(c, 4, prefixes=[])
    assert seqs(envs) == [1, 2, 3, 4, 5, 6]
    envs, end = replay(c, 5, prefixes=["nomatch"])
    assert envs == [] and end["last"] == 6 and end["reason"] == "done"
    envs, end = replay(c, 6, prefixes=["orders."], to=2)
    assert seqs(envs) == [1] and end["last"] == 2


def _timestamped_log(c, n):
    for k in range(n):
        publish(c, 100 + k, [ev("ts")])
        time.sleep(0.005)
    envs, _ = replay(c, 99)
    return [check_envelope(e) for e in envs]


def test_replay_from_ts(broker):
    c = broker.client()
    log = _timestamped_log(c, 5)
    ts = [e["ts"] for e in log]
    assert ts == sorted(ts), "ts must be non-decreasing in seq: %r" % ts
    t = ts[2]
    envs, end = replay(c, 1, from_ts=t)
    assert seqs(envs) == [e["seq"] for e in log if e["ts"] >= t]
    assert (end["last"], end["head"], end["reason"]) == (5, 5, "done")
    envs, end = replay(c, 2, from_ts=ts[-1] + 10**12)
    assert envs == [] and end["reason"] == "done"


def test_replay_until_ts(broker):
    c = broker.client()
    log = _timestamped_log(c, 5)
    t = log[2]["ts"]
    expected = [e["seq"] for e in log if e["ts"] <= t]
    envs, end = replay(c, 1, until_ts=t)
    assert seqs(envs) == expected
    assert end["last"] == expected[-1], "last: the last seq with ts <= until_ts"
    assert (end["head"], end["reason"]) == (5, "done")
    envs, end = replay(c, 2, from_ts=log[1]["ts"], until_ts=log[3]["ts"])
    assert seqs(envs) == [e["seq"] for e in log if log[1]["ts"] <= e["ts"] <= log[3]["ts"]]


def test_replay_credit_exactly_respected(broker):
    c = broker.client()
    publish(c, 1, [ev("c") for _ in range(10)])
    c.send("REPLAY", {"rid": 5, "from": 1, "credit": 3})
    envs, end = stream(c, 5, want=3)
    assert end is None and seqs(envs) == [1, 2, 3], "credit 3: exactly 3 events"
    assert_silent(c, "after 3 events on credit 3")
    c.send("CREDIT", {"rid": 5, "credit": 2})
    envs, end = stream(c, 5, want=2)
    assert end is None and seqs(envs) == [4, 5], "CREDIT 2: exactly 2 more"
    assert_silent(c, "after CREDIT 2")
    c.send("CREDIT", {"rid": 5, "credit": 100})
    envs, end = stream(c, 5)
    assert seqs(envs) == [6, 7, 8, 9, 10]
    assert (end["last"], end["head"], end["reason"]) == (10, 10, "done")


def test_replay_end_needs_no_credit(broker):
    c = broker.client()
    publish(c, 1, [ev("c") for _ in range(3)])
    c.send("REPLAY", {"rid": 5, "credit": 3})
    envs, end = stream(c, 5)
    assert seqs(envs) == [1, 2, 3]
    assert end is not None and (end["last"], end["reason"]) == (3, "done")


def test_stream_end_needs_no_credit_when_nothing_to_send(broker):
    c = broker.client()
    c.send("REPLAY", {"rid": 5, "credit": 0})         # empty log: nothing to send
    envs, end = stream(c, 5)
    assert envs == [] and (end["last"], end["reason"]) == (0, "done")
    publish(c, 1, [ev("c")])
    c.send("READ", {"rid": 6, "topic": "c", "credit": 1})
    envs, end = stream(c, 6)
    assert len(envs) == 1 and (end["last"], end["reason"]) == (1, "done")


def test_replay_credit_zero_then_credit(broker):
    c = broker.client()
    publish(c, 1, [ev("c") for _ in range(2)])
    c.send("REPLAY", {"rid": 5, "credit": 0})
    assert_silent(c, "credit 0")
    c.send("CREDIT", {"rid": 5, "credit": 1})
    envs, end = stream(c, 5, want=1)
    assert seqs(envs) == [1]
    assert_silent(c, "after CREDIT 1")
    c.send("CANCEL", {"rid": 5})
    envs, end = stream(c, 5)
    assert envs == [] and end["reason"] == "cancelled"


def test_replay_huge_credit_accepted(broker):
    c = broker.client()
    publish(c, 1, [ev("c") for _ in range(3)])
    envs, end = replay(c, 2, credit=2**64 - 1)
    assert seqs(envs) == [1, 2, 3] and end["reason"] == "done"


def test_replay_cancel(broker):
    c = broker.client()
    publish(c, 1, [ev("c") for _ in range(10)])
    c.send("REPLAY", {"rid": 8, "credit": 2})
    envs, end = stream(c, 8, want=2)
    assert seqs(envs) == [1, 2]
    c.send("CANCEL", {"rid": 8})
    envs, end = stream(c, 8)
    assert envs == [], "no events after CANCEL"
    assert end["reason"] == "cancelled"
    assert end["head"] == 10
    assert end["last"] == 2, "last: every matching event up to it was sent"
    # the stream is gone: CREDIT for it is ignored, the rid is free again
    c.send("CREDIT", {"rid": 8, "credit": 5})
    assert_silent(c, "CREDIT after END")
    envs, end = replay(c, 8, **{"from": 9})
    assert seqs(envs) == [9, 10]


def test_credit_cancel_for_no_stream_ignored(broker):
    c = broker.client()
    cases = [
        ("CREDIT for no stream", [b"CREDIT", msgpack.packb({"rid": 999, "credit": 5})]),
        ("CANCEL for no stream", [b"CANCEL", msgpack.packb({"rid": 998})]),
        ("CREDIT without rid", [b"CREDIT", msgpack.packb({"credit": 5})]),
        ("CREDIT with wrong types", [b"CREDIT", msgpack.packb({"rid": "x", "credit": "y"})]),
        ("CANCEL unreadable body", [b"CANCEL", b"\xc1"]),
        ("CANCEL body not a map", [b"CANCEL", msgpack.packb([1])]),
        ("CREDIT one frame", [b"CREDIT"]),
        ("CANCEL one frame", [b"CANCEL"]),
    ]
    failures = []
    for k, (what, frames) in enumerate(cases):
        c.send_frames(frames)
        reply = c.request("STATUS", {"rid": 70 + k})
        if reply.command != "STATUS":
            failures.append("%s: expected no reply (ignored and counted), got %s %r" % (
                what, reply.command, _peek(reply)))
            reply = c.recv()
        body = body_of(reply, "STATUS")
        assert body["rid"] == 70 + k
    assert_silent(c, "after ignored CREDIT/CANCEL", ms=200)
    assert not failures, "\n".join(failures)


def test_reused_rid_of_running_stream(broker):
    c = broker.client()
    publish(c, 1, [ev("r") for _ in range(5)])
    c.send("REPLAY", {"rid": 50, "credit": 1})
    envs, _ = stream(c, 50, want=1)
    assert seqs(envs) == [1]
    check_error(c.request("REPLAY", {"rid": 50, "from": 3}), "bad_request", 50)
    check_error(c.request("READ", {"rid": 50, "topic": "r"}), "bad_request", 50)
    # the first stream goes on where it was
    c.send("CREDIT", {"rid": 50, "credit": 10})
    envs, end = stream(c, 50)
    assert seqs(envs) == [2, 3, 4, 5]
    assert (end["last"], end["reason"]) == (5, "done")
    # rid is scoped to one connection
    other = broker.client()
    c.send("REPLAY", {"rid": 60, "credit": 1})
    stream(c, 60, want=1)
    envs, end = replay(other, 60)
    assert seqs(envs) == [1, 2, 3, 4, 5]
    c.send("CANCEL", {"rid": 60})
    assert stream(c, 60)[1]["reason"] == "cancelled"


def test_stream_idle_expires(broker_factory):
    b = broker_factory("--stream-idle-ms", "300")
    c = b.client()
    publish(c, 1, [ev("i") for _ in range(3)])
    c.send("REPLAY", {"rid": 3, "credit": 1})
    envs, _ = stream(c, 3, want=1)
    envs, end = stream(c, 3, timeout_ms=3000)
    assert envs == [] and end["reason"] == "expired"
    assert end["last"] == 1


# == READ =================================================================

def test_read_topic_in_ver_order(broker):
    c = broker.client()
    publish(c, 1, [ev("acct"), ev("other"), ev("acct"), ev("other"), ev("acct"), ev("acct")])
    envs, end = read(c, 2, "acct")
    got = [check_envelope(e) for e in envs]
    assert [e["ver"] for e in got] == [1, 2, 3, 4]
    assert [e["seq"] for e in got] == [1, 3, 5, 6]
    assert all(e["topic"] == "acct" for e in got)
    assert (end["last"], end["head"], end["reason"]) == (4, 4, "done")


def test_read_range_and_empty(broker):
    c = broker.client()
    publish(c, 1, [ev("acct") for _ in range(4)] + [ev("acct.sub")])
    envs, end = read(c, 2, "acct", from_ver=2, to_ver=3)
    assert [check_envelope(e)["ver"] for e in envs] == [2, 3]
    assert (end["last"], end["head"]) == (3, 4), "last = last ver sent, head = topic ver"
    envs, end = read(c, 3, "acct", from_ver=10)
    assert envs == [] and (end["last"], end["head"]) == (9, 4), "none sent: last = from_ver - 1"
    envs, end = read(c, 4, "missing")
    assert envs == [] and (end["last"], end["head"], end["reason"]) == (0, 0, "done")
    envs, end = read(c, 5, "acct.sub")
    assert len(envs) == 1, "READ is one topic, not a prefix"


def test_read_credit(broker):
    c = broker.client()
    publish(c, 1, [ev("acct") for _ in range(4)])
    c.send("READ", {"rid": 9, "topic": "acct", "credit": 1})
    envs, end = stream(c, 9, want=1)
    assert end is None and [check_envelope(e)["ver"] for e in envs] == [1]
    assert_silent(c, "READ with credit 1")
    c.send("CREDIT", {"rid": 9, "credit": 5})
    envs, end = stream(c, 9)
    assert [check_envelope(e)["ver"] for e in envs] == [2, 3, 4]
    assert (end["last"], end["head"], end["reason"]) == (4, 4, "done")


# == fanout ===============================================================

def test_fanout_matches_replay_bytes(broker_factory):
    b = broker_factory("--heartbeat-ms", "100")
    sub = b.sub("")
    wait_heartbeat(sub)
    c = b.client()
    publish(c, 1, [ev("orders.1", type="T", meta={"k": "v"}), ev("users.1")])
    publish(c, 2, [ev("orders.2"), ev("x")])
    live = fanout_events(sub, 4)
    for frames in live:
        assert len(frames) == 2, "fanout event: 2 frames, got %d" % len(frames)
        e = check_envelope(frames[1])
        assert frames[0] == e["topic"].encode(), "frame 0 is the topic"
    assert [check_envelope(f[1])["seq"] for f in live] == [1, 2, 3, 4], "fanout in seq order"
    envs, _ = replay(c, 3)
    assert [f[1] for f in live] == envs, "fanout and REPLAY carry the same envelope bytes"


def test_fanout_prefix_filter(broker_factory):
    b = broker_factory("--heartbeat-ms", "100")
    sub = b.sub("orders.", "$hb")
    wait_heartbeat(sub)
    c = b.client()
    publish(c, 1, [ev("orders.1"), ev("users.1"), ev("orders.2"), ev("payments")])
    publish(c, 2, [ev("users.2"), ev("orders.3")])
    live = fanout_events(sub, 3)
    assert [f[0] for f in live] == [b"orders.1", b"orders.2", b"orders.3"]
    assert [check_envelope(f[1])["seq"] for f in live] == [1, 3, 6]
    deadline = time.monotonic() + SILENCE_MS / 1000
    while time.monotonic() < deadline:
        if sub.poll(50):
            frames = sub.recv_multipart()
            assert frames[0] == b"$hb", "unsubscribed topic delivered: %r" % frames[0]


# == heartbeats ===========================================================

def test_heartbeats(broker_factory):
    b = broker_factory("--heartbeat-ms", "100")
    c = b.client()
    node = status(c)["node"]
    sub = b.sub("$hb", timeout_ms=3000)
    first = wait_heartbeat(sub)
    sub.setsockopt(zmq.RCVTIMEO, 300)          # within three intervals
    beats = [first]
    for _ in range(5):
        frames = sub_recv(sub, "the next $hb within 3 intervals (300 ms)")
        assert frames[0] == b"$hb" and len(frames) == 2
        beats.append(decode(frames[1]))
    for hb in beats:
        check_keys(hb, {"head": "uint", "ts": "uint", "node": "str", "epoch": "uint"}, "$hb")
        assert hb["node"] == node and hb["head"] == 0
        assert abs(hb["ts"] - time.time_ns()) < 60 * 10**9, "$hb ts is epoch ns: %r" % hb["ts"]
    assert [hb["ts"] for hb in beats] == sorted(hb["ts"] for hb in beats)
    assert len({hb["epoch"] for hb in beats}) == 1
    publish(c, 1, [ev("h"), ev("h")])
    for _ in range(5):
        hb = decode(sub_recv(sub, "a $hb after publishing")[1])
        if hb["head"] == 2:
            break
    else:
        pytest.fail("$hb head did not reach 2 after publishing: %r" % hb)


def test_restart_keeps_node_grows_epoch_and_log(broker_factory):
    b = broker_factory("--heartbeat-ms", "100")
    c = b.client()
    publish(c, 1, [ev("p"), ev("q")])
    before, _ = replay(c, 2)
    sub = b.sub("$hb")
    hb1 = wait_heartbeat(sub)
    b.restart()
    c = b.client()
    sub = b.sub("$hb")
    hb2 = wait_heartbeat(sub)
    assert hb2["node"] == hb1["node"], "node is stable across restarts"
    assert hb2["epoch"] > hb1["epoch"], "epoch grows every start: %r -> %r" % (
        hb1["epoch"], hb2["epoch"])
    after, end = replay(c, 3)
    assert after == before and end["head"] == 2
    assert publish(c, 4, [ev("p")])["seq"] == [3], "seq is never reused"


# == unknown keys =========================================================

def test_unknown_keys_ignored(broker):
    c = broker.client()
    extra = {"x-future": [1, {"a": None}], "zzz": b"\x00"}
    body = body_of(c.request("STATUS", dict(extra, rid=1)), "STATUS")
    assert body["rid"] == 1
    body = body_of(c.request("HELLO", dict(extra, rid=2, proto=1, client="c")), "WELCOME")
    assert body["rid"] == 2
    check_ack(c.request("PUBLISH", dict(extra, rid=3, events=[dict(ev("u"), future=1)])), 3, 1)
    envs, end = replay(c, 4, **extra)
    assert len(envs) == 1 and end["reason"] == "done"
    envs, end = read(c, 5, "u", **extra)
    assert len(envs) == 1
    publish(c, 6, [ev("u")])
    c.send("REPLAY", dict(extra, rid=7, credit=0))
    c.send("CREDIT", dict(extra, rid=7, credit=1))
    envs, _ = stream(c, 7, want=1)
    assert_silent(c, "credit used up")
    c.send("CANCEL", dict(extra, rid=7))
    assert stream(c, 7)[1]["reason"] == "cancelled"
