"""The names a user picks from, with no heavy import: the commands' parsers read them before
torch loads (``frame.cli``), and the modules that act on them import them from here.
"""

#: where sampled chains start (``frame.synthesis``)
INITS = ("buffer", "flat", "zeros", "noise")
#: what ``frame.scoring`` computes per image, and how its table names it
SCORES = {"f": "f(I; w)", "log_p": "log p(I; w) + log Z(w)"}
#: how a hole starts before recovery (``frame.recovery.masks``)
STARTS = ("mean", "harmonic", "exemplars")
#: offline images shipped inside installed packages (``frame.data.images.embedded_images``):
#: scikit-image's faces and sample images, then scikit-learn's two photos
EMBEDDED_IMAGES = ("lfw_faces", "brick", "grass", "gravel", "astronaut", "chelsea", "coffee", "rocket", "china", "flower")
