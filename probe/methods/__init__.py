"""Numerical engines the probes are built from (no probe registry here; probes live in :mod:`probe.probes`).

==========================================  ===========================================================
module                                      what
==========================================  ===========================================================
:mod:`probe.methods.capture`                forward-hook feature capture at named layers, streamed per batch
:mod:`probe.methods.reducers`               per-activation reducers: ``pool``, ``flatten``, ``PixelSampler``
:mod:`probe.methods.hsic`                   Gram matrices, HSIC estimators, the CKA degeneracy guard
:mod:`probe.methods.cka`                    full-sample and minibatch CKA (definitions and guards)
:mod:`probe.methods.paths`                  attribution paths (linear, LAM blur) and quadratures
:mod:`probe.methods.integrated_gradients`   batched path-integrated gradients (IG, LAM) with exact crops
:mod:`probe.methods.crops`                  exact crop plans: window ± receptive field, or an exact test
:mod:`probe.methods.receptive_field`        receptive-field bound from the operations a network runs
:mod:`probe.methods.threads`                no more CPU threads than free cores (OpenMP busy-waiting)
:mod:`probe.methods.faithfulness`           deletion / insertion curves of a map vs random orders
:mod:`probe.methods.causal_effect`          causal effect maps: batched background interventions
:mod:`probe.methods.captum_methods`         captum's Saliency / InputXGradient / SmoothGrad / IG by name
:mod:`probe.methods.attribution_maps`       LAM maps, Gini, Diffusion Index, region and component shares
:mod:`probe.methods.objectives`             the scalar an attribution explains (registry ``OBJECTIVES``)
:mod:`probe.methods.windows`                LAM windows on / off the rain and their border margin
==========================================  ===========================================================

Modules are imported on demand (nothing here is imported by ``import probe.methods``). They may import
:mod:`probe.data`, :mod:`probe.models`, :mod:`probe.device` and :mod:`probe.errors`, never probes, store or report.
"""
