"""A run, assembled: its parts built (``build``), trained into a run folder (``train``), a finished
one evaluated (``evaluate``), its models exported (``export``), what produced it recorded
(``run_info``), and the names of the run folder's files (``layout``, free of TensorFlow, so the
launching side reads run folders without importing it)."""
