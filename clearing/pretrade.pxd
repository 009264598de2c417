# Compile-time types for clearing/pretrade.py (Cython "augmenting .pxd"); see money.pxd.
from clearing.money cimport fee
