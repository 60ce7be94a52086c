"""`callbot eval`: barge-in precision, recall, onset error and false barge-ins by category over labelled fixtures."""
