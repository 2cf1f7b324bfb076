"""A short run of the RSP packet fuzzer (tools/fuzz/rsp_packets.py): malformed
packets against `chrono debug --port 0` and `chrono run --gdb 0`; each one is
answered (or, for a frame left unfinished, waited on), refused when its data
disagrees with its header, and the stub keeps serving: no crash, hang or
traceback."""
from fuzzers import load_fuzzer


def test_malformed_packets_are_answered_and_the_stub_keeps_serving(tmp_path):
    fuzz = load_fuzzer("rsp_packets")
    result = fuzz.fuzz(seed=20261203, count=150, time_limit=240, timeout=30, work=tmp_path,
                       echo=lambda line: None)
    reports = result["reports"]
    assert result["failures"] == 0, {n: r.failures[:3] for n, r in reports.items()}
    for name in ("replay", "live"):
        sent = reports[name].sent
        assert sum(sent.values()) >= 130, (name, sent)         # a few are skipped on live (D, k)
        assert len(sent) >= 15, (name, sent)                    # nearly every mutation was tried
