"""The ``leangen`` command: one module per verb, imported only when that verb runs."""
