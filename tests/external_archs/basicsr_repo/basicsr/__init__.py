raise ImportError("this package's __init__ imports BasicSR's data/models and compiled ops (cv2, lmdb ...)")
