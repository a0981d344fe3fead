"""Flavors: how a model gets into a package (packing) and out of it again (loading)."""
