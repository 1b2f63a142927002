"""What a model is worth on held-out images: the test-set figures (``figures``), the likelihood bound
(``likelihood``), per-image codes and scores (``codes``), and the pictures (``pictures``, rendered as
arrays) with TensorBoard's embedding projector (``projector``)."""
