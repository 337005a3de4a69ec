"""Queue semantics (what happens to an item after each attempt) and the engine that runs them."""
