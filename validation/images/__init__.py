"""Real image data and what is done with it:

* :mod:`~validation.images.data` -- IDX loading, MODEL.md preprocessing, the pool spectrum;
* :mod:`~validation.images.sampling` -- reverse SDE / probability-flow ODE samplers, Tweedie's
  denoiser and a grid of learned scores over time;
* :mod:`~validation.images.memorization` -- the memorised fraction of generated samples;
* :mod:`~validation.images.experiments` -- the real-data experiments (learning curves against
  Gaussian data and the structured theory, phase diagram, memorisation) and
  :mod:`~validation.images.plots`, their tables and figures.
"""
