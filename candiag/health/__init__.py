"""Bus health: error-frame classes, bus state, exact bus load, sliding windows, ids, nodes, firmware."""
