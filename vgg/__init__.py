"""vgg-repro: a reproduction of Simonyan & Zisserman (ICLR 2015), Tables 1-7."""
__version__ = "0.1.0"
