"""Plain-numpy oracles written for clarity; one module per piece."""
