"""Record and replay: the input log (events), recording (recorder), replay,
the recordings in a store (catalog) and portable bundles (bundle)."""
