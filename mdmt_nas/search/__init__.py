"""Architecture search: the searcher contract, the candidate runner and built-in strategies."""
