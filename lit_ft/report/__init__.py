"""`lit_ft report`: one offline HTML file (charts inline as PNG) from what runs wrote; see docs/report.md."""
