"""The CCA trust anchors (CPAK) the user supplies: :mod:`.anchors`."""
