"""A short run of the store damager (tools/fuzz/store_damage.py): damaged copies
of a real store are refused with one line or verified sound and restored exactly;
nothing crashes, and the undamaged store is never touched."""
from fuzzers import load_fuzzer


def test_damaged_stores_are_refused_or_sound_never_a_crash(tmp_path):
    summary = load_fuzzer("store_damage").fuzz(seed=7, count=12, time_limit=240, workers=2,
                                               workdir=tmp_path, log=lambda line: None)
    assert summary.cases > 0
    assert summary.ok, [f"{c.what}: {c.verdict} {c.detail}" for c in summary.failures]
    assert summary.verdicts["refused"] > 0      # the damage reached the store
