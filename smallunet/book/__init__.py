"""What only the book's chapters use: hooks and tables over a Unet (``anatomy``),
parameter and FLOP counts (``costs``) and the figures (``plotting``). Needs the
``[book]`` extra (matplotlib, ipywidgets); the core package does not import it."""
