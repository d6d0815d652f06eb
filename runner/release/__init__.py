"""The end of a study: RESULTS.md, SUMMARY.md, model cards and a static page from the ledger
(report), a reproduction bundle (bundle), and a local release tag (tag)."""
