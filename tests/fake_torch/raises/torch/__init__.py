"""A torch whose import fails the way a CUDA wheel does when its cuDNN library is missing."""

raise OSError("libcudnn.so.9: cannot open shared object file: No such file or directory")
