"""Record and replay: the input log (events), recording (recorder), replay and
its verification, the recordings in a store (catalog), portable bundles
(bundle), the timeline that seeks and runs backwards, queries and the write
index behind last-write."""
