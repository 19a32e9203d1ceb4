"""OOD-detection data: ID train/val/test plus named OOD sets, procedural (``procedural``) or real
(``real``). See :class:`datamodules.ood.base.OODDataModule` for the contract."""
