"""The names of frame.eval's metrics, in the table's order, and how each one reads.

Plain Python, no torch: ``frame-report`` shows a run's metrics without loading the code that
computes them.
"""

#: metrics where larger is better; every other one is a distance
HIGHER_IS_BETTER = frozenset({"precision", "recall", "density", "coverage", "distinct", "copy_ratio"})
#: metrics computed on VGG-16 features (the table marks them)
VGG_METRICS = frozenset({"kid", "fd", "precision", "recall", "density", "coverage", "gram_rel", "swd_rel"})
#: the face judge's rows (objects whose reference images are cropped faces; a face detector's logits)
FACE_METRICS = frozenset({"face_auc"})
#: the two-sample classifier's rows (the slow measure)
C2ST_METRICS = ("c2st_acc", "c2st_auc", "c2st_bits")
OBJECT_METRICS = (
    "kid", "fd", "precision", "recall", "density", "coverage", "distinct", "pixel_mean", "pixel_std", "colour_hist",
    *C2ST_METRICS, "face_auc", "spectrum", "grid_peak", "copies", "copy_ratio",
)
TEXTURE_METRICS = ("gram_rel", "swd_rel", "ps", "pixel_mean", "pixel_std", "colour_hist", *C2ST_METRICS, "spectrum", "grid_peak")
