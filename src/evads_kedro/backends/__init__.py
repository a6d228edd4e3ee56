"""Model backends: one small interface per kind, chosen by a parameter."""
