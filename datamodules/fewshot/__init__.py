"""Few-shot classification data (CoOp/DePT base-to-new protocol) on CoOp's on-disk layouts."""
