"""LightningDataModules of the zoo, one folder per data family.

Every datamodule yields dict batches with documented keys:

- ``image``: float tensor (B, 3, H, W), normalised;
- ``image_view2``: a second augmented view of the same images (training only, when ``n_views=2``);
- ``label``: int64 (B,), the class for ID data and -1 for OOD data.
"""
