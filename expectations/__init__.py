"""Great Expectations quality gate for the master person index (see expectations.gate)."""
