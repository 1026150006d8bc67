raise ImportError("BasicSR's archs/__init__ scans and imports every arch (needs the registry and cv2)")
