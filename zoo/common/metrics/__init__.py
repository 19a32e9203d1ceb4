"""Metrics shared by the papers: OOD detection (:mod:`.ood`), classification (:mod:`.classification`)."""
