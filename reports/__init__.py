"""Everything a person reads or prints: scorecards, audit report and workbooks, ledgers, statistical reports."""
