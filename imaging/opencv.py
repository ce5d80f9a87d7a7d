"""OpenCV, set up for the small images of one request: every imaging module imports it from here."""

import cv2

# OpenCV runs its calls on a pool of a thread per core, whose threads keep spinning after
# each call: in a request's CPU time that made reading one 28x28 digit cost 37% more
# (3.30 against 2.41 ms) on two cores shared by two workers. Maps this small need no threads.
cv2.setNumThreads(1)

__all__ = ["cv2"]
