"""A short run of the bundle mutator (tools/fuzz/bundle_mutate.py): real bundles of
the demo guest, recorded and exported with the CLI, mutated (bytes, fields and,
with every hash recomputed, their meaning), imported into stores that hold other
recordings, and replayed and verified when accepted.  No crash, traceback, hang,
partial import or accepted-but-broken bundle; every refusal one line."""
from fuzzers import load_fuzzer


def test_mutated_bundles_are_refused_in_one_line_or_imported_whole(tmp_path):
    fuzz = load_fuzzer("bundle_mutate")
    result = fuzz.fuzz(seed=20261202, count=60, time_limit=240, workers=1, case_timeout=60,
                       cli_every=30, work=tmp_path, echo=lambda line: None)
    counts = result["counts"]
    assert result["cases"] == 60
    assert not result["failures"], result["failures"][:3]
    assert counts["refused"] > 20, counts
    assert sum(n for c, n in counts.items() if c.startswith("accepted")) > 0, counts
