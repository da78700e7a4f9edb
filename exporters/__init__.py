"""Getting alerts and metrics out: one module per destination, all behind one Exporter protocol."""
