"""The gdb stub refuses packets whose data does not match their header, and
writes that cannot be done, with an error reply (E..) -- on a live guest
(`chrono run --gdb 0`) and on a recording (`chrono debug --port 0`), spoken
to over TCP as gdb would, packet by packet."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from tracehelp import record_demo

PATH = Path(__file__).resolve().parents[1] / "tools" / "fuzz" / "rsp_packets.py"
spec = importlib.util.spec_from_file_location("rsp_packets", PATH)
rsp = importlib.util.module_from_spec(spec)
sys.modules.setdefault("rsp_packets", rsp)
spec.loader.exec_module(rsp)

DATA = 0x80006000           # in the demo guest's RAM, not code it runs


def talk(server):
    client = rsp.Client(server.port, no_ack=False)

    def ask(payload: bytes) -> bytes:
        reply = client.request(payload, 30)
        assert isinstance(reply, bytes), (payload, reply)
        return reply
    return client, ask


@pytest.fixture
def live(tmp_path):
    server = rsp.Server(["run", "--gdb", "0", "--store", "store"], tmp_path)
    client, ask = talk(server)
    yield ask
    client.close()
    assert server.problem() is None
    server.stop()


@pytest.fixture(scope="module")
def replay_server(tmp_path_factory):
    work = tmp_path_factory.mktemp("packets")
    record_demo(work, "g", "write a hello\nsync\npoweroff\n", 1 << 20)
    server = rsp.Server(["debug", "--store", "store", "--port", "0", "g"], work)
    yield server
    assert server.problem() is None
    server.stop()


@pytest.fixture
def replay(replay_server):
    client, ask = talk(replay_server)
    yield ask
    client.close()


def test_memory_writes_must_be_as_long_as_they_say(live):
    before = live(b"m%x,6" % DATA)
    assert live(b"M%x,2:aabbccddeeff" % DATA) == b"E01"
    assert live(b"M%x,4:aabb" % DATA) == b"E01"
    assert live(b"M%x,2:aab" % DATA) == b"E01"
    assert live(b"m%x,6" % DATA) == before                         # nothing written
    assert live(b"M%x,2:aabb" % DATA) == b"OK"
    assert live(b"m%x,6" % DATA) == b"aabb" + before[4:]


def test_binary_writes_unescape_their_data_and_check_its_length(live):
    data = b"#$}*\x03\x00"
    body = rsp.escape(data)
    assert live(b"X%x,%x:" % (DATA, len(data) + 1) + body) == b"E01"
    assert live(b"X%x,%x:" % (DATA, len(data)) + body + b"}") == b"E01"   # a cut escape
    assert live(b"X%x,%x:" % (DATA, len(data)) + body) == b"OK"
    assert live(b"m%x,%x" % (DATA, len(data))) == data.hex().encode()


def test_G_writes_every_register_or_none(live):
    regs = live(b"g")
    assert live(b"Gaa") == b"E01"                                  # 1 byte: not all registers
    assert live(b"G" + regs[:-16]) == b"E01"
    x5 = (0x1122334455667788).to_bytes(8, "little").hex().encode()
    changed = regs[:5 * 16] + x5 + regs[6 * 16:]
    assert live(b"G" + changed) == b"OK"
    assert live(b"p5") == x5
    with_csr = changed[:-32] + b"ff" * 8 + changed[-16:]           # satp, a read-only CSR here
    assert live(b"G" + regs[:5 * 16] + b"0" * 16 + with_csr[6 * 16:]) == b"E01"
    assert live(b"p5") == x5                                       # all or none


def test_register_and_field_syntax_is_strict(live):
    assert live(b"P5=0100") == b"E01"                              # 2 of 8 bytes
    assert live(b"P5=010000000000000000") == b"E01"
    assert live(b"p5") != b"0100000000000000"
    priv = len(live(b"g")) // 16 - 1
    assert live(b"P%x=0200000000000000" % priv) == b"E45"          # no such privilege level
    for bad in (b"m 80000000,4", b"m80000000,4zz", b"m-1,4", b"m80000000", b"m1" + b"0" * 17 + b",4",
                b"Z2,80006000,8;X", b"Z9,80006000,4", b"qXfer:features:read:target.xml:0x0,10",
                b"vCont;q", b"Hg7", b"qRcmd,abc"):
        assert live(bad).startswith(b"E"), bad


def test_a_recording_refuses_every_write(replay):
    regs = replay(b"g")
    assert replay(b"G" + regs) == b"OK"                            # changes nothing
    assert replay(b"G" + b"0" * 16 + regs[16:32] + b"1" * 16 + regs[48:]) == b"E01"
    assert replay(b"g") == regs
    assert replay(b"P5=0100000000000000") == b"E45"
    assert replay(b"M80006000,1:00") == b"E01"
    assert replay(b"s80000100") == b"E01"                          # cannot resume elsewhere


def test_oversized_packets_are_refused_and_the_stub_goes_on(replay):
    assert replay(b"M80006000,1:" + b"0" * (rsp.MAX_PACKET + 10)) == b"E01"
    assert replay(b"?").startswith(b"T05")


def test_a_gdb_gone_leaves_nothing_behind_for_the_next(replay_server):
    """A Ctrl-C poll of a closed connection once crashed the server when the
    next gdb asked for a query that runs the recording (last-write)."""
    client, ask = talk(replay_server)
    assert ask(b"c").startswith(b"T05")                           # to the end
    client.close()
    client, ask = talk(replay_server)
    assert bytes.fromhex(ask(b"qRcmd," + b"last-write 0x80005710 8".hex().encode()).decode())
    assert ask(b"?").startswith(b"T05")
    client.close()
    assert replay_server.problem() is None
